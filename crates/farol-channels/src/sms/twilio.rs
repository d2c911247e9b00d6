//! Twilio-compatible Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json` (basic auth,
//! form body `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`), status callbacks,
//! inbound messages, and `X-Twilio-Signature` verification.
//!
//! Error mapping (the JSON error body's `code`): 21211 (invalid `To`), 21614 (not a mobile
//! number), 21612/21408 unreachable destination or region → permanent, the first two marking the
//! contact invalid; 21610 (recipient replied STOP) → permanent, treat as opt-out; 20003 (auth)
//! → permanent; 20429 (too many requests) and HTTP 429/5xx → transient.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::events::{DeliveryEvent, DeliveryStatus, InboundMessage, WebhookError};
use crate::http;
use crate::secret::Secret;

/// Twilio's API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Who the SMS comes from (`{"from": "+55…"}` or `{"messaging_service": "MG…"}` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwilioSender {
    /// A phone number or alphanumeric sender id (`From`).
    From(String),
    /// A Messaging Service (`MessagingServiceSid`), which picks the number.
    MessagingService(String),
}

/// Twilio settings.
#[derive(Debug, Clone, Deserialize)]
pub struct TwilioConfig {
    /// API base URL (other Twilio-compatible providers or tests).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`), in the path.
    pub account_sid: String,
    /// Basic-auth user: the account SID, or an API key SID (`SK…`).
    pub username: String,
    /// Basic-auth password: the auth token or API key secret.
    pub password: Secret,
    /// The sender.
    pub sender: TwilioSender,
    /// URL Twilio posts status changes to.
    #[serde(default)]
    pub status_callback: Option<String>,
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

/// The Twilio SMS channel.
#[derive(Debug)]
pub struct TwilioChannel {
    config: TwilioConfig,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: String,
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

/// Maps a Twilio error code (REST or delivery) to a [`SendError`].
pub fn classify_error(code: i64, reason: String, retry_after: Option<Duration>) -> SendError {
    match code {
        20429 | 30001 | 30002 | 30009 | 30010 => SendError::Transient {
            retry_after,
            reason: format!("twilio {code}: {reason}"),
        },
        21211 | 21614 | 30005 | 30006 => SendError::invalid_contact(code.to_string(), reason),
        _ => SendError::permanent(code.to_string(), reason),
    }
}

impl TwilioChannel {
    /// A channel with its own HTTP client.
    pub fn new(config: TwilioConfig) -> Self {
        let client = http::client(config.timeout);
        Self { config, client }
    }

    /// The form fields for `msg`.
    pub fn form(&self, msg: &OutboundMessage) -> Result<Vec<(&'static str, String)>, SendError> {
        let Content::Sms { body } = &msg.content else {
            return Err(SendError::unsupported_content(ChannelKind::Sms));
        };
        let Recipient::Phone { e164 } = &msg.to else {
            return Err(SendError::permanent(
                "unsupported_recipient",
                "SMS needs a phone recipient",
            ));
        };
        let mut form = vec![("To", e164.clone()), ("Body", body.clone())];
        match &self.config.sender {
            TwilioSender::From(from) => form.push(("From", from.clone())),
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid.clone())),
        }
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback.clone()));
        }
        Ok(form)
    }
}

impl Channel for TwilioChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn provider(&self) -> &'static str {
        "twilio"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let form = self.form(msg)?;
            let url = format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.config.base_url.trim_end_matches('/'),
                self.config.account_sid
            );
            let response = self
                .client
                .post(url)
                .basic_auth(&self.config.username, Some(self.config.password.expose()))
                .form(&form)
                .send()
                .await
                .map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let resource: MessageResource = serde_json::from_str(&text).map_err(|e| {
                    SendError::transient(format!("unreadable Twilio response: {e}"))
                })?;
                return Ok(SendReceipt {
                    provider_message_id: resource.sid,
                    provider: "twilio".into(),
                    status: resource.status,
                });
            }
            match serde_json::from_str::<TwilioError>(&text) {
                Ok(TwilioError {
                    code: Some(code),
                    message,
                }) if !status.is_server_error() => Err(classify_error(
                    code,
                    message.unwrap_or_default(),
                    http::retry_after(&headers),
                )),
                _ => Err(http::status_error(status, &headers, http::snippet(&text))),
            }
        })
    }
}

