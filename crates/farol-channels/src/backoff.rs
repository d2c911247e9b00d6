//! Retry delays: exponential backoff with full jitter, capped, honoring `Retry-After`.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// Exponential backoff with "full jitter": the delay before retry `n` (0-based) is uniform in
/// `[0, min(cap, base * 2^n)]`. A provider's `Retry-After` wins over the computed delay (still
/// capped by `max_retry_after`), because retrying earlier only earns another 429.
///
/// Deserializes from `{"base_ms", "cap_ms", "max_retry_after_ms", "max_retries"}` (all optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Backoff {
    /// Delay scale for the first retry.
    #[serde(rename = "base_ms", with = "crate::serde_util::millis")]
    pub base: Duration,
    /// Largest computed delay.
    #[serde(rename = "cap_ms", with = "crate::serde_util::millis")]
    pub cap: Duration,
    /// Largest `Retry-After` honored; longer requests are clamped to it.
    #[serde(rename = "max_retry_after_ms", with = "crate::serde_util::millis")]
    pub max_retry_after: Duration,
    /// How many retries before giving up (attempts = retries + 1).
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(15 * 60),
            max_retries: 5,
        }
    }
}

impl Backoff {
    /// The upper bound of the jitter window for retry `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay before retry `attempt` (0-based), using `rng` for the jitter.
    pub fn delay_with<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// The delay before retry `attempt` (0-based) with the thread-local RNG.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(attempt, retry_after, &mut rand::rng())
    }

    /// Whether retry `attempt` (0-based) is still allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt < self.max_retries
    }
}

/// Parses an HTTP `Retry-After` value: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let span = date.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(u64::try_from(span).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_stays_within_the_window_and_varies() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<_> = (0..200).map(|_| b.delay_with(2, None, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter should spread delays");
        assert!(delays.iter().any(|d| *d < Duration::from_millis(100)));
    }

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let b = Backoff {
            max_retry_after: Duration::from_secs(30),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            b.delay_with(0, Some(Duration::from_secs(7)), &mut rng),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.delay_with(0, Some(Duration::from_secs(3600)), &mut rng),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_budget_is_respected() {
        let b = Backoff {
            max_retries: 2,
            ..Default::default()
        };
        assert!(b.allows(0) && b.allows(1) && !b.allows(2));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now: jiff::Timestamp = "2015-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
