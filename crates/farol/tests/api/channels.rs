//! Channel accounts and every channel end to end, against local HTTP servers speaking each
//! provider's documented contract (Meta Cloud API, Twilio Messages API, WPPConnect, a receiver
//! of Farol's signed outbound webhook): secrets encrypted at rest and never returned, campaigns
//! over each channel, `auto` fallback, the WhatsApp 24-hour window, provider webhooks (bad
//! signatures refused, delivery statuses, replies, STOP), results.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::{TestApp, spawn_with, test_config};

const META_TOKEN: &str = "EAAG-meta-access-token-very-secret";
const APP_SECRET: &str = "meta-app-secret-123";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-shh";
const WPP_SECRET: &str = "wpp-server-secret-key";
const WPP_HOOK: &str = "wpp-webhook-token-42";
const HOOK_SECRET: &str = "outbound-webhook-secret";

/// What a mock provider received.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Value>>,
    counter: Mutex<u64>,
    tries: Mutex<HashMap<String, u32>>,
}

impl Seen {
    fn push(&self, v: Value) -> u64 {
        self.requests.lock().unwrap().push(v);
        let mut n = self.counter.lock().unwrap();
        *n += 1;
        *n
    }
    fn all(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
    /// How many times `key` was tried before this one.
    fn tried(&self, key: &str) -> u32 {
        let mut t = self.tries.lock().unwrap();
        let e = t.entry(key.to_owned()).or_default();
        *e += 1;
        *e - 1
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

fn json_response(status: u16, body: Value) -> Response {
    (AxStatus::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// Meta Cloud API: `POST /{version}/{phone-number-id}/messages`, bearer token. Numbers ending
/// in 01 are not on WhatsApp (131026), 02 are rate limited once (130429), 03 need
/// re-engagement (131047) whatever we think of the window.
async fn meta_server() -> (String, Arc<Seen>) {
    async fn send(
        State(seen): State<Arc<Seen>>,
        Path((version, phone_id)): Path<(String, String)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {META_TOKEN}"))
        {
            return json_response(
                401,
                json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}),
            );
        }
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["messaging_product"], "whatsapp");
        let to = body["to"].as_str().unwrap().to_owned();
        let error = |code: i64, msg: &str| {
            json_response(
                400,
                json!({"error": {"message": msg, "type": "OAuthException", "code": code, "fbtrace_id": "A1"}}),
            )
        };
        if to.ends_with("01") {
            return error(131026, "Message undeliverable");
        }
        if to.ends_with("02") && seen.tried(&to) == 0 {
            return error(130429, "Rate limit hit");
        }
        if to.ends_with("03") {
            return error(131047, "Re-engagement message");
        }
        let n = seen.push(json!({"version": version, "phone_number_id": phone_id, "body": body}));
        json_response(
            200,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                   "messages": [{"id": format!("wamid.{n}")}]}),
        )
    }
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/{version}/{phone_id}/messages", post(send))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

/// Twilio Messages API: basic auth, form body. `+55119000000 09` is invalid (21211), `…08`
/// answers 429 once.
async fn twilio_server() -> (String, Arc<Seen>) {
    async fn send(
        State(seen): State<Arc<Seen>>,
        Path(sid): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
        );
        if sid != TWILIO_SID
            || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&auth)
        {
            return json_response(
                401,
                json!({"code": 20003, "message": "Authenticate", "status": 401}),
            );
        }
        let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
        let to = form["To"].clone();
        if to.ends_with("09") {
            return json_response(
                400,
                json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400}),
            );
        }
        if to.ends_with("08") && seen.tried(&to) == 0 {
            return (
                AxStatus::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
            )
                .into_response();
        }
        let n = seen.push(serde_json::to_value(&form).unwrap());
        json_response(
            201,
            json!({"sid": format!("SM{n:032}"), "status": "queued", "to": to}),
        )
    }
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(send))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

