//! Farol's provider side of outbound channels.
//!
//! Everything here talks to providers and knows nothing about Farol's database, queues or HTTP
//! routes: the main crate renders [`template`]s into [`OutboundMessage`]s, sends them through
//! `Arc<dyn` [`Channel`]`>` adapters, classifies failures with [`SendError`] for its retry queue
//! ([`Backoff`], [`CircuitBreaker`]), and hands provider webhooks' raw bodies to the `verify`/`parse`
//! functions of each adapter module.

pub mod backoff;
pub mod breaker;
pub mod channel;

pub use backoff::Backoff;
pub use breaker::{BreakerState, CircuitBreaker, Clock, SystemClock};
pub use channel::{
    BoxFuture, Channel, ChannelKind, Content, EmailContent, OutboundMessage, Recipient, SendError,
    SendReceipt, WhatsAppBody, WhatsAppContent, WhatsAppTemplateMessage,
};
pub mod email;
pub mod events;
pub mod http;
pub mod secret;
pub mod template;

pub use events::{DeliveryEvent, DeliveryStatus, InboundMessage, WebhookError, is_opt_out};
pub use secret::Secret;
pub mod retry;
pub mod smartico;
pub mod sms;
pub mod webhook;
pub mod whatsapp;
