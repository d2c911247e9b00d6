use farol::auth::Role;
use farol::auth::token::Claims;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_with, test_config};

#[tokio::test]
async fn login_returns_tokens_that_open_the_api() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "admin");
    assert!(me.body.get("password_hash").is_none());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let email = app.get("/api/v1/auth/me", &token).await.body["email"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = app.login(&email, "not the password").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["message"], unknown.body["message"]);
}

#[tokio::test]
async fn missing_malformed_invalid_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let me = app.get("/api/v1/auth/me", &token).await.body;

    let none = app
        .request(Method::GET, "/api/v1/clients", None, None)
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer");

    let garbage = app.get("/api/v1/clients", "not-a-jwt").await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.body["message"], "invalid access token");

    // Same claims, signed with another key.
    let forged = farol::auth::token::TokenKeys::new(b"some other key that is long enough!", 60)
        .issue(me["id"].as_i64().unwrap(), 1, "whatever")
        .unwrap();
    assert_eq!(
        app.get("/api/v1/clients", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Signed with the real key but expired.
    let claims: Claims = {
        let parts: Vec<&str> = token.split('.').collect();
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    let now = jiff::Timestamp::now().as_second();
    let expired = app
        .tokens
        .sign(&Claims {
            iat: now - 3600,
            exp: now - 600,
            ..claims
        })
        .unwrap();
    let res = app.get("/api/v1/clients", &expired).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body["message"], "access token expired");
}

#[tokio::test]
async fn logout_revokes_the_access_and_refresh_tokens_at_once() {
    let app = spawn_app().await;
    app.admin().await;
    let email = "boss@default.test";
    let account = farol::accounts::ensure(&app.db, "default").await.unwrap();
    farol::auth::users::create(
        &app.db,
        farol::auth::password::HashCost {
            memory_kib: 64,
            iterations: 1,
        },
        &farol::audit::Actor::system(account, "test"),
        farol::auth::users::NewUser {
            email: email.into(),
            name: "Boss".into(),
            password: PASSWORD.into(),
            role: Role::Manager,
        },
    )
    .await
    .unwrap();
    let login = app.login(email, PASSWORD).await.body;
    let access = login["access_token"].as_str().unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/clients", access).await.status,
        StatusCode::OK
    );

    let out = app
        .request(Method::POST, "/api/v1/auth/logout", Some(access), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/clients", access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);

    // Another session of the same user is untouched.
    let other = app.login(email, PASSWORD).await.body;
    assert_eq!(
        app.get("/api/v1/clients", other["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_session() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let email = app.get("/api/v1/auth/me", &admin).await.body["email"]
        .as_str()
        .unwrap()
        .to_string();
    let first = app.login(&email, PASSWORD).await.body;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();

    let second = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let r2 = second.body["refresh_token"].as_str().unwrap().to_string();
    let a2 = second.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(app.get("/api/v1/clients", &a2).await.status, StatusCode::OK);

    // r1 again: someone copied it. The whole session dies, including r2 and a2.
    let reuse = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/clients", &a2).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r2_use = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r2})),
        )
        .await;
    assert_eq!(r2_use.status, StatusCode::UNAUTHORIZED);

    let bogus = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": "nope"})),
        )
        .await;
    assert_eq!(bogus.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited_with_retry_after() {
    let (mut config, dir) = test_config().await;
    config.auth.login_max_attempts = 3;
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let email = app.get("/api/v1/auth/me", &token).await.body["email"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(
            app.login(&email, "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = app.login(&email, PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry));
}

#[tokio::test]
async fn rate_limits_are_shared_through_redis_when_configured() {
    let redis_url =
        std::env::var("FAROL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (mut config, dir) = test_config().await;
    config.redis.url = secrecy::SecretString::from(redis_url.clone());
    // Counters of earlier runs and parallel tests live in the same Redis: a prefix of our own.
    config.redis.key_prefix = format!("farol-test-{}", uuid::Uuid::new_v4().simple());
    config.auth.login_max_attempts = 2;
    let (config_b, dir_b) = {
        let mut c = config.clone();
        c.data_dir = dir.path().to_path_buf();
        (c, tempfile::tempdir().unwrap())
    };
    // Two servers on the same database and Redis: failures on one count on the other.
    let a = spawn_with(config, dir).await;
    let b = spawn_with(config_b, dir_b).await;
    let ready = a.request(Method::GET, "/ready", None, None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "Redis must be running at {redis_url}: {:?}",
        ready.body
    );
    assert_eq!(ready.body["checks"]["redis"]["ok"], true);
    let email = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());
    assert_eq!(a.login(&email, "x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.login(&email, "x").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.login(&email, "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.user("default", Role::Agent).await;
    let agent_id = app.get("/api/v1/auth/me", &agent).await.body["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.get("/api/v1/clients", &agent).await.status,
        StatusCode::OK
    );
    let res = app
        .delete(&format!("/api/v1/users/{agent_id}"), &admin)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/clients", &agent).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_role_change_applies_to_existing_tokens_immediately() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.user("default", Role::Agent).await;
    let agent_id = app.get("/api/v1/auth/me", &agent).await.body["id"]
        .as_i64()
        .unwrap();
    let body = json!({"name": "Ana"});
    assert_eq!(
        app.post("/api/v1/clients", &agent, body.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let res = app
        .patch(
            &format!("/api/v1/users/{agent_id}"),
            &admin,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.post("/api/v1/clients", &agent, body).await.status,
        StatusCode::FORBIDDEN
    );
}
