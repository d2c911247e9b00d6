//! Campaigns on channel `smartico`: one event per client, by its external id, against a local
//! server speaking Smartico's external events API contract (`POST /api/external/events/v2`,
//! `Authorization: <label token>`, a JSON array of `{eid, event_date, ext_brand_id,
//! user_ext_id, event_type, payload}`, answering `{err_code, event_errors: {eid: [{error_code,
//! error_message}]}}`: 20056 for an eid already received, 10001 for an unknown user, 10000 for
//! a bad token; 503/429 when told to).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::campaigns::{campaign, launch, results, wait_status};
use crate::helpers::{TestApp, farol_bin, spawn_with, test_config};

pub(crate) const TOKEN: &str = "label-token-campanhas";

/// What the fake Smartico saw and how it behaves.
#[derive(Clone, Default)]
pub(crate) struct Smartico {
    /// Every well-formed event received, with its arrival time (seconds since the epoch).
    pub events: Arc<Mutex<Vec<(f64, Value)>>>,
    /// The `Authorization` header of every request.
    pub auth: Arc<Mutex<Vec<String>>>,
    /// Events per request.
    pub batch_sizes: Arc<Mutex<Vec<usize>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    /// Users Smartico does not know (10001).
    pub unknown: Arc<Mutex<HashSet<String>>>,
    /// How many of the next requests get a 503.
    pub fail: Arc<AtomicUsize>,
    /// How many of the next requests get a 429 with `Retry-After: 1`.
    pub throttle: Arc<AtomicUsize>,
    /// How long each answer takes, milliseconds.
    pub delay_ms: Arc<AtomicU64>,
}

async fn events_api(State(fake): State<Smartico>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    fake.auth.lock().unwrap().push(auth.clone());
    let delay = fake.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if auth != TOKEN {
        return axum::Json(json!({"err_code": 10000, "err_message": "Invalid API key"}))
            .into_response();
    }
    if fake
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    if fake
        .throttle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"err_code": 1, "err_message": "expected a JSON array"})),
        )
            .into_response();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    fake.batch_sizes.lock().unwrap().push(events.len());
    let mut errors = Map::new();
    for e in &events {
        let ok = e["eid"].as_str().is_some_and(|s| !s.is_empty())
            && e["event_date"]
                .as_i64()
                .is_some_and(|d| d > 1_000_000_000_000)
            && e["user_ext_id"].as_str().is_some_and(|s| !s.is_empty())
            && (e["event_type"] == "client_action" || e["event_type"] == "update_profile")
            && e["payload"].is_object();
        if !ok {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"err_code": 1, "err_message": format!("bad event {e}")})),
            )
                .into_response();
        }
        let eid = e["eid"].as_str().unwrap().to_owned();
        let user = e["user_ext_id"].as_str().unwrap();
        fake.events.lock().unwrap().push((now, e.clone()));
        if fake.unknown.lock().unwrap().contains(user) {
            errors.insert(
                eid,
                json!([{"error_code": 10001, "error_message": "User not found"}]),
            );
        } else if !fake.seen.lock().unwrap().insert(eid.clone()) {
            errors.insert(
                eid,
                json!([{"error_code": 20056, "error_message": "Duplicate event"}]),
            );
        }
    }
    axum::Json(json!({"err_code": 0, "event_errors": errors})).into_response()
}

impl Smartico {
    /// Starts the fake; returns its base URL.
    pub(crate) async fn start(&self) -> String {
        let router = Router::new()
            .route("/api/external/events/v2", post(events_api))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}")
    }

    /// The events received for one user.
    pub(crate) fn events_of(&self, user: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e["user_ext_id"] == user)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// An app with quick polling and retries, on the send queue `FAROL_TEST_QUEUE` says.
pub(crate) async fn quick_app() -> (TestApp, farol::config::Config) {
    quick_app_with(1).await
}

/// [`quick_app`] with `workers` send workers (0: API only).
pub(crate) async fn quick_app_with(workers: usize) -> (TestApp, farol::config::Config) {
    quick_app_sending(
        workers,
        farol::config::CampaignConfig::default().concurrency,
    )
    .await
}

/// [`quick_app_with`] with `concurrency` sends in flight per worker.
pub(crate) async fn quick_app_sending(
    workers: usize,
    concurrency: usize,
) -> (TestApp, farol::config::Config) {
    let (mut config, dir) = test_config().await;
    crate::campaigns::with_queue(&mut config);
    config.campaign.workers = workers;
    config.campaign.concurrency = concurrency;
    config.campaign.poll_ms = 50;
    config.campaign.retry_base_ms = 50;
    config.campaign.retry_cap_ms = 200;
    config.campaign.max_attempts = 4;
    let kept = config.clone();
    (spawn_with(config, dir).await, kept)
}

