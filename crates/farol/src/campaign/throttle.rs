//! Send pacing per campaign (or per channel account). [`Throttle`] is the seam:
//! [`LocalThrottle`] paces the workers of one process; [`RedisThrottle`] paces every process
//! sharing a Redis (`[redis]` configured), with the same schedule kept in Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farol_channels::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

/// What a pace applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// One campaign (`campaigns.throttle_per_sec`).
    Campaign(i64),
    /// One sender account of a channel (its provider's rate limit), whatever the campaign.
    Account(i64),
}

impl std::fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThrottleKey::Campaign(id) => write!(f, "campaign:{id}"),
            ThrottleKey::Account(id) => write!(f, "account:{id}"),
        }
    }
}

/// Hands out send slots at a rate.
pub trait Throttle: Send + Sync {
    /// Waits for the next slot of `key` at `per_sec` messages per second.
    fn acquire(&self, key: ThrottleKey, per_sec: f64) -> BoxFuture<'_, ()>;
}

/// The throttle of a process: shared through Redis when it is configured, else local.
pub fn for_process(redis: Option<ConnectionManager>, key_prefix: &str) -> Arc<dyn Throttle> {
    match redis {
        Some(conn) => Arc::new(RedisThrottle::new(conn, key_prefix)),
        None => Arc::new(LocalThrottle::default()),
    }
}

/// How far a late sender may catch up: after a stall (a claim, a slow database write) the
/// next slots come back to back until the schedule is met, but never more than this much
/// time's worth of messages at once.
const CATCH_UP: Duration = Duration::from_millis(200);

/// In-process pacing, shared by every worker of the process: the slots of a key are spaced
/// `1 / per_sec` apart (a virtual-schedule token bucket, burst of one).
#[derive(Debug, Default)]
pub struct LocalThrottle {
    next: Mutex<HashMap<ThrottleKey, Instant>>,
}

impl LocalThrottle {
    /// Reserves the next slot of `key` and returns when it is.
    fn reserve(&self, key: ThrottleKey, per_sec: f64) -> Instant {
        let interval = Duration::from_secs_f64(1.0 / per_sec.max(1e-6));
        let now = Instant::now();
        let mut next = self.next.lock().expect("throttle lock");
        let floor = now.checked_sub(CATCH_UP).unwrap_or(now);
        let slot = match next.get(&key) {
            Some(&t) => t.max(floor),
            None => now,
        };
        next.insert(key, slot + interval);
        slot
    }
}

impl Throttle for LocalThrottle {
    fn acquire(&self, key: ThrottleKey, per_sec: f64) -> BoxFuture<'_, ()> {
        let slot = self.reserve(key, per_sec);
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
        })
    }
}

/// The same virtual schedule as [`LocalThrottle`], kept in Redis so every process pacing a key
/// shares it: `<prefix>:throttle:<key>` holds the next free slot (microseconds on the Redis
/// server's clock). One atomic script reserves a slot and advances the schedule, so concurrent
/// callers in any number of processes get distinct slots `1 / per_sec` apart; each caller then
/// sleeps until its slot (a relative wait, so the callers' clocks do not matter).
///
/// When Redis cannot be reached, the process falls back to its own [`LocalThrottle`] (logged):
/// each process then keeps the pace on its own, so the total may exceed the rate by the number
/// of processes until Redis is back; it never sends unpaced.
pub struct RedisThrottle {
    conn: ConnectionManager,
    prefix: String,
    fallback: LocalThrottle,
}

/// Reserves the next slot: KEYS[1] the schedule, ARGV[1] the interval and ARGV[2] the catch-up
/// bound (µs). Returns how long the caller waits for its slot (µs, ≥ 0).
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local next = tonumber(redis.call('GET', KEYS[1]))
local slot = now
if next then
  slot = math.max(next, now - tonumber(ARGV[2]))
end
local ttl = math.floor((slot + interval - now) / 1000) + 60000
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', ttl)
return math.max(0, math.floor(slot - now))
"#;

impl RedisThrottle {
    /// A throttle keeping its schedules under `<prefix>:throttle:`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: format!("{prefix}:throttle:"),
            fallback: LocalThrottle::default(),
        }
    }

    /// Reserves the next slot of `key`; returns how long to wait for it.
    async fn reserve(&self, key: ThrottleKey, per_sec: f64) -> redis::RedisResult<Duration> {
        let interval_us = (1e6 / per_sec.max(1e-6)).round().max(1.0) as u64;
        let mut conn = self.conn.clone();
        let wait_us: u64 = redis::cmd("EVAL")
            .arg(RESERVE)
            .arg(1)
            .arg(format!("{}{key}", self.prefix))
            .arg(interval_us)
            .arg(CATCH_UP.as_micros() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(Duration::from_micros(wait_us))
    }
}

impl Throttle for RedisThrottle {
    fn acquire(&self, key: ThrottleKey, per_sec: f64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match self.reserve(key, per_sec).await {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(e) => {
                    tracing::warn!(error = %e, %key, "shared throttle unavailable; pacing this process alone");
                    self.fallback.acquire(key, per_sec).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_rate_and_keys_are_independent() {
        let t = LocalThrottle::default();
        let slots: Vec<Instant> = (0..11)
            .map(|_| t.reserve(ThrottleKey::Campaign(1), 10.0))
            .collect();
        for pair in slots.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(100));
        }
        // Another key starts now, not after key 1's schedule.
        assert!(t.reserve(ThrottleKey::Campaign(2), 10.0) < slots[1]);
        assert!(t.reserve(ThrottleKey::Account(1), 10.0) < slots[1]);
    }

    #[test]
    fn a_late_sender_catches_up_only_a_bounded_burst() {
        let t = LocalThrottle::default();
        let now = Instant::now();
        t.next
            .lock()
            .unwrap()
            .insert(ThrottleKey::Campaign(1), now - Duration::from_secs(60));
        let first = t.reserve(ThrottleKey::Campaign(1), 100.0);
        assert!(first >= now - CATCH_UP - Duration::from_millis(5));
    }
}
