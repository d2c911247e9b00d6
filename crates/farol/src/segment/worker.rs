//! Segmentation workers: take queued runs (or runs whose worker died, once their lease
//! expires) and do them. `farol serve` and `farol worker` start `segment.workers` of them.
//!
//! A run is not resumable midway (clustering is one computation), so a taken-over run starts
//! again from the data lake; what a dead worker had written before (players brought in as
//! clients) is idempotent — the importer's re-import lineage makes the second pass a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{service, store};
use crate::config::Config;
use crate::db::Db;

/// Starts `config.segment.workers` workers. Once `stop` is set and `wake` notified, a worker
/// puts the run it holds back in the queue (another process starts it over) and returns.
pub fn spawn(
    db: &Db,
    config: &Arc<Config>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
) -> Vec<JoinHandle<()>> {
    (0..config.segment.workers)
        .map(|i| {
            let owner = format!("segment-{}-{i}", uuid::Uuid::new_v4().simple());
            tokio::spawn(work(
                db.clone(),
                config.clone(),
                owner,
                stop.clone(),
                wake.clone(),
            ))
        })
        .collect()
}

async fn work(
    db: Db,
    config: Arc<Config>,
    owner: String,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
) {
    let lease_ms = config.segment.lease_ms();
    let max_attempts = i64::from(config.segment.max_attempts.max(1));
    while !stop.load(Ordering::Relaxed) {
        match store::claim_run(&db, &owner, lease_ms, max_attempts).await {
            Ok(Some(run)) => {
                tracing::info!(run = run.id, attempt = run.attempts, worker = %owner, "segmentation started");
                let job = do_run(&db, &config, &owner, &run);
                tokio::pin!(job);
                let stopped = loop {
                    tokio::select! {
                        _ = &mut job => break false,
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    if stop.load(Ordering::Relaxed) {
                        break true;
                    }
                };
                if stopped {
                    // The clustering thread may still be busy; whatever it produces is
                    // discarded (the lease is no longer ours), and another worker starts over.
                    match db.pool().acquire().await {
                        Ok(mut conn) => {
                            if let Err(e) = store::release_run(&mut conn, run.id, &owner).await {
                                tracing::warn!(run = run.id, error = %e, "cannot put the segmentation run back in the queue");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(run = run.id, error = %e, "cannot put the segmentation run back in the queue")
                        }
                    }
                    tracing::info!(
                        run = run.id,
                        "segmentation put back in the queue (stopping)"
                    );
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim segmentation runs"),
        }
        // Poll now and then for runs queued by other processes or whose lease expired.
        tokio::select! {
            _ = wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {},
        }
    }
}

async fn do_run(db: &Db, config: &Config, owner: &str, run: &store::RunRow) {
    let (params, sources) = match service::stored_params(&run.params) {
        Ok(p) => p,
        Err(e) => {
            if let Ok(mut conn) = db.pool().acquire().await {
                let _ = store::fail_run(&mut conn, run.id, owner, &format!("{e:#}")).await;
            }
            return;
        }
    };
    match service::execute_run(
        db,
        config,
        run.account_id,
        run.created_by,
        run.id,
        owner,
        sources,
        params,
        |_| {},
    )
    .await
    {
        Ok(summary) => tracing::info!(
            run = run.id,
            clusters = summary.clusters.len(),
            "segmentation completed"
        ),
        Err(e) => tracing::warn!(run = run.id, error = %format!("{e:#}"), "segmentation failed"),
    }
}
