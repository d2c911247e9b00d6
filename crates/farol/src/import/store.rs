//! The `imports`, `import_files`, `import_issues` and `import_presets` tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::rows::Problem;
use super::writer::Dedupe;
use crate::db::{Db, DbResult, Tx, now_ms};

/// Where an import is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its files' bytes.
    Uploading,
    /// Ready; a worker will pick it up.
    Queued,
    /// A worker is reading it.
    Running,
    /// Every row was read.
    Completed,
    /// Stopped by an error (see `error`); committed batches stay.
    Failed,
    /// Stopped on request; committed batches stay.
    Cancelled,
}

impl Status {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Uploading => "uploading",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "uploading" => Status::Uploading,
            "queued" => Status::Queued,
            "running" => Status::Running,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            _ => Status::Failed,
        }
    }
}

/// One column override: `column` (a header) feeds `field` (`name`, `phone`, `cf.<key>`,
/// `ignore`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MappingEntry {
    /// Header of the source column.
    pub column: String,
    /// Farol field, or `ignore`.
    pub field: String,
}

/// How to read the files; stored with the import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportOptions {
    /// Overrides of the proposed mapping.
    pub mapping: Vec<MappingEntry>,
    /// Portfolio for rows without one.
    pub portfolio: Option<String>,
    /// XLSX sheet name (default: the first).
    pub sheet: Option<String>,
    /// CSV delimiter (default: sniffed).
    pub delimiter: Option<String>,
    /// CSV encoding: `utf-8`, `windows-1252`, `utf-16` (default: sniffed).
    pub encoding: Option<String>,
}

/// An import as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// Starter.
    pub created_by: Option<i64>,
    /// Status name.
    pub status: String,
    /// Dedupe policy name.
    pub dedupe: String,
    /// Options JSON.
    pub options: String,
    /// Rows read (not counting blank ones).
    pub rows_read: i64,
    /// New clients.
    pub rows_imported: i64,
    /// Updated clients.
    pub rows_updated: i64,
    /// Matched, nothing to change.
    pub rows_unchanged: i64,
    /// Invalid rows.
    pub rows_invalid: i64,
    /// Duplicate rows.
    pub rows_duplicate: i64,
    /// Warnings.
    pub warnings: i64,
    /// Reason counts JSON.
    pub reasons: String,
    /// Resume point: file.
    pub checkpoint_file: i64,
    /// Resume point: records of that file done.
    pub checkpoint_rows: i64,
    /// Progress in millionths.
    pub progress_done: i64,
    /// Cancel asked.
    pub cancel_requested: i64,
    /// Error message.
    pub error: Option<String>,
    /// Worker holding it.
    pub lease_owner: Option<String>,
    /// Lease end (epoch ms).
    pub lease_until: Option<i64>,
    /// Start (epoch ms).
    pub started_at: Option<i64>,
    /// End (epoch ms).
    pub finished_at: Option<i64>,
    /// Creation (epoch ms).
    pub created_at: i64,
    /// Last change (epoch ms).
    pub updated_at: i64,
}

impl ImportRow {
    /// The status.
    pub fn status(&self) -> Status {
        Status::parse(&self.status)
    }

    /// The dedupe policy.
    pub fn dedupe(&self) -> Dedupe {
        Dedupe::parse(&self.dedupe).unwrap_or_default()
    }

    /// The options.
    pub fn options(&self) -> ImportOptions {
        serde_json::from_str(&self.options).unwrap_or_default()
    }

    /// Reason counts.
    pub fn reasons(&self) -> BTreeMap<String, u64> {
        serde_json::from_str(&self.reasons).unwrap_or_default()
    }
}

const IMPORT_COLUMNS: &str = "id, account_id, created_by, status, dedupe, options, rows_read, rows_imported, \
    rows_updated, rows_unchanged, rows_invalid, rows_duplicate, warnings, reasons, checkpoint_file, \
    checkpoint_rows, progress_done, cancel_requested, error, lease_owner, lease_until, started_at, \
    finished_at, created_at, updated_at";

/// A file of an import.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    /// Position in the import (0-based).
    pub position: i64,
    /// Original file name.
    pub name: String,
    /// Where the bytes are.
    pub path: String,
    /// Expected size (uploads).
    pub size: Option<i64>,
    /// Bytes received (uploads).
    pub received: i64,
}

