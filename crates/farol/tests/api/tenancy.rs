//! Account A can never read or change account B's data: by id, by list, by search, by filter.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn accounts_never_see_or_touch_each_others_data() {
    let app = spawn_app().await;
    let a = app.user("acme", farol::auth::Role::Admin).await;
    let b = app.user("globex", farol::auth::Role::Admin).await;

    let field = app
        .post(
            "/api/v1/custom-fields",
            &b,
            json!({"key": "plano", "label": "Plano", "field_type": "text"}),
        )
        .await
        .body;
    let portfolio = app
        .post("/api/v1/portfolios", &b, json!({"name": "Segredo"}))
        .await
        .body;
    let tag = app
        .post("/api/v1/tags", &b, json!({"name": "confidencial"}))
        .await
        .body;
    let secret = app.client(&b, json!({
        "name": "Cliente Secreto", "cpf_cnpj": "529.982.247-25", "portfolio_id": portfolio["id"], "tags": ["confidencial"],
        "custom_fields": {"plano": "Ouro"},
        "contacts": [{"kind": "phone", "value": "(11) 98765-4321"}, {"kind": "email", "value": "secreto@globex.com"}]
    })).await;
    let id = secret["id"].as_i64().unwrap();
    let contact = secret["contacts"][0]["id"].as_i64().unwrap();

    // By id: 404, never 403 (which would confirm the id exists).
    for path in [
        format!("/api/v1/clients/{id}"),
        format!("/api/v1/clients/{id}/timeline"),
        format!("/api/v1/contacts/{contact}"),
        format!("/api/v1/tags/{}", tag["id"]),
        format!("/api/v1/portfolios/{}", portfolio["id"]),
        format!("/api/v1/custom-fields/{}", field["id"]),
    ] {
        assert_eq!(
            app.get(&path, &a).await.status,
            StatusCode::NOT_FOUND,
            "GET {path}"
        );
    }
    assert_eq!(
        app.patch(
            &format!("/api/v1/clients/{id}"),
            &a,
            json!({"name": "hacked"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/contacts/{contact}"),
            &a,
            json!({"opted_out": true})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/clients/{id}/timeline"),
            &a,
            json!({"text": "x"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/clients/{id}/contacts"),
            &a,
            json!({"kind": "email", "value": "x@a.com"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/clients/{id}"), &a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tags/{}", tag["id"]), &a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/portfolios/{}", portfolio["id"]), &a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/custom-fields/{}", field["id"]), &a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // A's own client cannot be attached to B's portfolio.
    let res = app
        .post(
            "/api/v1/clients",
            &a,
            json!({"name": "x", "portfolio_id": portfolio["id"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["portfolio_id"]);
    // B's custom field does not exist for A.
    let res = app
        .post(
            "/api/v1/clients",
            &a,
            json!({"name": "x", "custom_fields": {"plano": "Ouro"}}),
        )
        .await;
    assert_eq!(res.fields(), vec!["custom_fields.plano"]);

    // By list, search and filter: nothing.
    for q in [
        "",
        "q=secreto",
        "q=52998224725",
        "q=(11)%2098765-4321",
        "q=secreto%40globex.com",
        "tag=confidencial",
        &format!("portfolio_id={}", portfolio["id"]),
    ] {
        let res = app.get(&format!("/api/v1/clients?{q}"), &a).await;
        assert_eq!(res.status, StatusCode::OK, "{q}");
        assert_eq!(res.body["items"].as_array().unwrap().len(), 0, "{q}");
    }
    for path in [
        "/api/v1/contacts",
        "/api/v1/tags",
        "/api/v1/portfolios",
        "/api/v1/custom-fields",
        "/api/v1/audit",
        "/api/v1/users",
    ] {
        let items = app.get(path, &a).await.body["items"]
            .as_array()
            .unwrap()
            .clone();
        let leaked: Vec<_> = items
            .iter()
            .filter(|i| {
                i.to_string().contains("ecreto")
                    || i.to_string().contains("globex")
                    || i.to_string().contains("confidencial")
                    || i.to_string().contains("Segredo")
            })
            .collect();
        assert!(leaked.is_empty(), "{path} leaks {leaked:?}");
    }

    // The same phone and document are free to use in another account.
    app.client(&a, json!({"name": "Outro", "cpf_cnpj": "52998224725", "contacts": [{"kind": "phone", "value": "11987654321"}]})).await;
    // And B's data is intact.
    let still = app.get(&format!("/api/v1/clients/{id}"), &b).await;
    assert_eq!(still.body["name"], "Cliente Secreto");
    assert_eq!(still.body["contacts"][0]["opted_out"], false);
}
