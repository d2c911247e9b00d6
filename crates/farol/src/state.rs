//! The state shared by every request handler.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;

use crate::auth::password::HashCost;
use crate::auth::ratelimit::RateLimiter;
use crate::auth::token::TokenKeys;
use crate::config::Config;
use crate::db::Db;

/// Cheap to clone: everything inside is a handle.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// Configuration in effect.
    pub config: Arc<Config>,
    /// Access-token keys.
    pub tokens: Arc<TokenKeys>,
    /// Login attempt limiter.
    pub login_limiter: RateLimiter,
    /// Argon2 cost for new password hashes.
    pub hash_cost: HashCost,
    /// Redis, when configured.
    pub redis: Option<ConnectionManager>,
    /// Prometheus registry renderer.
    pub metrics: PrometheusHandle,
    /// Decoy password hash for logins with unknown e-mails, made on first use.
    pub decoy: Arc<tokio::sync::OnceCell<String>>,
    /// Wakes the import workers when an import is queued.
    pub import_wake: Arc<tokio::sync::Notify>,
    /// Wakes the segmentation workers (a run was queued, or the process is stopping).
    pub segment_wake: Arc<tokio::sync::Notify>,
    /// Cache of hot segmentation reads.
    pub segment_cache: crate::segment::cache::SegmentCache,
    /// Channel adapters campaigns send through.
    pub channels: crate::campaign::Channels,
    /// Wakes the send workers when a campaign is launched or resumed.
    pub campaign_wake: Arc<tokio::sync::Notify>,
    /// Encrypts and decrypts channel account secrets.
    pub secrets: Arc<farol_channels::credentials::CredentialCipher>,
}

impl AppState {
    /// The decoy hash (see [`crate::auth::password::decoy`]), computed once per process.
    pub async fn decoy_hash(&self) -> anyhow::Result<String> {
        let cost = self.hash_cost;
        self.decoy
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || crate::auth::password::decoy(cost)).await?
            })
            .await
            .cloned()
    }
}
