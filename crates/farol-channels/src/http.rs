//! Shared HTTP plumbing for the provider adapters: one rustls (ring) client per adapter with a
//! timeout, and the mapping of transport failures and HTTP statuses onto [`SendError`].

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::backoff::parse_retry_after;
use crate::channel::SendError;

/// Default per-request timeout for provider calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Installs rustls' ring provider as the process default, if no default is installed yet.
///
/// This crate only links ring (reqwest `rustls-tls`, lettre `ring`, sqlx/lapin ring in the main
/// crate), so rustls can pick it alone; calling this at start-up keeps it so even if a future
/// dependency links aws-lc-rs too (rustls then refuses to choose and panics). Idempotent.
pub fn install_default_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the HTTP client the adapters use: rustls with webpki roots, the given timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    install_default_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("farol-channels/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Maps a transport-level failure (no HTTP status): all are transient except a malformed request.
pub fn transport_error(err: &reqwest::Error) -> SendError {
    if err.is_builder() {
        return SendError::permanent("request_invalid", err.to_string());
    }
    let what = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    SendError::transient(format!("{what}: {err}"))
}

/// The `Retry-After` of a response, if present and parseable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
}

/// Generic status classification when a provider's body gave no better answer:
/// 408/425/429/5xx transient (429 honoring `Retry-After`), other 4xx permanent (`http_<status>`).
pub fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    reason: impl Into<String>,
) -> SendError {
    let reason = reason.into();
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.as_u16() == 425
        || status.is_server_error()
    {
        SendError::Transient {
            retry_after: retry_after(headers),
            reason: format!("HTTP {status}: {reason}"),
        }
    } else {
        SendError::permanent(
            format!("http_{}", status.as_u16()),
            format!("HTTP {status}: {reason}"),
        )
    }
}

/// Truncates a response body for inclusion in error messages.
pub fn snippet(body: &str) -> String {
    const MAX: usize = 500;
    if body.len() <= MAX {
        return body.to_owned();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_transient_or_permanent() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "12".parse().unwrap());
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &headers, "slow down").retry_after(),
            Some(Duration::from_secs(12))
        );
        assert!(status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "").is_transient());
        let err = status_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "bad key");
        assert!(
            matches!(err, SendError::Permanent { ref code, contact_invalid: false, .. } if code == "http_401")
        );
    }

    #[test]
    fn snippet_cuts_on_a_char_boundary() {
        let long = "é".repeat(400);
        let cut = snippet(&long);
        assert!(cut.ends_with('…') && cut.len() < long.len());
    }
}
