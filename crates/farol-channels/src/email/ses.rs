//! Amazon SES v2 `SendEmail` (`POST /v2/email/outbound-emails`, SigV4) and bounce/complaint
//! notifications delivered through SNS.
//!
//! Errors come back with the type in `x-amzn-ErrorType` (or the body's `__type`/`code`) and a
//! `message`: throttling (`TooManyRequestsException`, `LimitExceededException`) and 5xx are
//! transient; `MessageRejected`, `MailFromDomainNotVerifiedException`, `AccountSuspendedException`,
//! `SendingPausedException`, `NotFoundException`, `BadRequestException` and 403 signature/credential
//! errors are permanent.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::email::sigv4::{self, AwsCredentials, SigningRequest};
use crate::events::{DeliveryEvent, DeliveryStatus, WebhookError};
use crate::http;

/// SES settings.
#[derive(Debug, Clone, Deserialize)]
pub struct SesConfig {
    /// AWS region (`us-east-1`, `sa-east-1`).
    pub region: String,
    /// Endpoint override (tests); defaults to `https://email.{region}.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Credentials.
    pub credentials: AwsCredentials,
    /// `FromEmailAddress` (`Farol <noreply@example.com>`).
    pub from: String,
    /// Configuration set that routes events to SNS.
    #[serde(default)]
    pub configuration_set: Option<String>,
    /// Request timeout (`timeout_secs` in JSON).
    #[serde(
        rename = "timeout_secs",
        default = "crate::serde_util::default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
}

/// The SES channel.
#[derive(Debug)]
pub struct SesChannel {
    config: SesConfig,
    client: reqwest::Client,
    endpoint: String,
}

impl SesChannel {
    /// A channel with its own HTTP client.
    pub fn new(config: SesConfig) -> Self {
        let client = http::client(config.timeout);
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://email.{}.amazonaws.com", config.region))
            .trim_end_matches('/')
            .to_owned();
        Self {
            config,
            client,
            endpoint,
        }
    }

    /// The JSON body of `SendEmail` for `msg`.
    pub fn request_body(&self, msg: &OutboundMessage) -> Result<Value, SendError> {
        let Content::Email(content) = &msg.content else {
            return Err(SendError::unsupported_content(ChannelKind::Email));
        };
        let Recipient::Email { address, name } = &msg.to else {
            return Err(SendError::permanent(
                "unsupported_recipient",
                "SES needs an e-mail recipient",
            ));
        };
        let to = match name {
            Some(name) => format!("{} <{address}>", display_name(name)),
            None => address.clone(),
        };
        let mut body = json!({ "Text": { "Data": content.text, "Charset": "UTF-8" } });
        if let Some(html) = &content.html {
            body["Html"] = json!({ "Data": html, "Charset": "UTF-8" });
        }
        let headers: Vec<Value> = content
            .wire_headers()
            .into_iter()
            .map(|(n, v)| json!({ "Name": n, "Value": v }))
            .collect();
        let mut simple =
            json!({ "Subject": { "Data": content.subject, "Charset": "UTF-8" }, "Body": body });
        if !headers.is_empty() {
            simple["Headers"] = Value::Array(headers);
        }
        // Tag values allow only [A-Za-z0-9_-.@]: keep the metadata that fits.
        let tags: Vec<Value> = msg
            .metadata
            .iter()
            .filter(|(k, v)| {
                [k, v]
                    .iter()
                    .all(|s| !s.is_empty() && s.len() <= 256 && s.chars().all(tag_char))
            })
            .map(|(k, v)| json!({ "Name": k, "Value": v }))
            .collect();
        let mut request = json!({
            "FromEmailAddress": self.config.from,
            "Destination": { "ToAddresses": [to] },
            "Content": { "Simple": simple },
        });
        if let Some(reply_to) = &content.reply_to {
            request["ReplyToAddresses"] = json!([reply_to]);
        }
        if let Some(set) = &self.config.configuration_set {
            request["ConfigurationSetName"] = json!(set);
        }
        if !tags.is_empty() {
            request["EmailTags"] = Value::Array(tags);
        }
        Ok(request)
    }
}

