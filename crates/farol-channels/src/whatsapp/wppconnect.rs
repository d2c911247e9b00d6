//! WPPConnect Server (self-hosted WhatsApp Web sessions): token generation, session lifecycle,
//! text and file sends, its webhook, and a pool that spreads sends over connected sessions.
//!
//! Routes (wppconnect-server `src/routes`): `POST /api/{session}/{secretkey}/generate-token`,
//! then with `Authorization: Bearer <token>`: `POST /api/{session}/start-session`,
//! `GET /api/{session}/status-session`, `GET /api/{session}/qrcode-session`,
//! `POST /api/{session}/close-session`, `POST /api/{session}/send-message`
//! (`{phone, isGroup, message}`), `POST /api/{session}/send-file` (`{phone, isGroup, path|base64,
//! filename, caption}`). Sends answer `201 {status:"success", response:[{id…}]}`; a number not on
//! WhatsApp `400 {message:"O número … não existe."}`; a session not connected
//! `404 {status:"Disconnected"}`; a bad token `401`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, SendError, SendReceipt, WhatsAppBody,
};
use crate::events::{DeliveryEvent, DeliveryStatus, InboundMessage, WebhookError};
use crate::http;
use crate::secret::Secret;

/// WPPConnect server settings.
#[derive(Debug, Clone, Deserialize)]
pub struct WppConnectConfig {
    /// Server URL (`http://wppconnect:21465`).
    pub base_url: String,
    /// The server's `secretKey`, used only to generate session tokens.
    pub secret_key: Secret,
    /// Request timeout (sends through WhatsApp Web can be slow; `timeout_secs` in JSON).
    #[serde(
        rename = "timeout_secs",
        default = "crate::serde_util::default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
}

/// A client of one WPPConnect server.
#[derive(Debug, Clone)]
pub struct WppConnectClient {
    config: Arc<WppConnectConfig>,
    client: reqwest::Client,
}

/// A session's state as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Logged in and ready to send.
    Connected,
    /// Waiting for the QR code to be scanned.
    QrCode,
    /// Starting up.
    Initializing,
    /// Closed or never started.
    Closed,
    /// Any other state string.
    Other(String),
}

impl SessionState {
    fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "CONNECTED" | "ISLOGGED" | "INCHAT" => Self::Connected,
            "QRCODE" | "NOTLOGGED" => Self::QrCode,
            "INITIALIZING" | "STARTING" | "OPENING" => Self::Initializing,
            "CLOSED" | "DISCONNECTED" | "BROWSERCLOSE" => Self::Closed,
            _ => Self::Other(s.to_owned()),
        }
    }
}

/// A session status answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// The state.
    pub state: SessionState,
    /// The QR code as a `data:image/png;base64,…` URL, while waiting for a scan.
    pub qrcode: Option<String>,
    /// The raw QR payload (`urlcode`), to render it differently.
    pub urlcode: Option<String>,
}

fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| http::snippet(text))
}

impl WppConnectClient {
    /// A client with its own HTTP client.
    pub fn new(config: WppConnectConfig) -> Self {
        let client = http::client(config.timeout);
        Self {
            config: Arc::new(config),
            client,
        }
    }

