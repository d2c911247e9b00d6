//! Fixed-window counters for login attempts: in memory for one node, in Redis when configured
//! so every node behind a load balancer shares the count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// Counts failures per key within a window.
#[derive(Clone)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    store: Store,
}

#[derive(Clone)]
enum Store {
    Memory(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl RateLimiter {
    /// An in-process limiter.
    pub fn memory(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            store: Store::Memory(Arc::default()),
        }
    }

    /// A limiter shared through Redis; keys are `<prefix>:login:<key>`.
    pub fn redis(max: u32, window: Duration, conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            max,
            window,
            store: Store::Redis {
                conn,
                prefix: format!("{prefix}:login:"),
            },
        }
    }

    /// Where the counters live, for `/ready` and logs.
    pub fn backend(&self) -> &'static str {
        match self.store {
            Store::Memory(_) => "memory",
            Store::Redis { .. } => "redis",
        }
    }

    /// `Err(seconds to wait)` when `key` has used up its attempts, scaled by `factor`
    /// (a per-address key allows more attempts than a per-address-and-e-mail key).
    pub async fn check(&self, key: &str, factor: u32) -> Result<(), u64> {
        let max = self.max.saturating_mul(factor);
        match &self.store {
            Store::Memory(map) => {
                let map = map.lock().expect("rate limiter lock");
                match map.get(key) {
                    Some((count, start)) if *count >= max && start.elapsed() < self.window => {
                        Err((self.window - start.elapsed()).as_secs().max(1))
                    }
                    _ => Ok(()),
                }
            }
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let redis_key = format!("{prefix}{key}");
                let (count, ttl): (Option<u32>, i64) = redis::pipe()
                    .get(&redis_key)
                    .ttl(&redis_key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or((None, -2));
                match count {
                    Some(c) if c >= max => Err(ttl.max(1) as u64),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Records a failed attempt for `key`.
    pub async fn hit(&self, key: &str) {
        match &self.store {
            Store::Memory(map) => {
                let mut map = map.lock().expect("rate limiter lock");
                if map.len() > 100_000 {
                    let window = self.window;
                    map.retain(|_, (_, start)| start.elapsed() < window);
                }
                let entry = map.entry(key.to_string()).or_insert((0, Instant::now()));
                if entry.1.elapsed() >= self.window {
                    *entry = (0, Instant::now());
                }
                entry.0 += 1;
            }
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let redis_key = format!("{prefix}{key}");
                let result: redis::RedisResult<()> = redis::pipe()
                    .incr(&redis_key, 1)
                    .ignore()
                    .cmd("expire")
                    .arg(&redis_key)
                    .arg(self.window.as_secs())
                    .arg("NX")
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "login rate limiter: redis unavailable");
                }
            }
        }
    }

    /// Forgets `key` (after a successful login).
    pub async fn clear(&self, key: &str) {
        match &self.store {
            Store::Memory(map) => {
                map.lock().expect("rate limiter lock").remove(key);
            }
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: redis::RedisResult<()> = redis::cmd("del")
                    .arg(format!("{prefix}{key}"))
                    .query_async(&mut conn)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_after_max_failures_and_clears_on_success() {
        let limiter = RateLimiter::memory(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check("k", 1).await.is_ok());
            limiter.hit("k").await;
        }
        let wait = limiter.check("k", 1).await.unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(
            limiter.check("k", 2).await.is_ok(),
            "a larger budget still has room"
        );
        assert!(limiter.check("other", 1).await.is_ok());
        limiter.clear("k").await;
        assert!(limiter.check("k", 1).await.is_ok());
    }

    #[tokio::test]
    async fn the_window_expires() {
        let limiter = RateLimiter::memory(1, Duration::from_millis(50));
        limiter.hit("k").await;
        assert!(limiter.check("k", 1).await.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(limiter.check("k", 1).await.is_ok());
    }
}
