//! Every role against every route family: the HTTP layer enforces exactly the matrix of
//! `farol::auth::rbac` (documented in docs/rbac.md).

use farol::auth::{Permission, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn every_role_gets_exactly_the_routes_its_permissions_allow() {
    // A lake that does not exist: starting a run is accepted (it then fails in the background).
    let (mut config, dir) = crate::helpers::test_config().await;
    config.segment.transactions = dir.path().join("no-lake").display().to_string();
    let app = crate::helpers::spawn_with(config, dir).await;
    let admin = app.admin().await;
    let client = app
        .client(
            &admin,
            json!({"name": "Alvo", "contacts": [{"kind": "phone", "value": "11987654321"}]}),
        )
        .await;
    let cid = client["id"].as_i64().unwrap();
    let contact_id = client["contacts"][0]["id"].as_i64().unwrap();
    let tag = app
        .post("/api/v1/tags", &admin, json!({"name": "t"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let portfolio = app
        .post("/api/v1/portfolios", &admin, json!({"name": "p"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let field = app
        .post(
            "/api/v1/custom-fields",
            &admin,
            json!({"key": "f", "label": "F", "field_type": "text"}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let admin_id = app.get("/api/v1/auth/me", &admin).await.body["id"]
        .as_i64()
        .unwrap();

    // (permission, method, path, body). Bodies are valid, so "allowed" means not 401/403.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let uniq = || n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let routes: Vec<(Permission, Method, String, Option<Value>)> = vec![
        (
            Permission::SegmentsRun,
            Method::POST,
            "/api/v1/segmentations".into(),
            Some(json!({})),
        ),
        (
            Permission::ImportsRun,
            Method::GET,
            "/api/v1/imports".into(),
            None,
        ),
        (
            Permission::ImportsRun,
            Method::POST,
            "/api/v1/imports".into(),
            Some(json!({"files": [{"name": "a.csv", "size": 10}]})),
        ),
        (
            Permission::ImportsRun,
            Method::GET,
            "/api/v1/import-presets".into(),
            None,
        ),
        (
            Permission::ImportsRun,
            Method::POST,
            "/api/v1/import-presets".into(),
            Some(json!({"name": format!("p{}", uniq()), "mapping": []})),
        ),
        (
            Permission::CrmRead,
            Method::GET,
            "/api/v1/clients".into(),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            format!("/api/v1/clients/{cid}"),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            format!("/api/v1/clients/{cid}/timeline"),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            "/api/v1/contacts".into(),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            format!("/api/v1/contacts/{contact_id}"),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            "/api/v1/tags".into(),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            "/api/v1/portfolios".into(),
            None,
        ),
        (
            Permission::CrmRead,
            Method::GET,
            "/api/v1/custom-fields".into(),
            None,
        ),
        (
            Permission::CrmWrite,
            Method::POST,
            "/api/v1/clients".into(),
            Some(json!({"name": "x"})),
        ),
        (
            Permission::CrmWrite,
            Method::PATCH,
            format!("/api/v1/clients/{cid}"),
            Some(json!({"score": 5})),
        ),
        (
            Permission::CrmWrite,
            Method::POST,
            format!("/api/v1/clients/{cid}/timeline"),
            Some(json!({"text": "nota"})),
        ),
        (
            Permission::CrmWrite,
            Method::POST,
            format!("/api/v1/clients/{cid}/contacts"),
            Some(json!({"kind": "email", "value": "x@example.com"})),
        ),
        (
            Permission::CrmWrite,
            Method::PATCH,
            format!("/api/v1/contacts/{contact_id}"),
            Some(json!({"verified": true})),
        ),
        (
            Permission::CrmConfigure,
            Method::POST,
            "/api/v1/tags".into(),
            Some(json!({"name": "new"})),
        ),
        (
            Permission::CrmConfigure,
            Method::PATCH,
            format!("/api/v1/tags/{tag}"),
            Some(json!({"color": "#000000"})),
        ),
        (
            Permission::CrmConfigure,
            Method::POST,
            "/api/v1/portfolios".into(),
            Some(json!({"name": "new"})),
        ),
        (
            Permission::CrmConfigure,
            Method::PATCH,
            format!("/api/v1/portfolios/{portfolio}"),
            Some(json!({"description": "d"})),
        ),
        (
            Permission::CrmConfigure,
            Method::POST,
            "/api/v1/custom-fields".into(),
            Some(json!({"key": "g", "label": "G", "field_type": "text"})),
        ),
        (
            Permission::CrmConfigure,
            Method::PATCH,
            format!("/api/v1/custom-fields/{field}"),
            Some(json!({"label": "F2"})),
        ),
        (
            Permission::UsersRead,
            Method::GET,
            "/api/v1/users".into(),
            None,
        ),
        (
            Permission::UsersRead,
            Method::GET,
            format!("/api/v1/users/{admin_id}"),
            None,
        ),
        (
            Permission::UsersManage,
            Method::POST,
            "/api/v1/users".into(),
            Some(
                json!({"email": "new@example.com", "name": "N", "password": "long enough pw", "role": "viewer"}),
            ),
        ),
        (
            Permission::UsersManage,
            Method::PATCH,
            format!("/api/v1/users/{admin_id}"),
            Some(json!({"name": "Admin"})),
        ),
        (
            Permission::AuditRead,
            Method::GET,
            "/api/v1/audit".into(),
            None,
        ),
        (
            Permission::CampaignsRun,
            Method::GET,
            "/api/v1/templates".into(),
            None,
        ),
        (
            Permission::CampaignsRun,
            Method::POST,
            "/api/v1/templates".into(),
            Some(
                json!({"name": format!("t{}", uniq()), "channel": "sms", "body": "Oi {{ nome }}"}),
            ),
        ),
        (
            Permission::CampaignsRun,
            Method::GET,
            "/api/v1/audiences".into(),
            None,
        ),
        (
            Permission::CampaignsRun,
            Method::POST,
            "/api/v1/audiences".into(),
            Some(json!({"name": format!("a{}", uniq()), "client_ids": [cid]})),
        ),
        (
            Permission::CampaignsRun,
            Method::GET,
            "/api/v1/campaigns".into(),
            None,
        ),
        (
            Permission::ChannelsManage,
            Method::GET,
            "/api/v1/channel-accounts".into(),
            None,
        ),
        (
            Permission::ChannelsManage,
            Method::POST,
            "/api/v1/channel-accounts".into(),
            Some(json!({"name": "hook", "provider": "webhook",
                        "settings": {"url": "https://crm.example.com/hook"},
                        "secrets": {"secret": "s3cret"}})),
        ),
    ];

    for role in Role::ALL {
        let token = app.user("default", role).await;
        for (permission, method, path, body) in &routes {
            // Make creates unique so an allowed role never trips a 409 from an earlier role.
            let body = body.clone().map(|mut b| {
                let i = uniq();
                if let Some(name) = b.get_mut("name").filter(|_| !path.contains("/users")) {
                    *name = json!(format!("{}-{i}", name.as_str().unwrap()));
                }
                if let Some(key) = b.get_mut("key") {
                    *key = json!(format!("k{i}"));
                }
                if let Some(email) = b.get_mut("email") {
                    *email = json!(format!("u{i}@example.com"));
                }
                if let Some(value) = b.get_mut("value") {
                    *value = json!(format!("c{i}@example.com"));
                }
                b
            });
            let res = app.request(method.clone(), path, Some(&token), body).await;
            if role.allows(*permission) {
                assert!(
                    res.status.is_success(),
                    "{role} {method} {path}: expected success, got {} {:?}",
                    res.status,
                    res.body
                );
            } else {
                assert_eq!(
                    res.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {:?}",
                    res.body
                );
            }
        }
        // Deletes last: each role deletes its own fresh objects.
        let c = app
            .client(&admin, json!({"name": format!("del-{role}")}))
            .await["id"]
            .as_i64()
            .unwrap();
        let t = app
            .post(
                "/api/v1/tags",
                &admin,
                json!({"name": format!("del-{role}")}),
            )
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        let ca = app
            .post(
                "/api/v1/channel-accounts",
                &admin,
                json!({"name": format!("del-{role}"), "provider": "webhook",
                       "settings": {"url": "https://crm.example.com/hook"},
                       "secrets": {"secret": "s3cret"}}),
            )
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        let victim = app.user("default", Role::Viewer).await;
        let victim_id = app.get("/api/v1/auth/me", &victim).await.body["id"]
            .as_i64()
            .unwrap();
        for (permission, path) in [
            (Permission::CrmDelete, format!("/api/v1/clients/{c}")),
            (Permission::CrmConfigure, format!("/api/v1/tags/{t}")),
            (
                Permission::UsersManage,
                format!("/api/v1/users/{victim_id}"),
            ),
            (
                Permission::ChannelsManage,
                format!("/api/v1/channel-accounts/{ca}"),
            ),
        ] {
            let res = app.delete(&path, &token).await;
            if role.allows(permission) {
                assert!(
                    res.status.is_success(),
                    "{role} DELETE {path}: {}",
                    res.status
                );
            } else {
                assert_eq!(res.status, StatusCode::FORBIDDEN, "{role} DELETE {path}");
            }
        }
    }
}
