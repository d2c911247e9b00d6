//! Outbound webhook channel: a signed JSON POST to a customer endpoint, retried on transient
//! failures.
//!
//! Body: `{"id": <idempotency key>, "type": <event>, "created_at": <RFC 3339>, "data": …,
//! "metadata": {…}}`. Headers: `X-Farol-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`, `X-Farol-Event`, `Idempotency-Key`. Receivers verify with
//! [`verify_signature`](crate::webhook::verify_signature) and reject stale timestamps (replay protection). 2xx is success; 410 means
//! the endpoint is gone (permanent, contact invalid); other 4xx are permanent; 408/429/5xx,
//! timeouts and connection errors are retried per the channel's [`Backoff`].

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::backoff::Backoff;
use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::events::WebhookError;
use crate::http;
use crate::retry::with_retry;
use crate::secret::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Farol-Signature";

/// Outbound webhook settings.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WebhookConfig {
    /// Shared signing secret.
    pub secret: Secret,
    /// Request timeout (`timeout_secs` in JSON).
    #[serde(
        rename = "timeout_secs",
        default = "crate::serde_util::default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
    /// In-process retries of transient failures.
    #[serde(default)]
    pub backoff: Backoff,
}

/// The outbound webhook channel (recipient: [`Recipient::Url`], content: [`Content::Json`]).
#[derive(Debug)]
pub struct WebhookChannel {
    config: WebhookConfig,
    client: reqwest::Client,
}

/// The signature header value for `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Verifies a signature header (constant time) and that its timestamp is within `tolerance`
/// of `now` (unix seconds). Several `v1=` values (secret rotation) are accepted.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| WebhookError::BadSignature)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(WebhookError::BadSignature);
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|sig| expected.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

impl WebhookChannel {
    /// A channel with its own HTTP client.
    pub fn new(config: WebhookConfig) -> Self {
        let client = http::client(config.timeout);
        Self { config, client }
    }

    async fn attempt(
        &self,
        url: &str,
        event: &str,
        key: &str,
        body: &[u8],
    ) -> Result<SendReceipt, SendError> {
        // Signed per attempt: a retry carries a fresh timestamp, so receivers' replay windows hold.
        let timestamp = jiff::Timestamp::now().as_second();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(
                SIGNATURE_HEADER,
                sign(self.config.secret.expose(), timestamp, body),
            )
            .header("X-Farol-Event", event)
            .header("Idempotency-Key", key)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(SendReceipt {
                provider_message_id: key.to_owned(),
                provider: "webhook".into(),
                status: Some(status.as_u16().to_string()),
            });
        }
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::GONE {
            return Err(SendError::invalid_contact("http_410", "endpoint gone"));
        }
        Err(http::status_error(status, &headers, http::snippet(&text)))
    }
}

impl Channel for WebhookChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn provider(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let Content::Json { event, data } = &msg.content else {
                return Err(SendError::unsupported_content(ChannelKind::Webhook));
            };
            let Recipient::Url { url } = &msg.to else {
                return Err(SendError::permanent(
                    "unsupported_recipient",
                    "the webhook channel needs a URL recipient",
                ));
            };
            let body = serde_json::to_vec(&json!({
                "id": msg.idempotency_key,
                "type": event,
                "created_at": jiff::Timestamp::now().to_string(),
                "data": data,
                "metadata": msg.metadata,
            }))
            .map_err(|e| SendError::permanent("encode", e.to_string()))?;
            with_retry(&self.config.backoff, None, || {
                self.attempt(url, event, &msg.idempotency_key, &body)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_and_rejects_tampering_and_stale_timestamps() {
        let body = br#"{"id":"k1"}"#;
        let header = sign("whsec", 1_700_000_000, body);
        let window = Duration::from_secs(300);
        assert_eq!(
            verify_signature("whsec", &header, body, 1_700_000_100, window),
            Ok(())
        );
        assert_eq!(
            verify_signature("other", &header, body, 1_700_000_100, window),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("whsec", &header, b"{}", 1_700_000_100, window),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("whsec", &header, body, 1_700_001_000, window),
            Err(WebhookError::BadSignature)
        );
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(
            verify_signature("whsec", &rotated, body, 1_700_000_000, window),
            Ok(())
        );
        assert_eq!(
            verify_signature("whsec", "v1=abcd", body, 1_700_000_000, window),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Independent computation of the documented scheme.
        let mut m = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        m.update(b"1700000000.{}");
        assert_eq!(
            sign("whsec", 1_700_000_000, b"{}"),
            format!("t=1700000000,v1={}", hex::encode(m.finalize().into_bytes()))
        );
    }
}
