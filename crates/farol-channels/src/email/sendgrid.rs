//! SendGrid v3: `POST /v3/mail/send` and the Event Webhook (with its ECDSA signature).
//!
//! Contract: bearer API key; JSON body with `personalizations`, `from`, `subject`, `content`
//! (text/plain first, then text/html), `headers`, `custom_args`; `202 Accepted` with the message
//! id in `X-Message-Id`; errors as `{"errors":[{"message","field","help"}]}`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::email::{domain_of, message_id_for};
use crate::events::{DeliveryEvent, DeliveryStatus, WebhookError};
use crate::http;
use crate::secret::Secret;

/// SendGrid's API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

/// SendGrid settings.
#[derive(Debug, Clone, Deserialize)]
pub struct SendGridConfig {
    /// API base URL (tests point it at a local server).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// API key with Mail Send permission.
    pub api_key: Secret,
    /// From address.
    pub from_email: String,
    /// From display name.
    #[serde(default)]
    pub from_name: Option<String>,
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

impl SendGridConfig {
    /// Settings for the public API with the default timeout.
    pub fn new(api_key: impl Into<Secret>, from_email: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: api_key.into(),
            from_email: from_email.into(),
            from_name: None,
            timeout: http::DEFAULT_TIMEOUT,
        }
    }
}

/// The SendGrid channel.
#[derive(Debug)]
pub struct SendGridChannel {
    config: SendGridConfig,
    client: reqwest::Client,
}

impl SendGridChannel {
    /// A channel with its own HTTP client.
    pub fn new(config: SendGridConfig) -> Self {
        let client = http::client(config.timeout);
        Self { config, client }
    }

    /// The JSON body for `msg` (exposed for previews and tests).
    pub fn request_body(&self, msg: &OutboundMessage) -> Result<Value, SendError> {
        let Content::Email(content) = &msg.content else {
            return Err(SendError::unsupported_content(ChannelKind::Email));
        };
        let Recipient::Email { address, name } = &msg.to else {
            return Err(SendError::permanent(
                "unsupported_recipient",
                "SendGrid needs an e-mail recipient",
            ));
        };
        let mut to = json!({ "email": address });
        if let Some(name) = name {
            to["name"] = json!(name);
        }
        let mut from = json!({ "email": self.config.from_email });
        if let Some(name) = &self.config.from_name {
            from["name"] = json!(name);
        }
        let mut contents = vec![json!({ "type": "text/plain", "value": content.text })];
        if let Some(html) = &content.html {
            contents.push(json!({ "type": "text/html", "value": html }));
        }
        let mut headers: BTreeMap<String, String> = content.wire_headers().into_iter().collect();
        headers.insert(
            "Message-ID".into(),
            message_id_for(&msg.idempotency_key, domain_of(&self.config.from_email)),
        );
        let mut custom_args = msg.metadata.clone();
        custom_args.insert("farol_key".into(), msg.idempotency_key.clone());
        let mut body = json!({
            "personalizations": [{ "to": [to] }],
            "from": from,
            "subject": content.subject,
            "content": contents,
            "headers": headers,
            "custom_args": custom_args,
        });
        if let Some(reply_to) = &content.reply_to {
            body["reply_to"] = json!({ "email": reply_to });
        }
        Ok(body)
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    message: Option<String>,
    field: Option<String>,
}

impl Channel for SendGridChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn provider(&self) -> &'static str {
        "sendgrid"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let body = self.request_body(msg)?;
            let url = format!(
                "{}/v3/mail/send",
                self.config.base_url.trim_end_matches('/')
            );
            let response = self
                .client
                .post(url)
                .bearer_auth(self.config.api_key.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            if status.is_success() {
                let id = headers
                    .get("x-message-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                return Ok(SendReceipt {
                    provider_message_id: id,
                    provider: "sendgrid".into(),
                    status: Some("accepted".into()),
                });
            }
            let text = response.text().await.unwrap_or_default();
            let reason = serde_json::from_str::<ErrorBody>(&text)
                .ok()
                .filter(|b| !b.errors.is_empty())
                .map(|b| {
                    b.errors
                        .iter()
                        .map(|e| match &e.field {
                            Some(field) => {
                                format!("{field}: {}", e.message.as_deref().unwrap_or(""))
                            }
                            None => e.message.clone().unwrap_or_default(),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| http::snippet(&text));
            if status == StatusCode::TOO_MANY_REQUESTS {
                // SendGrid documents X-RateLimit-Reset (epoch seconds) on 429s.
                let retry_after = http::retry_after(&headers).or_else(|| {
                    let reset: i64 = headers
                        .get("x-ratelimit-reset")?
                        .to_str()
                        .ok()?
                        .parse()
                        .ok()?;
                    let wait = reset - jiff::Timestamp::now().as_second();
                    Some(Duration::from_secs(u64::try_from(wait).unwrap_or(0)))
                });
                return Err(SendError::Transient {
                    retry_after,
                    reason: format!("HTTP 429: {reason}"),
                });
            }
            let invalid_to =
                status == StatusCode::BAD_REQUEST && reason.contains("personalizations.0.to");
            match http::status_error(status, &headers, reason) {
                SendError::Permanent { code, reason, .. } => Err(SendError::Permanent {
                    code,
                    reason,
                    contact_invalid: invalid_to,
                }),
                other => Err(other),
            }
        })
    }
}

