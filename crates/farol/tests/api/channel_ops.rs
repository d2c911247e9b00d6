//! Operating channel accounts: test sends through each kind of adapter against local servers
//! speaking the providers' contracts (a real SMTP server, SendGrid's Mail Send API), with
//! their failures classified for the operator.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::campaigns::{Sink, campaign, client_with_email, email_template, launch, wait_status};
use crate::helpers::{TestApp, spawn_app, spawn_with, test_config};

const SENDGRID_KEY: &str = "SG.right-key-for-the-test";

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// SendGrid v3 Mail Send as documented: bearer key (401 with an `errors` list otherwise),
/// 400 naming `personalizations.0.to` for a malformed recipient, 202 with `X-Message-Id`.
async fn sendgrid_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    async fn send(
        State(seen): State<Arc<Mutex<Vec<Value>>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {SENDGRID_KEY}"))
        {
            return (
                AxStatus::UNAUTHORIZED,
                axum::Json(json!({"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": null, "help": null}]})),
            )
                .into_response();
        }
        let body: Value = serde_json::from_slice(&body).unwrap();
        let to = body["personalizations"][0]["to"][0]["email"]
            .as_str()
            .unwrap()
            .to_owned();
        if to.ends_with("@invalid.test") {
            return (
                AxStatus::BAD_REQUEST,
                axum::Json(json!({"errors": [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email", "help": null}]})),
            )
                .into_response();
        }
        let mut seen = seen.lock().unwrap();
        seen.push(body);
        (
            AxStatus::ACCEPTED,
            [("x-message-id", format!("sg-test-{}", seen.len()))],
            "",
        )
            .into_response()
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/v3/mail/send", post(send))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

async fn account(app: &TestApp, token: &str, body: Value) -> i64 {
    let res = app.post("/api/v1/channel-accounts", token, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

async fn test_send(app: &TestApp, token: &str, id: i64, body: Value) -> crate::helpers::Resp {
    app.post(&format!("/api/v1/channel-accounts/{id}/test"), token, body)
        .await
}

async fn audit_actions(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app
        .get(
            "/api/v1/audit?entity_type=channel_account&action=channel_account.test",
            token,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body["items"]
        .as_array()
        .or_else(|| res.body.as_array())
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["action"] == "channel_account.test")
        .collect()
}

#[tokio::test]
async fn a_test_send_over_smtp_reaches_the_server_and_reports_auth_and_connection_failures() {
    let sink = Sink::start(&["nobody@example.com=550"]);
    let app = spawn_app().await;
    let admin = app.admin().await;
    let smtp = account(
        &app,
        &admin,
        json!({"name": "Relay", "provider": "smtp",
               "settings": {"host": "127.0.0.1", "port": sink.port, "security": "none",
                            "from": "Farol <noreply@farol.test>"}}),
    )
    .await;

    let res = test_send(
        &app,
        &admin,
        smtp,
        json!({"to": "Ana@Example.com", "message": "Olá, teste"}),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["ok"], true, "{:?}", res.body);
    assert_eq!(res.body["provider"], "smtp");
    assert_eq!(res.body["to"], "ana@example.com");
    let id = res.body["provider_message_id"].as_str().unwrap();
    assert!(id.ends_with("@farol.test"), "{id}");
    assert!(
        res.body["provider_status"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{:?}",
        res.body
    );
    let got = sink.to("ana@example.com");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["subject"], "Teste do Farol");
    assert!(
        got[0]["data"].as_str().unwrap().contains(id),
        "the Message-ID returned is the one sent"
    );

    // The server refuses the mailbox: an invalid recipient, in the server's words.
    let res = test_send(&app, &admin, smtp, json!({"to": "nobody@example.com"})).await;
    assert_eq!(res.body["ok"], false, "{:?}", res.body);
    assert_eq!(res.body["error"]["kind"], "invalid_recipient");
    assert_eq!(res.body["error"]["code"], "smtp_550");
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mailbox unavailable"),
        "{:?}",
        res.body
    );

    // A phone number is no e-mail address: 422 naming the field, nothing sent.
    let res = test_send(&app, &admin, smtp, json!({"to": "+5511987654321"})).await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
    assert_eq!(res.fields(), vec!["to"]);
    let res = test_send(&app, &admin, smtp, json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["to"]);
    let res = test_send(
        &app,
        &admin,
        smtp,
        json!({"to": "a@b.test", "message": "x".repeat(1001)}),
    )
    .await;
    assert_eq!(res.fields(), vec!["message"]);
    assert_eq!(sink.messages().len(), 1);

    // Credentials the server refuses: an authentication failure, the password never echoed.
    let auth_sink = Sink::start_with_auth("farol:right-password");
    let locked = account(
        &app,
        &admin,
        json!({"name": "Locked", "provider": "smtp",
               "settings": {"host": "127.0.0.1", "port": auth_sink.port, "security": "none",
                            "username": "farol", "from": "noreply@farol.test"},
               "secrets": {"password": "wrong-password-123"}}),
    )
    .await;
    let res = test_send(&app, &admin, locked, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.body["ok"], false, "{:?}", res.body);
    assert_eq!(res.body["error"]["kind"], "auth_failure", "{:?}", res.body);
    assert_eq!(res.body["error"]["code"], "smtp_535");
    assert!(!res.body.to_string().contains("wrong-password-123"));

    // Nothing listens there: unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = account(
        &app,
        &admin,
        json!({"name": "Closed", "provider": "smtp",
               "settings": {"host": "127.0.0.1", "port": port, "security": "none",
                            "from": "noreply@farol.test"}}),
    )
    .await;
    let res = test_send(&app, &admin, closed, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.body["ok"], false, "{:?}", res.body);
    assert_eq!(res.body["error"]["kind"], "unreachable", "{:?}", res.body);

    // Each test is audited with its outcome.
    let entries = audit_actions(&app, &admin).await;
    assert_eq!(entries.len(), 4, "{entries:?}");
}

#[tokio::test]
async fn a_test_send_over_sendgrid_returns_the_message_id_and_classifies_a_wrong_key() {
    let (base, seen) = sendgrid_server().await;
    let app = spawn_app().await;
    let admin = app.admin().await;
    let good = account(
        &app,
        &admin,
        json!({"name": "SG", "provider": "sendgrid",
               "settings": {"from_email": "vendas@farol.test", "base_url": base},
               "secrets": {"api_key": SENDGRID_KEY}}),
    )
    .await;
    let res = test_send(&app, &admin, good, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["ok"], true, "{:?}", res.body);
    assert_eq!(res.body["provider_message_id"], "sg-test-1");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["subject"], "Teste do Farol");
        assert_eq!(
            seen[0]["personalizations"][0]["to"][0]["email"],
            "ana@example.com"
        );
    }

    let res = test_send(&app, &admin, good, json!({"to": "ana@invalid.test"})).await;
    assert_eq!(
        res.body["error"]["kind"], "invalid_recipient",
        "{:?}",
        res.body
    );
    assert_eq!(res.body["error"]["code"], "http_400");

    let wrong = account(
        &app,
        &admin,
        json!({"name": "SG wrong", "provider": "sendgrid",
               "settings": {"from_email": "vendas@farol.test", "base_url": base},
               "secrets": {"api_key": "SG.wrong-key-for-the-test"}}),
    )
    .await;
    let res = test_send(&app, &admin, wrong, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["ok"], false);
    assert_eq!(res.body["error"]["kind"], "auth_failure", "{:?}", res.body);
    assert_eq!(res.body["error"]["code"], "http_401");
    let message = res.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("authorization grant is invalid"),
        "the provider's own words: {message}"
    );
    assert!(!res.body.to_string().contains("wrong-key"));
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A provider slower than the account's timeout_secs: a timeout.
    let slow = serve(Router::new().route(
        "/v3/mail/send",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            AxStatus::ACCEPTED
        }),
    ))
    .await;
    let sluggish = account(
        &app,
        &admin,
        json!({"name": "SG slow", "provider": "sendgrid",
               "settings": {"from_email": "vendas@farol.test", "base_url": slow, "timeout_secs": 1},
               "secrets": {"api_key": SENDGRID_KEY}}),
    )
    .await;
    let res = test_send(&app, &admin, sluggish, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.body["error"]["kind"], "timeout", "{:?}", res.body);
    assert!(res.body["duration_ms"].as_u64().unwrap() >= 1000);

    // Managers may not use channel credentials; another tenant's account does not exist.
    let manager = app.user("default", farol::auth::Role::Manager).await;
    let res = test_send(&app, &manager, good, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let other = app.user("other", farol::auth::Role::Admin).await;
    let res = test_send(&app, &other, good, json!({"to": "ana@example.com"})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A WhatsApp/SMS account wants E.164; a webhook account takes no `to`.
    let twilio = account(
        &app,
        &admin,
        json!({"name": "SMS", "provider": "twilio",
               "settings": {"account_sid": "AC0123456789abcdef0123456789abcdef", "from": "+15005550006", "base_url": base},
               "secrets": {"auth_token": "twilio-token-xyz"}}),
    )
    .await;
    for bad in ["11987654321", "+55 11 98765-4321", "ana@example.com"] {
        let res = test_send(&app, &admin, twilio, json!({"to": bad})).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(res.fields(), vec!["to"]);
        assert!(
            res.body.to_string().contains("E.164"),
            "{bad}: {:?}",
            res.body
        );
    }
    let res = test_send(
        &app,
        &admin,
        twilio,
        json!({"to": "+5511987654321", "template": {"name": "x", "language": "pt_BR"}}),
    )
    .await;
    assert_eq!(res.fields(), vec!["template"]);

    // A webhook account posts its signed test to its own URL; a `to` is refused.
    let hook_got: Received = Arc::default();
    let hook = serve(
        Router::new()
            .route(
                "/in",
                post(
                    |State(got): State<Received>, headers: HeaderMap, body: Bytes| async move {
                        let sig = headers
                            .get("x-farol-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        got.lock().unwrap().push((sig, body));
                        AxStatus::NO_CONTENT
                    },
                ),
            )
            .with_state(hook_got.clone()),
    )
    .await;
    let webhook = account(
        &app,
        &admin,
        json!({"name": "Hook", "provider": "webhook", "settings": {"url": format!("{hook}/in")},
               "secrets": {"secret": "hook-secret-for-tests"}}),
    )
    .await;
    let res = test_send(
        &app,
        &admin,
        webhook,
        json!({"to": "https://elsewhere.test"}),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["to"]);
    let res = test_send(&app, &admin, webhook, json!({"message": "ping"})).await;
    assert_eq!(res.body["ok"], true, "{:?}", res.body);
    assert_eq!(res.body["to"], format!("{hook}/in"));
    let posted = received_alerts(&hook_got, "hook-secret-for-tests");
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["type"], "channel_account.test");
    assert_eq!(posted[0]["data"]["message"], "ping");
    assert_eq!(posted[0]["data"]["channel_account_id"], webhook);

    // The route is documented.
    let res = app.get("/api/v1/openapi.json", &admin).await;
    assert!(
        res.body["paths"]["/api/v1/channel-accounts/{id}/test"]["post"].is_object(),
        "missing from the OpenAPI document"
    );
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SendGrid's Mail Send while `down` is set: 503 with SendGrid's error body, as during an
/// outage; 202 with `X-Message-Id` otherwise.
async fn flaky_sendgrid(down: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    #[derive(Clone)]
    struct S {
        down: Arc<AtomicBool>,
        accepted: Arc<AtomicUsize>,
    }
    async fn send(State(s): State<S>) -> Response {
        if s.down.load(Ordering::SeqCst) {
            return (
                AxStatus::SERVICE_UNAVAILABLE,
                axum::Json(json!({"errors": [{"message": "Service Unavailable", "field": null}]})),
            )
                .into_response();
        }
        let n = s.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        (
            AxStatus::ACCEPTED,
            [("x-message-id", format!("sg-{n}"))],
            "",
        )
            .into_response()
    }
    let accepted = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/v3/mail/send", post(send))
        .with_state(S {
            down,
            accepted: accepted.clone(),
        });
    (serve(router).await, accepted)
}

/// (`X-Farol-Signature`, body) of each POST a receiver accepted.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An operator's alert endpoint: answers 500 to the first POST of each alert (so Farol must
/// retry) and keeps every POST it accepted, with its signature header.
async fn alert_receiver() -> (String, Received) {
    #[derive(Clone, Default)]
    struct S {
        got: Received,
        tries: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    }
    async fn hook(State(s): State<S>, headers: HeaderMap, body: Bytes) -> AxStatus {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let tries = {
            let mut t = s.tries.lock().unwrap();
            let n = t.entry(key).or_default();
            *n += 1;
            *n
        };
        if tries == 1 {
            return AxStatus::INTERNAL_SERVER_ERROR;
        }
        let sig = headers
            .get("x-farol-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        s.got.lock().unwrap().push((sig, body));
        AxStatus::OK
    }
    let s = S::default();
    let got = s.got.clone();
    let router = Router::new().route("/alerts", post(hook)).with_state(s);
    (format!("{}/alerts", serve(router).await), got)
}

/// The JSON bodies a receiver accepted (alerts, webhook test sends), each checked against the
/// `X-Farol-Signature` made with `secret`.
fn received_alerts(got: &Mutex<Vec<(String, Bytes)>>, secret: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(sig, body)| {
            farol_channels::webhook::verify_signature(
                secret,
                sig,
                body,
                jiff::Timestamp::now().as_second(),
                Duration::from_secs(300),
            )
            .expect("the alert is signed with alerts.webhook_secret");
            serde_json::from_slice(body).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_provider_that_keeps_failing_opens_the_breaker_with_an_alert_and_recovery_closes_it() {
    const SECRET: &str = "ops-alert-hmac-secret";
    let down = Arc::new(AtomicBool::new(true));
    let (sendgrid, accepted) = flaky_sendgrid(down.clone()).await;
    let (hook, got) = alert_receiver().await;
    let (mut config, dir) = test_config().await;
    config.campaign.poll_ms = 50;
    config.campaign.retry_base_ms = 10;
    config.campaign.retry_cap_ms = 50;
    config.campaign.max_attempts = 1000;
    config.campaign.concurrency = 1;
    config.campaign.breaker_failures = 3;
    config.campaign.breaker_cool_down_secs = 1;
    config.alerts.webhook_url = hook;
    config.alerts.webhook_secret = SECRET.into();
    config.alerts.webhook_retry_base_ms = 10;
    let app = spawn_with(config, dir).await;
    let admin = app.admin().await;
    let sg = account(
        &app,
        &admin,
        json!({"name": "SG", "provider": "sendgrid",
               "settings": {"from_email": "vendas@farol.test", "base_url": sendgrid},
               "secrets": {"api_key": SENDGRID_KEY}}),
    )
    .await;
    for i in 0..3 {
        client_with_email(&app, &admin, &format!("C{i}"), &format!("c{i}@example.com")).await;
    }
    let template = email_template(&app, &admin, "t").await;
    let id = campaign(
        &app,
        &admin,
        json!({"name": "c", "channel": "email", "template_id": template, "channel_account_id": sg}),
    )
    .await;
    launch(&app, &admin, id).await;

    // The third consecutive 503 opens the breaker: one unresolved alert naming the account,
    // the provider and the last error.
    let open = async || {
        app.get("/api/v1/alerts?unresolved=true", &admin).await.body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_until("the breaker_open alert", async || !open().await.is_empty()).await;
    let alerts = open().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["kind"], "breaker_open");
    assert_eq!(alert["channel_account_id"], sg);
    assert_eq!(alert["provider"], "sendgrid");
    assert!(
        alert["reason"].as_str().unwrap().contains("503"),
        "{alert:?}"
    );
    assert!(alert["resolved_at"].is_null());

    // Posted to the operator's endpoint (after one 500, retried), signed.
    wait_until("the breaker_open alert to be posted", async || {
        !received_alerts(&got, SECRET).is_empty()
    })
    .await;
    let posted = received_alerts(&got, SECRET);
    assert_eq!(posted[0]["type"], "alert.breaker_open", "{posted:?}");
    assert_eq!(posted[0]["data"]["channel_account_id"], sg);
    assert_eq!(posted[0]["data"]["id"], alert["id"]);

    // Probes during the outage fail and re-open the breaker: still one alert.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all = app.get("/api/v1/alerts", &admin).await.body;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    // The provider recovers: the next probe closes the breaker, resolves the outage and says so.
    down.store(false, Ordering::SeqCst);
    wait_until("the breaker to close", async || open().await.is_empty()).await;
    wait_status(&app, &admin, id, "completed").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    let all = app.get("/api/v1/alerts", &admin).await.body;
    let items = all["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["breaker_closed", "breaker_open"], "{all:?}");
    assert!(items[1]["resolved_at"].is_string());
    wait_until("the breaker_closed alert to be posted", async || {
        received_alerts(&got, SECRET).len() == 2
    })
    .await;
    assert_eq!(
        received_alerts(&got, SECRET)[1]["type"],
        "alert.breaker_closed"
    );
    wait_until("both alerts marked notified", async || {
        let all = app.get("/api/v1/alerts", &admin).await.body;
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["notified_at"].is_string())
    })
    .await;

    // Audited, and only for admins.
    let audit = app
        .get("/api/v1/audit?entity_type=alert", &admin)
        .await
        .body;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["alert.breaker_closed", "alert.breaker_open"]);
    let manager = app.user("default", farol::auth::Role::Manager).await;
    assert_eq!(
        app.get("/api/v1/alerts", &manager).await.status,
        StatusCode::FORBIDDEN
    );
    let res = app.get("/api/v1/alerts?unresolved=yes", &admin).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["unresolved"]);
}

#[tokio::test]
async fn an_outage_is_one_open_alert_whatever_the_number_of_processes_whose_breaker_opens() {
    use farol::channels::alerts::{AlertKind, Subject, raise};
    let app = spawn_app().await;
    let admin = app.admin().await;
    let account_id = farol::accounts::ensure(&app.db, "default").await.unwrap();
    let subject = Subject {
        account_id,
        channel_account_id: Some(41),
        provider: "twilio".into(),
    };
    let other = Subject {
        channel_account_id: Some(42),
        ..subject.clone()
    };
    // Two processes' breakers open for account 41, one for 42.
    for (s, reason) in [
        (&subject, "HTTP 503"),
        (&subject, "HTTP 502"),
        (&other, "timeout"),
    ] {
        raise(&app.db, None, s, AlertKind::BreakerOpen, reason)
            .await
            .unwrap();
    }
    let open = async || {
        app.get("/api/v1/alerts?unresolved=true", &admin).await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["channel_account_id"].as_i64().unwrap(),
                    a["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        open().await,
        [(42, "timeout".to_owned()), (41, "HTTP 503".to_owned())]
    );
    // The first close resolves account 41's outage; a second process closing adds nothing.
    for _ in 0..2 {
        raise(
            &app.db,
            None,
            &subject,
            AlertKind::BreakerClosed,
            "a probe send went through",
        )
        .await
        .unwrap();
    }
    assert_eq!(open().await, [(42, "timeout".to_owned())]);
    let all = app.get("/api/v1/alerts?limit=2", &admin).await.body;
    let kinds: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["breaker_closed", "breaker_open"]);
    let next = all["next_cursor"].as_str().expect("a second page");
    let rest = app
        .get(&format!("/api/v1/alerts?cursor={next}"), &admin)
        .await
        .body;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    // Another tenant sees none of it.
    let stranger = app.user("other", farol::auth::Role::Admin).await;
    let res = app.get("/api/v1/alerts", &stranger).await;
    assert_eq!(res.body["items"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// SES events through SNS, signed for real: a throwaway RSA key and self-signed certificate made
// by the openssl CLI, served by a local server the receiver is configured to trust
// (`channels.sns_cert_hosts`), and signatures over AWS's documented string to sign, written
// out here independently of the library.

const TOPIC: &str = "arn:aws:sns:sa-east-1:123456789012:farol-ses-events";

struct SnsSigner {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>` of the certificate and confirmation server.
    base: String,
    confirmations: Arc<AtomicUsize>,
}

impl SnsSigner {
    async fn start() -> SnsSigner {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=sns.sa-east-1.amazonaws.com"])
            .arg("-keyout")
            .arg(dir.path().join("sns.key"))
            .arg("-out")
            .arg(dir.path().join("sns.pem"))
            .stderr(std::process::Stdio::null())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the SNS tests need the openssl CLI"
        );
        let pem = std::fs::read(dir.path().join("sns.pem")).unwrap();
        let confirmations = Arc::new(AtomicUsize::new(0));
        let router = Router::new()
            .route(
                "/SimpleNotificationService-farol.pem",
                axum::routing::get(move || async move { pem.clone() }),
            )
            .route(
                "/",
                axum::routing::get({
                    let c = confirmations.clone();
                    move |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                        let q = q.unwrap_or_default();
                        if q.contains("Action=ConfirmSubscription") && q.contains("Token=tok-1") {
                            c.fetch_add(1, Ordering::SeqCst);
                            AxStatus::OK
                        } else {
                            AxStatus::BAD_REQUEST
                        }
                    }
                }),
            );
        let base = serve(router).await;
        SnsSigner {
            dir,
            base,
            confirmations,
        }
    }

    fn cert_url(&self) -> String {
        format!("{}/SimpleNotificationService-farol.pem", self.base)
    }

    fn sign(&self, version: &str, data: &str) -> String {
        let input = self.dir.path().join("to-sign.txt");
        std::fs::write(&input, data).unwrap();
        let digest = if version == "1" { "-sha1" } else { "-sha256" };
        let out = std::process::Command::new("openssl")
            .args(["dgst", digest, "-sign"])
            .arg(self.dir.path().join("sns.key"))
            .arg(&input)
            .output()
            .expect("the SNS tests need the openssl CLI");
        assert!(out.status.success(), "openssl dgst failed");
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, out.stdout)
    }

    /// A Notification carrying `message`, signed with SignatureVersion `version`.
    fn notification(&self, version: &str, id: &str, message: &Value) -> Value {
        let message = message.to_string();
        let ts = "2026-11-23T06:00:00.000Z";
        // Notification: Message, MessageId, Subject (absent here), Timestamp, TopicArn, Type.
        let canonical = format!(
            "Message\n{message}\nMessageId\n{id}\nTimestamp\n{ts}\nTopicArn\n{TOPIC}\nType\nNotification\n"
        );
        json!({"Type": "Notification", "MessageId": id, "TopicArn": TOPIC, "Message": message,
               "Timestamp": ts, "SignatureVersion": version, "Signature": self.sign(version, &canonical),
               "SigningCertURL": self.cert_url(),
               "UnsubscribeURL": format!("{}/?Action=Unsubscribe", self.base)})
    }

    fn subscription_confirmation(&self) -> Value {
        let subscribe = format!(
            "{}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tok-1",
            self.base
        );
        let ts = "2026-11-23T05:59:00.000Z";
        let message = format!("You have chosen to subscribe to the topic {TOPIC}.");
        // SubscriptionConfirmation: Message, MessageId, SubscribeURL, Timestamp, Token,
        // TopicArn, Type.
        let canonical = format!(
            "Message\n{message}\nMessageId\nsub-1\nSubscribeURL\n{subscribe}\nTimestamp\n{ts}\nToken\ntok-1\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n"
        );
        json!({"Type": "SubscriptionConfirmation", "MessageId": "sub-1", "Token": "tok-1", "TopicArn": TOPIC,
               "Message": message, "SubscribeURL": subscribe, "Timestamp": ts, "SignatureVersion": "1",
               "Signature": self.sign("1", &canonical), "SigningCertURL": self.cert_url()})
    }
}

/// (address, SES MessageId) of each message SES accepted.
type SesSent = Arc<Mutex<Vec<(String, String)>>>;

/// Amazon SES v2 SendEmail (`POST /v2/email/outbound-emails`, SigV4 for service `ses`):
/// answers `{"MessageId"}` and remembers which address got which id.
async fn ses_server() -> (String, SesSent) {
    async fn send(State(seen): State<SesSent>, headers: HeaderMap, body: Bytes) -> Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAFAROLTEST/")
            || !auth.contains("/sa-east-1/ses/aws4_request")
        {
            return (
                AxStatus::FORBIDDEN,
                [("x-amzn-errortype", "UnrecognizedClientException")],
                axum::Json(
                    json!({"message": "The security token included in the request is invalid."}),
                ),
            )
                .into_response();
        }
        let body: Value = serde_json::from_slice(&body).unwrap();
        let to = body["Destination"]["ToAddresses"][0]
            .as_str()
            .unwrap()
            .to_owned();
        let mut seen = seen.lock().unwrap();
        let id = format!("0100019a-ses-{}-000000", seen.len() + 1);
        seen.push((to, id.clone()));
        axum::Json(json!({"MessageId": id})).into_response()
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/v2/email/outbound-emails", post(send))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

async fn post_sns(app: &TestApp, account: i64, body: &Value) -> StatusCode {
    app.http
        .post(format!("{}/api/v1/webhooks/ses/{account}", app.base))
        .header("content-type", "text/plain; charset=UTF-8")
        .header(
            "x-amz-sns-message-type",
            body["Type"].as_str().unwrap_or_default(),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

async fn timeline(app: &TestApp, token: &str, client: i64) -> Vec<Value> {
    let res = app
        .get(
            &format!("/api/v1/clients/{client}/timeline?limit=100"),
            token,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn signed_ses_notifications_update_recipients_contacts_timeline_and_suppressions() {
    let signer = SnsSigner::start().await;
    let (ses, sent) = ses_server().await;
    let (mut config, dir) = test_config().await;
    config.campaign.poll_ms = 50;
    config.channels.sns_cert_hosts = vec!["sns.*.amazonaws.com".into(), signer.base.clone()];
    let app = spawn_with(config, dir).await;
    let admin = app.admin().await;
    let acc = account(
        &app,
        &admin,
        json!({"name": "SES", "provider": "ses",
               "settings": {"region": "sa-east-1", "from": "vendas@farol.test", "access_key_id": "AKIAFAROLTEST",
                            "endpoint": ses, "sns_topic_arns": [TOPIC]},
               "secrets": {"secret_access_key": "ses-secret-access-key"}}),
    )
    .await;

    // Subscribing: the confirmation is verified, then confirmed by visiting SubscribeURL.
    let confirmation = signer.subscription_confirmation();
    assert_eq!(post_sns(&app, acc, &confirmation).await, StatusCode::OK);
    assert_eq!(signer.confirmations.load(Ordering::SeqCst), 1);
    let mut forged = confirmation.clone();
    forged["SubscribeURL"] = json!("http://127.0.0.1:1/?Action=ConfirmSubscription&Token=tok-1");
    assert_eq!(post_sns(&app, acc, &forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(signer.confirmations.load(Ordering::SeqCst), 1);

    let mut clients = std::collections::HashMap::new();
    for who in ["bounce", "complain", "ok"] {
        let c = client_with_email(&app, &admin, who, &format!("{who}@cliente.test")).await;
        clients.insert(who, c["id"].as_i64().unwrap());
    }
    let template = email_template(&app, &admin, "t").await;
    let id = campaign(
        &app,
        &admin,
        json!({"name": "ses", "channel": "email", "template_id": template, "channel_account_id": acc}),
    )
    .await;
    launch(&app, &admin, id).await;
    wait_status(&app, &admin, id, "completed").await;
    let ids: std::collections::HashMap<String, String> =
        sent.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let mid = |who: &str| ids[&format!("{who}@cliente.test")].clone();

    // A hard bounce (SignatureVersion 1: SHA1withRSA).
    let bounce = signer.notification(
        "1",
        "n-bounce",
        &json!({"notificationType": "Bounce",
                "mail": {"messageId": mid("bounce"), "timestamp": "2026-11-23T05:59:58.000Z", "destination": ["bounce@cliente.test"]},
                "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-23T06:00:00.000Z",
                           "bouncedRecipients": [{"emailAddress": "bounce@cliente.test", "status": "5.1.1",
                                                  "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}),
    );
    assert_eq!(post_sns(&app, acc, &bounce).await, StatusCode::OK);
    // A complaint and a delivery (SignatureVersion 2: SHA256withRSA).
    let complaint = signer.notification(
        "2",
        "n-complaint",
        &json!({"notificationType": "Complaint",
                "mail": {"messageId": mid("complain"), "destination": ["complain@cliente.test"]},
                "complaint": {"complaintFeedbackType": "abuse", "timestamp": "2026-11-23T06:01:00.000Z",
                              "complainedRecipients": [{"emailAddress": "complain@cliente.test"}]}}),
    );
    assert_eq!(post_sns(&app, acc, &complaint).await, StatusCode::OK);
    let delivery = signer.notification(
        "2",
        "n-delivery",
        &json!({"notificationType": "Delivery",
                "mail": {"messageId": mid("ok"), "destination": ["ok@cliente.test"]},
                "delivery": {"timestamp": "2026-11-23T06:00:05.000Z", "recipients": ["ok@cliente.test"],
                             "smtpResponse": "250 2.0.0 OK"}}),
    );
    assert_eq!(post_sns(&app, acc, &delivery).await, StatusCode::OK);

    let row = async |who: &str| -> (Option<String>, Option<i64>, Option<i64>, Option<i64>) {
        sqlx::query_as(
            "select delivery_status, delivered_at, bounced_at, opted_out_at from campaign_recipients \
             where campaign_id = $1 and client_id = $2",
        )
        .bind(id)
        .bind(clients[who])
        .fetch_one(app.db.pool())
        .await
        .unwrap()
    };
    let contact = async |who: &str| -> (i64, Option<i64>, Option<String>) {
        sqlx::query_as(
            "select opted_out, invalid_at, invalid_reason from contacts where value = $1",
        )
        .bind(format!("{who}@cliente.test"))
        .fetch_one(app.db.pool())
        .await
        .unwrap()
    };
    let suppressed = async |who: &str| -> Vec<(String, String)> {
        sqlx::query_as("select kind, source from suppressions where value = $1")
            .bind(format!("{who}@cliente.test"))
            .fetch_all(app.db.pool())
            .await
            .unwrap()
    };

    let (status, _, bounced_at, _) = row("bounce").await;
    assert_eq!(status.as_deref(), Some("bounced"));
    assert!(bounced_at.is_some());
    let (_, invalid_at, reason) = contact("bounce").await;
    assert!(invalid_at.is_some());
    assert_eq!(reason.as_deref(), Some("hard_bounce (5.1.1)"));
    assert_eq!(
        suppressed("bounce").await,
        [("hard_bounce".to_owned(), "bounce".to_owned())]
    );

    let (_, _, _, opted_out_at) = row("complain").await;
    assert!(opted_out_at.is_some());
    let (opted_out, invalid_at, _) = contact("complain").await;
    assert_eq!(opted_out, 1);
    assert!(invalid_at.is_some());
    assert_eq!(
        suppressed("complain").await,
        [("complaint".to_owned(), "complaint".to_owned())]
    );

    let (status, delivered_at, bounced_at, _) = row("ok").await;
    assert_eq!(status.as_deref(), Some("delivered"));
    assert!(delivered_at.is_some() && bounced_at.is_none());
    assert_eq!(contact("ok").await.1, None);
    assert!(suppressed("ok").await.is_empty());

    let kinds = async |who: &str| -> Vec<String> {
        timeline(&app, &admin, clients[who])
            .await
            .iter()
            .map(|i| i["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let bounce_items = timeline(&app, &admin, clients["bounce"]).await;
    let status_item = bounce_items
        .iter()
        .find(|i| i["kind"] == "delivery_status")
        .expect("the bounce is on the timeline");
    assert_eq!(status_item["metadata"]["status"], "hard_bounce");
    assert_eq!(
        status_item["metadata"]["provider_message_id"],
        mid("bounce")
    );
    assert!(kinds("complain").await.contains(&"opted_out".to_owned()));
    assert!(kinds("ok").await.contains(&"delivery_status".to_owned()));

    // SNS delivers at least once: the same notification again changes nothing.
    let before = kinds("bounce").await.len();
    assert_eq!(post_sns(&app, acc, &bounce).await, StatusCode::OK);
    assert_eq!(kinds("bounce").await.len(), before);
    assert_eq!(suppressed("bounce").await.len(), 1);

    // A tampered message, a certificate from a host not trusted, or a topic not configured
    // are refused and change nothing.
    let mut tampered = delivery.clone();
    tampered["Message"] = json!(
        delivery["Message"]
            .as_str()
            .unwrap()
            .replace("Delivery", "Bounce")
    );
    assert_eq!(
        post_sns(&app, acc, &tampered).await,
        StatusCode::UNAUTHORIZED
    );
    let mut elsewhere = delivery.clone();
    elsewhere["SigningCertURL"] = json!("http://127.0.0.1:1/SimpleNotificationService-farol.pem");
    assert_eq!(
        post_sns(&app, acc, &elsewhere).await,
        StatusCode::UNAUTHORIZED
    );
    let other_topic = {
        let mut n = signer.notification(
            "2",
            "n-other",
            &json!({"notificationType": "Bounce", "mail": {"messageId": mid("ok")},
                    "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "ok@cliente.test"}]}}),
        );
        // Re-signed over another topic: a valid signature, but not this account's topic.
        let message = n["Message"].as_str().unwrap().to_owned();
        let other = "arn:aws:sns:sa-east-1:999999999999:someone-else";
        let canonical = format!(
            "Message\n{message}\nMessageId\nn-other\nTimestamp\n{}\nTopicArn\n{other}\nType\nNotification\n",
            n["Timestamp"].as_str().unwrap()
        );
        n["TopicArn"] = json!(other);
        n["Signature"] = json!(signer.sign("2", &canonical));
        n
    };
    assert_eq!(
        post_sns(&app, acc, &other_topic).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(contact("ok").await.1, None);
    assert_eq!(row("ok").await.0.as_deref(), Some("delivered"));
}

// ---------------------------------------------------------------------------------------------
// SMTP bounces: VERP envelope senders, DSNs piped in by the MTA.

const DSN_SECRET: &str = "dsn-secret-for-the-mta-pipe";

/// A Postfix `bounce(8)` report for `rcpt`, sent to `verp`, returning `message_id`'s headers.
fn postfix_dsn(verp: &str, rcpt: &str, message_id: &str, action: &str, status: &str) -> String {
    format!(
        "Return-Path: <>\r
Delivered-To: {verp}\r
Received: by mx.farol.test (Postfix)\r
\tid 4Xk2Lq0Zz1z9sWv; Mon, 23 Nov 2026 06:00:00 +0000 (UTC)\r
Date: Mon, 23 Nov 2026 06:00:00 +0000 (UTC)\r
From: MAILER-DAEMON@mx.farol.test (Mail Delivery System)\r
Subject: Undelivered Mail Returned to Sender\r
To: {verp}\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"4Xk2Lq0Zz1z9sWv.1763877600/mx.farol.test\"\r
Content-Transfer-Encoding: 8bit\r
Message-Id: <20261123060000.4Xk2Lq0Zz1z9sWv@mx.farol.test>\r
\r
This is a MIME-encapsulated message.\r
\r
--4Xk2Lq0Zz1z9sWv.1763877600/mx.farol.test\r
Content-Description: Notification\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: 8bit\r
\r
This is the mail system at host mx.farol.test.\r
\r
I'm sorry to have to inform you that your message could not\r
be delivered to one or more recipients. It's attached below.\r
\r
<{rcpt}>: host mx.cliente.test[192.0.2.10] said: 550 5.1.1 <{rcpt}>:\r
    Recipient address rejected: User unknown in virtual mailbox table (in\r
    reply to RCPT TO command)\r
\r
--4Xk2Lq0Zz1z9sWv.1763877600/mx.farol.test\r
Content-Description: Delivery report\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.farol.test\r
X-Postfix-Queue-ID: 4Xk2Lq0Zz1z9sWv\r
X-Postfix-Sender: rfc822; {verp}\r
Arrival-Date: Mon, 23 Nov 2026 05:59:58 +0000 (UTC)\r
\r
Final-Recipient: rfc822; {rcpt}\r
Original-Recipient: rfc822;{rcpt}\r
Action: {action}\r
Status: {status}\r
Remote-MTA: dns; mx.cliente.test\r
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User\r
    unknown in virtual mailbox table\r
\r
--4Xk2Lq0Zz1z9sWv.1763877600/mx.farol.test\r
Content-Description: Undelivered Message Headers\r
Content-Type: text/rfc822-headers\r
Content-Transfer-Encoding: 8bit\r
\r
Return-Path: <{verp}>\r
Received: from farol (farol.internal [10.0.0.5])\r
\tby mx.farol.test (Postfix) with ESMTP id 4Xk2Lq0Zz1z9sWv\r
From: Farol <vendas@farol.test>\r
To: {rcpt}\r
Subject: Oferta\r
Message-ID: <{message_id}>\r
MIME-Version: 1.0\r
\r
--4Xk2Lq0Zz1z9sWv.1763877600/mx.farol.test--\r
"
    )
}

/// An Exchange Online / Exchange Server delay notification: the human part is itself a
/// multipart/alternative with quoted-printable text and HTML; the report names the recipient
/// with `rfc822;` and no space, and adds `X-Display-Name`.
fn exchange_delay(verp: &str, rcpt: &str, message_id: &str) -> String {
    let boundary = "9B095B5ADSN=_01DA1E5F3C2A5B4A00000001EXCH01.contoso.lo";
    format!(
        "Received: from EXCH01.contoso.local (10.1.1.5) by EXCH02.contoso.local\r
 (10.1.1.6) with Microsoft SMTP Server id 15.2.1258.12; Mon, 23 Nov 2026 06:04:00 +0000\r
From: <postmaster@cliente.test>\r
To: <{verp}>\r
Date: Mon, 23 Nov 2026 06:04:00 +0000\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"{boundary}\"\r
X-MS-Exchange-Message-Is-Ndr:\r
Content-Language: en-US\r
Message-ID: <8f2b6d1e-6c4a-4b0e-9d0f-1a2b3c4d5e6f@EXCH01.contoso.local>\r
In-Reply-To: <{message_id}>\r
References: <{message_id}>\r
Thread-Topic: Oferta\r
Subject: Delivery delayed:Oferta\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
\r
This is a MIME-formatted message.  \r
Portions of this message may be unreadable without a MIME-capable mail program.\r
\r
--{boundary}\r
Content-Type: multipart/alternative; differences=Content-Type;\r
\tboundary=\"b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\"\r
\r
--b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\r
Content-Type: text/plain; charset=\"us-ascii\"\r
Content-Transfer-Encoding: quoted-printable\r
\r
Delivery is delayed to these recipients or groups:=0D=0A=0D=0A{rcpt}=0D=0A=\r
=0D=0ASubject: Oferta=0D=0A=0D=0AThis message hasn't been delivered yet. Delivery=\r
 will continue to be attempted.\r
\r
--b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\r
Content-Type: text/html; charset=\"us-ascii\"\r
Content-Transfer-Encoding: quoted-printable\r
\r
<html><body><p>Delivery is delayed to these recipients or groups:</p><p>=\r
{rcpt}</p></body></html>\r
\r
--b1a2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d--\r
\r
--{boundary}\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns;EXCH01.contoso.local\r
Received-From-MTA: dns;mx.farol.test\r
Arrival-Date: Mon, 23 Nov 2026 06:00:02 +0000\r
\r
Final-Recipient: rfc822;{rcpt}\r
Action: delayed\r
Status: 4.4.7\r
Will-Retry-Until: Wed, 25 Nov 2026 06:00:02 +0000\r
X-Display-Name: Slow\r
\r
\r
--{boundary}\r
Content-Type: text/rfc822-headers\r
\r
Received: from mx.farol.test (192.0.2.1) by EXCH01.contoso.local\r
Return-Path: {verp}\r
From: Farol <vendas@farol.test>\r
To: <{rcpt}>\r
Subject: Oferta\r
Message-ID: <{message_id}>\r
\r
--{boundary}--\r
"
    )
}

async fn post_dsn(app: &TestApp, account: i64, token: &str, body: String) -> crate::helpers::Resp {
    let res = app
        .http
        .post(format!("{}/api/v1/webhooks/smtp/{account}/dsn", app.base))
        .header("content-type", "message/rfc822")
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    crate::helpers::Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

#[tokio::test]
async fn smtp_bounces_come_back_by_verp_and_mark_the_recipient_contact_and_suppressions() {
    let sink = Sink::start(&[]);
    let (mut config, dir) = test_config().await;
    config.campaign.poll_ms = 50;
    let app = spawn_with(config, dir).await;
    let admin = app.admin().await;
    let settings = json!({"host": "127.0.0.1", "port": sink.port, "security": "none",
                          "from": "Farol <vendas@farol.test>", "bounce_address": "bounces@mail.farol.test"});

    // bounce_address needs a dsn_secret, and room for the token.
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &admin,
            json!({"name": "x", "provider": "smtp", "settings": settings}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["secrets.dsn_secret"]);
    let mut plus = settings.clone();
    plus["bounce_address"] = json!("bounces+farol@mail.farol.test");
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &admin,
            json!({"name": "x", "provider": "smtp", "settings": plus, "secrets": {"dsn_secret": DSN_SECRET}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["settings.bounce_address"]);

    let acc = account(
        &app,
        &admin,
        json!({"name": "Relay", "provider": "smtp", "settings": settings, "secrets": {"dsn_secret": DSN_SECRET}}),
    )
    .await;
    let res = app
        .get(&format!("/api/v1/channel-accounts/{acc}"), &admin)
        .await;
    assert_eq!(
        res.body["webhook_path"],
        format!("/api/v1/webhooks/smtp/{acc}/dsn")
    );

    let mut clients = std::collections::HashMap::new();
    for who in ["gone", "slow", "ok"] {
        let c = client_with_email(&app, &admin, who, &format!("{who}@cliente.test")).await;
        clients.insert(who, c["id"].as_i64().unwrap());
    }
    let template = email_template(&app, &admin, "t").await;
    let id = campaign(
        &app,
        &admin,
        json!({"name": "smtp", "channel": "email", "template_id": template, "channel_account_id": acc}),
    )
    .await;
    launch(&app, &admin, id).await;
    wait_status(&app, &admin, id, "completed").await;

    // Each message went out with its own VERP envelope sender; the From stays the account's.
    let sent = |who: &str| {
        let msg = sink.to(&format!("{who}@cliente.test")).remove(0);
        let verp = msg["mail_from"].as_str().unwrap().to_owned();
        let mid = crate::campaigns::header(&msg, "Message-ID")
            .unwrap()
            .trim()
            .trim_matches(['<', '>'])
            .to_owned();
        assert!(
            crate::campaigns::header(&msg, "From")
                .unwrap()
                .contains("vendas@farol.test")
        );
        (verp, mid)
    };
    let (gone_verp, gone_mid) = sent("gone");
    let (slow_verp, slow_mid) = sent("slow");
    let (ok_verp, _) = sent("ok");
    assert!(gone_verp.starts_with("bounces+"), "{gone_verp}");
    assert!(gone_verp.ends_with("@mail.farol.test"));
    assert_ne!(gone_verp, slow_verp);
    assert_ne!(slow_verp, ok_verp);

    // The MTA must know the secret.
    let bounce = postfix_dsn(
        &gone_verp,
        "gone@cliente.test",
        &gone_mid,
        "failed",
        "5.1.1",
    );
    let res = post_dsn(&app, acc, "wrong-secret", bounce.clone()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // A Postfix hard bounce: recipient bounced, contact invalid, address suppressed, timeline.
    let res = post_dsn(&app, acc, DSN_SECRET, bounce.clone()).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["dsn"], true);
    assert_eq!(res.body["message_id"], gone_mid);
    assert_eq!(res.body["recipients"][0]["outcome"], "hard_bounce");
    assert_eq!(res.body["recipients"][0]["applied"], true);

    let row = async |who: &str| -> (Option<String>, Option<i64>) {
        sqlx::query_as(
            "select delivery_status, bounced_at from campaign_recipients where campaign_id = $1 and client_id = $2",
        )
        .bind(id)
        .bind(clients[who])
        .fetch_one(app.db.pool())
        .await
        .unwrap()
    };
    let invalid = async |who: &str| -> Option<String> {
        sqlx::query_scalar("select invalid_reason from contacts where value = $1")
            .bind(format!("{who}@cliente.test"))
            .fetch_one(app.db.pool())
            .await
            .unwrap()
    };
    let suppressed = async |who: &str| -> Vec<String> {
        sqlx::query_scalar("select kind from suppressions where value = $1")
            .bind(format!("{who}@cliente.test"))
            .fetch_all(app.db.pool())
            .await
            .unwrap()
    };
    let statuses = async |who: &str| -> Vec<String> {
        timeline(&app, &admin, clients[who])
            .await
            .iter()
            .filter(|i| i["kind"] == "delivery_status")
            .map(|i| i["metadata"]["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(row("gone").await.0.as_deref(), Some("bounced"));
    assert!(row("gone").await.1.is_some());
    assert_eq!(
        invalid("gone").await.as_deref(),
        Some("hard_bounce (5.1.1)")
    );
    assert_eq!(suppressed("gone").await, ["hard_bounce"]);
    assert_eq!(statuses("gone").await, ["hard_bounce"]);

    // The MTA delivering the same bounce twice changes nothing.
    let res = post_dsn(&app, acc, DSN_SECRET, bounce).await;
    assert_eq!(res.body["recipients"][0]["applied"], false);
    assert_eq!(statuses("gone").await.len(), 1);
    assert_eq!(suppressed("gone").await.len(), 1);

    // An Exchange delay: on the timeline only.
    let res = post_dsn(
        &app,
        acc,
        DSN_SECRET,
        exchange_delay(&slow_verp, "slow@cliente.test", &slow_mid),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["recipients"][0]["action"], "delayed");
    assert_eq!(res.body["recipients"][0]["status"], "4.4.7");
    assert_eq!(res.body["recipients"][0]["outcome"], "delayed");
    assert_eq!(statuses("slow").await, ["deferred"]);
    assert_eq!(row("slow").await, (None, None));
    assert_eq!(invalid("slow").await, None);
    assert!(suppressed("slow").await.is_empty());

    // A bounce whose token was not made with this account's secret (forged, or guessed from a
    // Message-ID) is read but ignored; so is mail that is no bounce.
    let forged_verp = {
        let (local, domain) = ok_verp.split_once('@').unwrap();
        let (head, _tag) = local.rsplit_once('-').unwrap();
        format!("{head}-0000000000000000@{domain}")
    };
    let (_, ok_mid) = sent("ok");
    let res = post_dsn(
        &app,
        acc,
        DSN_SECRET,
        postfix_dsn(&forged_verp, "ok@cliente.test", &ok_mid, "failed", "5.1.1"),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body["ignored"].as_str().unwrap().contains("VERP"),
        "{:?}",
        res.body
    );
    assert_eq!(row("ok").await.0, None);
    assert_eq!(invalid("ok").await, None);
    let res = post_dsn(
        &app,
        acc,
        DSN_SECRET,
        format!(
            "From: ok@cliente.test\r\nTo: {ok_verp}\r\nSubject: Re: Oferta\r\n\r\nObrigado!\r\n"
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["dsn"], false);
    let res = post_dsn(&app, acc, DSN_SECRET, "\r\nnot a message".into()).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.to_string().contains("unreadable message"));
}