    fn url(&self, session: &str, action: &str) -> String {
        format!(
            "{}/api/{session}/{action}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// `POST /api/{session}/{secretkey}/generate-token`: the bearer token for a session.
    pub async fn generate_token(&self, session: &str) -> Result<Secret, SendError> {
        let url = self.url(
            session,
            &format!("{}/generate-token", self.config.secret_key.expose()),
        );
        let response = self
            .client
            .post(url)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(http::status_error(status, &headers, error_message(&text)));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SendError::transient(format!("unreadable token response: {e}")))?;
        v.get("token")
            .and_then(Value::as_str)
            .map(Secret::new)
            .ok_or_else(|| SendError::permanent("wpp_token", error_message(&text)))
    }

    /// A handle on a session with its token.
    pub fn session(&self, name: impl Into<String>, token: Secret) -> WppSession {
        WppSession {
            client: self.clone(),
            name: name.into(),
            token,
        }
    }
}

/// One WPPConnect session (one WhatsApp number). Implements [`Channel`].
#[derive(Debug, Clone)]
pub struct WppSession {
    client: WppConnectClient,
    name: String,
    token: Secret,
}

/// Why one session's send failed; the pool fails over on `Unavailable`.
enum SessionFailure {
    /// The session cannot send right now (disconnected, bad token): try another one.
    Unavailable(SendError),
    /// The message itself failed.
    Message(SendError),
}

impl WppSession {
    /// The session name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn call(
        &self,
        method: reqwest::Method,
        action: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), SendError> {
        let mut request = self
            .client
            .client
            .request(method, self.client.url(&self.name, action))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(&e))?;
        Ok((status, headers, bytes.to_vec()))
    }

    fn parse_status(
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<SessionStatus, SendError> {
        let text = String::from_utf8_lossy(body);
        if !status.is_success() {
            return Err(http::status_error(status, headers, error_message(&text)));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SendError::transient(format!("unreadable status: {e}")))?;
        let state = v
            .get("status")
            .and_then(Value::as_str)
            .map_or(SessionState::Other(String::new()), SessionState::parse);
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(SessionStatus {
            state,
            qrcode: s("qrcode"),
            urlcode: s("urlcode"),
        })
    }

    /// `POST start-session`, registering `webhook` for this session's events.
    pub async fn start(&self, webhook: Option<&str>) -> Result<SessionStatus, SendError> {
        let body = json!({ "webhook": webhook.unwrap_or_default(), "waitQrCode": false });
        let (status, headers, bytes) = self
            .call(reqwest::Method::POST, "start-session", Some(body))
            .await?;
        Self::parse_status(status, &headers, &bytes)
    }

    /// `GET status-session`.
    pub async fn status(&self) -> Result<SessionStatus, SendError> {
        let (status, headers, bytes) = self
            .call(reqwest::Method::GET, "status-session", None)
            .await?;
        Self::parse_status(status, &headers, &bytes)
    }

    /// `GET qrcode-session`: the QR code PNG while waiting for a scan, `None` otherwise.
    pub async fn qrcode_png(&self) -> Result<Option<Vec<u8>>, SendError> {
        let (status, headers, bytes) = self
            .call(reqwest::Method::GET, "qrcode-session", None)
            .await?;
        if !status.is_success() {
            return Err(http::status_error(
                status,
                &headers,
                error_message(&String::from_utf8_lossy(&bytes)),
            ));
        }
        let is_png = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("image/"));
        Ok(is_png.then_some(bytes))
    }

    /// `POST close-session`.
    pub async fn close(&self) -> Result<(), SendError> {
        let (status, headers, bytes) = self
            .call(reqwest::Method::POST, "close-session", None)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(http::status_error(
                status,
                &headers,
                error_message(&String::from_utf8_lossy(&bytes)),
            ))
        }
    }

    async fn send_inner(&self, msg: &OutboundMessage) -> Result<SendReceipt, SessionFailure> {
        let Content::WhatsApp(content) = &msg.content else {
            return Err(SessionFailure::Message(SendError::unsupported_content(
                ChannelKind::WhatsApp,
            )));
        };
        let phone = msg.to.phone_digits().ok_or_else(|| {
            SessionFailure::Message(SendError::permanent(
                "unsupported_recipient",
                "WhatsApp needs a phone recipient",
            ))
        })?;
        let (action, body) = match &content.body {
            WhatsAppBody::Text { body } => (
                "send-message",
                json!({ "phone": phone, "isGroup": false, "message": body }),
            ),
            WhatsAppBody::File {
                url,
                filename,
                caption,
            } => {
                let mut b = json!({ "phone": phone, "isGroup": false, "filename": filename });
                b[if url.starts_with("data:") {
                    "base64"
                } else {
                    "path"
                }] = json!(url);
                if let Some(caption) = caption {
                    b["caption"] = json!(caption);
                }
                ("send-file", b)
            }
            WhatsAppBody::Template(_) => {
                return Err(SessionFailure::Message(SendError::permanent(
                    "unsupported_content",
                    "WPPConnect sends free text; render the template to text first",
                )));
            }
        };
        let (status, headers, bytes) = self
            .call(reqwest::Method::POST, action, Some(body))
            .await
            .map_err(SessionFailure::Message)?;
        let text = String::from_utf8_lossy(&bytes);
        if status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let id = v
                .pointer("/response/0/id")
                .map(message_id)
                .unwrap_or_default();
            return Ok(SendReceipt {
                provider_message_id: id,
                provider: "wppconnect".into(),
                status: Some(format!("session:{}", self.name)),
            });
        }
        let message = error_message(&text);
        Err(match status {
            StatusCode::BAD_REQUEST
                if message.contains("não existe") || message.contains("does not exist") =>
            {
                SessionFailure::Message(SendError::invalid_contact("wpp_number_not_found", message))
            }
            StatusCode::NOT_FOUND => SessionFailure::Unavailable(SendError::transient(format!(
                "session {} disconnected: {message}",
                self.name
            ))),
            StatusCode::UNAUTHORIZED => SessionFailure::Unavailable(SendError::permanent(
                "wpp_unauthorized",
                format!("session {}: {message}", self.name),
            )),
            _ => SessionFailure::Message(http::status_error(status, &headers, message)),
        })
    }
}