/// A display name for SES: quoted ASCII, or an RFC 2047 encoded word (SES rejects raw non-ASCII).
fn display_name(name: &str) -> String {
    use base64::Engine;
    if name.is_ascii() {
        format!("\"{}\"", name.replace(['"', '\\'], ""))
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
}

#[derive(Debug, Deserialize)]
struct SendEmailResponse {
    #[serde(rename = "MessageId")]
    message_id: String,
}

impl Channel for SesChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn provider(&self) -> &'static str {
        "ses"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(&self.request_body(msg)?)
                .map_err(|e| SendError::permanent("encode", e.to_string()))?;
            let path = "/v2/email/outbound-emails";
            let url = reqwest::Url::parse(&format!("{}{path}", self.endpoint)).map_err(|e| {
                SendError::permanent("config", format!("invalid SES endpoint: {e}"))
            })?;
            let host = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return Err(SendError::permanent("config", "SES endpoint has no host")),
            };
            let signed = sigv4::sign(
                &SigningRequest {
                    method: "POST",
                    host: &host,
                    path,
                    query: &[],
                    headers: &[("content-type", "application/json")],
                    payload: &payload,
                },
                &self.config.credentials,
                &self.config.region,
                "ses",
                jiff::Timestamp::now(),
            );
            let mut request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("x-amz-date", &signed.amz_date)
                .header("authorization", &signed.authorization);
            if let Some(token) = &signed.security_token {
                request = request.header("x-amz-security-token", token);
            }
            let response = request
                .body(payload)
                .send()
                .await
                .map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let parsed: SendEmailResponse = serde_json::from_str(&text)
                    .map_err(|e| SendError::transient(format!("unreadable SES response: {e}")))?;
                return Ok(SendReceipt {
                    provider_message_id: parsed.message_id,
                    provider: "ses".into(),
                    status: None,
                });
            }
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error_type = headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| {
                    body.get("__type")
                        .or_else(|| body.get("code"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            // The header may carry a suffix (`Type:http://...`) and the body a namespace (`ns#Type`).
            let error_type = error_type.split(':').next().unwrap_or_default();
            let error_type = error_type.rsplit('#').next().unwrap_or_default().to_owned();
            let message = body
                .get("message")
                .or_else(|| body.get("Message"))
                .and_then(Value::as_str)
                .map_or_else(|| http::snippet(&text), str::to_owned);
            let reason = format!("{error_type}: {message}");
            match error_type.as_str() {
                "TooManyRequestsException" | "LimitExceededException" | "ThrottlingException" => {
                    Err(SendError::Transient {
                        retry_after: http::retry_after(&headers),
                        reason,
                    })
                }
                "" => Err(http::status_error(status, &headers, reason)),
                _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                    Err(SendError::Transient {
                        retry_after: http::retry_after(&headers),
                        reason,
                    })
                }
                _ => Err(SendError::permanent(error_type.clone(), reason)),
            }
        })
    }
}

/// What an SNS HTTP(S) endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsMessage {
    /// The subscription must be confirmed by GETting `subscribe_url` (after checking the topic).
    SubscriptionConfirmation {
        /// Topic ARN.
        topic_arn: String,
        /// URL to GET to confirm.
        subscribe_url: String,
    },
    /// SES events carried by a notification.
    Notification {
        /// Topic ARN.
        topic_arn: String,
        /// The parsed events (one per affected recipient).
        events: Vec<DeliveryEvent>,
    },
    /// An unsubscribe confirmation or other type, ignored.
    Other(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    topic_arn: String,
    message: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
}

/// Parses an SNS POST body carrying SES notifications (`notificationType`) or configuration-set
/// events (`eventType`): Bounce, Complaint, Delivery, Reject.
///
/// Check the message's signature first with [`crate::email::sns::SnsVerifier::verify`]; this
/// function additionally accepts only the configured topic ARNs (`allowed_topics`), so a
/// correctly signed message from someone else's topic is refused too.
pub fn parse_sns(raw_body: &[u8], allowed_topics: &[String]) -> Result<SnsMessage, WebhookError> {
    let envelope: SnsEnvelope =
        serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if !allowed_topics.iter().any(|t| t == &envelope.topic_arn) {
        return Err(WebhookError::BadSignature);
    }
    match envelope.kind.as_str() {
        "SubscriptionConfirmation" => Ok(SnsMessage::SubscriptionConfirmation {
            topic_arn: envelope.topic_arn,
            subscribe_url: envelope
                .subscribe_url
                .ok_or_else(|| WebhookError::Malformed("no SubscribeURL".into()))?,
        }),
        "Notification" => {
            let message = envelope
                .message
                .ok_or_else(|| WebhookError::Malformed("no Message".into()))?;
            let events = parse_ses_event(&message)?;
            Ok(SnsMessage::Notification {
                topic_arn: envelope.topic_arn,
                events,
            })
        }
        other => Ok(SnsMessage::Other(other.to_owned())),
    }
}

