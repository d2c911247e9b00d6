//! WhatsApp adapters against local fakes of Meta's Cloud API and of WPPConnect Server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use farol_channels::whatsapp::meta::{MetaChannel, MetaConfig};
use farol_channels::whatsapp::wppconnect::{
    SessionState, WppConnectClient, WppConnectConfig, WppSessionPool,
};
use farol_channels::{
    Channel, Content, OutboundMessage, Recipient, Secret, SendError, WhatsAppBody, WhatsAppContent,
    WhatsAppTemplateMessage,
};
use serde_json::{Value, json};

use crate::common::{Log, record, serve};

fn whatsapp(to: &str, body: WhatsAppBody, last_inbound_hours_ago: Option<i64>) -> OutboundMessage {
    OutboundMessage::new(
        Recipient::phone(to),
        Content::WhatsApp(WhatsAppContent {
            body,
            last_inbound_at: last_inbound_hours_ago
                .map(|h| jiff::Timestamp::now() - jiff::SignedDuration::from_hours(h)),
            fallback_template: None,
        }),
        "k1",
    )
}

fn text(to: &str) -> OutboundMessage {
    whatsapp(
        to,
        WhatsAppBody::Text {
            body: "Olá Maria".into(),
        },
        Some(1),
    )
}

// ---------------------------------------------------------------------------------------------
// Meta Cloud API.

fn graph_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "OAuthException", "code": code, "error_data": {"messaging_product": "whatsapp", "details": message}, "fbtrace_id": "AbC"}});
    (status, axum::Json(body)).into_response()
}

async fn fake_meta(
    State(log): State<Log>,
    Path((version, pnid)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&log, method, uri, headers.clone(), &body);
    if version != "v23.0" || pnid != "PNID1" {
        return graph_error(StatusCode::BAD_REQUEST, 100, "Unsupported post request");
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer EAAG-test") {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid JSON");
    };
    let to = v["to"].as_str().unwrap_or_default();
    let shape_ok = v["messaging_product"] == "whatsapp"
        && to.chars().all(|c| c.is_ascii_digit())
        && match v["type"].as_str() {
            Some("text") => v.pointer("/text/body").is_some_and(Value::is_string),
            Some("template") => {
                v.pointer("/template/name").is_some_and(Value::is_string)
                    && v.pointer("/template/language/code").is_some()
            }
            Some("document") => v.pointer("/document/link").is_some(),
            _ => false,
        };
    if !shape_ok {
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid parameter");
    }
    match to {
        "5511900000026" => graph_error(StatusCode::BAD_REQUEST, 131026, "Message undeliverable"),
        "5511900000429" => graph_error(StatusCode::BAD_REQUEST, 130429, "Rate limit hit"),
        "5511900000056" => graph_error(StatusCode::BAD_REQUEST, 131056, "Pair rate limit hit"),
        "5511900000502" => (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
        "5511900000004" => {
            let mut response = graph_error(StatusCode::TOO_MANY_REQUESTS, 4, "Application request limit reached");
            response.headers_mut().insert("retry-after", "9".parse().unwrap());
            response
        }
        "5511900000999" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => axum::Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": "wamid.TEST1"}]}))
            .into_response(),
    }
}

async fn meta(token: &str) -> (MetaChannel, Log) {
    let log: Log = Arc::default();
    let base = serve(
        Router::new()
            .route("/{version}/{pnid}/messages", post(fake_meta))
            .with_state(log.clone()),
    )
    .await;
    let mut config = MetaConfig::new("PNID1", token);
    config.base_url = base;
    config.api_version = "v23.0".into();
    config.timeout = Duration::from_millis(500);
    (MetaChannel::new(config), log)
}

#[tokio::test]
async fn meta_sends_text_inside_the_window() {
    let (channel, log) = meta("EAAG-test").await;
    let receipt = channel.send(&text("+5511987654321")).await.unwrap();
    assert_eq!(receipt.provider_message_id, "wamid.TEST1");
    let req = log.lock().unwrap()[0].clone();
    assert_eq!(req.uri.path(), "/v23.0/PNID1/messages");
    let body = req.json();
    assert_eq!(body["to"], "5511987654321");
    assert_eq!(body["type"], "text");
    assert_eq!(body["text"]["body"], "Olá Maria");
}

