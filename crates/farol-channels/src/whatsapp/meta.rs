//! WhatsApp Business Platform, Meta Cloud API: `POST /{version}/{phone-number-id}/messages`
//! with a bearer token, and the webhook (subscription handshake, `X-Hub-Signature-256`,
//! statuses and inbound messages).
//!
//! Free-form messages (text, files) are only allowed within 24 hours of the contact's last
//! message (the customer-service window). The caller passes that time in
//! [`WhatsAppContent::last_inbound_at`]; outside the window the adapter sends the
//! `fallback_template` when given, or fails with [`SendError::OutsideWindow`] without calling Meta.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, SendError, SendReceipt,
    WhatsAppBody, WhatsAppContent, WhatsAppTemplateMessage,
};
use crate::events::{DeliveryEvent, DeliveryStatus, InboundMessage, WebhookError};
use crate::http;
use crate::secret::Secret;

/// Graph API base URL.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// Graph API version used by default.
pub const DEFAULT_API_VERSION: &str = "v23.0";
/// The customer-service window.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Meta Cloud API settings.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaConfig {
    /// Graph base URL (tests point it at a local server).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Graph API version (`v23.0`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The sending phone number's id.
    pub phone_number_id: String,
    /// System-user access token.
    pub access_token: Secret,
    /// Request timeout (`timeout_secs` in JSON).
    #[serde(
        rename = "timeout_secs",
        default = "crate::serde_util::default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.into()
}

impl MetaConfig {
    /// Settings for the public Graph API.
    pub fn new(phone_number_id: impl Into<String>, access_token: impl Into<Secret>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            api_version: DEFAULT_API_VERSION.into(),
            phone_number_id: phone_number_id.into(),
            access_token: access_token.into(),
            timeout: http::DEFAULT_TIMEOUT,
        }
    }
}

/// The Meta Cloud API channel.
#[derive(Debug)]
pub struct MetaChannel {
    config: MetaConfig,
    client: reqwest::Client,
}

