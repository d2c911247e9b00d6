//! Background import workers: claim queued imports (or running ones whose worker died, once
//! their lease expires) and run them. `farol serve` starts `import.workers` of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::pipeline::{self, RunEnd, RunOptions};
use super::store;
use crate::config::ImportConfig;
use crate::db::Db;

/// Starts `config.workers` workers. They stop (after the batch in flight; the import goes
/// back to the queue) once `stop` is set and `wake` notified.
pub fn spawn(
    db: &Db,
    config: &ImportConfig,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
) -> Vec<JoinHandle<()>> {
    (0..config.workers)
        .map(|i| {
            let owner = format!("worker-{}-{i}", uuid::Uuid::new_v4().simple());
            let opts = RunOptions {
                batch_rows: config.batch_rows_for(db.backend()),
                lease: Duration::from_secs(config.lease_secs.max(1)),
            };
            tokio::spawn(work(db.clone(), owner, opts, stop.clone(), wake.clone()))
        })
        .collect()
}

async fn work(db: Db, owner: String, opts: RunOptions, stop: Arc<AtomicBool>, wake: Arc<Notify>) {
    let lease_ms = opts.lease.as_millis() as i64;
    while !stop.load(Ordering::Relaxed) {
        match store::claim(&db, &owner, lease_ms).await {
            Ok(Some(id)) => {
                tracing::info!(import = id, worker = %owner, "import started");
                match pipeline::run(&db, id, &owner, &opts, stop.clone(), &|_| {}).await {
                    Ok(RunEnd::Completed) => tracing::info!(import = id, "import completed"),
                    Ok(end) => tracing::info!(import = id, ?end, "import stopped"),
                    Err(e) => tracing::warn!(import = id, error = %e, "import failed"),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim imports"),
        }
        // Poll now and then for imports queued by other processes or whose lease expired.
        tokio::select! {
            _ = wake.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {},
        }
    }
}