/// A WhatsApp message id as WPPConnect gives it: a string, or `{ _serialized }`.
fn message_id(v: &Value) -> String {
    v.as_str()
        .or_else(|| v.get("_serialized").and_then(Value::as_str))
        .or_else(|| v.get("id").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

impl Channel for WppSession {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn provider(&self) -> &'static str {
        "wppconnect"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            self.send_inner(msg).await.map_err(|f| match f {
                SessionFailure::Unavailable(e) | SessionFailure::Message(e) => e,
            })
        })
    }
}

/// Spreads sends over several sessions round-robin, skipping those marked disconnected; a send
/// that finds its session disconnected (404) or unauthorized (401) marks it so and fails over to
/// the next one. [`WppSessionPool::refresh`] re-reads every session's state.
#[derive(Debug)]
pub struct WppSessionPool {
    sessions: Vec<(WppSession, AtomicBool)>,
    next: AtomicUsize,
}

impl WppSessionPool {
    /// A pool over `sessions`, all assumed connected until told otherwise.
    pub fn new(sessions: Vec<WppSession>) -> Self {
        Self {
            sessions: sessions
                .into_iter()
                .map(|s| (s, AtomicBool::new(true)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Marks a session (by name) connected or not, e.g. from a webhook status event.
    pub fn set_connected(&self, name: &str, connected: bool) {
        for (s, flag) in &self.sessions {
            if s.name == name {
                flag.store(connected, Ordering::Relaxed);
            }
        }
    }

    /// Names of the sessions currently considered connected.
    pub fn connected(&self) -> Vec<&str> {
        self.sessions
            .iter()
            .filter(|(_, f)| f.load(Ordering::Relaxed))
            .map(|(s, _)| s.name.as_str())
            .collect()
    }

    /// Asks every session for its state and updates the connected flags.
    pub async fn refresh(&self) {
        for (s, flag) in &self.sessions {
            let connected = matches!(
                s.status().await,
                Ok(SessionStatus {
                    state: SessionState::Connected,
                    ..
                })
            );
            flag.store(connected, Ordering::Relaxed);
        }
    }
}

impl Channel for WppSessionPool {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn provider(&self) -> &'static str {
        "wppconnect"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let n = self.sessions.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let mut last_error = None;
            for offset in 0..n {
                let (session, flag) = &self.sessions[(start + offset) % n];
                if !flag.load(Ordering::Relaxed) {
                    continue;
                }
                match session.send_inner(msg).await {
                    Ok(receipt) => return Ok(receipt),
                    Err(SessionFailure::Message(e)) => return Err(e),
                    Err(SessionFailure::Unavailable(e)) => {
                        tracing::warn!(session = %session.name, error = %e, "WPPConnect session unavailable; failing over");
                        flag.store(false, Ordering::Relaxed);
                        last_error = Some(e);
                    }
                }
            }
            Err(match last_error {
                Some(SendError::Transient { reason, .. })
                | Some(SendError::Permanent { reason, .. }) => {
                    SendError::transient(format!("no connected WhatsApp session ({reason})"))
                }
                _ => SendError::transient("no connected WhatsApp session"),
            })
        })
    }
}

/// One parsed WPPConnect webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WppEvent {
    /// A contact wrote to the session.
    Message {
        /// The session that received it.
        session: String,
        /// The message.
        message: InboundMessage,
    },
    /// A delivery acknowledgement for a message we sent.
    Ack {
        /// The session that sent it.
        session: String,
        /// The status change.
        event: DeliveryEvent,
    },
    /// A session state change (`status-find`), e.g. `qrReadSuccess`, `desconnectedMobile`.
    SessionStatus {
        /// The session.
        session: String,
        /// The raw status.
        status: String,
    },
    /// Another event, ignored.
    Other(String),
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    event: String,
    #[serde(default)]
    session: String,
    #[serde(flatten)]
    rest: Value,
}

