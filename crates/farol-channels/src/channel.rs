//! Core types every adapter shares: the message to send, the receipt, the classified error and the
//! [`Channel`] trait the campaign workers call through `Arc<dyn Channel>`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A boxed, `Send` future: what [`Channel::send`] returns so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kind of channel an adapter delivers through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// E-mail (SMTP, SendGrid, SES).
    Email,
    /// WhatsApp (Meta Cloud API, WPPConnect).
    WhatsApp,
    /// SMS (Twilio-compatible APIs).
    Sms,
    /// A signed JSON POST to a customer endpoint.
    Webhook,
    /// An event for Smartico's journeys (external events API).
    Smartico,
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Email => "email",
            Self::WhatsApp => "whatsapp",
            Self::Sms => "sms",
            Self::Webhook => "webhook",
            Self::Smartico => "smartico",
        })
    }
}

/// Where a message goes. Addresses are expected already normalized by the caller
/// (e-mail lower-cased, phones in E.164 such as `+5511987654321`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Recipient {
    /// An e-mail mailbox.
    Email {
        /// The address, `user@example.com`.
        address: String,
        /// Optional display name.
        name: Option<String>,
    },
    /// A phone number in E.164 (`+5511987654321`), for WhatsApp and SMS.
    Phone {
        /// The E.164 number.
        e164: String,
    },
    /// An HTTPS endpoint for the outbound webhook channel.
    Url {
        /// The endpoint URL.
        url: String,
    },
    /// A user of an external system by its id there (Smartico's `user_ext_id`).
    External {
        /// The user's id in that system.
        user_ext_id: String,
    },
}

impl Recipient {
    /// An e-mail recipient without a display name.
    pub fn email(address: impl Into<String>) -> Self {
        Self::Email {
            address: address.into(),
            name: None,
        }
    }

    /// A phone recipient (E.164).
    pub fn phone(e164: impl Into<String>) -> Self {
        Self::Phone { e164: e164.into() }
    }

    /// The phone number without its leading `+`, as most WhatsApp APIs want it.
    pub fn phone_digits(&self) -> Option<&str> {
        match self {
            Self::Phone { e164 } => Some(e164.trim_start_matches('+')),
            _ => None,
        }
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailContent {
    /// Subject line.
    pub subject: String,
    /// Plain-text part (always present; derived from the HTML when the template has none).
    pub text: String,
    /// HTML part, if any.
    pub html: Option<String>,
    /// One-click unsubscribe URL (RFC 8058); adapters add `List-Unsubscribe` and
    /// `List-Unsubscribe-Post` headers when set.
    pub unsubscribe_url: Option<String>,
    /// Optional `Reply-To` address.
    pub reply_to: Option<String>,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
}

impl EmailContent {
    /// All headers to put on the wire: the extra headers plus the RFC 8058 pair when an
    /// unsubscribe URL is set.
    pub fn wire_headers(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if let Some(url) = &self.unsubscribe_url {
            headers.push(("List-Unsubscribe".into(), format!("<{url}>")));
            headers.push((
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ));
        }
        headers
    }
}

/// A WhatsApp template message (Meta "message template", approved in advance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppTemplateMessage {
    /// Template name as approved at Meta.
    pub name: String,
    /// Language code, e.g. `pt_BR`.
    pub language: String,
    /// Body parameters, in order (`{{1}}`, `{{2}}`, ...).
    pub body_parameters: Vec<String>,
    /// Header text parameters, in order.
    pub header_parameters: Vec<String>,
}

/// What a WhatsApp message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WhatsAppBody {
    /// Free text (Meta: only inside the 24-hour customer-service window).
    Text {
        /// The text.
        body: String,
    },
    /// A pre-approved template.
    Template(WhatsAppTemplateMessage),
    /// A file by URL with an optional caption.
    File {
        /// Public URL of the file (or a `data:` URL for WPPConnect).
        url: String,
        /// File name shown to the recipient.
        filename: String,
        /// Optional caption.
        caption: Option<String>,
    },
}

/// A rendered WhatsApp message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppContent {
    /// The message itself.
    pub body: WhatsAppBody,
    /// When the contact last wrote to us; decides the 24-hour window for free text on Meta.
    pub last_inbound_at: Option<Timestamp>,
    /// Template to send instead when free text falls outside the window.
    pub fallback_template: Option<WhatsAppTemplateMessage>,
}

/// The rendered content of a message; its variant must match the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Content {
    /// An e-mail.
    Email(EmailContent),
    /// A WhatsApp message.
    WhatsApp(WhatsAppContent),
    /// An SMS text.
    Sms {
        /// The text.
        body: String,
    },
    /// A JSON document for the outbound webhook channel.
    Json {
        /// The event type, e.g. `campaign.message`.
        event: String,
        /// The payload.
        data: serde_json::Value,
    },
    /// A Smartico event (`client_action` or `update_profile`) with its payload.
    SmarticoEvent {
        /// The event type.
        event_type: crate::smartico::EventType,
        /// The payload (for a `client_action`, it carries the `action` name).
        payload: serde_json::Map<String, serde_json::Value>,
    },
}

impl Content {
    /// The channel this content is for.
    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Email(_) => ChannelKind::Email,
            Self::WhatsApp(_) => ChannelKind::WhatsApp,
            Self::Sms { .. } => ChannelKind::Sms,
            Self::Json { .. } => ChannelKind::Webhook,
            Self::SmarticoEvent { .. } => ChannelKind::Smartico,
        }
    }
}

