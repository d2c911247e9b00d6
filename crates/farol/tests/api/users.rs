use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn admins_manage_users_and_the_last_admin_is_protected() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let me = app.get("/api/v1/auth/me", &admin).await.body;

    let created = app.post("/api/v1/users", &admin, json!({"email": " Nova@Example.com ", "name": "Nova", "password": "long enough pw", "role": "agent"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["email"], "nova@example.com");
    let login = app.login("nova@example.com", "long enough pw").await;
    assert_eq!(login.status, StatusCode::OK);

    let dup = app.post("/api/v1/users", &admin, json!({"email": "nova@example.com", "name": "X", "password": "long enough pw", "role": "agent"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.fields(), vec!["email"]);
    let bad = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"email": "nope", "name": "", "password": "short", "role": "agent"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.fields().len(), 3);
    let bad_role = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"email": "a@b.co", "name": "A", "password": "long enough pw", "role": "owner"}),
        )
        .await;
    assert_eq!(bad_role.fields(), vec!["role"]);

    let res = app
        .patch(
            &format!("/api/v1/users/{}", me["id"]),
            &admin,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.body["fields"][0]["code"], "last_admin");

    let nid = created.body["id"].as_i64().unwrap();
    let res = app
        .patch(
            &format!("/api/v1/users/{nid}"),
            &admin,
            json!({"password": "another long pw"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.login("nova@example.com", "long enough pw").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("nova@example.com", "another long pw")
            .await
            .status,
        StatusCode::OK
    );

    let list = app.get("/api/v1/users", &admin).await.body;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains("argon2"),
        "hashes never leave the server"
    );
}
