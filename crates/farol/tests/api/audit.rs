use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_write_is_audited_with_who_what_and_before_after() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let email = app.get("/api/v1/auth/me", &admin).await.body["email"]
        .as_str()
        .unwrap()
        .to_string();
    let c = app
        .client(&admin, json!({"name": "Ana", "status": "lead"}))
        .await;
    let id = c["id"].as_i64().unwrap();
    app.patch(
        &format!("/api/v1/clients/{id}"),
        &admin,
        json!({"status": "active"}),
    )
    .await;
    app.post(
        &format!("/api/v1/clients/{id}/contacts"),
        &admin,
        json!({"kind": "email", "value": "ana@example.com"}),
    )
    .await;
    app.post("/api/v1/tags", &admin, json!({"name": "vip"}))
        .await;
    app.delete(&format!("/api/v1/clients/{id}"), &admin).await;

    let log = app
        .get(
            &format!("/api/v1/audit?entity_type=client&entity_id={id}"),
            &admin,
        )
        .await
        .body;
    let items = log["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["client.delete", "client.update", "client.create"]
    );
    assert!(items.iter().all(|e| e["actor"] == email.as_str()));
    let update = &items[1];
    assert_eq!(update["before"]["status"], "lead");
    assert_eq!(update["after"]["status"], "active");
    assert_eq!(items[0]["before"]["name"], "Ana");
    assert!(items[0]["after"].is_null());

    let all = app.get("/api/v1/audit?limit=500", &admin).await.body;
    let all_actions: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["contact.create", "tag.create", "auth.login", "user.create"] {
        assert!(all_actions.contains(&a), "{a} missing from {all_actions:?}");
    }
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes_at_the_database() {
    let app = spawn_app().await;
    app.admin().await;
    let update = sqlx::query("update audit_log set actor = 'someone else'")
        .execute(app.db.pool())
        .await;
    assert!(update.is_err(), "update must be refused");
    let delete = sqlx::query("delete from audit_log")
        .execute(app.db.pool())
        .await;
    assert!(delete.is_err(), "delete must be refused");
    let count: i64 = sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert!(count >= 2);
}
