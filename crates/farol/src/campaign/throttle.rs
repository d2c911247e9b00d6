//! Per-campaign send pacing. [`Throttle`] is the seam: [`LocalThrottle`] paces the workers of
//! one process; a Redis implementation can pace several processes behind the same trait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use farol_channels::BoxFuture;
use tokio::time::Instant;

/// Hands out send slots at a rate.
pub trait Throttle: Send + Sync {
    /// Waits for the next slot of `key` (a campaign) at `per_sec` messages per second.
    fn acquire(&self, key: i64, per_sec: f64) -> BoxFuture<'_, ()>;
}

/// How far a late sender may catch up: after a stall (a claim, a slow database write) the
/// next slots come back to back until the schedule is met, but never more than this much
/// time's worth of messages at once.
const CATCH_UP: Duration = Duration::from_millis(200);

/// In-process pacing, shared by every worker of the process: the slots of a key are spaced
/// `1 / per_sec` apart (a virtual-schedule token bucket, burst of one).
#[derive(Debug, Default)]
pub struct LocalThrottle {
    next: Mutex<HashMap<i64, Instant>>,
}

impl LocalThrottle {
    /// Reserves the next slot of `key` and returns when it is.
    fn reserve(&self, key: i64, per_sec: f64) -> Instant {
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
    fn acquire(&self, key: i64, per_sec: f64) -> BoxFuture<'_, ()> {
        let slot = self.reserve(key, per_sec);
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_rate_and_keys_are_independent() {
        let t = LocalThrottle::default();
        let slots: Vec<Instant> = (0..11).map(|_| t.reserve(1, 10.0)).collect();
        for pair in slots.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(100));
        }
        // Another key starts now, not after key 1's schedule.
        assert!(t.reserve(2, 10.0) < slots[1]);
    }

    #[test]
    fn a_late_sender_catches_up_only_a_bounded_burst() {
        let t = LocalThrottle::default();
        let now = Instant::now();
        t.next
            .lock()
            .unwrap()
            .insert(1, now - Duration::from_secs(60));
        let first = t.reserve(1, 100.0);
        assert!(first >= now - CATCH_UP - Duration::from_millis(5));
    }
}