fn parse_ses_event(message: &str) -> Result<Vec<DeliveryEvent>, WebhookError> {
    let v: Value =
        serde_json::from_str(message).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let kind = v
        .get("notificationType")
        .or_else(|| v.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message_id = v
        .pointer("/mail/messageId")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed("no mail.messageId".into()))?
        .to_owned();
    let ts = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    };
    let event = |recipient: Option<String>,
                 status: DeliveryStatus,
                 occurred_at,
                 code: Option<String>,
                 reason: Option<String>| DeliveryEvent {
        provider: "ses".into(),
        provider_message_id: message_id.clone(),
        recipient,
        status,
        occurred_at,
        code,
        reason,
        event_id: None,
    };
    let list = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let s = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(match kind {
        "Bounce" => {
            let permanent =
                v.pointer("/bounce/bounceType").and_then(Value::as_str) == Some("Permanent");
            let at = ts("/bounce/timestamp");
            list("/bounce/bouncedRecipients")
                .iter()
                .map(|r| {
                    event(
                        s(r, "emailAddress"),
                        DeliveryStatus::Bounced { permanent },
                        at,
                        s(r, "status"),
                        s(r, "diagnosticCode"),
                    )
                })
                .collect()
        }
        "Complaint" => {
            let at = ts("/complaint/timestamp");
            let feedback = v
                .pointer("/complaint/complaintFeedbackType")
                .and_then(Value::as_str)
                .map(str::to_owned);
            list("/complaint/complainedRecipients")
                .iter()
                .map(|r| {
                    event(
                        s(r, "emailAddress"),
                        DeliveryStatus::Complained,
                        at,
                        None,
                        feedback.clone(),
                    )
                })
                .collect()
        }
        "Delivery" => {
            let at = ts("/delivery/timestamp");
            list("/delivery/recipients")
                .iter()
                .map(|r| {
                    event(
                        r.as_str().map(str::to_owned),
                        DeliveryStatus::Delivered,
                        at,
                        None,
                        None,
                    )
                })
                .collect()
        }
        "Reject" => vec![event(
            None,
            DeliveryStatus::Dropped,
            ts("/mail/timestamp"),
            None,
            s(&v["reject"], "reason"),
        )],
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns(message: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:123:ses",
            "Message": message.to_string(),
        }))
        .unwrap()
    }

    #[test]
    fn non_ascii_display_names_are_encoded_words() {
        assert_eq!(display_name("Maria \"M\" Silva"), "\"Maria M Silva\"");
        assert_eq!(display_name("João"), "=?UTF-8?B?Sm/Do28=?=");
    }

    #[test]
    fn bounce_notification_yields_one_event_per_recipient() {
        let body = sns(&json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "timestamp": "2026-11-22T10:00:00.000Z",
                       "bouncedRecipients": [{"emailAddress": "a@x.test", "status": "5.1.1", "diagnosticCode": "smtp; 550 no such user"},
                                             {"emailAddress": "b@x.test"}]},
            "mail": {"messageId": "0100abc", "timestamp": "2026-11-22T09:59:00.000Z"}
        }));
        let SnsMessage::Notification { events, .. } =
            parse_sns(&body, &["arn:aws:sns:us-east-1:123:ses".into()]).unwrap()
        else {
            panic!()
        };
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].provider_message_id, "0100abc");
        assert_eq!(events[0].recipient.as_deref(), Some("a@x.test"));
        assert!(events.iter().all(DeliveryEvent::contact_invalid));
        assert_eq!(events[0].code.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn complaint_event_and_transient_bounce() {
        let body = sns(&json!({
            "eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "c@x.test"}], "complaintFeedbackType": "abuse"},
            "mail": {"messageId": "0100def"}
        }));
        let SnsMessage::Notification { events, .. } =
            parse_sns(&body, &["arn:aws:sns:us-east-1:123:ses".into()]).unwrap()
        else {
            panic!()
        };
        assert!(events[0].opted_out());
        let soft = sns(
            &json!({"notificationType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "d@x.test"}]}, "mail": {"messageId": "1"}}),
        );
        let SnsMessage::Notification { events, .. } =
            parse_sns(&soft, &["arn:aws:sns:us-east-1:123:ses".into()]).unwrap()
        else {
            panic!()
        };
        assert!(!events[0].contact_invalid());
    }

    #[test]
    fn unknown_topics_are_refused_and_confirmations_surface() {
        let body = sns(&json!({"notificationType": "Delivery", "mail": {"messageId": "1"}}));
        assert_eq!(
            parse_sns(&body, &["arn:other".into()]),
            Err(WebhookError::BadSignature)
        );
        let confirm = json!({"Type": "SubscriptionConfirmation", "TopicArn": "arn:t", "SubscribeURL": "https://sns.test/confirm"});
        assert_eq!(
            parse_sns(confirm.to_string().as_bytes(), &["arn:t".into()]),
            Ok(SnsMessage::SubscriptionConfirmation {
                topic_arn: "arn:t".into(),
                subscribe_url: "https://sns.test/confirm".into()
            })
        );
    }
}
