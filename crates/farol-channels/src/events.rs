//! Provider-neutral results of parsing provider webhooks: delivery status changes and inbound
//! messages, plus the opt-out keyword helper.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Why a webhook was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Signature missing, malformed or wrong.
    #[error("invalid webhook signature")]
    BadSignature,
    /// The configured verification key does not parse.
    #[error("invalid verification key: {0}")]
    BadKey(String),
    /// The body does not parse.
    #[error("malformed webhook body: {0}")]
    Malformed(String),
}

/// A delivery status reported by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted/sent by the provider (SendGrid `processed`, Meta `sent`, Twilio `sent`).
    Sent,
    /// Delivery is delayed; the provider keeps trying.
    Deferred,
    /// Delivered to the recipient's server or device.
    Delivered,
    /// Read (WhatsApp blue ticks).
    Read,
    /// E-mail opened.
    Opened,
    /// E-mail link clicked.
    Clicked,
    /// E-mail bounced; `permanent` is a hard bounce (the address is invalid).
    Bounced {
        /// Hard bounce.
        permanent: bool,
    },
    /// Dropped by the provider before sending (suppression list, invalid address...).
    Dropped,
    /// The recipient marked the e-mail as spam.
    Complained,
    /// The recipient unsubscribed through the provider.
    Unsubscribed,
    /// Failed; `permanent` when the contact is unreachable.
    Failed {
        /// The contact is unreachable through this channel.
        permanent: bool,
    },
}

/// One delivery event parsed from a provider webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// Which provider reported it.
    pub provider: String,
    /// The provider's message id, matching [`crate::SendReceipt::provider_message_id`].
    pub provider_message_id: String,
    /// The recipient address, when reported.
    pub recipient: Option<String>,
    /// The new status.
    pub status: DeliveryStatus,
    /// When it happened, per the provider.
    pub occurred_at: Option<Timestamp>,
    /// Provider error code, if any.
    pub code: Option<String>,
    /// Provider reason, if any.
    pub reason: Option<String>,
    /// The provider's id for this event (for deduplicating webhook retries).
    pub event_id: Option<String>,
}

impl DeliveryEvent {
    /// Whether this event means the contact should be marked invalid for the channel.
    pub fn contact_invalid(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Bounced { permanent: true }
                | DeliveryStatus::Failed { permanent: true }
        )
    }

    /// Whether this event means the contact no longer wants messages (complaint/unsubscribe).
    pub fn opted_out(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Complained | DeliveryStatus::Unsubscribed
        )
    }
}

/// A message a contact sent us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Which provider delivered it.
    pub provider: String,
    /// Sender phone digits as the provider gives them (`5511987654321`).
    pub from: String,
    /// Sender display name, when given.
    pub from_name: Option<String>,
    /// The provider's id for the message.
    pub provider_message_id: String,
    /// Text content, for text messages.
    pub text: Option<String>,
    /// The message type as the provider names it (`text`, `image`, `chat`...).
    pub kind: String,
    /// When it was sent.
    pub received_at: Option<Timestamp>,
}

impl InboundMessage {
    /// Whether the message is an opt-out request (see [`is_opt_out`]).
    pub fn is_opt_out(&self) -> bool {
        self.text.as_deref().is_some_and(is_opt_out)
    }
}

/// Opt-out keywords, compared after normalization.
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "sair",
    "stop",
    "parar",
    "pare",
    "cancelar",
    "descadastrar",
    "unsubscribe",
];

/// Whether a message is an opt-out request: the whole message, once trimmed, lower-cased,
/// stripped of accents and surrounding punctuation/emoji, is one of [`OPT_OUT_KEYWORDS`]
/// ("SAIR", "Parar!", " stop "). A sentence that merely contains the word ("não quero sair
/// do plano") is not an opt-out: false positives would silence customers.
pub fn is_opt_out(text: &str) -> bool {
    let normalized: String = text
        .trim()
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'Á' | 'À' | 'Â' | 'Ã' => 'a',
            'é' | 'ê' | 'É' | 'Ê' => 'e',
            'í' | 'Í' => 'i',
            'ó' | 'ô' | 'õ' | 'Ó' | 'Ô' | 'Õ' => 'o',
            'ú' | 'Ú' => 'u',
            'ç' | 'Ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let word = normalized.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    OPT_OUT_KEYWORDS.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_detects_keywords_only_as_the_whole_message() {
        for yes in [
            "SAIR",
            " sair ",
            "Parar!",
            "STOP",
            "stop.",
            "Descadastrar 🙏",
            "PARE",
        ] {
            assert!(is_opt_out(yes), "{yes}");
        }
        for no in [
            "não quero sair do plano",
            "sairia",
            "",
            "ok",
            "stop please call me",
        ] {
            assert!(!is_opt_out(no), "{no}");
        }
    }
}