/// Header carrying the Event Webhook signature (base64 DER ECDSA P-256/SHA-256).
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// Header carrying the timestamp that is signed together with the body.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Verifies a SendGrid Event Webhook: ECDSA over `timestamp + raw body` with the account's
/// verification key (base64 DER public key, as shown in SendGrid's settings).
pub fn verify_event_webhook(
    public_key_b64: &str,
    signature_b64: &str,
    timestamp: &str,
    raw_body: &[u8],
) -> Result<(), WebhookError> {
    let der = B64
        .decode(public_key_b64.trim())
        .map_err(|e| WebhookError::BadKey(e.to_string()))?;
    let key =
        VerifyingKey::from_public_key_der(&der).map_err(|e| WebhookError::BadKey(e.to_string()))?;
    let sig = B64
        .decode(signature_b64.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let sig = Signature::from_der(&sig).map_err(|_| WebhookError::BadSignature)?;
    let mut signed = Vec::with_capacity(timestamp.len() + raw_body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(raw_body);
    key.verify(&signed, &sig)
        .map_err(|_| WebhookError::BadSignature)
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    email: Option<String>,
    timestamp: Option<i64>,
    event: String,
    sg_event_id: Option<String>,
    sg_message_id: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    bounce_type: Option<String>,
    response: Option<String>,
}

/// Parses an Event Webhook body (a JSON array). Unknown event types are skipped. The message id
/// is cut to the part before the first `.`, which is what `X-Message-Id` returned at send time.
pub fn parse_event_webhook(raw_body: &[u8]) -> Result<Vec<DeliveryEvent>, WebhookError> {
    let events: Vec<RawEvent> =
        serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let status = match e.event.as_str() {
                "processed" => DeliveryStatus::Sent,
                "deferred" => DeliveryStatus::Deferred,
                "delivered" => DeliveryStatus::Delivered,
                "open" => DeliveryStatus::Opened,
                "click" => DeliveryStatus::Clicked,
                // `type: "blocked"` is a soft (reputation/content) rejection, `bounce` a hard one.
                "bounce" => DeliveryStatus::Bounced {
                    permanent: e.bounce_type.as_deref() != Some("blocked"),
                },
                "dropped" => DeliveryStatus::Dropped,
                "spamreport" => DeliveryStatus::Complained,
                "unsubscribe" | "group_unsubscribe" => DeliveryStatus::Unsubscribed,
                _ => return None,
            };
            let id = e
                .sg_message_id?
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            Some(DeliveryEvent {
                provider: "sendgrid".into(),
                provider_message_id: id,
                recipient: e.email,
                status,
                occurred_at: e
                    .timestamp
                    .and_then(|t| jiff::Timestamp::from_second(t).ok()),
                code: e.status,
                reason: e.reason.or(e.response),
                event_id: e.sg_event_id,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    #[test]
    fn event_webhook_signature_verifies_and_rejects_tampering() {
        let signing = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let public = B64.encode(
            p256::PublicKey::from(signing.verifying_key())
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
        );
        let body = br#"[{"email":"a@b.c","event":"delivered","sg_message_id":"abc.1"}]"#;
        let ts = "1700000000";
        let sig: Signature = signing.sign(&[ts.as_bytes(), body.as_slice()].concat());
        let sig = B64.encode(sig.to_der().as_bytes());
        assert_eq!(verify_event_webhook(&public, &sig, ts, body), Ok(()));
        assert_eq!(
            verify_event_webhook(&public, &sig, "1700000001", body),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_event_webhook(&public, &sig, ts, b"[]"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_event_webhook(&public, "bm9wZQ==", ts, body),
            Err(WebhookError::BadSignature)
        );
        assert!(matches!(
            verify_event_webhook("bm9wZQ==", &sig, ts, body),
            Err(WebhookError::BadKey(_))
        ));
    }

    #[test]
    fn event_webhook_maps_bounces_and_complaints() {
        let body = br#"[
          {"email":"x@y.z","timestamp":1700000000,"event":"bounce","type":"bounce","status":"5.1.1","reason":"user unknown","sg_event_id":"e1","sg_message_id":"MSG1.filter.0"},
          {"email":"x@y.z","timestamp":1700000000,"event":"bounce","type":"blocked","sg_event_id":"e2","sg_message_id":"MSG2.f"},
          {"email":"x@y.z","timestamp":1700000000,"event":"spamreport","sg_event_id":"e3","sg_message_id":"MSG3.f"},
          {"email":"x@y.z","timestamp":1700000000,"event":"group_resubscribe","sg_event_id":"e4","sg_message_id":"MSG4.f"}
        ]"#;
        let events = parse_event_webhook(body).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].provider_message_id, "MSG1");
        assert_eq!(events[0].code.as_deref(), Some("5.1.1"));
        assert!(events[0].contact_invalid());
        assert_eq!(
            events[1].status,
            DeliveryStatus::Bounced { permanent: false }
        );
        assert!(events[2].opted_out());
        assert!(parse_event_webhook(b"{}").is_err());
    }
}