#[tokio::test]
async fn meta_outside_the_window_uses_the_fallback_template_or_refuses() {
    let (channel, log) = meta("EAAG-test").await;
    let mut msg = whatsapp(
        "+5511987654321",
        WhatsAppBody::Text { body: "oi".into() },
        Some(30),
    );
    assert_eq!(channel.send(&msg).await, Err(SendError::OutsideWindow));
    assert!(
        log.lock().unwrap().is_empty(),
        "no request may leave when the window is closed"
    );

    if let Content::WhatsApp(c) = &mut msg.content {
        c.fallback_template = Some(WhatsAppTemplateMessage {
            name: "retomar_contato".into(),
            language: "pt_BR".into(),
            body_parameters: vec!["Maria".into(), "Ouro".into()],
            header_parameters: vec!["Farol".into()],
        });
    }
    channel.send(&msg).await.unwrap();
    let body = log.lock().unwrap()[0].json();
    assert_eq!(body["type"], "template");
    assert_eq!(body["template"]["name"], "retomar_contato");
    assert_eq!(body["template"]["language"]["code"], "pt_BR");
    assert_eq!(
        body["template"]["components"][0],
        json!({"type": "header", "parameters": [{"type": "text", "text": "Farol"}]})
    );
    assert_eq!(
        body["template"]["components"][1]["parameters"][1],
        json!({"type": "text", "text": "Ouro"})
    );
}