/// One message to deliver through one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Recipient address for the channel.
    pub to: Recipient,
    /// Rendered content.
    pub content: Content,
    /// Stable key for this delivery (e.g. `campaign:<id>:client:<id>`); adapters pass it to
    /// providers that deduplicate and derive the e-mail Message-ID from it, so a retry does not
    /// produce a second message where the provider supports it.
    pub idempotency_key: String,
    /// Free metadata (campaign id, client id...) forwarded where providers allow custom args.
    pub metadata: BTreeMap<String, String>,
}

impl OutboundMessage {
    /// A message with no metadata.
    pub fn new(to: Recipient, content: Content, idempotency_key: impl Into<String>) -> Self {
        Self {
            to,
            content,
            idempotency_key: idempotency_key.into(),
            metadata: BTreeMap::new(),
        }
    }
}

/// What the provider answered when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    /// The provider's id for the message; webhooks refer to it.
    pub provider_message_id: String,
    /// Which adapter accepted it (`smtp`, `sendgrid`, `ses`, `meta`, `wppconnect`, `twilio`...).
    pub provider: String,
    /// Provider status at acceptance time, when it tells (`queued`, `accepted`...).
    pub status: Option<String>,
}

/// Why a send failed, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later: timeouts, connection errors, 429, 5xx.
    #[error("transient failure: {reason}")]
    Transient {
        /// How long the provider asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
        /// Human-readable reason.
        reason: String,
    },
    /// Retrying will not help: bad address, auth/config errors, rejected content.
    #[error("permanent failure ({code}): {reason}")]
    Permanent {
        /// Provider or local error code (`21211`, `131026`, `http_401`, `unsupported_content`...).
        code: String,
        /// Human-readable reason.
        reason: String,
        /// The contact itself is unreachable (invalid number, hard bounce): mark it so.
        contact_invalid: bool,
    },
    /// Meta WhatsApp: free text outside the 24-hour window and no fallback template given.
    #[error("outside the 24-hour customer-service window; a template message is required")]
    OutsideWindow,
}

impl SendError {
    /// A transient error without `Retry-After`.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            retry_after: None,
            reason: reason.into(),
        }
    }

    /// A permanent error that does not invalidate the contact.
    pub fn permanent(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            reason: reason.into(),
            contact_invalid: false,
        }
    }

    /// A permanent error that marks the contact invalid.
    pub fn invalid_contact(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            reason: reason.into(),
            contact_invalid: true,
        }
    }

    /// The content variant does not belong to this channel.
    pub fn unsupported_content(kind: ChannelKind) -> Self {
        Self::permanent(
            "unsupported_content",
            format!("content is not a {kind} message"),
        )
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// A short code to store with a failed delivery: the provider/local code for permanent
    /// errors, `transient` or `outside_window` otherwise.
    pub fn code(&self) -> &str {
        match self {
            Self::Transient { .. } => "transient",
            Self::Permanent { code, .. } => code,
            Self::OutsideWindow => "outside_window",
        }
    }

    /// The provider-requested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A delivery channel. Object safe: hold adapters as `Arc<dyn Channel>`.
pub trait Channel: Send + Sync {
    /// Which kind of channel this adapter delivers through.
    fn kind(&self) -> ChannelKind;

    /// A short provider name for logs and receipts (`smtp`, `sendgrid`...).
    fn provider(&self) -> &'static str;

    /// Sends one message.
    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Echo;

    impl Channel for Echo {
        fn kind(&self) -> ChannelKind {
            ChannelKind::Sms
        }
        fn provider(&self) -> &'static str {
            "echo"
        }
        fn send<'a>(
            &'a self,
            msg: &'a OutboundMessage,
        ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
            Box::pin(async move {
                match &msg.content {
                    Content::Sms { .. } => Ok(SendReceipt {
                        provider_message_id: msg.idempotency_key.clone(),
                        provider: "echo".into(),
                        status: None,
                    }),
                    _ => Err(SendError::unsupported_content(self.kind())),
                }
            })
        }
    }

    #[tokio::test]
    async fn channel_is_usable_as_a_shared_trait_object() {
        let channel: Arc<dyn Channel> = Arc::new(Echo);
        let msg = OutboundMessage::new(
            Recipient::phone("+5511987654321"),
            Content::Sms { body: "oi".into() },
            "k1",
        );
        let handle = tokio::spawn({
            let channel = channel.clone();
            async move { channel.send(&msg).await }
        });
        assert_eq!(handle.await.unwrap().unwrap().provider_message_id, "k1");
        let wrong = OutboundMessage::new(
            Recipient::email("a@b.c"),
            Content::Email(EmailContent::default()),
            "k2",
        );
        let err = channel.send(&wrong).await.unwrap_err();
        assert!(
            matches!(err, SendError::Permanent { ref code, .. } if code == "unsupported_content")
        );
    }

    #[test]
    fn content_knows_its_channel_and_errors_their_code() {
        assert_eq!(
            Content::Sms {
                body: String::new()
            }
            .kind(),
            ChannelKind::Sms
        );
        assert_eq!(
            Content::Email(EmailContent::default()).kind(),
            ChannelKind::Email
        );
        assert_eq!(SendError::invalid_contact("21211", "x").code(), "21211");
        assert_eq!(SendError::transient("x").code(), "transient");
        assert_eq!(SendError::OutsideWindow.code(), "outside_window");
    }

    #[test]
    fn unsubscribe_url_adds_the_rfc_8058_header_pair() {
        let content = EmailContent {
            unsubscribe_url: Some("https://x.test/u/1".into()),
            ..Default::default()
        };
        let headers = content.wire_headers();
        assert!(headers.contains(&("List-Unsubscribe".into(), "<https://x.test/u/1>".into())));
        assert!(headers.contains(&(
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into()
        )));
        assert!(EmailContent::default().wire_headers().is_empty());
    }
}
