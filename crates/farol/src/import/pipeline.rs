//! Runs an import: read → normalize (all cores) → write batches, one transaction each.
//!
//! A reader thread streams records from the file, normalizes each batch in parallel (rayon)
//! and hands it to the writer over a bounded channel (two batches in flight: memory stays
//! flat whatever the file size). The writer commits each batch together with the import's
//! counters and its checkpoint (file, records consumed), so a crash loses at most the batch in
//! flight and a resumed run starts exactly after the last committed one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use farol_import::{Field, OpenOptions, ReadError, Record, Source};
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::mpsc;

use super::rows::{Candidate, Problem, RowContext, RowOutcome, normalize};
use super::store::{self, Counters, FileRow, ImportOptions, ImportRow, Status};
use super::writer::{self, BatchMeta, Caches};
use crate::audit::{self, Actor};
use crate::crm::custom_fields::{self, CustomField};
use crate::crm::search_index::Indexer;
use crate::db::{Db, DbError};

/// Why an import stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read (names the file and row).
    #[error("{0}")]
    Read(ReadError),
    /// The mapping does not fit a file.
    #[error("{file}: {message}")]
    Mapping {
        /// File name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] DbError),
}

/// How a run ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every file was read.
    Completed,
    /// A cancel was requested; committed batches stay.
    Cancelled,
    /// Asked to stop (shutdown): the import goes back to the queue and resumes later.
    Interrupted,
    /// Another worker took the import over (this one stalled past its lease).
    LeaseLost,
}

/// Tuning of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rows per batch/transaction.
    pub batch_rows: usize,
    /// Lease length.
    pub lease: Duration,
}

/// What a progress observer sees after each batch.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Counters so far.
    pub counters: Counters,
    /// 0.0–1.0 over all files.
    pub fraction: f64,
    /// File being read.
    pub file: String,
    /// Rows per second in this run.
    pub rows_per_sec: f64,
    /// Seconds left, estimated.
    pub eta_secs: Option<f64>,
}

struct ReadBatch {
    outcomes: Vec<RowOutcome>,
    /// Records consumed since the start of the file (blank ones included).
    consumed: u64,
    /// Fraction of the file read.
    fraction: Option<f64>,
}

