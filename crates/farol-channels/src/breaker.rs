//! A circuit breaker per provider: after `failure_threshold` consecutive transient failures it
//! opens and rejects calls for `cool_down`, then lets one probe through (half-open); the probe's
//! outcome closes it again or re-opens it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A monotonic clock, injectable so tests do not sleep.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected until the cool-down ends.
    Open,
    /// One probe call is allowed; others are rejected until it reports.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// A thread-safe circuit breaker.
pub struct CircuitBreaker {
    failure_threshold: u32,
    cool_down: Duration,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("failure_threshold", &self.failure_threshold)
            .field("cool_down", &self.cool_down)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker on the system clock.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        Self::with_clock(failure_threshold, cool_down, Arc::new(SystemClock))
    }

    /// A closed breaker on the given clock.
    pub fn with_clock(failure_threshold: u32, cool_down: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cool_down,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state (an open breaker whose cool-down has passed reads as half-open).
    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open if self.cooled_down(&inner) => BreakerState::HalfOpen,
            state => state,
        }
    }

    fn cooled_down(&self, inner: &Inner) -> bool {
        inner
            .opened_at
            .is_some_and(|at| self.clock.now().saturating_duration_since(at) >= self.cool_down)
    }

    /// Asks to make a call. `Err(remaining)` means rejected, with how long until a probe may go.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                if self.cooled_down(&inner) {
                    inner.state = BreakerState::HalfOpen;
                    inner.probe_in_flight = true;
                    Ok(())
                } else {
                    let elapsed = inner.opened_at.map_or(Duration::ZERO, |at| {
                        self.clock.now().saturating_duration_since(at)
                    });
                    Err(self.cool_down.saturating_sub(elapsed))
                }
            }
            BreakerState::HalfOpen => {
                if inner.probe_in_flight {
                    Err(Duration::ZERO)
                } else {
                    inner.probe_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    /// Reports a successful call: closes the breaker. True when this closed a breaker that was
    /// open (or half-open): the provider recovered, worth telling an operator once.
    pub fn record_success(&self) -> bool {
        let mut inner = self.lock();
        let was_open = inner.state != BreakerState::Closed;
        inner.state = BreakerState::Closed;
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.probe_in_flight = false;
        was_open
    }

    /// Reports a failed call (only transient failures should count: a bad address says nothing
    /// about the provider's health). True when this failure opened a closed breaker; a failed
    /// probe re-opening a half-open one is the same outage and returns false.
    pub fn record_failure(&self) -> bool {
        let mut inner = self.lock();
        inner.probe_in_flight = false;
        match inner.state {
            BreakerState::HalfOpen => {
                inner.state = BreakerState::Open;
                inner.opened_at = Some(self.clock.now());
                false
            }
            BreakerState::Closed => {
                inner.consecutive_failures += 1;
                if inner.consecutive_failures >= self.failure_threshold {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(self.clock.now());
                    true
                } else {
                    false
                }
            }
            BreakerState::Open => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn breaker() -> (CircuitBreaker, Arc<FakeClock>) {
        let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
        (
            CircuitBreaker::with_clock(3, Duration::from_secs(30), clock.clone()),
            clock,
        )
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let (b, _) = breaker();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_ok());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), Err(Duration::from_secs(30)));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let (b, _) = breaker();
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_one_probe_then_closes_on_success() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure();
        }
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.try_acquire(), Err(Duration::from_secs(20)));
        clock.advance(Duration::from_secs(20));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().is_ok());
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn transitions_are_reported_once_per_outage() {
        let (b, clock) = breaker();
        assert!(!b.record_failure());
        assert!(!b.record_failure());
        assert!(b.record_failure(), "the third failure opens it");
        assert!(!b.record_failure(), "already open");
        clock.advance(Duration::from_secs(31));
        assert!(b.try_acquire().is_ok());
        assert!(!b.record_failure(), "a failed probe is the same outage");
        clock.advance(Duration::from_secs(31));
        assert!(b.try_acquire().is_ok());
        assert!(b.record_success(), "the probe's success closes it");
        assert!(!b.record_success(), "already closed");
    }

    #[test]
    fn failed_probe_reopens_for_a_full_cool_down() {
        let (b, clock) = breaker();
        for _ in 0..3 {
            b.record_failure();
        }
        clock.advance(Duration::from_secs(31));
        assert!(b.try_acquire().is_ok());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), Err(Duration::from_secs(30)));
    }
}