/// Creates a Smartico channel account (the tenant's default) and returns its id.
pub(crate) async fn smartico_account(app: &TestApp, token: &str, base: &str, extra: Value) -> i64 {
    let mut settings = json!({"base_url": base, "ext_brand_id": "brand-br"});
    if let (Some(s), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    let res = app
        .post(
            "/api/v1/channel-accounts",
            token,
            json!({"name": format!("Smartico {}", uuid::Uuid::new_v4().simple()), "provider": "smartico",
                   "settings": settings, "secrets": {"label_token": TOKEN}, "is_default": true}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    assert_eq!(res.body["channel"], "smartico");
    assert_eq!(res.body["secrets_set"], json!(["label_token"]));
    assert!(!res.body.to_string().contains(TOKEN), "{:?}", res.body);
    assert_eq!(res.body["webhook_path"], Value::Null);
    res.body["id"].as_i64().unwrap()
}

/// A `client_action` template and returns its id.
pub(crate) async fn action_template(app: &TestApp, token: &str) -> i64 {
    let res = app
        .post(
            "/api/v1/templates",
            token,
            json!({"name": format!("t{}", uuid::Uuid::new_v4().simple()), "channel": "smartico",
                   "event": {"type": "client_action", "action": "farol_oferta"},
                   "body": "{\"nome\": {{ nome }}, \"cidade\": {{ cidade | default(none) }}, \"plano\": {{ plano_atual | default('básico') | upper }}}"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

/// Clients named `name-i` with external ids `prefix-i` (none for `None`), in an audience;
/// returns (audience id, client ids).
pub(crate) async fn clients_with_ids(
    app: &TestApp,
    token: &str,
    ids: &[Option<String>],
) -> (i64, Vec<i64>) {
    let mut clients = Vec::new();
    for (i, ext) in ids.iter().enumerate() {
        let c = app
            .client(
                token,
                json!({"name": format!("Cliente \"{i}\""), "city": "Recife",
                       "contacts": [{"kind": "email", "value": format!("c{i}-{}@example.com", uuid::Uuid::new_v4().simple())}]}),
            )
            .await;
        let id = c["id"].as_i64().unwrap();
        if let Some(ext) = ext {
            sqlx::query("update clients set external_id = $1 where id = $2")
                .bind(ext.clone())
                .bind(id)
                .execute(app.db.pool())
                .await
                .unwrap();
        }
        clients.push(id);
    }
    let audience = app
        .post(
            "/api/v1/audiences",
            token,
            json!({"name": format!("a{}", uuid::Uuid::new_v4().simple()), "client_ids": clients}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    (audience, clients)
}

#[tokio::test]
async fn a_smartico_template_needs_an_event_and_a_payload_that_renders_to_a_json_object() {
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    let bad = [
        (json!({"body": "{\"a\": 1}"}), "event", "required"),
        (
            json!({"event": {"type": "client_action"}, "body": "{\"a\": 1}"}),
            "event.action",
            "required",
        ),
        (
            json!({"event": {"type": "update_profile", "action": "x"}, "body": "{\"a\": 1}"}),
            "event.action",
            "not_allowed",
        ),
        (
            json!({"event": {"type": "client_action", "action": "x y"}, "body": "{\"a\": 1}"}),
            "event.action",
            "invalid",
        ),
        (
            json!({"event": {"type": "client_action", "action": "x"}}),
            "body",
            "required",
        ),
        (
            json!({"event": {"type": "client_action", "action": "x"}, "body": "{\"a\": {{ apelido }}}"}),
            "body",
            "unknown_variables",
        ),
        // A variable inside quotes: the JSON-escaped value breaks the string.
        (
            json!({"event": {"type": "client_action", "action": "x"}, "body": "{\"a\": \"{{ nome }}\"}"}),
            "body",
            "invalid_json",
        ),
        (
            json!({"event": {"type": "update_profile"}, "body": "[{{ nome }}]"}),
            "body",
            "invalid_json",
        ),
        (
            json!({"event": {"type": "client_action", "action": "x"}, "body": "{\"action\": \"y\"}"}),
            "body",
            "not_allowed",
        ),
        (
            json!({"event": {"type": "client_action", "action": "x"}, "body": "{}", "subject": "s"}),
            "subject",
            "not_allowed",
        ),
    ];
    for (body, field, code) in bad {
        let mut input = json!({"name": "s", "channel": "smartico"});
        input
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let res = app.post("/api/v1/templates", &token, input.clone()).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{input}");
        let hit = res.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == field && f["code"] == code);
        assert!(hit, "{input}: expected {field}/{code}, got {:?}", res.body);
    }
    // Another channel's template cannot carry an event.
    let res = app
        .post(
            "/api/v1/templates",
            &token,
            json!({"name": "sms", "channel": "sms", "body": "oi", "event": {"type": "update_profile"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["event"]);

    let template = action_template(&app, &token).await;
    let got = app
        .get(&format!("/api/v1/templates/{template}"), &token)
        .await;
    assert_eq!(
        got.body["event"],
        json!({"type": "client_action", "action": "farol_oferta"})
    );
    // Preview: values are JSON literals, quotes escaped, absent ones null, the action added.
    let (_, clients) = clients_with_ids(&app, &token, &[Some("u1".into())]).await;
    sqlx::query("update clients set city = null where id = $1")
        .bind(clients[0])
        .execute(app.db.pool())
        .await
        .unwrap();
    let res = app
        .post(
            &format!("/api/v1/templates/{template}/preview"),
            &token,
            json!({"client_id": clients[0]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["event_type"], "client_action");
    assert_eq!(
        res.body["payload"],
        json!({"nome": "Cliente \"0\"", "cidade": null, "plano": "BÁSICO", "action": "farol_oferta"})
    );
    // An auto campaign never picks Smartico.
    let res = app
        .post(
            "/api/v1/campaigns",
            &token,
            json!({"name": "auto", "channel": "auto", "templates": {"smartico": template}}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
    assert!(res.fields().contains(&"templates.smartico".to_owned()));
}

#[tokio::test]
async fn a_smartico_campaign_sends_one_event_per_client_and_fails_only_unknown_users() {
    let fake = Smartico::default();
    // A slow answer lets concurrent sends queue up behind the request in flight.
    fake.delay_ms.store(150, Ordering::SeqCst);
    let base = fake.start().await;
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    let account = smartico_account(&app, &token, &base, json!({})).await;
    let template = action_template(&app, &token).await;
    let mut ids: Vec<Option<String>> = (0..10).map(|i| Some(format!("player-{i}"))).collect();
    ids.push(None);
    fake.unknown.lock().unwrap().insert("player-3".into());
    let (audience, clients) = clients_with_ids(&app, &token, &ids).await;

    // Launch needs the account: a disabled one is refused.
    let id = campaign(
        &app,
        &token,
        json!({"name": "Oferta", "channel": "smartico", "template_id": template, "audience_id": audience}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;

    let r = results(&app, &token, id).await;
    assert_eq!(
        (
            r["total"].as_i64(),
            r["sent"].as_i64(),
            r["failed"].as_i64(),
            r["skipped"].as_i64()
        ),
        (Some(11), Some(9), Some(1), Some(1)),
        "{r:?}"
    );
    assert_eq!(r["skipped_reasons"], json!({"no_external_id": 1}));
    assert_eq!(r["by_channel"]["smartico"]["sent"], 9);

    // Every request carried the label token; every event the documented shape.
    assert!(fake.auth.lock().unwrap().iter().all(|a| a == TOKEN));
    let events = fake.events.lock().unwrap().clone();
    assert_eq!(events.len(), 10, "one event per client with an external id");
    for i in 0..10 {
        let user = format!("player-{i}");
        let mine = fake.events_of(&user);
        assert_eq!(mine.len(), 1, "{user}");
        let e = &mine[0];
        assert_eq!(e["event_type"], "client_action");
        assert_eq!(e["ext_brand_id"], "brand-br");
        assert_eq!(
            e["payload"],
            json!({"nome": format!("Cliente \"{i}\""), "cidade": "Recife", "plano": "BÁSICO", "action": "farol_oferta"})
        );
        let eid = e["eid"].as_str().unwrap();
        assert_eq!(eid.len(), 32);
        assert!(eid.chars().all(|c| c.is_ascii_hexdigit()));
    }
    let eids: HashSet<&str> = events
        .iter()
        .map(|(_, e)| e["eid"].as_str().unwrap())
        .collect();
    assert_eq!(eids.len(), 10, "eids are distinct per recipient");
    // Concurrent sends travel together.
    let sizes = fake.batch_sizes.lock().unwrap().clone();
    eprintln!("events per request: {sizes:?}");
    assert!(
        sizes.len() < 10 && sizes.iter().any(|n| *n > 1),
        "requests: {sizes:?}"
    );

    // The unknown player failed with Smartico's reason; the others are sent with the eid as
    // the provider's message id, and a timeline item.
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "select client_id, status, error, provider_message_id from campaign_recipients where campaign_id = $1",
    )
    .bind(id)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let by_client: HashMap<i64, (String, Option<String>, Option<String>)> = rows
        .into_iter()
        .map(|(c, s, e, p)| (c, (s, e, p)))
        .collect();
    let (status, error, _) = &by_client[&clients[3]];
    assert_eq!(status, "failed");
    let error = error.as_deref().unwrap();
    assert!(
        error.contains("10001") && error.contains("user_not_found") && error.contains("player-3"),
        "{error}"
    );
    let (status, error, pmid) = &by_client[&clients[0]];
    assert_eq!((status.as_str(), error.as_deref()), ("sent", None));
    assert_eq!(
        pmid.as_deref(),
        fake.events_of("player-0")[0]["eid"].as_str()
    );
    assert_eq!(by_client[&clients[10]].1.as_deref(), Some("no_external_id"));
    let item: String = sqlx::query_scalar(
        "select text from timeline_items where client_id = $1 and kind = 'campaign_message'",
    )
    .bind(clients[0])
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(item, "Smartico event sent");

    // Disabled, the account cannot be launched with.
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{account}"),
            &token,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let second = campaign(
        &app,
        &token,
        json!({"name": "Oferta 2", "channel": "smartico", "template_id": template, "channel_account_id": account}),
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/campaigns/{second}/launch"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
}

#[tokio::test]
async fn a_smartico_event_sent_again_after_a_crash_is_deduplicated_and_counts_as_sent() {
    let fake = Smartico::default();
    let base = fake.start().await;
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    smartico_account(&app, &token, &base, json!({})).await;
    let template = action_template(&app, &token).await;
    let (audience, _) =
        clients_with_ids(&app, &token, &[Some("p-a".into()), Some("p-b".into())]).await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "smartico", "template_id": template, "audience_id": audience}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    assert_eq!(fake.events.lock().unwrap().len(), 2);

    // As if the worker had died after Smartico accepted the events but before recording them:
    // the rows are `sending` with an expired lease, and the campaign is still running.
    sqlx::query(
        "update campaign_recipients set status = 'sending', lease_owner = 'dead', lease_until = 0 where campaign_id = $1",
    )
    .bind(id)
    .execute(app.db.pool())
    .await
    .unwrap();
    sqlx::query("update campaigns set status = 'running', completed_at = null where id = $1")
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
    wait_status(&app, &token, id, "completed").await;

    // Sent again with the same eids; Smartico answered 20056 and the recipients are sent.
    let events = fake.events.lock().unwrap().clone();
    assert_eq!(events.len(), 4);
    for user in ["p-a", "p-b"] {
        let mine = fake.events_of(user);
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[0]["eid"], mine[1]["eid"], "{user}: the eid is stable");
    }
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["sent"].as_i64(), r["failed"].as_i64()),
        (Some(2), Some(0)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_smartico_5xx_or_429_is_retried_with_backoff_until_the_event_is_accepted() {
    let fake = Smartico::default();
    let base = fake.start().await;
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    smartico_account(&app, &token, &base, json!({})).await;
    let template = action_template(&app, &token).await;
    let (audience, _) = clients_with_ids(&app, &token, &[Some("p-5xx".into())]).await;
    fake.fail.store(1, Ordering::SeqCst);
    fake.throttle.store(1, Ordering::SeqCst);
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "smartico", "template_id": template, "audience_id": audience}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    let (status, attempts): (String, i64) =
        sqlx::query_as("select status, attempts from campaign_recipients where campaign_id = $1")
            .bind(id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 3));
    assert_eq!(
        fake.auth.lock().unwrap().len(),
        3,
        "a 503, a 429, then accepted"
    );
    // The 429's Retry-After (1 s) won over the 50 ms backoff.
    let (created, sent): (i64, i64) = sqlx::query_as(
        "select created_at, sent_at from campaign_recipients where campaign_id = $1",
    )
    .bind(id)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert!(
        sent - created >= 1000,
        "sent {} ms after launch",
        sent - created
    );
    assert_eq!(fake.events_of("p-5xx").len(), 1);

    // A wrong label token fails the recipients for good, naming Smartico's code.
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &token,
            json!({"name": "wrong", "provider": "smartico", "settings": {"base_url": base},
                   "secrets": {"label_token": "nope"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let wrong = res.body["id"].as_i64().unwrap();
    let id = campaign(
        &app,
        &token,
        json!({"name": "w", "channel": "smartico", "template_id": template, "audience_id": audience,
               "channel_account_id": wrong}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    let error: String =
        sqlx::query_scalar("select error from campaign_recipients where campaign_id = $1")
            .bind(id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert!(error.contains("10000"), "{error}");
}

#[tokio::test]
async fn smartico_channel_accounts_are_validated_per_field() {
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &token,
            json!({"name": "s", "provider": "smartico", "settings": {"base_url": "apis6.smartico.ai", "label_token": "x"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = res.fields();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "secrets.label_token",
            "settings.base_url",
            "settings.label_token"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_smartico_campaign_through_the_configured_label() {
    let fake = Smartico::default();
    let base = fake.start().await;
    // The CLI sends (launch --wait); the in-process server only serves the API.
    let (app, config) = quick_app_with(0).await;
    let token = app.admin().await;
    let (_, _) = clients_with_ids(&app, &token, &[Some("cli-1".into()), None]).await;
    let dir = config.data_dir.clone();
    let payload = dir.join("payload.json");
    std::fs::write(&payload, "{\"nome\": {{ nome }}}").unwrap();
    let url = config.database.url.clone();
    let url = secrecy::ExposeSecret::expose_secret(&url).to_owned();
    let run = |args: &[&str]| {
        let out = farol_bin(&dir, &url)
            .env("FAROL_SMARTICO__BASE_URL", &base)
            .env("FAROL_SMARTICO__LABEL_TOKEN", TOKEN)
            .env("FAROL_CAMPAIGN__POLL_MS", "50")
            .env("FAROL_LOG__LEVEL", "warn")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let created = run(&[
        "campaign",
        "create",
        "--name",
        "CLI",
        "--channel",
        "smartico",
        "--event",
        "update_profile",
        "--template-file",
        payload.to_str().unwrap(),
        "--json",
    ]);
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["id"].as_i64().unwrap().to_string();
    run(&["campaign", "launch", &id, "--wait"]);
    let results: Value =
        serde_json::from_str(&run(&["campaign", "results", &id, "--json"])).unwrap();
    assert_eq!(results["sent"], 1, "{results:?}");
    assert_eq!(results["skipped_reasons"], json!({"no_external_id": 1}));
    let e = &fake.events_of("cli-1")[0];
    assert_eq!(e["event_type"], "update_profile");
    assert_eq!(e["payload"], json!({"nome": "Cliente \"0\""}));
}

#[tokio::test]
async fn a_smartico_test_send_posts_a_client_action_and_classifies_smarticos_answer() {
    let fake = Smartico::default();
    let base = fake.start().await;
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    let account = smartico_account(&app, &token, &base, json!({})).await;
    let test = |body: Value| {
        let app = &app;
        let token = &token;
        async move {
            app.post(
                &format!("/api/v1/channel-accounts/{account}/test"),
                token,
                body,
            )
            .await
        }
    };
    let res = test(json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["to"]);

    let res = test(json!({"to": "player-t", "message": "oi"})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["ok"], true, "{:?}", res.body);
    assert_eq!(res.body["to"], "player-t");
    let e = &fake.events_of("player-t")[0];
    assert_eq!(e["event_type"], "client_action");
    assert_eq!(
        e["payload"],
        json!({"action": "farol_channel_test", "message": "oi"})
    );
    assert_eq!(res.body["provider_message_id"], e["eid"]);

    fake.unknown.lock().unwrap().insert("ghost".into());
    let res = test(json!({"to": "ghost"})).await;
    assert_eq!(res.body["ok"], false, "{:?}", res.body);
    assert_eq!(res.body["error"]["kind"], "invalid_recipient");
    assert_eq!(res.body["error"]["code"], "10001");

    let res = app
        .post(
            "/api/v1/channel-accounts",
            &token,
            json!({"name": "wrong", "provider": "smartico", "settings": {"base_url": base},
                   "secrets": {"label_token": "not-the-token"}}),
        )
        .await;
    let wrong = res.body["id"].as_i64().unwrap();
    let res = app
        .post(
            &format!("/api/v1/channel-accounts/{wrong}/test"),
            &token,
            json!({"to": "player-t"}),
        )
        .await;
    assert_eq!(res.body["error"]["kind"], "auth_failure", "{:?}", res.body);
    assert!(!res.body.to_string().contains("not-the-token"));
}
