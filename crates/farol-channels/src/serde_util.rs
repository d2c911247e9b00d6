//! Serde helpers for the adapters' settings, which the main crate stores per account as JSON:
//! durations as whole seconds or milliseconds.

/// A `Duration` as whole seconds.
pub mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Reads seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A `Duration` as whole milliseconds.
pub mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The default provider request timeout.
pub fn default_timeout() -> std::time::Duration {
    crate::http::DEFAULT_TIMEOUT
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use crate::email::sendgrid::SendGridConfig;
    use crate::email::ses::SesConfig;
    use crate::email::smtp::{SmtpConfig, SmtpSecurity};
    use crate::smartico::SmarticoConfig;
    use crate::sms::twilio::{TwilioConfig, TwilioSender};
    use crate::webhook::WebhookConfig;
    use crate::whatsapp::meta::MetaConfig;
    use crate::whatsapp::wppconnect::WppConnectConfig;

    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn settings_deserialize_from_stored_json_with_defaults() {
        let sg: SendGridConfig = parse(json!({"api_key": "SG.x", "from_email": "a@b.c"}));
        assert_eq!(sg.base_url, "https://api.sendgrid.com");
        assert_eq!(sg.timeout, crate::http::DEFAULT_TIMEOUT);
        assert!(!format!("{sg:?}").contains("SG.x"));

        let ses: SesConfig = parse(
            json!({"region": "sa-east-1", "from": "a@b.c", "timeout_secs": 3,
            "credentials": {"access_key_id": "AK", "secret_access_key": "s"}}),
        );
        assert_eq!(ses.timeout, Duration::from_secs(3));
        assert!(ses.credentials.session_token.is_none());

        let smtp: SmtpConfig =
            parse(json!({"host": "smtp.x", "security": "starttls", "from": "a@b.c"}));
        assert_eq!(smtp.security, SmtpSecurity::StartTls);
        assert_eq!(smtp.pool_max_size, 4);

        let meta: MetaConfig = parse(json!({"phone_number_id": "1", "access_token": "t"}));
        assert_eq!(meta.api_version, crate::whatsapp::meta::DEFAULT_API_VERSION);

        let wpp: WppConnectConfig = parse(json!({"base_url": "http://w", "secret_key": "k"}));
        assert_eq!(wpp.timeout, crate::http::DEFAULT_TIMEOUT);

        let twilio: TwilioConfig = parse(
            json!({"account_sid": "AC", "username": "AC", "password": "p",
            "sender": {"messaging_service": "MG1"}}),
        );
        assert_eq!(twilio.sender, TwilioSender::MessagingService("MG1".into()));

        let smartico: SmarticoConfig = parse(
            json!({"base_url": "https://apis6.smartico.ai", "label_token": "t",
            "backoff": {"base_ms": 10, "max_retries": 2}}),
        );
        assert_eq!(smartico.max_events_per_request, 4_000);
        assert_eq!(smartico.backoff.base, Duration::from_millis(10));
        assert_eq!(smartico.backoff.max_retries, 2);
        assert_eq!(smartico.backoff.cap, crate::Backoff::default().cap);

        let hook: WebhookConfig = parse(json!({"secret": "s"}));
        assert_eq!(hook.backoff, crate::Backoff::default());
    }
}