/// Parses a WPPConnect webhook POST (`onmessage`, `onack`, `status-find`…). WPPConnect does not
/// sign its webhooks: register the URL with a secret path segment and check it in the route.
pub fn parse_webhook(raw_body: &[u8]) -> Result<WppEvent, WebhookError> {
    let raw: RawEvent =
        serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let v = &raw.rest;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let phone = |jid: &str| jid.split('@').next().unwrap_or_default().to_owned();
    Ok(match raw.event.as_str() {
        "onmessage" | "onMessage" => {
            if v.get("fromMe").and_then(Value::as_bool) == Some(true)
                || v.get("isGroupMsg").and_then(Value::as_bool) == Some(true)
            {
                return Ok(WppEvent::Other(raw.event));
            }
            let kind = s("type").unwrap_or_default();
            WppEvent::Message {
                session: raw.session,
                message: InboundMessage {
                    provider: "wppconnect".into(),
                    from: phone(&s("from").unwrap_or_default()),
                    from_name: v
                        .pointer("/sender/pushname")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| s("notifyName")),
                    provider_message_id: v.get("id").map(message_id).unwrap_or_default(),
                    text: if kind == "chat" {
                        s("body")
                    } else {
                        s("caption")
                    },
                    kind,
                    received_at: v
                        .get("t")
                        .and_then(Value::as_i64)
                        .and_then(|t| jiff::Timestamp::from_second(t).ok()),
                },
            }
        }
        "onack" | "onAck" => {
            // WhatsApp Web ack levels: -1 error, 0 pending, 1 server, 2 device, 3 read, 4 played.
            let status = match v.get("ack").and_then(Value::as_i64) {
                Some(-1) => DeliveryStatus::Failed { permanent: false },
                Some(1) => DeliveryStatus::Sent,
                Some(2) => DeliveryStatus::Delivered,
                Some(3 | 4) => DeliveryStatus::Read,
                _ => return Ok(WppEvent::Other(raw.event)),
            };
            let recipient = s("to").map(|to| phone(&to));
            WppEvent::Ack {
                session: raw.session,
                event: DeliveryEvent {
                    provider: "wppconnect".into(),
                    provider_message_id: v.get("id").map(message_id).unwrap_or_default(),
                    recipient,
                    status,
                    occurred_at: v
                        .get("t")
                        .and_then(Value::as_i64)
                        .and_then(|t| jiff::Timestamp::from_second(t).ok()),
                    code: None,
                    reason: None,
                    event_id: None,
                },
            }
        }
        "status-find" => WppEvent::SessionStatus {
            session: raw.session,
            status: s("status").unwrap_or_default(),
        },
        _ => WppEvent::Other(raw.event),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_parses_inbound_messages_and_acks() {
        let body = json!({"event": "onmessage", "session": "vendas1", "id": "false_5511987654321@c.us_ABC", "body": "Parar",
                          "type": "chat", "from": "5511987654321@c.us", "t": 1_700_000_000, "sender": {"pushname": "Maria"},
                          "isGroupMsg": false, "fromMe": false});
        let WppEvent::Message { session, message } =
            parse_webhook(body.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(session, "vendas1");
        assert_eq!(message.from, "5511987654321");
        assert_eq!(message.from_name.as_deref(), Some("Maria"));
        assert!(message.is_opt_out());

        let ack = json!({"event": "onack", "session": "vendas1", "ack": 3, "to": "5511987654321@c.us",
                         "id": {"fromMe": true, "_serialized": "true_5511987654321@c.us_XYZ"}});
        let WppEvent::Ack { event, .. } = parse_webhook(ack.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(event.provider_message_id, "true_5511987654321@c.us_XYZ");
        assert_eq!(event.status, DeliveryStatus::Read);
        assert_eq!(event.recipient.as_deref(), Some("5511987654321"));

        let own = json!({"event": "onmessage", "session": "s", "fromMe": true, "body": "x"});
        assert!(matches!(
            parse_webhook(own.to_string().as_bytes()).unwrap(),
            WppEvent::Other(_)
        ));
        assert!(parse_webhook(b"not json").is_err());
    }
}