/// Resolves a file's mapping: proposal from headers, then the import's overrides.
pub fn resolve_mapping(
    file: &str,
    headers: &[String],
    options: &ImportOptions,
    custom: &BTreeMap<String, CustomField>,
) -> Result<Vec<Option<Field>>, ImportError> {
    let keys: Vec<String> = custom.keys().cloned().collect();
    let mut mapping = farol_import::propose(headers, &keys);
    let overrides = farol_import::resolve_overrides(
        options
            .mapping
            .iter()
            .map(|e| (e.column.as_str(), e.field.as_str())),
        headers,
    )
    .map_err(|e| ImportError::Mapping {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    farol_import::apply_overrides(&mut mapping, &overrides);
    for (i, f) in mapping.iter().enumerate() {
        if let Some(Field::Custom(key)) = f
            && !custom.contains_key(key)
        {
            return Err(ImportError::Mapping {
                file: file.to_owned(),
                message: format!(
                    "column {:?} maps to cf.{key}, but there is no custom field `{key}` (create it first, or map the column to another field)",
                    headers[i].trim()
                ),
            });
        }
    }
    if !mapping
        .iter()
        .any(|f| matches!(f, Some(Field::Phone | Field::Email)))
    {
        return Err(ImportError::Mapping {
            file: file.to_owned(),
            message: format!(
                "no column maps to phone or email, so no row could be imported; columns: {} (map one, e.g. --map \"Telefone=phone\")",
                headers
                    .iter()
                    .map(|h| format!("{:?}", h.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(mapping)
}

/// Opening options from the import's options.
pub fn open_options(options: &ImportOptions) -> Result<OpenOptions, String> {
    let delimiter = match options.delimiter.as_deref() {
        None | Some("") => None,
        Some("\\t") | Some("tab") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => {
            return Err(format!(
                "delimiter must be one character (or \"tab\"), got {d:?}"
            ));
        }
    };
    let encoding = options
        .encoding
        .as_deref()
        .filter(|e| !e.is_empty())
        .map(str::parse)
        .transpose()?;
    Ok(OpenOptions {
        sheet: options.sheet.clone(),
        delimiter,
        encoding,
    })
}

/// Opens a stored file, naming it by its original name in errors.
pub fn open_file(path: &str, name: &str, options: &OpenOptions) -> Result<Source, ImportError> {
    farol_import::open(Path::new(path), options).map_err(|mut e| {
        e.file = Some(name.to_owned());
        ImportError::Read(e)
    })
}

/// Runs (or resumes) import `id`, which `owner` has claimed.
pub async fn run(
    db: &Db,
    id: i64,
    owner: &str,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
    on_progress: &(dyn Fn(&Snapshot) + Send + Sync),
) -> Result<RunEnd, ImportError> {
    let mut conn = db.pool().acquire().await.map_err(DbError::from)?;
    let row = store::get_any(&mut conn, id).await?;
    let files = store::files(&mut conn, id).await?;
    let custom = custom_fields::definitions(&mut conn, row.account_id).await?;
    let samples = store::issue_count(&mut conn, id).await?;
    drop(conn);

    // Renew the lease while batches are slow (a huge first read, a slow disk).
    let renewer = {
        let db = db.clone();
        let owner = owner.to_owned();
        let lease = opts.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if !matches!(
                    store::renew_lease(&db, id, &owner, lease.as_millis() as i64).await,
                    Ok(true)
                ) {
                    break;
                }
            }
        })
    };
    let mut indexer = Indexer::start(db);
    let result = run_files(
        db,
        &mut indexer,
        &row,
        &files,
        &custom,
        samples,
        owner,
        opts,
        stop,
        on_progress,
    )
    .await;
    renewer.abort();
    // Every committed batch searchable before the job says how it ended.
    let indexed = indexer.finish(row.account_id).await;
    if result.is_ok() {
        indexed?;
    } else if let Err(e) = indexed {
        tracing::warn!(import_id = id, error = %e, "search indexing after a failed import");
    }
    let mut conn = db.pool().acquire().await.map_err(DbError::from)?;
    match &result {
        Ok(RunEnd::Completed) => {
            store::finish(&mut conn, id, owner, Status::Completed, None).await?;
            let mut tx = db.begin().await?;
            let done = store::get_any(&mut tx, id).await?;
            audit::record(
                &mut tx,
                &Actor::system(row.account_id, "import"),
                "import.completed",
                "import",
                id,
                None::<&()>,
                Some(&Counters::of(&done)),
            )
            .await?;
            tx.commit().await.map_err(DbError::from)?;
        }
        Ok(RunEnd::Cancelled) => {
            store::finish(&mut conn, id, owner, Status::Cancelled, None).await?;
        }
        Ok(RunEnd::Interrupted) => {
            // Back to the queue with the checkpoint: the next worker resumes at once.
            sqlx::query(
                "update imports set status = 'queued', lease_owner = null, lease_until = null where id = $1 and lease_owner = $2",
            )
            .bind(id)
            .bind(owner.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(DbError::from)?;
        }
        Ok(RunEnd::LeaseLost) => {}
        Err(e) => {
            store::finish(&mut conn, id, owner, Status::Failed, Some(&e.to_string())).await?;
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_files(
    db: &Db,
    indexer: &mut Indexer,
    row: &ImportRow,
    files: &[FileRow],
    custom: &BTreeMap<String, CustomField>,
    mut samples: i64,
    owner: &str,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
    on_progress: &(dyn Fn(&Snapshot) + Send + Sync),
) -> Result<RunEnd, ImportError> {
    let options = row.options();
    let open_opts = open_options(&options).map_err(|message| ImportError::Mapping {
        file: files.first().map(|f| f.name.clone()).unwrap_or_default(),
        message,
    })?;
    let mut counters = Counters::of(row);
    let mut caches = Caches::default();
    caches.field_ids = custom.iter().map(|(k, f)| (k.clone(), f.id)).collect();
    {
        // Sized for about one key per 20 bytes of input (a phone or e-mail plus a name is
        // rarely shorter); a file with more keys only gets more "maybe" answers.
        let bytes: u64 = files
            .iter()
            .map(|f| match f.size {
                Some(size) => size.max(0) as u64,
                None => std::fs::metadata(&f.path).map_or(0, |m| m.len()),
            })
            .sum();
        let mut conn = db.pool().acquire().await.map_err(DbError::from)?;
        caches
            .load_known_keys(&mut conn, row.account_id, bytes / 20)
            .await?;
    }
    let started = Instant::now();
    let rows_at_start = counters.rows_read;
    let lease_ms = opts.lease.as_millis() as i64;
    let nfiles = files.len().max(1) as f64;

    for file in files.iter().skip(row.checkpoint_file as usize) {
        let skip = if file.position == row.checkpoint_file {
            row.checkpoint_rows as u64
        } else {
            0
        };
        let (path, name, oo) = (file.path.clone(), file.name.clone(), open_opts.clone());
        let source = tokio::task::spawn_blocking(move || open_file(&path, &name, &oo))
            .await
            .expect("opening a file does not panic")?;
        let mapping = resolve_mapping(&file.name, source.headers(), &options, custom)?;
        let ctx = RowContext {
            headers: source.headers().to_vec(),
            mapping,
            custom_fields: custom.clone().into_iter().collect::<HashMap<_, _>>(),
            default_portfolio: options.portfolio.clone(),
        };
        let (tx, mut rx) = mpsc::channel::<Result<ReadBatch, ImportError>>(2);
        let batch_rows = opts.batch_rows.max(1);
        let file_name = file.name.clone();
        let reader = std::thread::Builder::new()
            .name("farol-import-reader".into())
            .spawn(move || read_file(source, ctx, skip, batch_rows, &file_name, tx))
            .expect("spawning a thread");
        let meta = BatchMeta {
            account_id: row.account_id,
            import_id: row.id,
            created_by: row.created_by,
            dedupe: row.dedupe(),
            file: &file.name,
        };
        let mut end = None;
        let (mut waited, mut writing) = (Duration::ZERO, Duration::ZERO);
        let mut wait_start = Instant::now();
        while let Some(msg) = rx.recv().await {
            waited += wait_start.elapsed();
            let write_start = Instant::now();
            let batch = match msg {
                Ok(b) => b,
                Err(e) => {
                    end = Some(Err(e));
                    break;
                }
            };
            if stop.load(Ordering::Relaxed) {
                end = Some(Ok(RunEnd::Interrupted));
                break;
            }
            match write_one(
                db,
                indexer,
                &meta,
                &mut caches,
                &mut counters,
                &mut samples,
                owner,
                lease_ms,
                file.position,
                batch.consumed as i64,
                (file.position as f64 + batch.fraction.unwrap_or(0.0)) / nfiles,
                batch.outcomes,
            )
            .await?
            {
                Some(stopped) => {
                    end = Some(Ok(stopped));
                    break;
                }
                None => {
                    writing += write_start.elapsed();
                    wait_start = Instant::now();
                    let fraction = (file.position as f64 + batch.fraction.unwrap_or(0.0)) / nfiles;
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    let rate = (counters.rows_read - rows_at_start) as f64 / secs;
                    let done_here = fraction - (row.progress_done as f64 / 1e6);
                    let eta = (done_here > 0.0).then(|| secs * (1.0 - fraction) / done_here);
                    on_progress(&Snapshot {
                        counters: counters.clone(),
                        fraction,
                        file: file.name.clone(),
                        rows_per_sec: rate,
                        eta_secs: eta,
                    });
                }
            }
        }
        drop(rx);
        let _ = reader.join();
        // Where the time went: a writer that mostly waits means reading/normalizing is the
        // bottleneck, and the other way round.
        tracing::info!(
            import = row.id,
            file = %file.name,
            writer_busy_secs = writing.as_secs_f64(),
            writer_waiting_for_rows_secs = waited.as_secs_f64(),
            "file read"
        );
        if let Some(end) = end {
            return end;
        }
        // The file is done: the next run starts at the next file.
        let mut tx = db.begin().await?;
        if !store::save_progress(
            &mut tx,
            row.id,
            owner,
            &counters,
            file.position + 1,
            0,
            (((file.position + 1) as f64 / nfiles) * 1e6) as i64,
            lease_ms,
        )
        .await?
        {
            return Ok(RunEnd::LeaseLost);
        }
        tx.commit().await.map_err(DbError::from)?;
    }
    Ok(RunEnd::Completed)
}

fn read_file(
    mut source: Source,
    ctx: RowContext,
    skip: u64,
    batch_rows: usize,
    file: &str,
    tx: mpsc::Sender<Result<ReadBatch, ImportError>>,
) {
    let mut consumed: u64 = 0;
    let mut buf: Vec<Record> = Vec::with_capacity(batch_rows);
    let send = |buf: &mut Vec<Record>, consumed: u64, fraction: Option<f64>| {
        let outcomes: Vec<RowOutcome> = buf.par_iter().map(|r| normalize(r, &ctx)).collect();
        buf.clear();
        tx.blocking_send(Ok(ReadBatch {
            outcomes,
            consumed,
            fraction,
        }))
        .is_ok()
    };
    while let Some(record) = source.next() {
        match record {
            Ok(r) => {
                consumed += 1;
                if consumed <= skip {
                    continue;
                }
                buf.push(r);
                if buf.len() >= batch_rows
                    && !send(&mut buf, consumed, source.progress().fraction())
                {
                    return;
                }
            }
            Err(mut e) => {
                e.file = Some(file.to_owned());
                let _ = tx.blocking_send(Err(ImportError::Read(e)));
                return;
            }
        }
    }
    if !buf.is_empty() || consumed <= skip {
        send(&mut buf, consumed, Some(1.0));
    }
}

/// Writes one batch with its counters and checkpoint; retries when a concurrent writer
/// (an API call outside the import lock) took a key first. `Some(end)` stops the run.
#[allow(clippy::too_many_arguments)]
async fn write_one(
    db: &Db,
    indexer: &mut Indexer,
    meta: &BatchMeta<'_>,
    caches: &mut Caches,
    counters: &mut Counters,
    samples: &mut i64,
    owner: &str,
    lease_ms: i64,
    file_position: i64,
    consumed: i64,
    fraction: f64,
    outcomes: Vec<RowOutcome>,
) -> Result<Option<RunEnd>, ImportError> {
    let mut base = counters.clone();
    let mut valid: Vec<Candidate> = Vec::with_capacity(outcomes.len());
    let mut problems: Vec<(u64, Problem)> = Vec::new();
    for outcome in outcomes {
        match outcome {
            RowOutcome::Blank => {}
            RowOutcome::Valid(c, warnings) => {
                base.rows_read += 1;
                let row = c.row;
                valid.push(*c);
                for w in warnings {
                    base.warnings += 1;
                    *base.reasons.entry(w.code.clone()).or_default() += 1;
                    problems.push((row, w));
                }
            }
            RowOutcome::Invalid(row, ps) => {
                base.rows_read += 1;
                base.invalid += 1;
                for p in ps {
                    *base.reasons.entry(p.code.clone()).or_default() += 1;
                    problems.push((row, p));
                }
            }
        }
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = writer::begin_batch(db, meta.account_id).await?;
        if store::cancel_requested(&mut tx, meta.import_id).await? {
            return Ok(Some(RunEnd::Cancelled));
        }
        let mut outcome =
            match writer::write_batch(&mut tx, db.backend(), meta, caches, &valid).await {
                Ok(o) => o,
                Err(e) if writer::should_retry(&e, attempt, caches) => continue,
                Err(e) => return Err(e.into()),
            };
        let written = std::mem::take(&mut outcome.written);
        let mut next = base.clone();
        let mut batch_problems = problems.clone();
        batch_problems.extend(next.absorb(outcome));
        batch_problems.sort_by_key(|(row, _)| *row);
        let room = (store::MAX_SAMPLES - *samples).max(0) as usize;
        batch_problems.truncate(room);
        if !batch_problems.is_empty() {
            store::add_issues(
                &mut tx,
                db.backend(),
                meta.import_id,
                meta.file,
                &batch_problems,
            )
            .await?;
        }
        if !store::save_progress(
            &mut tx,
            meta.import_id,
            owner,
            &next,
            file_position,
            consumed,
            (fraction * 1e6) as i64,
            lease_ms,
        )
        .await?
        {
            return Ok(Some(RunEnd::LeaseLost));
        }
        match tx.commit().await {
            Ok(()) => {}
            Err(e) => return Err(DbError::from(e).into()),
        }
        *samples += batch_problems.len() as i64;
        *counters = next;
        indexer.add(written).await?;
        return Ok(None);
    }
}