/// WPPConnect server: tokens from the secret key, bearer per session, send-message, session
/// management.
async fn wpp_server() -> (String, Arc<Seen>) {
    async fn token(Path((session, secret)): Path<(String, String)>) -> Response {
        if secret != WPP_SECRET {
            return json_response(400, json!({"message": "The SECRET_KEY is incorrect"}));
        }
        json_response(
            201,
            json!({"status": "success", "session": session, "token": format!("tok-{session}"), "full": format!("{session}:tok")}),
        )
    }
    fn authorized(session: &str, headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer tok-{session}"))
    }
    async fn action(
        State(seen): State<Arc<Seen>>,
        Path((session, action)): Path<(String, String)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if !authorized(&session, &headers) {
            return json_response(401, json!({"message": "Unauthorized"}));
        }
        match action.as_str() {
            "send-message" => {
                let body: Value = serde_json::from_slice(&body).unwrap();
                let phone = body["phone"].as_str().unwrap().to_owned();
                let n = seen.push(json!({"session": session, "body": body}));
                json_response(
                    201,
                    json!({"status": "success", "response": [{"id": format!("true_{phone}@c.us_3EB0{n}")}]}),
                )
            }
            "start-session" => {
                seen.push(json!({"session": session, "start": serde_json::from_slice::<Value>(&body).unwrap()}));
                json_response(
                    200,
                    json!({"status": "QRCODE", "qrcode": "data:image/png;base64,iVBORw0KGgo=", "urlcode": "2@abc"}),
                )
            }
            "close-session" => json_response(
                200,
                json!({"status": true, "message": "Session successfully closed"}),
            ),
            _ => json_response(404, json!({"message": "not found"})),
        }
    }
    async fn read(Path((session, action)): Path<(String, String)>, headers: HeaderMap) -> Response {
        if !authorized(&session, &headers) {
            return json_response(401, json!({"message": "Unauthorized"}));
        }
        match action.as_str() {
            "status-session" => json_response(200, json!({"status": "CONNECTED", "qrcode": null})),
            "qrcode-session" => (
                [("content-type", "image/png")],
                b"\x89PNG\r\n\x1a\nfake".to_vec(),
            )
                .into_response(),
            _ => json_response(404, json!({"message": "not found"})),
        }
    }
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/api/{session}/{secret}/generate-token", post(token))
        .route("/api/{session}/{action}", post(action).get(read))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

/// A customer endpoint receiving Farol's outbound webhook, checking `X-Farol-Signature`.
async fn hook_server() -> (String, Arc<Seen>) {
    async fn hook(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
        let sig = headers
            .get("x-farol-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let ok = farol_channels::webhook::verify_signature(
            HOOK_SECRET,
            sig,
            &body,
            jiff::Timestamp::now().as_second(),
            Duration::from_secs(300),
        );
        if ok.is_err() {
            return json_response(401, json!({"error": "bad signature"}));
        }
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        v["idempotency_key"] = json!(headers.get("idempotency-key").unwrap().to_str().unwrap());
        seen.push(v);
        json_response(200, json!({"ok": true}))
    }
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

async fn app() -> TestApp {
    let (mut config, dir) = test_config().await;
    config.campaign.poll_ms = 50;
    config.campaign.retry_base_ms = 50;
    config.campaign.retry_cap_ms = 300;
    config.campaign.max_attempts = 4;
    spawn_with(config, dir).await
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

async fn account(app: &TestApp, token: &str, body: Value) -> i64 {
    let res = app.post("/api/v1/channel-accounts", token, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

async fn meta_account(app: &TestApp, token: &str, base: &str) -> i64 {
    account(
        app,
        token,
        json!({"name": "Meta BR", "provider": "meta", "is_default": true,
               "settings": {"phone_number_id": "1055", "base_url": base, "api_version": "v23.0"},
               "secrets": {"access_token": META_TOKEN, "app_secret": APP_SECRET, "verify_token": "vt-1"}}),
    )
    .await
}

async fn twilio_account(app: &TestApp, token: &str, base: &str) -> i64 {
    account(
        app,
        token,
        json!({"name": "Twilio", "provider": "twilio", "is_default": true,
               "settings": {"account_sid": TWILIO_SID, "from": "+5511999990000", "base_url": base},
               "secrets": {"auth_token": TWILIO_TOKEN}}),
    )
    .await
}

async fn client_with_phone(app: &TestApp, token: &str, name: &str, phone: &str) -> i64 {
    app.client(
        token,
        json!({"name": name, "contacts": [{"kind": "phone", "value": phone}]}),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn template(app: &TestApp, token: &str, body: Value) -> i64 {
    let res = app.post("/api/v1/templates", token, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

async fn run_campaign(app: &TestApp, token: &str, body: Value) -> (i64, Value) {
    let res = app.post("/api/v1/campaigns", token, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.body["id"].as_i64().unwrap();
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    wait_until("the campaign to complete", async || {
        app.get(&format!("/api/v1/campaigns/{id}"), token)
            .await
            .body["status"]
            == "completed"
    })
    .await;
    (id, results(app, token, id).await)
}

async fn results(app: &TestApp, token: &str, id: i64) -> Value {
    let res = app
        .get(&format!("/api/v1/campaigns/{id}/results"), token)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

/// (status, error, channel) of each recipient by client id.
async fn recipients(
    app: &TestApp,
    campaign: i64,
) -> HashMap<i64, (String, Option<String>, String)> {
    let rows: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
        "select client_id, status, error, channel from campaign_recipients where campaign_id = $1",
    )
    .bind(campaign)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(c, s, e, ch)| (c, (s, e, ch)))
        .collect()
}

fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha2::Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = sha2::Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> StatusCode {
    let mut req = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status()
}

async fn meta_webhook(app: &TestApp, id: i64, body: &Value, secret: &str) -> StatusCode {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &raw));
    post_raw(
        app,
        &format!("/api/v1/webhooks/meta/{id}"),
        "application/json",
        &[("x-hub-signature-256", sig)],
        raw,
    )
    .await
}

fn meta_status(wamid: &str, status: &str, to: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1055"},
        "statuses": [{"id": wamid, "status": status, "timestamp": "1763870000", "recipient_id": to}]}}]}]})
}

fn meta_inbound(id: &str, from: &str, text: &str) -> Value {
    let now = jiff::Timestamp::now().as_second().to_string();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1055"},
        "contacts": [{"profile": {"name": "Cliente"}, "wa_id": from}],
        "messages": [{"from": from, "id": id, "timestamp": now, "type": "text", "text": {"body": text}}]}}]}]})
}

