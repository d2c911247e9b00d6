//! Running a send with retries and a circuit breaker, for callers that retry in-process (the
//! outbound webhook channel, one-off sends). Campaign workers usually retry through their queue
//! instead, using [`Backoff::delay`] to schedule the next attempt.

use std::future::Future;

use crate::backoff::Backoff;
use crate::breaker::CircuitBreaker;
use crate::channel::{Channel, OutboundMessage, SendError, SendReceipt};

/// Calls `attempt` until it succeeds, fails permanently, or the retry budget is spent, sleeping
/// per `backoff` (honoring `Retry-After`) between transient failures. With a `breaker`, an open
/// circuit fails fast with a transient error carrying the remaining cool-down, and transient
/// failures/successes are reported to it (permanent failures say nothing about provider health).
pub async fn with_retry<F, Fut>(
    backoff: &Backoff,
    breaker: Option<&CircuitBreaker>,
    mut attempt: F,
) -> Result<SendReceipt, SendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<SendReceipt, SendError>>,
{
    let mut retry = 0;
    loop {
        if let Some(breaker) = breaker
            && let Err(wait) = breaker.try_acquire()
        {
            return Err(SendError::Transient {
                retry_after: Some(wait),
                reason: "circuit open: provider failing".into(),
            });
        }
        let result = attempt().await;
        if let Some(breaker) = breaker {
            match &result {
                Ok(_) => breaker.record_success(),
                Err(e) if e.is_transient() => breaker.record_failure(),
                // A permanent error still proves the provider answered.
                Err(_) => breaker.record_success(),
            };
        }
        match result {
            Err(e) if e.is_transient() && backoff.allows(retry) => {
                let wait = backoff.delay(retry, e.retry_after());
                tracing::debug!(retry, ?wait, error = %e, "transient send failure; retrying");
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            other => return other,
        }
    }
}

/// [`with_retry`] over a channel's `send`.
pub async fn send_with_retry(
    channel: &dyn Channel,
    msg: &OutboundMessage,
    backoff: &Backoff,
    breaker: Option<&CircuitBreaker>,
) -> Result<SendReceipt, SendError> {
    with_retry(backoff, breaker, || channel.send(msg)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn quick(max_retries: u32) -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(2),
            max_retries,
        }
    }

    fn ok() -> SendReceipt {
        SendReceipt {
            provider_message_id: "id".into(),
            provider: "t".into(),
            status: None,
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_until_success() {
        let calls = AtomicUsize::new(0);
        let result = with_retry(&quick(3), None, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(SendError::transient("503"))
                } else {
                    Ok(ok())
                }
            }
        })
        .await;
        assert_eq!(result, Ok(ok()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stops_on_permanent_errors_and_after_the_budget() {
        let calls = AtomicUsize::new(0);
        let result = with_retry(&quick(3), None, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(SendError::permanent("21211", "invalid")) }
        })
        .await;
        assert!(matches!(result, Err(SendError::Permanent { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicUsize::new(0);
        let result = with_retry(&quick(2), None, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(SendError::transient("503")) }
        })
        .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_open_breaker_fails_fast_without_calling() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let result = with_retry(&quick(5), Some(&breaker), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(SendError::transient("503")) }
        })
        .await;
        assert!(
            matches!(result, Err(SendError::Transient { retry_after: Some(_), ref reason }) if reason.contains("circuit open"))
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the breaker opened after two failures"
        );
        let again = with_retry(&quick(5), Some(&breaker), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(ok()) }
        })
        .await;
        assert!(again.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