/// A file to register with a new import.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Original name.
    pub name: String,
    /// Storage path.
    pub path: String,
    /// Expected size for uploads; `None` for local files.
    pub size: Option<i64>,
}

/// Creates an import and its files.
pub async fn create(
    tx: &mut Tx,
    account_id: i64,
    created_by: Option<i64>,
    status: Status,
    dedupe: Dedupe,
    options: &ImportOptions,
    files: &[NewFile],
) -> DbResult<i64> {
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "insert into imports (account_id, created_by, status, dedupe, options, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $6) returning id",
    )
    .bind(account_id)
    .bind(created_by)
    .bind(status.as_str())
    .bind(dedupe.as_str())
    .bind(serde_json::to_string(options).expect("options serialize"))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    for (i, f) in files.iter().enumerate() {
        sqlx::query(
            "insert into import_files (import_id, position, name, path, size) values ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(i as i64)
        .bind(f.name.clone())
        .bind(f.path.clone())
        .bind(f.size)
        .execute(&mut **tx)
        .await?;
    }
    Ok(id)
}

/// Sets the storage path of a file (uploads are stored under the import's id).
pub async fn set_file_path(tx: &mut Tx, import_id: i64, position: i64, path: &str) -> DbResult<()> {
    sqlx::query("update import_files set path = $1 where import_id = $2 and position = $3")
        .bind(path.to_owned())
        .bind(import_id)
        .bind(position)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One import of an account.
pub async fn get(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<ImportRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {IMPORT_COLUMNS} from imports where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// One import, whatever its account (workers).
pub async fn get_any(conn: &mut AnyConnection, id: i64) -> DbResult<ImportRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {IMPORT_COLUMNS} from imports where id = $1"
    )))
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Imports of an account, newest first, before `before` (an id) when given.
pub async fn list(
    conn: &mut AnyConnection,
    account_id: i64,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<ImportRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {IMPORT_COLUMNS} from imports where account_id = $1 and id < $2 order by id desc limit $3"
    )))
    .bind(account_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The files of an import, in order.
pub async fn files(conn: &mut AnyConnection, import_id: i64) -> DbResult<Vec<FileRow>> {
    Ok(sqlx::query_as(
        "select position, name, path, size, received from import_files where import_id = $1 order by position",
    )
    .bind(import_id)
    .fetch_all(conn)
    .await?)
}

/// Advances an upload from `from` to `to` bytes if it still is at `from` and the import still
/// accepts uploads (compare-and-set; the row stays locked until `tx` ends). False otherwise.
pub async fn advance_upload(
    tx: &mut Tx,
    import_id: i64,
    position: i64,
    from: i64,
    to: i64,
) -> DbResult<bool> {
    let r = sqlx::query(
        "update import_files set received = $1 where import_id = $2 and position = $3 and received = $4 \
         and exists (select 1 from imports where id = $2 and status = 'uploading')",
    )
    .bind(to)
    .bind(import_id)
    .bind(position)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves an import to `to` if it is in one of `from`; false when it was not.
pub async fn transition(
    conn: &mut AnyConnection,
    id: i64,
    from: &[Status],
    to: Status,
) -> DbResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let mut q = crate::db::SqlBuilder::new("update imports set status = ");
    q.bind(to.as_str().to_owned())
        .push(", updated_at = ")
        .bind(now_ms())
        .push(" where id = ")
        .bind(id)
        .push(" and status in ")
        .bind_list(from.into_iter().map(str::to_owned));
    Ok(q.query().execute(conn).await?.rows_affected() == 1)
}

/// Replaces the options and dedupe policy (before the import starts).
pub async fn set_options(
    conn: &mut AnyConnection,
    id: i64,
    dedupe: Dedupe,
    options: &ImportOptions,
) -> DbResult<()> {
    sqlx::query("update imports set dedupe = $1, options = $2, updated_at = $3 where id = $4")
        .bind(dedupe.as_str())
        .bind(serde_json::to_string(options).expect("options serialize"))
        .bind(now_ms())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Asks a queued or running import to stop. Returns the status after the request.
pub async fn request_cancel(db: &Db, account_id: i64, id: i64) -> DbResult<Status> {
    let mut tx = db.begin().await?;
    let row = get(&mut tx, account_id, id).await?;
    let status = match row.status() {
        Status::Uploading | Status::Queued => {
            sqlx::query("update imports set status = 'cancelled', cancel_requested = 1, finished_at = $1, updated_at = $1 where id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Status::Cancelled
        }
        Status::Running => {
            sqlx::query("update imports set cancel_requested = 1, updated_at = $1 where id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Status::Running
        }
        other => other,
    };
    tx.commit().await?;
    Ok(status)
}

/// Claims the oldest import that is queued, or running under an expired lease (its worker
/// died). Returns its id.
pub async fn claim(db: &Db, owner: &str, lease_ms: i64) -> DbResult<Option<i64>> {
    let now = now_ms();
    const RUNNABLE: &str = "select id from imports where status = 'queued' \
         or (status = 'running' and lease_until < $1) order by id limit 1";
    // Read first: idle workers poll this every second, and on SQLite a transaction that may
    // write takes the database's only write lock.
    let any: Option<i64> = sqlx::query_scalar(RUNNABLE)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    if any.is_none() {
        return Ok(None);
    }
    let mut tx = db.begin().await?;
    let lock = match db.backend() {
        crate::db::Backend::Postgres => " for update skip locked",
        crate::db::Backend::Sqlite => "",
    };
    let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{RUNNABLE}{lock}")))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(id) = id {
        take_lease(&mut tx, id, owner, now + lease_ms).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Claims a given import for `owner` (CLI `--resume`), if nobody else holds a live lease.
pub async fn claim_one(db: &Db, id: i64, owner: &str, lease_ms: i64) -> DbResult<bool> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let row = get_any(&mut tx, id).await?;
    let free = match row.status() {
        Status::Queued | Status::Failed => true,
        Status::Running => row.lease_until.is_none_or(|t| t < now),
        _ => false,
    };
    if free {
        take_lease(&mut tx, id, owner, now + lease_ms).await?;
    }
    tx.commit().await?;
    Ok(free)
}

/// Gives `owner` the lease of import `id` (status running) inside `tx`.
pub async fn take_lease(tx: &mut Tx, id: i64, owner: &str, until: i64) -> DbResult<()> {
    let now = now_ms();
    sqlx::query(
        "update imports set status = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, \
         error = null, started_at = coalesce(started_at, $3), updated_at = $3 where id = $4",
    )
    .bind(owner.to_owned())
    .bind(until)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Extends the lease of a running import; false when the lease was lost to another worker.
pub async fn renew_lease(db: &Db, id: i64, owner: &str, lease_ms: i64) -> DbResult<bool> {
    let r = sqlx::query(
        "update imports set lease_until = $1 where id = $2 and lease_owner = $3 and status = 'running'",
    )
    .bind(now_ms() + lease_ms)
    .bind(id)
    .bind(owner.to_owned())
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Counters of a running import, written with each batch.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Counters {
    /// Rows read (blank rows not counted).
    pub rows_read: u64,
    /// New clients.
    pub imported: u64,
    /// Clients stored before this import and changed by it.
    pub updated: u64,
    /// Rows that matched a stored client and changed nothing.
    pub unchanged: u64,
    /// Rows not imported.
    pub invalid: u64,
    /// Rows that matched a client already created or stored (see the dedupe policy).
    pub duplicates: u64,
    /// Warnings (values dropped from imported rows).
    pub warnings: u64,
    /// Problems by reason code.
    pub reasons: BTreeMap<String, u64>,
}

impl Counters {
    /// Adds a written batch's outcome and returns its problems (for the samples). Rows that
    /// matched another client count as duplicates, not warnings.
    pub fn absorb(&mut self, outcome: super::writer::BatchOutcome) -> Vec<(u64, Problem)> {
        self.imported += outcome.counts.imported;
        self.updated += outcome.counts.updated;
        self.unchanged += outcome.counts.unchanged;
        self.duplicates += outcome.counts.duplicate;
        for (_, p) in &outcome.problems {
            if p.code != "duplicate" {
                self.warnings += 1;
            }
            *self.reasons.entry(p.code.clone()).or_default() += 1;
        }
        outcome.problems
    }

    /// The counters stored on an import.
    pub fn of(row: &ImportRow) -> Counters {
        Counters {
            rows_read: row.rows_read as u64,
            imported: row.rows_imported as u64,
            updated: row.rows_updated as u64,
            unchanged: row.rows_unchanged as u64,
            invalid: row.rows_invalid as u64,
            duplicates: row.rows_duplicate as u64,
            warnings: row.warnings as u64,
            reasons: row.reasons(),
        }
    }
}

/// Writes counters, checkpoint, progress and lease in the batch's transaction. Returns false
/// when the import no longer belongs to `owner` (lease lost, or cancelled).
#[allow(clippy::too_many_arguments)]
pub async fn save_progress(
    tx: &mut Tx,
    id: i64,
    owner: &str,
    counters: &Counters,
    checkpoint_file: i64,
    checkpoint_rows: i64,
    progress_ppm: i64,
    lease_ms: i64,
) -> DbResult<bool> {
    let now = now_ms();
    let r = sqlx::query(
        "update imports set rows_read = $1, rows_imported = $2, rows_updated = $3, rows_unchanged = $4, \
         rows_invalid = $5, rows_duplicate = $6, warnings = $7, reasons = $8, checkpoint_file = $9, \
         checkpoint_rows = $10, progress_done = $11, lease_until = $12, updated_at = $13 \
         where id = $14 and lease_owner = $15 and status = 'running'",
    )
    .bind(counters.rows_read as i64)
    .bind(counters.imported as i64)
    .bind(counters.updated as i64)
    .bind(counters.unchanged as i64)
    .bind(counters.invalid as i64)
    .bind(counters.duplicates as i64)
    .bind(counters.warnings as i64)
    .bind(serde_json::to_string(&counters.reasons).expect("map serializes"))
    .bind(checkpoint_file)
    .bind(checkpoint_rows)
    .bind(progress_ppm)
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .bind(owner.to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Whether a cancel was requested.
pub async fn cancel_requested(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    let v: i64 = sqlx::query_scalar("select cancel_requested from imports where id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok(v != 0)
}

/// Ends an import (completed, failed or cancelled) and releases its lease.
pub async fn finish(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    status: Status,
    error: Option<&str>,
) -> DbResult<()> {
    let now = now_ms();
    sqlx::query(
        "update imports set status = $1, error = $2, finished_at = $3, updated_at = $3, lease_owner = null, \
         lease_until = null, progress_done = case when $1 = 'completed' then 1000000 else progress_done end \
         where id = $4 and lease_owner = $5",
    )
    .bind(status.as_str())
    .bind(error.map(str::to_owned))
    .bind(now)
    .bind(id)
    .bind(owner.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// How many issue samples an import keeps (the counts cover every row).
pub const MAX_SAMPLES: i64 = 1000;

/// Number of issue samples stored.
pub async fn issue_count(conn: &mut AnyConnection, import_id: i64) -> DbResult<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from import_issues where import_id = $1")
            .bind(import_id)
            .fetch_one(conn)
            .await?,
    )
}

/// Stores issue samples.
pub async fn add_issues(
    conn: &mut AnyConnection,
    backend: crate::db::Backend,
    import_id: i64,
    file: &str,
    issues: &[(u64, Problem)],
) -> DbResult<()> {
    let rows = issues
        .iter()
        .map(|(row, p)| {
            vec![
                import_id.into(),
                p.severity.as_str().into(),
                file.into(),
                (*row as i64).into(),
                p.column.clone().into(),
                p.value.clone().into(),
                p.code.clone().into(),
                p.message.clone().into(),
            ]
        })
        .collect();
    crate::db::bulk::insert_rows(
        conn,
        backend,
        "insert into import_issues (import_id, severity, file, row_number, column_name, value, code, message) values ",
        "",
        rows,
    )
    .await?;
    Ok(())
}

/// A stored issue sample.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Issue {
    /// `error` (row not imported) or `warning` (a value dropped).
    pub severity: String,
    /// File name.
    pub file: String,
    /// Row number as in the spreadsheet.
    pub row_number: i64,
    /// Column header.
    pub column_name: Option<String>,
    /// Raw value.
    pub value: Option<String>,
    /// Reason code.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// The stored issue samples, in order.
pub async fn issues(conn: &mut AnyConnection, import_id: i64) -> DbResult<Vec<Issue>> {
    Ok(sqlx::query_as(
        "select severity, file, row_number, column_name, value, code, message from import_issues \
         where import_id = $1 order by id",
    )
    .bind(import_id)
    .fetch_all(conn)
    .await?)
}