/// Whether `last_inbound_at` is within the 24-hour window at `now`.
pub fn within_service_window(
    last_inbound_at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> bool {
    // A last message "in the future" (clock skew between hosts) counts as just now.
    last_inbound_at.is_some_and(|at| {
        let elapsed = now.as_second().saturating_sub(at.as_second());
        elapsed < i64::try_from(SERVICE_WINDOW.as_secs()).unwrap_or(i64::MAX)
    })
}

fn template_json(t: &WhatsAppTemplateMessage) -> Value {
    let params = |values: &[String]| {
        values
            .iter()
            .map(|v| json!({ "type": "text", "text": v }))
            .collect::<Vec<_>>()
    };
    let mut components = Vec::new();
    if !t.header_parameters.is_empty() {
        components.push(json!({ "type": "header", "parameters": params(&t.header_parameters) }));
    }
    if !t.body_parameters.is_empty() {
        components.push(json!({ "type": "body", "parameters": params(&t.body_parameters) }));
    }
    let mut template = json!({ "name": t.name, "language": { "code": t.language } });
    if !components.is_empty() {
        template["components"] = Value::Array(components);
    }
    template
}

impl MetaChannel {
    /// A channel with its own HTTP client.
    pub fn new(config: MetaConfig) -> Self {
        let client = http::client(config.timeout);
        Self { config, client }
    }

    /// The request body for `msg` at `now`, applying the 24-hour rule.
    pub fn request_body(
        &self,
        msg: &OutboundMessage,
        now: jiff::Timestamp,
    ) -> Result<Value, SendError> {
        let Content::WhatsApp(WhatsAppContent {
            body,
            last_inbound_at,
            fallback_template,
        }) = &msg.content
        else {
            return Err(SendError::unsupported_content(ChannelKind::WhatsApp));
        };
        let to = msg.to.phone_digits().ok_or_else(|| {
            SendError::permanent("unsupported_recipient", "WhatsApp needs a phone recipient")
        })?;
        let free_form_allowed = within_service_window(*last_inbound_at, now);
        let mut request =
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": to });
        match body {
            WhatsAppBody::Template(t) => {
                request["type"] = json!("template");
                request["template"] = template_json(t);
            }
            _ if !free_form_allowed => {
                let t = fallback_template.as_ref().ok_or(SendError::OutsideWindow)?;
                request["type"] = json!("template");
                request["template"] = template_json(t);
            }
            WhatsAppBody::Text { body } => {
                request["type"] = json!("text");
                request["text"] = json!({ "preview_url": false, "body": body });
            }
            WhatsAppBody::File {
                url,
                filename,
                caption,
            } => {
                request["type"] = json!("document");
                let mut doc = json!({ "link": url, "filename": filename });
                if let Some(caption) = caption {
                    doc["caption"] = json!(caption);
                }
                request["document"] = doc;
            }
        }
        Ok(request)
    }
}

#[derive(Debug, Deserialize)]
struct SendResponse {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    id: String,
    message_status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    code: i64,
    message: Option<String>,
    #[serde(default)]
    error_data: Option<Value>,
}

/// Maps a Graph API error code to a [`SendError`].
///
/// Transient: 1/2 (API unknown/service), 4 (app rate limit), 80007 (WABA rate limit), 130429
/// (throughput), 131000 (something went wrong), 131016 (service unavailable), 131048 (spam rate
/// limit), 131049 (not delivered to keep ecosystem engagement; retry later), 131056 (pair rate
/// limit). Window: 131047 (re-engagement required) → [`SendError::OutsideWindow`]. Permanent,
/// contact invalid: 131026 (undeliverable: not on WhatsApp, old app...). Everything else is
/// permanent (190 token, 10/200-299 permissions, 100/131008/131009 parameters, 132xxx templates,
/// 133010 number not registered, 368 policy block...).
pub fn classify_error(code: i64, reason: String, retry_after: Option<Duration>) -> SendError {
    match code {
        1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131048 | 131049 | 131056 => {
            SendError::Transient {
                retry_after,
                reason: format!("meta {code}: {reason}"),
            }
        }
        131047 => SendError::OutsideWindow,
        131026 => SendError::invalid_contact(code.to_string(), reason),
        _ => SendError::permanent(code.to_string(), reason),
    }
}

impl Channel for MetaChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WhatsApp
    }

    fn provider(&self) -> &'static str {
        "meta"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let body = self.request_body(msg, jiff::Timestamp::now())?;
            let url = format!(
                "{}/{}/{}/messages",
                self.config.base_url.trim_end_matches('/'),
                self.config.api_version,
                self.config.phone_number_id
            );
            let response = self
                .client
                .post(url)
                .bearer_auth(self.config.access_token.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let parsed: SendResponse = serde_json::from_str(&text)
                    .map_err(|e| SendError::transient(format!("unreadable Meta response: {e}")))?;
                let first = parsed
                    .messages
                    .into_iter()
                    .next()
                    .ok_or_else(|| SendError::transient("Meta response without message id"))?;
                return Ok(SendReceipt {
                    provider_message_id: first.id,
                    provider: "meta".into(),
                    status: first.message_status,
                });
            }
            match serde_json::from_str::<ErrorEnvelope>(&text) {
                Ok(ErrorEnvelope { error }) => {
                    let details = error
                        .error_data
                        .as_ref()
                        .and_then(|d| d.get("details"))
                        .and_then(Value::as_str)
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    let reason = format!("{}{details}", error.message.unwrap_or_default());
                    Err(classify_error(
                        error.code,
                        reason,
                        http::retry_after(&headers),
                    ))
                }
                Err(_) => Err(http::status_error(status, &headers, http::snippet(&text))),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook.

/// Answers Meta's subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`):
/// returns the challenge to echo with 200 when the token matches, `None` (answer 403) otherwise.
pub fn verify_subscription<'a>(
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<&'a str>,
    expected_token: &str,
) -> Option<&'a str> {
    let token = verify_token?;
    let matches = constant_time_eq(token.as_bytes(), expected_token.as_bytes());
    (mode == Some("subscribe") && matches && !expected_token.is_empty()).then_some(challenge?)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // HMAC both sides under a fixed key so the comparison leaks neither content nor length.
    let mac = |data: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(b"farol-compare").expect("any key length");
        m.update(data);
        m
    };
    mac(a).verify_slice(&mac(b).finalize().into_bytes()).is_ok()
}

