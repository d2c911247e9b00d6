//! WhatsApp adapters: Meta's official Cloud API and self-hosted WPPConnect sessions.

pub mod meta;
pub mod wppconnect;
