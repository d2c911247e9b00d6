//! Farol's provider side of outbound channels.
//!
//! Everything here talks to providers and knows nothing about Farol's database, queues or HTTP
//! routes. The main crate:
//!
//! 1. renders user templates ([`template::TemplateEngine`]) into [`OutboundMessage`]s;
//! 2. sends them through adapters held as `Arc<dyn` [`Channel`]`>` ([`email::smtp::SmtpChannel`],
//!    [`email::sendgrid::SendGridChannel`], [`email::ses::SesChannel`],
//!    [`whatsapp::meta::MetaChannel`], [`whatsapp::wppconnect::WppSessionPool`],
//!    [`sms::twilio::TwilioChannel`], [`webhook::WebhookChannel`]);
//! 3. schedules retries from the [`SendError`] classification with [`Backoff`], guarding each
//!    provider with a [`CircuitBreaker`] (or calls [`retry::send_with_retry`] in-process);
//! 4. hands provider webhooks' raw bodies to each module's `verify_*`/`parse_*` functions (SNS:
//!    [`email::sns::SnsVerifier`]), which return [`DeliveryEvent`]s and [`InboundMessage`]s;
//! 5. pushes segments to Smartico with [`smartico::SmarticoClient`];
//! 6. stores provider credentials encrypted with [`credentials::CredentialCipher`].
//!
//! TLS is rustls with the ring provider only; call [`http::install_default_crypto_provider`] at
//! start-up to make that explicit process-wide.

/// Retry delays (exponential backoff with full jitter, `Retry-After`).
pub mod backoff;
/// Circuit breaker per provider.
pub mod breaker;
/// Core types: messages, receipts, errors, the `Channel` trait.
pub mod channel;
/// Encryption of provider credentials at rest.
pub mod credentials;
/// E-mail adapters (SMTP, SendGrid, SES) and their webhooks.
pub mod email;
/// Provider-neutral webhook results (delivery events, inbound messages, opt-out detection).
pub mod events;
/// Shared HTTP client and status classification.
pub mod http;
/// In-process retries with a circuit breaker.
pub mod retry;
/// A string secret whose `Debug` redacts.
pub mod secret;
/// Serde helpers for settings.
mod serde_util;
/// Smartico external events API.
pub mod smartico;
/// SMS adapters (Twilio-compatible).
pub mod sms;
/// User message templates (minijinja).
pub mod template;
/// Outbound signed webhook channel.
pub mod webhook;
/// WhatsApp adapters (Meta Cloud API, WPPConnect).
pub mod whatsapp;

pub use backoff::Backoff;
pub use breaker::{BreakerState, CircuitBreaker, Clock, SystemClock};
pub use channel::{
    BoxFuture, Channel, ChannelKind, Content, EmailContent, OutboundMessage, Recipient, SendError,
    SendReceipt, WhatsAppBody, WhatsAppContent, WhatsAppTemplateMessage,
};
pub use events::{DeliveryEvent, DeliveryStatus, InboundMessage, WebhookError, is_opt_out};
pub use secret::Secret;