/// Checks `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the raw body under the app secret,
/// compared in constant time.
pub fn verify_signature(
    app_secret: &str,
    header: Option<&str>,
    raw_body: &[u8],
) -> Result<(), WebhookError> {
    let hex_sig = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .ok_or(WebhookError::BadSignature)?;
    let sig = hex::decode(hex_sig).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .map_err(|e| WebhookError::BadKey(e.to_string()))?;
    mac.update(raw_body);
    mac.verify_slice(&sig)
        .map_err(|_| WebhookError::BadSignature)
}

/// What one webhook POST carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaWebhook {
    /// Status changes of messages we sent.
    pub statuses: Vec<DeliveryEvent>,
    /// Messages contacts sent us.
    pub messages: Vec<InboundMessage>,
}

fn ts(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
}

/// Parses a webhook body (after [`verify_signature`]). Unknown fields and types are skipped.
pub fn parse_webhook(raw_body: &[u8]) -> Result<MetaWebhook, WebhookError> {
    let root: Value =
        serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if root["object"] != "whatsapp_business_account" {
        return Err(WebhookError::Malformed(
            "not a whatsapp_business_account webhook".into(),
        ));
    }
    let mut out = MetaWebhook::default();
    let changes = root["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten());
    for change in changes.filter(|c| c["field"] == "messages") {
        let value = &change["value"];
        for s in value["statuses"].as_array().into_iter().flatten() {
            let first_error = s["errors"].as_array().and_then(|e| e.first());
            let code = first_error.and_then(|e| e["code"].as_i64());
            let status = match s["status"].as_str().unwrap_or_default() {
                "sent" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "read" => DeliveryStatus::Read,
                "failed" => DeliveryStatus::Failed {
                    permanent: code == Some(131026),
                },
                _ => continue,
            };
            let reason = first_error.map(|e| {
                let detail = e.pointer("/error_data/details").and_then(Value::as_str);
                let title = e["title"]
                    .as_str()
                    .or(e["message"].as_str())
                    .unwrap_or_default();
                detail.map_or_else(|| title.to_owned(), |d| format!("{title}: {d}"))
            });
            out.statuses.push(DeliveryEvent {
                provider: "meta".into(),
                provider_message_id: s["id"].as_str().unwrap_or_default().to_owned(),
                recipient: s["recipient_id"].as_str().map(str::to_owned),
                status,
                occurred_at: ts(&s["timestamp"]),
                code: code.map(|c| c.to_string()),
                reason,
                event_id: None,
            });
        }
        let contacts = value["contacts"].as_array();
        for m in value["messages"].as_array().into_iter().flatten() {
            let from = m["from"].as_str().unwrap_or_default().to_owned();
            let from_name = contacts
                .and_then(|c| c.iter().find(|c| c["wa_id"] == from.as_str()))
                .and_then(|c| c.pointer("/profile/name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let kind = m["type"].as_str().unwrap_or_default().to_owned();
            let text = match kind.as_str() {
                "text" => m
                    .pointer("/text/body")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                "button" => m
                    .pointer("/button/text")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                "interactive" => m
                    .pointer("/interactive/button_reply/title")
                    .or_else(|| m.pointer("/interactive/list_reply/title"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            out.messages.push(InboundMessage {
                provider: "meta".into(),
                from,
                from_name,
                provider_message_id: m["id"].as_str().unwrap_or_default().to_owned(),
                text,
                kind,
                received_at: ts(&m["timestamp"]),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Recipient;

    fn hub_signature(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signature_is_checked_over_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = hub_signature("app-secret", body);
        assert_eq!(verify_signature("app-secret", Some(&header), body), Ok(()));
        assert_eq!(
            verify_signature("other", Some(&header), body),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("app-secret", Some(&header), b"{}"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("app-secret", None, body),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(
                "app-secret",
                Some(header.trim_start_matches("sha256=")),
                body
            ),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn subscription_handshake_echoes_the_challenge_only_for_the_right_token() {
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("tok"), Some("123"), "tok"),
            Some("123")
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("bad"), Some("123"), "tok"),
            None
        );
        assert_eq!(
            verify_subscription(Some("unsubscribe"), Some("tok"), Some("123"), "tok"),
            None
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some(""), Some("123"), ""),
            None
        );
    }

    #[test]
    fn webhook_parses_statuses_and_inbound_messages() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "551130000000", "phone_number_id": "PNID"},
                "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511987654321"}],
                "messages": [{"from": "5511987654321", "id": "wamid.IN1", "timestamp": "1700000000", "type": "text", "text": {"body": "SAIR"}},
                             {"from": "5511987654321", "id": "wamid.IN2", "timestamp": "1700000001", "type": "image", "image": {"id": "m"}}],
                "statuses": [
                    {"id": "wamid.OUT1", "status": "delivered", "timestamp": "1700000002", "recipient_id": "5511987654321"},
                    {"id": "wamid.OUT2", "status": "failed", "timestamp": "1700000003", "recipient_id": "5511900000000",
                     "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}]},
                    {"id": "wamid.OUT3", "status": "failed", "timestamp": "1700000004", "recipient_id": "5511900000001",
                     "errors": [{"code": 131049, "title": "ecosystem engagement"}]}
                ]
            }}]}]
        });
        let parsed = parse_webhook(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.messages.len(), 2);
        assert!(parsed.messages[0].is_opt_out());
        assert_eq!(parsed.messages[0].from_name.as_deref(), Some("Maria"));
        assert_eq!(parsed.messages[1].kind, "image");
        assert!(!parsed.messages[1].is_opt_out());
        assert_eq!(parsed.statuses[0].status, DeliveryStatus::Delivered);
        assert_eq!(
            parsed.statuses[0].occurred_at,
            jiff::Timestamp::from_second(1_700_000_002).ok()
        );
        assert!(parsed.statuses[1].contact_invalid());
        assert_eq!(
            parsed.statuses[1].reason.as_deref(),
            Some("Message undeliverable: not on WhatsApp")
        );
        assert_eq!(
            parsed.statuses[2].status,
            DeliveryStatus::Failed { permanent: false }
        );
        assert!(parse_webhook(br#"{"object":"page"}"#).is_err());
    }

    #[test]
    fn error_codes_map_to_the_retry_policy() {
        assert!(matches!(
            classify_error(131026, "x".into(), None),
            SendError::Permanent {
                contact_invalid: true,
                ..
            }
        ));
        for code in [130429, 131048, 131056, 4, 80007] {
            assert!(
                classify_error(code, "x".into(), None).is_transient(),
                "{code}"
            );
        }
        assert!(
            matches!(classify_error(190, "x".into(), None), SendError::Permanent { contact_invalid: false, ref code, .. } if code == "190")
        );
        assert_eq!(
            classify_error(131047, "x".into(), None),
            SendError::OutsideWindow
        );
    }

    #[test]
    fn window_decides_between_text_fallback_template_and_error() {
        let channel = MetaChannel::new(MetaConfig::new("PNID", "tok"));
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let fallback = WhatsAppTemplateMessage {
            name: "retomar_contato".into(),
            language: "pt_BR".into(),
            body_parameters: vec!["Maria".into()],
            header_parameters: vec![],
        };
        let msg = |last: Option<&str>, fallback: Option<WhatsAppTemplateMessage>| {
            OutboundMessage::new(
                Recipient::phone("+5511987654321"),
                Content::WhatsApp(WhatsAppContent {
                    body: WhatsAppBody::Text { body: "oi".into() },
                    last_inbound_at: last.map(|l| l.parse().unwrap()),
                    fallback_template: fallback,
                }),
                "k",
            )
        };
        let inside = channel
            .request_body(&msg(Some("2026-11-21T12:00:01Z"), None), now)
            .unwrap();
        assert_eq!(inside["type"], "text");
        assert_eq!(inside["to"], "5511987654321");
        assert_eq!(
            channel.request_body(&msg(Some("2026-11-21T12:00:00Z"), None), now),
            Err(SendError::OutsideWindow)
        );
        assert_eq!(
            channel.request_body(&msg(None, None), now),
            Err(SendError::OutsideWindow)
        );
        let templated = channel
            .request_body(&msg(None, Some(fallback)), now)
            .unwrap();
        assert_eq!(templated["type"], "template");
        assert_eq!(
            templated["template"]["components"][0]["parameters"][0]["text"],
            "Maria"
        );
    }
}