#[tokio::test]
async fn meta_error_codes_drive_the_retry_policy() {
    let (channel, _) = meta("EAAG-test").await;
    let undeliverable = channel.send(&text("+5511900000026")).await.unwrap_err();
    assert!(
        matches!(&undeliverable, SendError::Permanent { code, contact_invalid: true, .. } if code == "131026"),
        "{undeliverable:?}"
    );
    assert!(
        channel
            .send(&text("+5511900000429"))
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(
        channel
            .send(&text("+5511900000056"))
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(
        channel
            .send(&text("+5511900000502"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let app_limit = channel.send(&text("+5511900000004")).await.unwrap_err();
    assert_eq!(
        app_limit.retry_after(),
        Some(Duration::from_secs(9)),
        "{app_limit:?}"
    );
    let slow = channel.send(&text("+5511900000999")).await.unwrap_err();
    assert!(
        matches!(&slow, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{slow:?}"
    );

    let (expired, _) = meta("EAAG-expired").await;
    let err = expired.send(&text("+5511987654321")).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, contact_invalid: false, .. } if code == "190"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// WPPConnect Server.

#[derive(Clone, Default)]
struct Wpp {
    states: Arc<Mutex<HashMap<String, String>>>,
    /// (session, action, body) of every authorized call.
    calls: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Wpp {
    fn set(&self, session: &str, state: &str) {
        self.states
            .lock()
            .unwrap()
            .insert(session.into(), state.into());
    }
    fn sends(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.1.starts_with("send-"))
            .map(|c| c.0.clone())
            .collect()
    }
}

fn wpp_json(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn wpp_generate_token(Path((session, secret)): Path<(String, String)>) -> Response {
    if secret != "THISISMYSECURETOKEN" {
        return wpp_json(
            StatusCode::BAD_REQUEST,
            json!({"response": false, "message": "The SECRET_KEY is incorrect"}),
        );
    }
    wpp_json(
        StatusCode::CREATED,
        json!({"status": "success", "session": session, "token": format!("tok-{session}"), "full": format!("{session}:tok-{session}")}),
    )
}

async fn wpp_action(
    State(wpp): State<Wpp>,
    Path((session, action)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer tok-{session}"))
    {
        return wpp_json(StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"}));
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    wpp.calls
        .lock()
        .unwrap()
        .push((session.clone(), action.clone(), body.clone()));
    let state = wpp
        .states
        .lock()
        .unwrap()
        .get(&session)
        .cloned()
        .unwrap_or_else(|| "CLOSED".into());
    match (method, action.as_str()) {
        (Method::POST, "start-session") => {
            wpp.set(&session, "QRCODE");
            wpp_json(
                StatusCode::OK,
                json!({"status": "QRCODE", "qrcode": "data:image/png;base64,iVBORw0KGgo=", "urlcode": "2@abc", "version": "1.0", "session": session}),
            )
        }
        (Method::GET, "status-session") => wpp_json(
            StatusCode::OK,
            json!({"status": state, "qrcode": null, "version": "1.0"}),
        ),
        (Method::GET, "qrcode-session") if state == "QRCODE" => (
            StatusCode::OK,
            [("content-type", "image/png")],
            b"\x89PNG\r\n\x1a\nfake".to_vec(),
        )
            .into_response(),
        (Method::GET, "qrcode-session") => wpp_json(
            StatusCode::OK,
            json!({"status": state, "message": "QRCode is not available..."}),
        ),
        (Method::POST, "close-session") => {
            wpp.set(&session, "CLOSED");
            wpp_json(
                StatusCode::OK,
                json!({"status": true, "message": "Session successfully closed"}),
            )
        }
        (Method::POST, "send-message" | "send-file") => {
            if state != "CONNECTED" {
                return wpp_json(
                    StatusCode::NOT_FOUND,
                    json!({"response": null, "status": "Disconnected", "message": "A sessão do WhatsApp não está ativa."}),
                );
            }
            let phone = body["phone"].as_str().unwrap_or_default();
            let ok = if action == "send-message" {
                body["message"].is_string()
            } else {
                (body["path"].is_string() || body["base64"].is_string())
                    && body["filename"].is_string()
            };
            if !ok || phone.is_empty() || body["isGroup"] != false {
                return wpp_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"status": "Error", "message": "Error sending the message."}),
                );
            }
            if phone == "5511900000999" {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if phone == "5511900000500" {
                return wpp_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"status": "Error", "message": "Error sending the message."}),
                );
            }
            if phone == "5511900000000" {
                return wpp_json(
                    StatusCode::BAD_REQUEST,
                    json!({"response": null, "status": "Connected", "message": format!("O número {phone} não existe.")}),
                );
            }
            wpp_json(
                StatusCode::CREATED,
                json!({"status": "success", "response": [{"id": format!("true_{phone}@c.us_{session}"), "ack": 0}], "mapper": "return"}),
            )
        }
        _ => wpp_json(StatusCode::NOT_FOUND, json!({"message": "not found"})),
    }
}

async fn wpp_server() -> (WppConnectClient, Wpp) {
    let wpp = Wpp::default();
    let router = Router::new()
        .route(
            "/api/{session}/{secret}/generate-token",
            post(wpp_generate_token),
        )
        .route("/api/{session}/{action}", any(wpp_action))
        .with_state(wpp.clone());
    let base = serve(router).await;
    let client = WppConnectClient::new(WppConnectConfig {
        base_url: base,
        secret_key: Secret::new("THISISMYSECURETOKEN"),
        timeout: Duration::from_millis(500),
    });
    (client, wpp)
}

#[tokio::test]
async fn wppconnect_session_lifecycle_follows_the_documented_routes() {
    let (client, wpp) = wpp_server().await;
    let wrong = WppConnectClient::new(WppConnectConfig {
        base_url: serve(Router::new().route(
            "/api/{session}/{secret}/generate-token",
            post(wpp_generate_token),
        ))
        .await,
        secret_key: Secret::new("nope"),
        timeout: Duration::from_secs(5),
    });
    assert!(matches!(
        wrong.generate_token("vendas1").await,
        Err(SendError::Permanent { .. })
    ));

    let token = client.generate_token("vendas1").await.unwrap();
    assert_eq!(token.expose(), "tok-vendas1");
    let session = client.session("vendas1", token);
    let started = session
        .start(Some("https://farol.test/hooks/wpp/abc"))
        .await
        .unwrap();
    assert_eq!(started.state, SessionState::QrCode);
    assert_eq!(
        started.qrcode.as_deref(),
        Some("data:image/png;base64,iVBORw0KGgo=")
    );
    assert_eq!(
        wpp.calls.lock().unwrap()[0].2["webhook"],
        "https://farol.test/hooks/wpp/abc"
    );
    assert!(
        session
            .qrcode_png()
            .await
            .unwrap()
            .unwrap()
            .starts_with(b"\x89PNG")
    );

    wpp.set("vendas1", "CONNECTED");
    assert_eq!(
        session.status().await.unwrap().state,
        SessionState::Connected
    );
    assert_eq!(session.qrcode_png().await.unwrap(), None);
    let receipt = session.send(&text("+5511987654321")).await.unwrap();
    assert_eq!(
        receipt.provider_message_id,
        "true_5511987654321@c.us_vendas1"
    );
    let file = whatsapp(
        "+5511987654321",
        WhatsAppBody::File {
            url: "https://farol.test/f/proposta.pdf".into(),
            filename: "proposta.pdf".into(),
            caption: Some("Sua proposta".into()),
        },
        None,
    );
    session.send(&file).await.unwrap();
    let last = wpp.calls.lock().unwrap().last().unwrap().clone();
    assert_eq!(last.1, "send-file");
    assert_eq!(
        last.2,
        json!({"phone": "5511987654321", "isGroup": false, "filename": "proposta.pdf", "path": "https://farol.test/f/proposta.pdf", "caption": "Sua proposta"})
    );

    assert!(
        session
            .send(&text("+5511900000500"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let slow = session.send(&text("+5511900000999")).await.unwrap_err();
    assert!(
        matches!(&slow, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{slow:?}"
    );
    let missing = session.send(&text("+5511900000000")).await.unwrap_err();
    assert!(
        matches!(
            &missing,
            SendError::Permanent {
                contact_invalid: true,
                ..
            }
        ),
        "{missing:?}"
    );
    session.close().await.unwrap();
    assert_eq!(session.status().await.unwrap().state, SessionState::Closed);
    assert!(
        session
            .send(&text("+5511987654321"))
            .await
            .unwrap_err()
            .is_transient()
    );

    let bad_token = client.session("vendas1", Secret::new("forged"));
    assert!(
        matches!(bad_token.status().await, Err(SendError::Permanent { ref code, .. }) if code == "http_401")
    );
}

#[tokio::test]
async fn wppconnect_pool_round_robins_and_fails_over_disconnected_sessions() {
    let (client, wpp) = wpp_server().await;
    for s in ["s1", "s2", "s3"] {
        wpp.set(s, "CONNECTED");
    }
    wpp.set("s2", "CLOSED");
    let sessions = ["s1", "s2", "s3"]
        .iter()
        .map(|s| client.session(*s, Secret::new(format!("tok-{s}"))))
        .collect();
    let pool = WppSessionPool::new(sessions);
    for _ in 0..5 {
        pool.send(&text("+5511987654321")).await.unwrap();
    }
    // s2 answered 404 once, was marked down, and the send went to s3 instead.
    assert_eq!(wpp.sends(), vec!["s1", "s2", "s3", "s3", "s1", "s3"]);
    assert_eq!(pool.connected(), vec!["s1", "s3"]);

    wpp.set("s2", "CONNECTED");
    wpp.set("s1", "CLOSED");
    pool.refresh().await;
    assert_eq!(pool.connected(), vec!["s2", "s3"]);

    wpp.set("s2", "CLOSED");
    wpp.set("s3", "CLOSED");
    let err = pool.send(&text("+5511987654321")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(pool.connected().is_empty());
    assert!(
        pool.send(&text("+5511987654321"))
            .await
            .unwrap_err()
            .is_transient()
    );
}