/// The expected `X-Twilio-Signature` for a request: base64 HMAC-SHA1, under the auth token, of
/// the full URL Twilio called followed by every POST parameter as `name` + `value`, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    B64.encode(signing_mac(auth_token, url, params).finalize().into_bytes())
}

fn signing_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// Verifies `X-Twilio-Signature` for a form-encoded POST (constant-time comparison).
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    raw_form_body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let given = header.ok_or(WebhookError::BadSignature)?;
    let given = B64
        .decode(given.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(raw_form_body)
        .map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let mac = signing_mac(auth_token, url, &params);
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)
}

fn form_value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a status callback. Intermediate states (`queued`, `accepted`, `sending`, `scheduled`)
/// give `None`.
pub fn parse_status_callback(raw_form_body: &[u8]) -> Result<Option<DeliveryEvent>, WebhookError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(raw_form_body)
        .map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let sid = form_value(&params, "MessageSid")
        .ok_or_else(|| WebhookError::Malformed("no MessageSid".into()))?;
    let code = form_value(&params, "ErrorCode")
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let invalid = code
        .as_deref()
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| {
            matches!(
                classify_error(c, String::new(), None),
                SendError::Permanent {
                    contact_invalid: true,
                    ..
                }
            )
        });
    let status = match form_value(&params, "MessageStatus")
        .or_else(|| form_value(&params, "SmsStatus"))
        .unwrap_or_default()
    {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "undelivered" | "failed" => DeliveryStatus::Failed { permanent: invalid },
        _ => return Ok(None),
    };
    Ok(Some(DeliveryEvent {
        provider: "twilio".into(),
        provider_message_id: sid.to_owned(),
        recipient: form_value(&params, "To").map(str::to_owned),
        status,
        occurred_at: None,
        code,
        reason: form_value(&params, "ErrorMessage").map(str::to_owned),
        event_id: None,
    }))
}

/// Parses an incoming SMS webhook (`From`, `Body`, `MessageSid`).
pub fn parse_inbound(raw_form_body: &[u8]) -> Result<InboundMessage, WebhookError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(raw_form_body)
        .map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let from =
        form_value(&params, "From").ok_or_else(|| WebhookError::Malformed("no From".into()))?;
    Ok(InboundMessage {
        provider: "twilio".into(),
        from: from.trim_start_matches('+').to_owned(),
        from_name: None,
        provider_message_id: form_value(&params, "MessageSid")
            .unwrap_or_default()
            .to_owned(),
        text: form_value(&params, "Body").map(str::to_owned),
        kind: "sms".into(),
        received_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(caller: &str) -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", caller),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn signature_matches_twilios_published_examples() {
        assert_eq!(
            signature("12345", URL, &params("+14158675309")),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            signature("12345", URL, &params("+12349013030")),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn verify_checks_the_form_body_in_any_order() {
        let body = b"To=%2B18005551212&From=%2B14158675309&Digits=1234&Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
        assert_eq!(
            verify_signature("12345", URL, body, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Ok(())
        );
        let tampered = b"To=%2B18005551212&From=%2B14158675309&Digits=9999&Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
        assert_eq!(
            verify_signature("12345", URL, tampered, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("54321", URL, body, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(
                "12345",
                "https://other.test/",
                body,
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("12345", URL, body, None),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn status_callbacks_map_to_delivery_events() {
        let delivered =
            parse_status_callback(b"MessageSid=SM1&MessageStatus=delivered&To=%2B5511987654321")
                .unwrap()
                .unwrap();
        assert_eq!(delivered.status, DeliveryStatus::Delivered);
        assert_eq!(delivered.recipient.as_deref(), Some("+5511987654321"));
        let failed =
            parse_status_callback(b"MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30006")
                .unwrap()
                .unwrap();
        assert!(failed.contact_invalid());
        let soft = parse_status_callback(b"MessageSid=SM3&MessageStatus=failed&ErrorCode=30008")
            .unwrap()
            .unwrap();
        assert_eq!(soft.status, DeliveryStatus::Failed { permanent: false });
        assert_eq!(
            parse_status_callback(b"MessageSid=SM4&MessageStatus=queued").unwrap(),
            None
        );
        assert!(parse_status_callback(b"MessageStatus=sent").is_err());
    }

    #[test]
    fn inbound_stop_is_an_opt_out() {
        let m = parse_inbound(b"MessageSid=SM9&From=%2B5511987654321&Body=STOP").unwrap();
        assert_eq!(m.from, "5511987654321");
        assert!(m.is_opt_out());
    }
}
