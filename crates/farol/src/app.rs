//! Wiring: configuration in, a running server out. Tests use the same seam with a listener on
//! port 0 and their own shutdown future.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::password::HashCost;
use crate::auth::ratelimit::RateLimiter;
use crate::auth::token::TokenKeys;
use crate::config::Config;
use crate::db::Db;
use crate::state::AppState;

/// A configured application, ready to serve.
pub struct App {
    /// Shared state (also used by CLI commands that do not serve).
    pub state: AppState,
}

impl App {
    /// Connects to the database (migrating it) and to Redis when configured.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let db = Db::connect(&config.database_url(), config.database.max_connections)
            .await
            .context("connecting to the database")?;
        crate::campaign::audiences::set_score_classes(
            config.campaign.score_hot_min,
            config.campaign.score_warm_min,
        );
        db.migrate().await.context("applying database migrations")?;

        let secret = match config.auth.jwt_secret.expose_secret() {
            "" => crate::auth::load_or_create_jwt_secret(&db)
                .await
                .context("loading the token signing key")?,
            configured if configured.len() < 32 => {
                anyhow::bail!(
                    "configuration error: key `auth.jwt_secret`: must have at least 32 characters"
                )
            }
            configured => configured.to_string(),
        };
        let tokens = Arc::new(TokenKeys::new(
            secret.as_bytes(),
            config.auth.access_token_ttl_secs as i64,
        ));

        let redis = match config.redis.url.expose_secret() {
            "" => None,
            url => {
                let client = redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("configuration error: key `redis.url`: {e}"))?;
                let conn =
                    tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
                        .await
                        .map_err(|_| {
                            anyhow::anyhow!("Redis is configured but did not answer within 5 s")
                        })?
                        .map_err(|e| anyhow::anyhow!("Redis is configured but unreachable: {e}"))?;
                Some(conn)
            }
        };
        let window = Duration::from_secs(config.auth.login_window_secs);
        let login_limiter = match &redis {
            Some(conn) => RateLimiter::redis(
                config.auth.login_max_attempts,
                window,
                conn.clone(),
                &config.redis.key_prefix,
            ),
            None => RateLimiter::memory(config.auth.login_max_attempts, window),
        };
        let hash_cost = HashCost {
            memory_kib: config.auth.argon2_memory_kib,
            iterations: config.auth.argon2_iterations,
        };
        let segment_cache =
            crate::segment::cache::SegmentCache::new(redis.clone(), &config.redis.key_prefix);
        let secrets = Arc::new(crate::channels::load_or_create_key(&config)?);
        let registry = Arc::new(crate::channels::registry::Registry::new(
            db.clone(),
            secrets.clone(),
            &config,
        ));
        let channels = crate::campaign::Channels::from_config(&config)?.with_registry(registry);
        let state = AppState {
            db,
            config: Arc::new(config),
            tokens,
            login_limiter,
            hash_cost,
            redis,
            metrics: crate::ops::metrics_handle(),
            decoy: Arc::default(),
            import_wake: Arc::default(),
            segment_wake: Arc::default(),
            segment_cache,
            channels,
            campaign_wake: Arc::default(),
            secrets,
        };
        Ok(App { state })
    }

    /// Serves on `listener` until `shutdown` completes, then drains in-flight requests and
    /// closes the database pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wake = self.state.import_wake.clone();
        let workers = crate::import::worker::spawn(
            &db,
            &self.state.config.import,
            stop.clone(),
            wake.clone(),
        );
        let schedule =
            crate::segment::schedule::spawn(db.clone(), self.state.config.clone(), stop.clone());
        let segment_wake = self.state.segment_wake.clone();
        let segment_workers = crate::segment::worker::spawn(
            &db,
            &self.state.config,
            stop.clone(),
            segment_wake.clone(),
        );
        let send_workers = crate::campaign::worker::spawn(
            &db,
            &self.state.channels,
            crate::campaign::throttle::for_process(
                self.state.redis.clone(),
                &self.state.config.redis.key_prefix,
            ),
            &self.state.config,
            stop.clone(),
            self.state.campaign_wake.clone(),
        );
        let campaign_wake = self.state.campaign_wake.clone();
        let router = crate::api::router(self.state);
        tracing::info!(address = %listener.local_addr()?, backend = db.backend().name(), "serving");
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        // Workers finish the batch in flight; their imports go back to the queue.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        wake.notify_waiters();
        campaign_wake.notify_waiters();
        segment_wake.notify_waiters();
        // Send workers finish the sends in flight; claimed recipients not yet started go back
        // to the queue.
        for w in workers
            .into_iter()
            .chain(send_workers)
            .chain(segment_workers)
        {
            let _ = w.await;
        }
        if let Some(s) = schedule {
            s.abort();
        }
        db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