async fn timeline_kinds(app: &TestApp, token: &str, client: i64) -> Vec<String> {
    let res = app
        .get(
            &format!("/api/v1/clients/{client}/timeline?limit=100"),
            token,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let items = res.body["items"]
        .as_array()
        .or(res.body.as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn contact_flags(app: &TestApp, phone: &str) -> (i64, Option<i64>, Option<i64>) {
    sqlx::query_as("select opted_out, invalid_at, last_inbound_at from contacts where value = $1")
        .bind(phone.to_owned())
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn channel_account_secrets_are_encrypted_at_rest_write_only_and_admin_only() {
    let app = app().await;
    let admin = app.admin().await;

    // Per-provider validation names each field.
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &admin,
            json!({"name": "x", "provider": "meta", "settings": {"access_token": "oops", "colour": 1},
                   "secrets": {"app_secret": "s", "password": "p"}}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
    let fields = res.fields();
    for f in [
        "settings.access_token",
        "settings.colour",
        "secrets.password",
        "settings.phone_number_id",
        "secrets.access_token",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} not in {fields:?}");
    }
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &admin,
            json!({"name": "t", "provider": "twilio", "settings": {"account_sid": "AC1", "base_url": "ftp://x"},
                   "secrets": {"auth_token": "t"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.fields(),
        vec!["settings.base_url", "settings.from"],
        "{:?}",
        res.body
    );

    let id = meta_account(&app, &admin, "http://127.0.0.1:9").await;
    let res = app
        .get(&format!("/api/v1/channel-accounts/{id}"), &admin)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["channel"], "whatsapp");
    assert_eq!(res.body["settings"]["phone_number_id"], "1055");
    assert_eq!(
        res.body["secrets_set"],
        json!(["access_token", "app_secret", "verify_token"])
    );
    assert_eq!(
        res.body["webhook_path"],
        format!("/api/v1/webhooks/meta/{id}")
    );
    let list = app.get("/api/v1/channel-accounts", &admin).await;
    for body in [res.body.to_string(), list.body.to_string()] {
        assert!(
            !body.contains(META_TOKEN) && !body.contains(APP_SECRET),
            "{body}"
        );
    }

    // At rest: neither the secrets column nor anything else in the row holds the plaintext.
    let (settings, secrets): (String, String) =
        sqlx::query_as("select settings, secrets from channel_accounts where id = $1")
            .bind(id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert!(!settings.contains(META_TOKEN) && !secrets.contains(META_TOKEN));
    assert!(!secrets.contains(APP_SECRET) && !secrets.contains("vt-1"));
    let enc: BTreeMap<String, String> = serde_json::from_str(&secrets).unwrap();
    assert!(enc["access_token"].starts_with("v1:"), "{secrets}");
    // Bound to its row and field: moved to another field, it does not decrypt.
    let mut tampered = enc.clone();
    tampered.insert("app_secret".into(), enc["access_token"].clone());
    sqlx::query(
        "update channel_accounts set secrets = $1, updated_at = updated_at + 1 where id = $2",
    )
    .bind(serde_json::to_string(&tampered).unwrap())
    .bind(id)
    .execute(app.db.pool())
    .await
    .unwrap();
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{id}"),
            &admin,
            json!({"name": "Meta 2"}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        res.body
    );
    sqlx::query("update channel_accounts set secrets = $1 where id = $2")
        .bind(secrets.clone())
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();

    // Rotating one secret keeps the others; null removes an optional one.
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{id}"),
            &admin,
            json!({"secrets": {"access_token": "rotated-token-xyz", "verify_token": null}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(
        res.body["secrets_set"],
        json!(["access_token", "app_secret"])
    );
    // Removing a required one is refused, naming it.
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{id}"),
            &admin,
            json!({"secrets": {"app_secret": null}}),
        )
        .await;
    assert_eq!(res.fields(), vec!["secrets.app_secret"]);

    // The audit log records changes without values.
    let audit = app.get("/api/v1/audit", &admin).await.body.to_string();
    assert!(audit.contains("channel_account.create") && audit.contains("channel_account.update"));
    for s in [META_TOKEN, APP_SECRET, "rotated-token-xyz", "vt-1"] {
        assert!(!audit.contains(s), "audit holds {s}");
    }

    // Managers and below cannot see or touch accounts.
    let manager = app.user("default", farol::auth::Role::Manager).await;
    assert_eq!(
        app.get("/api/v1/channel-accounts", &manager).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&format!("/api/v1/channel-accounts/{id}"), &manager)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&format!("/api/v1/channel-accounts/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_whatsapp_campaign_over_meta_keeps_the_24_hour_window_and_follows_delivery_webhooks() {
    let app = app().await;
    let admin = app.admin().await;
    let (base, meta) = meta_server().await;
    let acc = meta_account(&app, &admin, &base).await;
    let ana = client_with_phone(&app, &admin, "Ana Lima", "11987650000").await; // wrote to us
    let bia = client_with_phone(&app, &admin, "Bia", "11987650010").await; // never wrote
    let bad = client_with_phone(&app, &admin, "Bad", "11900000001").await; // not on WhatsApp
    let slow = client_with_phone(&app, &admin, "Slow", "11900000002").await; // rate limited once
    let stale = client_with_phone(&app, &admin, "Stale", "11900000003").await; // Meta says 131047

    // Webhook signatures: a wrong one is refused and changes nothing.
    let hello = meta_inbound("wamid.in1", "5511987650000", "Oi, quero saber do plano");
    assert_eq!(
        meta_webhook(&app, acc, &hello, "wrong-secret").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(contact_flags(&app, "+5511987650000").await.2, None);
    // Ana writes: her window opens, the reply lands on her timeline.
    assert_eq!(
        meta_webhook(&app, acc, &hello, APP_SECRET).await,
        StatusCode::OK
    );
    assert!(contact_flags(&app, "+5511987650000").await.2.is_some());
    assert!(
        timeline_kinds(&app, &admin, ana)
            .await
            .contains(&"inbound_message".to_string())
    );
    for (c, phone) in [
        (slow, "+5511900000002"),
        (stale, "+5511900000003"),
        (bad, "+5511900000001"),
    ] {
        let _ = c;
        sqlx::query("update contacts set last_inbound_at = $1 where value = $2")
            .bind(jiff::Timestamp::now().as_millisecond() - 3_600_000)
            .bind(phone.to_owned())
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    // Meta's GET handshake.
    let res = app
        .http
        .get(format!(
            "{}/api/v1/webhooks/meta/{acc}?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=123abc",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "123abc");
    let res = app
        .http
        .get(format!(
            "{}/api/v1/webhooks/meta/{acc}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Free text: Ana (in the window) gets it; Bia (never wrote) is skipped without a request.
    let text = template(
        &app,
        &admin,
        json!({"name": "oferta", "channel": "whatsapp", "body": "Olá {{ nome | primeiro_nome }}!"}),
    )
    .await;
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "WA", "channel": "whatsapp", "template_id": text}),
    )
    .await;
    let rec = recipients(&app, cid).await;
    assert_eq!(rec[&ana].0, "sent");
    assert_eq!(
        rec[&bia],
        (
            "skipped".into(),
            Some("outside_whatsapp_window".into()),
            "whatsapp".into()
        )
    );
    assert_eq!(rec[&stale].1.as_deref(), Some("outside_whatsapp_window"));
    assert_eq!(rec[&slow].0, "sent", "130429 is retried");
    assert_eq!(rec[&bad].0, "failed");
    assert_eq!(r["sent"], 2);
    assert_eq!(r["skipped_reasons"]["outside_whatsapp_window"], 2);
    let bad_contact = contact_flags(&app, "+5511900000001").await;
    assert!(bad_contact.1.is_some(), "131026 marks the number invalid");
    let sent = meta.all();
    assert_eq!(sent.len(), 2);
    let to_ana = sent
        .iter()
        .find(|s| s["body"]["to"] == "5511987650000")
        .unwrap();
    assert_eq!(to_ana["phone_number_id"], "1055");
    assert_eq!(to_ana["version"], "v23.0");
    assert_eq!(to_ana["body"]["type"], "text");
    assert_eq!(to_ana["body"]["text"]["body"], "Olá Ana!");

    // With a provider template, Bia gets the approved template with rendered parameters.
    let res = app
        .post(
            "/api/v1/templates",
            &admin,
            json!({"name": "bad-tpl", "channel": "whatsapp", "body": "Oi",
                   "provider_template": {"name": "Boas Vindas", "language": "", "body_parameters": ["{{ apelido }}"]}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut f = res.fields();
    f.sort();
    assert_eq!(
        f,
        vec![
            "provider_template.body_parameters[0]",
            "provider_template.language",
            "provider_template.name"
        ]
    );
    let with_template = template(
        &app,
        &admin,
        json!({"name": "oferta-tpl", "channel": "whatsapp", "body": "Olá {{ nome }}!",
               "provider_template": {"name": "boas_vindas", "language": "pt_BR", "body_parameters": ["{{ nome | primeiro_nome }}"]}}),
    )
    .await;
    let audience = app
        .post(
            "/api/v1/audiences",
            &admin,
            json!({"name": "ana-bia", "client_ids": [ana, bia]}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let before = meta.all().len();
    let (c2, _) = run_campaign(
        &app,
        &admin,
        json!({"name": "WA2", "channel": "whatsapp", "template_id": with_template, "audience_id": audience, "channel_account_id": acc}),
    )
    .await;
    let rec = recipients(&app, c2).await;
    assert_eq!(
        (rec[&ana].0.as_str(), rec[&bia].0.as_str()),
        ("sent", "sent")
    );
    let new: Vec<Value> = meta.all()[before..].to_vec();
    let to_bia = new
        .iter()
        .find(|s| s["body"]["to"] == "5511987650010")
        .unwrap();
    assert_eq!(to_bia["body"]["type"], "template");
    assert_eq!(to_bia["body"]["template"]["name"], "boas_vindas");
    assert_eq!(to_bia["body"]["template"]["language"]["code"], "pt_BR");
    assert_eq!(
        to_bia["body"]["template"]["components"][0]["parameters"][0]["text"],
        "Bia"
    );
    let to_ana = new
        .iter()
        .find(|s| s["body"]["to"] == "5511987650000")
        .unwrap();
    assert_eq!(
        to_ana["body"]["type"], "text",
        "inside the window free text goes"
    );

    // Delivery statuses by provider message id; the same event twice changes nothing twice.
    let wamid: String = sqlx::query_scalar(
        "select provider_message_id from campaign_recipients where campaign_id = $1 and client_id = $2",
    )
    .bind(cid)
    .bind(ana)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    for status in ["delivered", "delivered", "read", "read"] {
        let ev = meta_status(&wamid, status, "5511987650000");
        assert_eq!(
            meta_webhook(&app, acc, &ev, APP_SECRET).await,
            StatusCode::OK
        );
    }
    let forged = meta_status(&wamid, "failed", "5511987650000");
    assert_eq!(
        meta_webhook(&app, acc, &forged, "nope").await,
        StatusCode::UNAUTHORIZED
    );
    let kinds = timeline_kinds(&app, &admin, ana).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "delivery_status").count(),
        2,
        "{kinds:?}"
    );
    let (ds, delivered, read): (Option<String>, Option<i64>, Option<i64>) = sqlx::query_as(
        "select delivery_status, delivered_at, read_at from campaign_recipients where provider_message_id = $1",
    )
    .bind(wamid.clone())
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(ds.as_deref(), Some("read"));
    assert!(delivered.is_some() && read.is_some());

    // "SAIR" opts Ana out: contact, timeline, audit, campaign results; twice changes nothing.
    let sair = meta_inbound("wamid.in2", "5511987650000", "Sair");
    for _ in 0..2 {
        assert_eq!(
            meta_webhook(&app, acc, &sair, APP_SECRET).await,
            StatusCode::OK
        );
    }
    assert_eq!(contact_flags(&app, "+5511987650000").await.0, 1);
    let kinds = timeline_kinds(&app, &admin, ana).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "opted_out").count(),
        1,
        "{kinds:?}"
    );
    let audit: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where action = 'contact.opt_out' and entity_id = $1",
    )
    .bind(ana.to_string())
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(audit, 1);
    // The reply is counted on the latest message this account sent Ana (the second campaign).
    let r1 = results(&app, &admin, cid).await;
    assert_eq!(r1["engagement"]["delivered"], 1);
    assert_eq!(r1["engagement"]["read"], 1);
    assert_eq!(r1["by_channel"]["whatsapp"]["engagement"]["read"], 1);
    let minute = r1["over_time"].as_array().unwrap();
    assert_eq!(
        minute
            .iter()
            .map(|m| m["read"].as_i64().unwrap())
            .sum::<i64>(),
        1
    );
    let r2 = results(&app, &admin, c2).await;
    assert_eq!(r2["engagement"]["replied"], 1);
    assert_eq!(r2["engagement"]["opted_out"], 1);
    // An opted-out contact receives nothing more.
    let before = meta.all().len();
    let (c3, _) = run_campaign(
        &app,
        &admin,
        json!({"name": "WA3", "channel": "whatsapp", "template_id": with_template, "audience_id": audience}),
    )
    .await;
    assert_eq!(
        recipients(&app, c3).await[&ana].1.as_deref(),
        Some("opted_out")
    );
    assert_eq!(meta.all().len(), before + 1);
}

#[tokio::test]
async fn an_sms_campaign_over_twilio_retries_429_marks_invalid_numbers_and_takes_status_callbacks()
{
    let app = app().await;
    let admin = app.admin().await;
    let (base, twilio) = twilio_server().await;
    let acc = twilio_account(&app, &admin, &base).await;
    let caio = client_with_phone(&app, &admin, "Caio", "11987650020").await;
    let busy = client_with_phone(&app, &admin, "Busy", "11900000008").await;
    let bad = client_with_phone(&app, &admin, "Bad", "11900000009").await;
    let t = template(
        &app,
        &admin,
        json!({"name": "sms", "channel": "sms", "body": "Oi {{ nome }}, SAIR p/ sair"}),
    )
    .await;
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "SMS", "channel": "sms", "template_id": t}),
    )
    .await;
    let rec = recipients(&app, cid).await;
    assert_eq!(rec[&caio].0, "sent");
    assert_eq!(rec[&busy].0, "sent", "429 is retried");
    assert_eq!(rec[&bad].0, "failed");
    assert!(rec[&bad].1.as_deref().unwrap().contains("21211"));
    assert!(contact_flags(&app, "+5511900000009").await.1.is_some());
    assert_eq!(r["sent"], 2);
    let sent = twilio.all();
    let to_caio = sent.iter().find(|f| f["To"] == "+5511987650020").unwrap();
    assert_eq!(to_caio["From"], "+5511999990000");
    assert_eq!(to_caio["Body"], "Oi Caio, SAIR p/ sair");
    // Without a configured callback, Twilio is told to call Farol's receiver for this account.
    let callback = format!("http://127.0.0.1:8080/api/v1/webhooks/twilio/{acc}");
    assert_eq!(to_caio["StatusCallback"], callback.as_str());

    let sid: String = sqlx::query_scalar(
        "select provider_message_id from campaign_recipients where campaign_id = $1 and client_id = $2",
    )
    .bind(cid)
    .bind(caio)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    let path = format!("/api/v1/webhooks/twilio/{acc}");
    let send = async |params: Vec<(&str, &str)>, token: &str| {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sig = farol_channels::sms::twilio::signature(token, &callback, &owned);
        post_raw(
            &app,
            &path,
            "application/x-www-form-urlencoded",
            &[("x-twilio-signature", sig)],
            serde_urlencoded::to_string(&owned).unwrap().into_bytes(),
        )
        .await
    };
    let delivered = vec![
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "delivered"),
        ("To", "+5511987650020"),
        ("AccountSid", TWILIO_SID),
    ];
    assert_eq!(
        send(delivered.clone(), "forged").await,
        StatusCode::UNAUTHORIZED
    );
    let ds: Option<String> = sqlx::query_scalar(
        "select delivery_status from campaign_recipients where provider_message_id = $1",
    )
    .bind(sid.clone())
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(ds, None, "a forged callback changes nothing");
    assert_eq!(send(delivered.clone(), TWILIO_TOKEN).await, StatusCode::OK);
    assert_eq!(send(delivered, TWILIO_TOKEN).await, StatusCode::OK);
    let stop = vec![
        ("MessageSid", "SMinbound1"),
        ("From", "+5511987650020"),
        ("To", "+5511999990000"),
        ("Body", "STOP"),
    ];
    assert_eq!(send(stop, TWILIO_TOKEN).await, StatusCode::OK);
    assert_eq!(contact_flags(&app, "+5511987650020").await.0, 1);
    let kinds = timeline_kinds(&app, &admin, caio).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "delivery_status").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"inbound_message".to_string()) && kinds.contains(&"opted_out".to_string())
    );
    let r = results(&app, &admin, cid).await;
    assert_eq!(
        r["by_channel"]["sms"]["engagement"],
        json!({"delivered": 1, "read": 0, "bounced": 0, "replied": 1, "opted_out": 1})
    );

    // An edited account is rebuilt: with a wrong auth token the next send fails with Twilio's
    // authentication error.
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{acc}"),
            &admin,
            json!({"secrets": {"auth_token": "not-the-token"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let dani = client_with_phone(&app, &admin, "Dani", "11987650021").await;
    let only = app
        .post(
            "/api/v1/audiences",
            &admin,
            json!({"name": "dani", "client_ids": [dani]}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let (c2, _) = run_campaign(
        &app,
        &admin,
        json!({"name": "SMS2", "channel": "sms", "template_id": t, "audience_id": only}),
    )
    .await;
    let rec = recipients(&app, c2).await;
    assert_eq!(rec[&dani].0, "failed");
    assert!(
        rec[&dani].1.as_deref().unwrap().contains("20003"),
        "{:?}",
        rec[&dani]
    );
}

#[tokio::test]
async fn a_wppconnect_account_spreads_sends_over_its_sessions_and_takes_acks() {
    let app = app().await;
    let admin = app.admin().await;
    let (base, wpp) = wpp_server().await;
    let acc = account(
        &app,
        &admin,
        json!({"name": "WPP", "provider": "wppconnect",
               "settings": {"base_url": base, "sessions": ["vendas1", "vendas2"]},
               "secrets": {"secret_key": WPP_SECRET, "webhook_token": WPP_HOOK}}),
    )
    .await;
    // Sessions through the account.
    let res = app
        .post(
            &format!("/api/v1/channel-accounts/{acc}/sessions/vendas1/start"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["state"], "qrcode");
    let start = wpp
        .all()
        .into_iter()
        .find(|r| r.get("start").is_some())
        .unwrap();
    assert_eq!(
        start["start"]["webhook"],
        format!("http://127.0.0.1:8080/api/v1/webhooks/wppconnect/{acc}/{WPP_HOOK}").as_str()
    );
    let res = app
        .get(&format!("/api/v1/channel-accounts/{acc}/sessions"), &admin)
        .await;
    assert_eq!(
        res.body,
        json!([{"name": "vendas1", "state": "connected", "qrcode": null}, {"name": "vendas2", "state": "connected", "qrcode": null}])
    );
    let png = app
        .http
        .get(format!(
            "{}/api/v1/channel-accounts/{acc}/sessions/vendas2/qrcode",
            app.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));
    assert_eq!(
        app.get(
            &format!("/api/v1/channel-accounts/{acc}/sessions/nope"),
            &admin
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            client_with_phone(&app, &admin, &format!("C{i}"), &format!("1198765003{i}")).await,
        );
    }
    let t = template(
        &app,
        &admin,
        json!({"name": "wa", "channel": "whatsapp", "body": "Oi {{ nome }}"}),
    )
    .await;
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "WPP", "channel": "whatsapp", "template_id": t, "channel_account_id": acc}),
    )
    .await;
    assert_eq!(r["sent"], 4, "{r}");
    let sends: Vec<Value> = wpp
        .all()
        .into_iter()
        .filter(|r| r.get("body").is_some())
        .collect();
    assert_eq!(sends.len(), 4);
    let per_session = |s: &str| sends.iter().filter(|r| r["session"] == s).count();
    assert_eq!((per_session("vendas1"), per_session("vendas2")), (2, 2));

    // Acks through the tokenized URL; a wrong token is refused.
    let wid: String = sqlx::query_scalar(
        "select provider_message_id from campaign_recipients where campaign_id = $1 and client_id = $2",
    )
    .bind(cid)
    .bind(ids[0])
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    let ack = serde_json::to_vec(&json!({"event": "onack", "session": "vendas1", "id": {"_serialized": wid}, "ack": 3, "to": "5511987650030@c.us"})).unwrap();
    let bad = post_raw(
        &app,
        &format!("/api/v1/webhooks/wppconnect/{acc}/wrong"),
        "application/json",
        &[],
        ack.clone(),
    )
    .await;
    assert_eq!(bad, StatusCode::UNAUTHORIZED);
    let ok = post_raw(
        &app,
        &format!("/api/v1/webhooks/wppconnect/{acc}/{WPP_HOOK}"),
        "application/json",
        &[],
        ack,
    )
    .await;
    assert_eq!(ok, StatusCode::OK);
    let r = results(&app, &admin, cid).await;
    assert_eq!(r["engagement"]["read"], 1);
    assert_eq!(r["engagement"]["delivered"], 1);
    assert_eq!(
        app.post(
            &format!("/api/v1/channel-accounts/{acc}/sessions/vendas2/close"),
            &admin,
            json!({})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_webhook_campaign_posts_signed_json_to_the_accounts_endpoint() {
    let app = app().await;
    let admin = app.admin().await;
    let (base, hook) = hook_server().await;
    account(
        &app,
        &admin,
        json!({"name": "CRM hook", "provider": "webhook", "is_default": true,
               "settings": {"url": format!("{base}/hook")}, "secrets": {"secret": HOOK_SECRET}}),
    )
    .await;
    let ana = client_with_phone(&app, &admin, "Ana", "11987650040").await;
    let t = template(
        &app,
        &admin,
        json!({"name": "hook", "channel": "webhook", "body": "Bônus para {{ nome }}"}),
    )
    .await;
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "H", "channel": "webhook", "template_id": t}),
    )
    .await;
    assert_eq!(r["sent"], 1, "{r}");
    let got = hook.all();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "campaign.message");
    assert_eq!(got[0]["data"]["body"], "Bônus para Ana");
    assert_eq!(got[0]["metadata"]["client_id"], ana.to_string());
    assert_eq!(
        got[0]["idempotency_key"],
        format!("campaign:{cid}:client:{ana}")
    );
}

#[tokio::test]
async fn an_auto_campaign_uses_each_clients_preferred_channel_and_falls_back_in_order() {
    let app = app().await;
    let admin = app.admin().await;
    let (meta_base, meta) = meta_server().await;
    let (twilio_base, twilio) = twilio_server().await;
    let wa = meta_account(&app, &admin, &meta_base).await;
    twilio_account(&app, &admin, &twilio_base).await;
    // In the WhatsApp window: WhatsApp (first in the default order).
    let ana = client_with_phone(&app, &admin, "Ana", "11987650050").await;
    assert_eq!(
        meta_webhook(
            &app,
            wa,
            &meta_inbound("wamid.a", "5511987650050", "oi"),
            APP_SECRET
        )
        .await,
        StatusCode::OK
    );
    // Outside the window and no provider template: SMS.
    let bia = client_with_phone(&app, &admin, "Bia", "11987650051").await;
    // In the window by our records, but Meta answers 131047 (re-engagement needed): moved to
    // SMS when sending.
    let eli = client_with_phone(&app, &admin, "Eli", "11900000003").await;
    sqlx::query("update contacts set last_inbound_at = $1 where value = '+5511900000003'")
        .bind(jiff::Timestamp::now().as_millisecond() - 3_600_000)
        .execute(app.db.pool())
        .await
        .unwrap();
    // Opted out of the phone: nothing reaches her.
    let caio = client_with_phone(&app, &admin, "Caio", "11987650052").await;
    sqlx::query("update contacts set opted_out = 1 where value = '+5511987650052'")
        .execute(app.db.pool())
        .await
        .unwrap();
    // Only an e-mail, and no e-mail channel configured: no address.
    let dani = app
        .client(
            &admin,
            json!({"name": "Dani", "contacts": [{"kind": "email", "value": "dani@example.com"}]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    // In the window, but the active segmentation says this player prefers SMS: SMS.
    let gabi = client_with_phone(&app, &admin, "Gabi", "11987650053").await;
    assert_eq!(
        meta_webhook(
            &app,
            wa,
            &meta_inbound("wamid.g", "5511987650053", "oi"),
            APP_SECRET
        )
        .await,
        StatusCode::OK
    );
    let account_id: i64 = sqlx::query_scalar("select account_id from clients where id = $1")
        .bind(gabi)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    for (active, channel) in [(0, "whatsapp"), (1, "sms")] {
        let run: i64 = sqlx::query_scalar(
            "insert into segment_runs (account_id, status, params, active, created_at) values ($1, 'completed', '{}', $2, $3) returning id",
        )
        .bind(account_id)
        .bind(active)
        .bind(jiff::Timestamp::now().as_millisecond())
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        sqlx::query(
            "insert into segment_members (run_id, account_id, user_ext_id, client_id, label, features) values ($1, $2, 'g1', $3, 0, $4)",
        )
        .bind(run)
        .bind(account_id)
        .bind(gabi)
        .bind(json!({"user_id": "g1", "channel": channel}).to_string())
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    let t_wa = template(
        &app,
        &admin,
        json!({"name": "a-wa", "channel": "whatsapp", "body": "WA {{ nome }}"}),
    )
    .await;
    let t_sms = template(
        &app,
        &admin,
        json!({"name": "a-sms", "channel": "sms", "body": "SMS {{ nome }}"}),
    )
    .await;
    // Validation: templates per channel, of the right channel.
    let res = app
        .post(
            "/api/v1/campaigns",
            &admin,
            json!({"name": "bad", "channel": "auto", "templates": {"whatsapp": t_sms}}),
        )
        .await;
    assert_eq!(res.fields(), vec!["templates.whatsapp"], "{:?}", res.body);
    let draft = app
        .post(
            "/api/v1/campaigns",
            &admin,
            json!({"name": "draft", "channel": "auto", "templates": {"whatsapp": t_wa}}),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{:?}", draft.body);
    let path = format!("/api/v1/campaigns/{}", draft.body["id"]);
    let res = app
        .patch(
            &path,
            &admin,
            json!({"templates": {"whatsapp": t_wa, "sms": t_sms}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(
        res.body["templates"],
        json!({"whatsapp": t_wa, "sms": t_sms})
    );
    let res = app
        .patch(&path, &admin, json!({"templates": {"sms": t_wa}}))
        .await;
    assert_eq!(res.fields(), vec!["templates.sms"], "{:?}", res.body);
    assert_eq!(
        app.delete(&path, &admin).await.status,
        StatusCode::NO_CONTENT
    );
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "Auto", "channel": "auto", "templates": {"whatsapp": t_wa, "sms": t_sms}}),
    )
    .await;
    let rec = recipients(&app, cid).await;
    assert_eq!(
        (rec[&ana].0.as_str(), rec[&ana].2.as_str()),
        ("sent", "whatsapp")
    );
    assert_eq!(
        (rec[&bia].0.as_str(), rec[&bia].2.as_str()),
        ("sent", "sms")
    );
    assert_eq!(
        (rec[&eli].0.as_str(), rec[&eli].2.as_str()),
        ("sent", "sms")
    );
    assert_eq!(
        (rec[&gabi].0.as_str(), rec[&gabi].2.as_str()),
        ("sent", "sms"),
        "the active run's preference wins over the order"
    );
    assert_eq!(
        rec[&caio],
        (
            "skipped".into(),
            Some("opted_out".into()),
            "whatsapp".into()
        )
    );
    assert_eq!(rec[&dani].1.as_deref(), Some("no_address"));
    assert_eq!(r["by_channel"]["whatsapp"]["sent"], 1);
    assert_eq!(r["by_channel"]["sms"]["sent"], 3);
    assert_eq!(meta.all().len(), 1);
    assert_eq!(meta.all()[0]["body"]["text"]["body"], "WA Ana");
    let mut sms: Vec<String> = twilio
        .all()
        .iter()
        .map(|f| f["Body"].as_str().unwrap().to_owned())
        .collect();
    sms.sort();
    assert_eq!(sms, vec!["SMS Bia", "SMS Eli", "SMS Gabi"]);
    let got = app.get(&format!("/api/v1/campaigns/{cid}"), &admin).await;
    assert_eq!(
        got.body["templates"],
        json!({"whatsapp": t_wa, "sms": t_sms})
    );
}

/// Runs a command off the test's runtime thread, so the mock providers keep answering.
trait OutputAsync {
    async fn output_async(self) -> std::process::Output;
}

impl OutputAsync for &mut std::process::Command {
    async fn output_async(self) -> std::process::Output {
        let mut cmd = std::mem::replace(self, std::process::Command::new("true"));
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_an_sms_campaign_on_a_stored_channel_account() {
    let (mut config, dir) = test_config().await;
    config.campaign.workers = 0;
    let data_dir = config.data_dir.clone();
    let db_url = {
        use secrecy::ExposeSecret;
        config.database.url.expose_secret().to_string()
    };
    let app = spawn_with(config, dir).await;
    let admin = app.admin().await;
    let (base, twilio) = twilio_server().await;
    let acc = account(
        &app,
        &admin,
        json!({"name": "Twilio CLI", "provider": "twilio",
               "settings": {"account_sid": TWILIO_SID, "from": "+5511999990000", "base_url": base},
               "secrets": {"auth_token": TWILIO_TOKEN}}),
    )
    .await;
    client_with_phone(&app, &admin, "Eva", "11987650060").await;
    let file = data_dir.join("sms.txt");
    std::fs::write(&file, "Oi {{ nome }} (CLI)").unwrap();
    let out = crate::helpers::farol_bin(&data_dir, &db_url)
        .args([
            "campaign",
            "create",
            "--name",
            "CLI SMS",
            "--channel",
            "sms",
            "--template-file",
        ])
        .arg(&file)
        .args(["--channel-account", &acc.to_string(), "--json"])
        .output_async()
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_i64().unwrap();
    let out = crate::helpers::farol_bin(&data_dir, &db_url)
        .args(["campaign", "launch", &id.to_string(), "--wait", "--json"])
        .env("FAROL_LOG__LEVEL", "debug")
        .output_async()
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The process decrypted the token to send; nothing it logged or printed contains it.
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains(TWILIO_TOKEN), "secret in the output: {text}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG")
            || String::from_utf8_lossy(&out.stdout).contains("DEBUG"),
        "debug logging was on"
    );
    let sent = twilio.all();
    assert_eq!(
        sent.len(),
        1,
        "{} {:?}",
        String::from_utf8_lossy(&out.stdout),
        recipients(&app, id).await
    );
    assert_eq!(sent[0]["Body"], "Oi Eva (CLI)");
    let c = app.get(&format!("/api/v1/campaigns/{id}"), &admin).await;
    assert_eq!(c.body["channel_account_id"], acc);
    // An unknown channel account is named.
    let out = crate::helpers::farol_bin(&data_dir, &db_url)
        .args([
            "campaign",
            "create",
            "--name",
            "X",
            "--channel",
            "sms",
            "--template-file",
        ])
        .arg(&file)
        .args(["--channel-account", "999"])
        .output_async()
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("channel_account_id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SendGrid v3 Mail Send: bearer key, 202 with `X-Message-Id`.
async fn sendgrid_server() -> (String, Arc<Seen>) {
    async fn send(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer SG.key") {
            return json_response(
                401,
                json!({"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": null}]}),
            );
        }
        let n = seen.push(serde_json::from_slice(&body).unwrap());
        (
            AxStatus::ACCEPTED,
            [("x-message-id", format!("sgmsg{n}"))],
            "",
        )
            .into_response()
    }
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/v3/mail/send", post(send))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

fn openssl(args: &[&str], dir: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to sign SendGrid events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn an_email_campaign_over_sendgrid_takes_signed_events_and_ses_refuses_unsigned_ones() {
    let app = app().await;
    let admin = app.admin().await;
    let (base, sendgrid) = sendgrid_server().await;
    // SendGrid's signed event webhook: an ECDSA P-256 key pair, the public half in settings.
    let keys = tempfile::tempdir().unwrap();
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ],
        keys.path(),
    );
    let public_der = openssl(
        &["ec", "-in", "key.pem", "-pubout", "-outform", "DER"],
        keys.path(),
    );
    let public = base64::engine::general_purpose::STANDARD.encode(public_der);
    let acc = account(
        &app,
        &admin,
        json!({"name": "SendGrid", "provider": "sendgrid", "is_default": true,
               "settings": {"from_email": "noreply@farol.test", "from_name": "Farol", "base_url": base, "webhook_public_key": public},
               "secrets": {"api_key": "SG.key"}}),
    )
    .await;
    let ana = app
        .client(
            &admin,
            json!({"name": "Ana", "contacts": [{"kind": "email", "value": "ana@example.com"}]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let t = template(
        &app,
        &admin,
        json!({"name": "mail", "channel": "email", "subject": "Oi {{ nome }}", "html": "<p>Olá {{ nome }}</p>"}),
    )
    .await;
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "SG", "channel": "email", "template_id": t}),
    )
    .await;
    assert_eq!(r["sent"], 1, "{r}");
    let sent = sendgrid.all();
    assert_eq!(
        sent[0]["personalizations"][0]["to"][0]["email"],
        "ana@example.com"
    );
    assert_eq!(sent[0]["subject"], "Oi Ana");
    assert_eq!(
        sent[0]["custom_args"]["farol_key"],
        format!("campaign:{cid}:client:{ana}")
    );

    let events = serde_json::to_vec(&json!([
        {"email": "ana@example.com", "timestamp": 1763870000, "event": "delivered", "sg_event_id": "ev1", "sg_message_id": "sgmsg1.filter0001.16648.5515E0B88.0"},
        {"email": "ana@example.com", "timestamp": 1763870100, "event": "open", "sg_event_id": "ev2", "sg_message_id": "sgmsg1.filter0001.16648.5515E0B88.0"},
        {"email": "ana@example.com", "timestamp": 1763870200, "event": "spamreport", "sg_event_id": "ev3", "sg_message_id": "sgmsg1.filter0001.16648.5515E0B88.0"}
    ]))
    .unwrap();
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let mut signed = timestamp.clone().into_bytes();
    signed.extend_from_slice(&events);
    std::fs::write(keys.path().join("payload"), &signed).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.encode(openssl(
        &["dgst", "-sha256", "-sign", "key.pem", "payload"],
        keys.path(),
    ));
    let path = format!("/api/v1/webhooks/sendgrid/{acc}");
    let headers = |sig: &str| {
        vec![
            ("x-twilio-email-event-webhook-signature", sig.to_owned()),
            ("x-twilio-email-event-webhook-timestamp", timestamp.clone()),
        ]
    };
    assert_eq!(
        post_raw(&app, &path, "application/json", &[], events.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = events.clone();
    tampered[10] ^= 1;
    assert_eq!(
        post_raw(&app, &path, "application/json", &headers(&sig), tampered).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        results(&app, &admin, cid).await["engagement"]["delivered"],
        0
    );
    for _ in 0..2 {
        assert_eq!(
            post_raw(
                &app,
                &path,
                "application/json",
                &headers(&sig),
                events.clone()
            )
            .await,
            StatusCode::OK
        );
    }
    let r = results(&app, &admin, cid).await;
    assert_eq!(r["by_channel"]["email"]["engagement"]["delivered"], 1);
    assert_eq!(r["by_channel"]["email"]["engagement"]["read"], 1);
    let kinds = timeline_kinds(&app, &admin, ana).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "delivery_status").count(),
        3,
        "{kinds:?}"
    );
    // The complaint put the address on the suppression list (enforced at send time), once.
    let r = app
        .get("/api/v1/suppressions?value=ana@example.com", &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = r.body.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", r.body);
    assert_eq!(entries[0]["kind"], "complaint", "{}", r.body);

    // SES via SNS: a message not signed by Amazon SNS is refused.
    let ses = account(
        &app,
        &admin,
        json!({"name": "SES", "provider": "ses",
               "settings": {"region": "sa-east-1", "from": "noreply@farol.test", "access_key_id": "AKIDEXAMPLE",
                            "sns_topic_arns": ["arn:aws:sns:sa-east-1:123456789012:ses-events"]},
               "secrets": {"secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}}),
    )
    .await;
    let forged = serde_json::to_vec(&json!({
        "Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:sa-east-1:123456789012:ses-events",
        "Message": "{\"notificationType\":\"Bounce\"}", "Timestamp": "2026-11-23T02:00:00.000Z",
        "SignatureVersion": "1", "Signature": "AAAA", "SigningCertURL": "https://evil.example.com/cert.pem"
    }))
    .unwrap();
    assert_eq!(
        post_raw(
            &app,
            &format!("/api/v1/webhooks/ses/{ses}"),
            "text/plain",
            &[],
            forged
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_smtp_channel_account_sends_email_campaigns_instead_of_the_configured_smtp() {
    let sink = crate::campaigns::Sink::start(&[]);
    let app = app().await;
    let admin = app.admin().await;
    let acc = account(
        &app,
        &admin,
        json!({"name": "Relay", "provider": "smtp",
               "settings": {"host": "127.0.0.1", "port": sink.port, "security": "none",
                            "from": "Farol Vendas <vendas@farol.test>"}}),
    )
    .await;
    let ana = app
        .client(
            &admin,
            json!({"name": "Ana", "contacts": [{"kind": "email", "value": "ana@example.com"}]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let t = template(
        &app,
        &admin,
        json!({"name": "m", "channel": "email", "subject": "Oi {{ nome }}", "text": "Olá {{ nome }}"}),
    )
    .await;
    // No default e-mail account and no configured SMTP: launching needs the account named.
    let res = app
        .post(
            "/api/v1/campaigns",
            &admin,
            json!({"name": "none", "channel": "email", "template_id": t}),
        )
        .await;
    let id = res.body["id"].as_i64().unwrap();
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &admin, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["channel"]);
    let (cid, r) = run_campaign(
        &app,
        &admin,
        json!({"name": "Relay", "channel": "email", "template_id": t, "channel_account_id": acc}),
    )
    .await;
    assert_eq!(r["sent"], 1, "{r}");
    let got = sink.to("ana@example.com");
    assert_eq!(got.len(), 1);
    let from = crate::campaigns::header(&got[0], "From").unwrap();
    assert!(from.contains("vendas@farol.test"), "{from}");
    assert!(crate::campaigns::header(&got[0], "List-Unsubscribe").is_some());
    let rec = recipients(&app, cid).await;
    assert_eq!(rec[&ana].0, "sent");
}
