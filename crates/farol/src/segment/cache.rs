//! Cache of the hot segmentation reads (`GET /clusters`, `GET /users/{id}/segment`): Redis when
//! configured (shared by every node), else in process.
//!
//! Keys name the account, the active run and a version bumped by renames, so a new active run
//! or a rename is never served stale: `<prefix>:segment:<account>:<run>:<version>:<what>`.
//! Entries expire after ten minutes either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

const TTL_SECS: u64 = 600;
const LOCAL_MAX: usize = 10_000;

/// The cache, cheap to clone.
#[derive(Clone, Default)]
pub struct SegmentCache {
    redis: Option<ConnectionManager>,
    prefix: String,
    local: Arc<Mutex<Local>>,
}

#[derive(Default)]
struct Local {
    versions: HashMap<i64, u64>,
    entries: HashMap<String, (std::time::Instant, String)>,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache")
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

impl SegmentCache {
    /// A cache over Redis (when given) under `prefix`.
    pub fn new(redis: Option<ConnectionManager>, prefix: &str) -> SegmentCache {
        SegmentCache {
            redis,
            prefix: prefix.to_owned(),
            local: Arc::default(),
        }
    }

    fn version_key(&self, account_id: i64) -> String {
        format!("{}:segment:{account_id}:version", self.prefix)
    }

    async fn version(&self, account_id: i64) -> u64 {
        if let Some(r) = &self.redis {
            let mut r = r.clone();
            let v: redis::RedisResult<Option<u64>> = r.get(self.version_key(account_id)).await;
            return v.ok().flatten().unwrap_or(0);
        }
        let local = self.local.lock().expect("cache lock");
        local.versions.get(&account_id).copied().unwrap_or(0)
    }

    /// The key of `what` for the account's active run.
    pub async fn key(&self, account_id: i64, run_id: i64, what: &str) -> String {
        let v = self.version(account_id).await;
        format!("{}:segment:{account_id}:{run_id}:{v}:{what}", self.prefix)
    }

    /// A cached value.
    pub async fn get(&self, key: &str) -> Option<String> {
        if let Some(r) = &self.redis {
            let mut r = r.clone();
            return r.get::<_, Option<String>>(key).await.ok().flatten();
        }
        let local = self.local.lock().expect("cache lock");
        local
            .entries
            .get(key)
            .filter(|(at, _)| at.elapsed().as_secs() < TTL_SECS)
            .map(|(_, v)| v.clone())
    }

    /// Stores a value (errors only cost a miss next time).
    pub async fn set(&self, key: &str, value: &str) {
        if let Some(r) = &self.redis {
            let mut r = r.clone();
            let res: redis::RedisResult<()> = r.set_ex(key, value, TTL_SECS).await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "segment cache: redis unavailable");
            }
            return;
        }
        let mut local = self.local.lock().expect("cache lock");
        if local.entries.len() >= LOCAL_MAX {
            local.entries.clear();
        }
        local.entries.insert(
            key.to_owned(),
            (std::time::Instant::now(), value.to_owned()),
        );
    }

    /// Makes every cached read of the account stale (a cluster was renamed).
    pub async fn invalidate(&self, account_id: i64) {
        if let Some(r) = &self.redis {
            let mut r = r.clone();
            let res: redis::RedisResult<u64> = r.incr(self.version_key(account_id), 1).await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "segment cache: redis unavailable");
            }
            return;
        }
        let mut local = self.local.lock().expect("cache lock");
        *local.versions.entry(account_id).or_default() += 1;
        local.entries.clear();
    }
}
