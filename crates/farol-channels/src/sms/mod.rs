//! SMS adapters. Any provider plugs in through [`crate::Channel`]; Twilio's Messages API (and
//! providers that copy it) is the one implemented.

pub mod twilio;
