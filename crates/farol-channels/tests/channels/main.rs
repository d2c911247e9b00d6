//! Black-box tests of every adapter against local servers that implement each provider's
//! documented contract (axum on 127.0.0.1:0), and SMTP against a real aiosmtpd sink.

mod common;
mod email;
mod smartico;
mod sms;
mod webhook;
mod whatsapp;
