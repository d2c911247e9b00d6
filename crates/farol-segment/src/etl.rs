//! Streaming ETL: transaction files (CSV or Parquet) → per-user accumulators.
//!
//! Work is split into units — one per CSV file, one per Parquet row group —
//! spread over a dedicated thread pool; every thread adds its rows to one
//! shared, sharded map of user → [`UserAgg`]. Memory is the users'
//! accumulators (each user once) plus the duplicate detector's budget.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::tz::TimeZone;
use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::aggregate::{DedupSet, OffsetCache, Seen, UserAgg, UserShards, offset_seconds};
use crate::clean::{
    Cell, CleanReport, RejectReason, RejectSample, cell_amount, cell_game, cell_kind,
    cell_timestamp,
};
use crate::mapping::{self, MappingError, TX_FIELDS, USER_FIELDS};
use crate::model::{Channel, UserRow};

/// Parameters of the ETL (stored with each run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EtlParams {
    /// IANA zone for naive timestamps and for hour/weekday features.
    pub time_zone: String,
    /// Column overrides for transaction files, `"column=field,…"`.
    pub tx_mapping: String,
    /// Column overrides for user files.
    pub user_mapping: String,
    /// Samples kept per reject reason.
    pub max_samples: usize,
    /// Memory budget of the duplicate detector, in ids (~18 bytes each;
    /// 100M ≈ 1.8 GB).
    pub dedup_max_ids: u64,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for EtlParams {
    fn default() -> Self {
        EtlParams {
            time_zone: "America/Sao_Paulo".into(),
            tx_mapping: String::new(),
            user_mapping: String::new(),
            max_samples: 5,
            dedup_max_ids: 100_000_000,
            threads: 0,
        }
    }
}

/// An ETL failure (bad rows are not failures: they are counted in the report).
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    /// A file could not be opened or read.
    #[error("{file}: {message}")]
    Read {
        /// The file.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A column mapping problem.
    #[error("{file}: {source}")]
    Mapping {
        /// The file.
        file: String,
        /// The problem.
        source: MappingError,
    },
    /// The configured time zone is unknown.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// The thread pool could not start.
    #[error("thread pool: {0}")]
    Threads(String),
}

/// Progress of [`aggregate_files`], reported after each unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EtlProgress {
    /// Units (CSV files, Parquet row groups) finished.
    pub units_done: u64,
    /// Units in total.
    pub units_total: u64,
    /// Rows read so far.
    pub rows_read: u64,
}

/// What the ETL produced: accumulators sorted by user id, and the cleaning report.
#[derive(Debug, Clone)]
pub struct Aggregation {
    /// One accumulator per user with at least one accepted transaction.
    pub users: Vec<(String, UserAgg)>,
    /// Counts and samples.
    pub report: CleanReport,
}

/// Resolves an IANA zone name.
pub fn time_zone(name: &str) -> Result<TimeZone, EtlError> {
    TimeZone::get(name).map_err(|_| EtlError::TimeZone(name.to_owned()))
}

/// Lists data files: a file as given, a directory recursively (`.csv`,
/// `.txt`, `.parquet`, so `dt=YYYY-MM-DD/part-0.parquet` layouts work), sorted.
pub fn list_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, EtlError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let p = entry?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("csv" | "txt" | "parquet")
            ) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            walk(p, &mut out).map_err(|e| read_err(p, e))?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn read_err(p: &Path, e: impl std::fmt::Display) -> EtlError {
    EtlError::Read {
        file: p.display().to_string(),
        message: e.to_string(),
    }
}

fn is_parquet(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

enum Unit {
    Csv(PathBuf),
    RowGroup {
        file: PathBuf,
        group: usize,
        columns: Vec<Option<usize>>,
        first_row: u64,
    },
}

struct Shared<'a> {
    tz: TimeZone,
    dedup: DedupSet,
    users: UserShards,
    max_samples: usize,
    rows: AtomicU64,
    units_done: AtomicU64,
    units_total: u64,
    progress: &'a (dyn Fn(EtlProgress) + Sync),
    tx_mapping: &'a str,
}

#[derive(Default)]
struct Partial {
    offsets: OffsetCache,
    report: CleanReport,
}

/// Reads transaction files (or directories of them) and aggregates per user,
/// on `params.threads` threads.
pub fn aggregate_files(
    inputs: &[PathBuf],
    params: &EtlParams,
    progress: &(dyn Fn(EtlProgress) + Sync),
) -> Result<Aggregation, EtlError> {
    let files = list_files(inputs)?;
    let (agg, _) = aggregate_into(
        &files,
        params,
        UserShards::new(),
        DedupSet::new(params.dedup_max_ids),
        progress,
    )?;
    Ok(agg)
}

/// Aggregates `files` into `users` (which may already hold accumulators, e.g. loaded from a
/// saved state), checking ids against `dedup` (which may already hold ids). The report counts
/// only these files' rows; `users` in it is the total after merging.
pub(crate) fn aggregate_into(
    files: &[PathBuf],
    params: &EtlParams,
    users: UserShards,
    dedup: DedupSet,
    progress: &(dyn Fn(EtlProgress) + Sync),
) -> Result<(Aggregation, DedupSet), EtlError> {
    let tz = time_zone(&params.time_zone)?;
    let mut units = Vec::new();
    for f in files {
        if is_parquet(f) {
            let reader = SerializedFileReader::new(File::open(f).map_err(|e| read_err(f, e))?)
                .map_err(|e| read_err(f, e))?;
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            let headers: Vec<String> = schema
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            let columns = mapping::resolve(&headers, &TX_FIELDS, &params.tx_mapping, &REQUIRED_TX)
                .map_err(|source| EtlError::Mapping {
                    file: f.display().to_string(),
                    source,
                })?;
            let mut first_row = 1;
            for g in 0..reader.metadata().num_row_groups() {
                units.push(Unit::RowGroup {
                    file: f.clone(),
                    group: g,
                    columns: columns.clone(),
                    first_row,
                });
                first_row += reader.metadata().row_group(g).num_rows() as u64;
            }
        } else {
            units.push(Unit::Csv(f.clone()));
        }
    }
    let shared = Shared {
        tz,
        dedup,
        users,
        max_samples: params.max_samples,
        rows: AtomicU64::new(0),
        units_done: AtomicU64::new(0),
        units_total: units.len() as u64,
        progress,
        tx_mapping: &params.tx_mapping,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.threads)
        .build()
        .map_err(|e| EtlError::Threads(e.to_string()))?;
    let merged = pool.install(|| {
        units
            .par_iter()
            .with_max_len(1)
            .try_fold(Partial::default, |mut acc, unit| {
                match unit {
                    Unit::Csv(path) => read_csv(path, &shared, &mut acc)?,
                    Unit::RowGroup {
                        file,
                        group,
                        columns,
                        first_row,
                    } => read_row_group(file, *group, columns, *first_row, &shared, &mut acc)?,
                }
                let done = shared.units_done.fetch_add(1, Ordering::AcqRel) + 1;
                (shared.progress)(EtlProgress {
                    units_done: done,
                    units_total: shared.units_total,
                    rows_read: shared.rows.load(Ordering::Acquire),
                });
                Ok::<_, EtlError>(acc)
            })
            .try_reduce(Partial::default, |mut a, b| {
                a.report.merge(b.report, shared.max_samples);
                Ok(a)
            })
    })?;
    let Shared { users, dedup, .. } = shared;
    let mut report = merged.report;
    report.files = files.len() as u64;
    let (saturated, unstored) = dedup.saturation();
    report.dedup_saturated = saturated;
    report.dedup_unstored = unstored;
    let users = users.into_sorted();
    report.users = users.len() as u64;
    Ok((Aggregation { users, report }, dedup))
}

const REQUIRED_TX: [&str; 5] = ["transaction_id", "user_id", "created_at", "type", "amount"];

/// Cleans one row and adds it to `acc`. `cells` follow [`TX_FIELDS`].
fn process_row(
    cells: &[Cell<'_>; 7],
    file: &Path,
    row: u64,
    names: &[&str; 7],
    shared: &Shared<'_>,
    acc: &mut Partial,
) {
    let report = &mut acc.report;
    report.rows_read += 1;
    let reject = |report: &mut CleanReport, reason: RejectReason, f: usize| {
        report.reject(reason, shared.max_samples, || RejectSample {
            file: file.display().to_string(),
            row,
            column: names[f].to_owned(),
            raw: cells[f].to_text(),
            reason,
        })
    };
    let text = |c: Cell<'_>| -> Option<String> {
        match c {
            Cell::Text(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Cell::Int(i) => Some(i.to_string()),
            _ => None,
        }
    };
    let (tx_id, user_id) = match (&cells[0], &cells[1]) {
        (Cell::Text(t), Cell::Text(u)) if !t.trim().is_empty() && !u.trim().is_empty() => (
            std::borrow::Cow::Borrowed(t.trim()),
            std::borrow::Cow::Borrowed(u.trim()),
        ),
        _ => {
            let Some(t) = text(cells[0]) else {
                return reject(report, RejectReason::MissingTransactionId, 0);
            };
            let Some(u) = text(cells[1]) else {
                return reject(report, RejectReason::MissingUserId, 1);
            };
            (std::borrow::Cow::Owned(t), std::borrow::Cow::Owned(u))
        }
    };
    let Some(ts) = cell_timestamp(cells[2], &shared.tz) else {
        return reject(report, RejectReason::BadTimestamp, 2);
    };
    let Some(kind) = cell_kind(cells[3]) else {
        return reject(report, RejectReason::UnknownType, 3);
    };
    let Some(game) = cell_game(cells[4]) else {
        return reject(report, RejectReason::UnknownGameType, 4);
    };
    let amount = match cell_amount(cells[6]) {
        Ok(a) => a,
        Err(reason) => return reject(report, reason, 6),
    };
    if shared.dedup.check(&tx_id) == Seen::Duplicate {
        report.duplicates_dropped += 1;
        return;
    }
    report.rows_accepted += 1;
    report.min_created_at = Some(report.min_created_at.map_or(ts, |m| m.min(ts)));
    report.max_created_at = Some(report.max_created_at.map_or(ts, |m| m.max(ts)));
    let offset = acc.offsets.offset(&shared.tz, ts);
    shared
        .users
        .with(&user_id, |agg| agg.add(kind, game, amount, ts, offset));
}

fn read_csv(path: &Path, shared: &Shared<'_>, acc: &mut Partial) -> Result<(), EtlError> {
    let mut source = farol_import::open(path, &farol_import::OpenOptions::default())
        .map_err(|e| read_err(path, e))?;
    let headers = source.headers().to_vec();
    let columns = mapping::resolve(&headers, &TX_FIELDS, shared.tx_mapping, &REQUIRED_TX).map_err(
        |source| EtlError::Mapping {
            file: path.display().to_string(),
            source,
        },
    )?;
    let names: [&str; 7] =
        std::array::from_fn(|f| columns[f].map_or(TX_FIELDS[f], |c| headers[c].as_str()));
    let mut local_rows = 0u64;
    for record in &mut source {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                acc.report
                    .reject(RejectReason::Unreadable, shared.max_samples, || {
                        RejectSample {
                            file: path.display().to_string(),
                            row: e.row.unwrap_or(0),
                            column: String::new(),
                            raw: e.to_string(),
                            reason: RejectReason::Unreadable,
                        }
                    });
                break;
            }
        };
        let cells: [Cell<'_>; 7] = std::array::from_fn(|f| match columns[f] {
            Some(c) => Cell::Text(record.get(c)),
            None => Cell::Null,
        });
        process_row(&cells, path, record.row, &names, shared, acc);
        local_rows += 1;
        if local_rows.is_multiple_of(65_536) {
            shared.rows.fetch_add(65_536, Ordering::Relaxed);
        }
    }
    shared
        .rows
        .fetch_add(local_rows % 65_536, Ordering::Relaxed);
    Ok(())
}

/// Decoded values of one Parquet column for one batch of rows.
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

/// How an integer column's values become cells.
#[derive(Clone, Copy)]
enum IntMeaning {
    Plain,
    /// Timestamp: divide to milliseconds; `utc` false means local (naive) time.
    Timestamp {
        per_ms: i64,
        utc: bool,
    },
    /// Fixed-point decimal: divide by 10^scale.
    Decimal(i32),
}

struct ColumnCursor {
    reader: ColumnReader,
    values: Values,
    defs: Vec<i16>,
    max_def: i16,
    meaning: IntMeaning,
    next_value: usize,
}

const BATCH: usize = 8192;

impl ColumnCursor {
    fn fill(&mut self) -> parquet::errors::Result<usize> {
        self.defs.clear();
        self.next_value = 0;
        let defs = if self.max_def > 0 {
            Some(&mut self.defs)
        } else {
            None
        };
        let (records, _, _) = match (&mut self.reader, &mut self.values) {
            (ColumnReader::BoolColumnReader(r), Values::Bool(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            (ColumnReader::Int32ColumnReader(r), Values::I32(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            (ColumnReader::Int64ColumnReader(r), Values::I64(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            (ColumnReader::FloatColumnReader(r), Values::F32(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            (ColumnReader::DoubleColumnReader(r), Values::F64(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => {
                v.clear();
                r.read_records(BATCH, defs, None, v)?
            }
            _ => unreachable!("values match the reader's type"),
        };
        Ok(records)
    }

    /// Index of row `row`'s value in the batch, `None` when the row is null.
    fn advance(&mut self, row: usize) -> Option<usize> {
        if self.max_def > 0 && self.defs[row] < self.max_def {
            return None;
        }
        self.next_value += 1;
        Some(self.next_value - 1)
    }

    fn cell(&self, i: Option<usize>, tz: &TimeZone) -> Cell<'_> {
        let Some(i) = i else { return Cell::Null };
        let int = |n: i64, meaning: IntMeaning| match meaning {
            IntMeaning::Plain => Cell::Int(n),
            IntMeaning::Timestamp { per_ms, utc } => {
                let ms = n.div_euclid(per_ms);
                if utc {
                    Cell::Millis(ms)
                } else {
                    // Naive: the value is wall-clock time in the configured zone.
                    let guess = ms - i64::from(offset_seconds(tz, ms)) * 1000;
                    Cell::Millis(ms - i64::from(offset_seconds(tz, guess)) * 1000)
                }
            }
            IntMeaning::Decimal(scale) => Cell::Float(n as f64 / 10f64.powi(scale)),
        };
        match &self.values {
            Values::Bool(v) => Cell::Int(i64::from(v[i])),
            Values::I32(v) => int(i64::from(v[i]), self.meaning),
            Values::I64(v) => int(v[i], self.meaning),
            Values::F32(v) => Cell::Float(f64::from(v[i])),
            Values::F64(v) => Cell::Float(v[i]),
            Values::Bytes(v) => match v[i].as_utf8() {
                Ok(s) => Cell::Text(s),
                Err(_) => Cell::Null,
            },
        }
    }
}

fn read_row_group(
    path: &Path,
    group: usize,
    columns: &[Option<usize>],
    first_row: u64,
    shared: &Shared<'_>,
    acc: &mut Partial,
) -> Result<(), EtlError> {
    let perr = |e: parquet::errors::ParquetError| read_err(path, e);
    let reader = SerializedFileReader::new(File::open(path).map_err(|e| read_err(path, e))?)
        .map_err(perr)?;
    let rg = reader.get_row_group(group).map_err(perr)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut cursors: Vec<Option<ColumnCursor>> = Vec::with_capacity(7);
    for col in columns {
        let Some(c) = *col else {
            cursors.push(None);
            continue;
        };
        let descr = schema.column(c);
        let values = match descr.physical_type() {
            PhysicalType::BOOLEAN => Values::Bool(Vec::new()),
            PhysicalType::INT32 => Values::I32(Vec::new()),
            PhysicalType::INT64 => Values::I64(Vec::new()),
            PhysicalType::FLOAT => Values::F32(Vec::new()),
            PhysicalType::DOUBLE => Values::F64(Vec::new()),
            PhysicalType::BYTE_ARRAY => Values::Bytes(Vec::new()),
            other => {
                return Err(read_err(
                    path,
                    format!("column {} has unsupported type {other}", descr.name()),
                ));
            }
        };
        let meaning = match descr.logical_type_ref() {
            Some(LogicalType::Timestamp(t)) => IntMeaning::Timestamp {
                per_ms: match t.unit {
                    TimeUnit::MILLIS => 1,
                    TimeUnit::MICROS => 1000,
                    TimeUnit::NANOS => 1_000_000,
                },
                utc: t.is_adjusted_to_u_t_c,
            },
            Some(LogicalType::Decimal(d)) => IntMeaning::Decimal(d.scale),
            _ => IntMeaning::Plain,
        };
        cursors.push(Some(ColumnCursor {
            reader: rg.get_column_reader(c).map_err(perr)?,
            values,
            defs: Vec::new(),
            max_def: descr.max_def_level(),
            meaning,
            next_value: 0,
        }));
    }
    let column_names: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(f, c)| {
            c.map_or(TX_FIELDS[f].to_owned(), |c| {
                schema.column(c).name().to_owned()
            })
        })
        .collect();
    let names: [&str; 7] = std::array::from_fn(|f| column_names[f].as_str());
    let mut row = first_row;
    loop {
        let mut n = usize::MAX;
        for c in cursors.iter_mut().flatten() {
            n = n.min(c.fill().map_err(perr)?);
        }
        if n == 0 || n == usize::MAX {
            break;
        }
        for r in 0..n {
            let mut idx = [None; 7];
            for (f, c) in cursors.iter_mut().enumerate() {
                if let Some(c) = c {
                    idx[f] = c.advance(r);
                }
            }
            let cells: [Cell<'_>; 7] = std::array::from_fn(|f| match &cursors[f] {
                Some(c) => c.cell(idx[f], &shared.tz),
                None => Cell::Null,
            });
            process_row(&cells, path, row, &names, shared, acc);
            row += 1;
        }
        shared.rows.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads user files (CSV or Parquet string columns), calling `on_user` for
/// each row with a user id. Returns rows read and rows skipped (no user id).
pub fn read_users(
    inputs: &[PathBuf],
    params: &EtlParams,
    mut on_user: impl FnMut(UserRow),
) -> Result<(u64, u64), EtlError> {
    let mut read = 0;
    let mut skipped = 0;
    for path in list_files(inputs)? {
        let mut emit = |get: &dyn Fn(usize) -> String| {
            read += 1;
            let user_id = get(0);
            if user_id.is_empty() {
                skipped += 1;
                return;
            }
            on_user(UserRow {
                user_id,
                name: get(1),
                email: get(2),
                phone: get(3),
                preferred_channel: Channel::parse(&get(4)),
                signup_date: get(5),
                state: get(6),
            });
        };
        if is_parquet(&path) {
            let reader =
                SerializedFileReader::new(File::open(&path).map_err(|e| read_err(&path, e))?)
                    .map_err(|e| read_err(&path, e))?;
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            let headers: Vec<String> = schema
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            let columns =
                mapping::resolve(&headers, &USER_FIELDS, &params.user_mapping, &["user_id"])
                    .map_err(|source| EtlError::Mapping {
                        file: path.display().to_string(),
                        source,
                    })?;
            let rows = reader.get_row_iter(None).map_err(|e| read_err(&path, e))?;
            for row in rows {
                let row = row.map_err(|e| read_err(&path, e))?;
                let values: Vec<String> = row
                    .get_column_iter()
                    .map(|(_, f)| match f {
                        parquet::record::Field::Str(s) => s.clone(),
                        parquet::record::Field::Null => String::new(),
                        other => other.to_string(),
                    })
                    .collect();
                emit(&|f| columns[f].map_or(String::new(), |c| values[c].trim().to_owned()));
            }
        } else {
            let mut source = farol_import::open(&path, &farol_import::OpenOptions::default())
                .map_err(|e| read_err(&path, e))?;
            let headers = source.headers().to_vec();
            let columns =
                mapping::resolve(&headers, &USER_FIELDS, &params.user_mapping, &["user_id"])
                    .map_err(|source| EtlError::Mapping {
                        file: path.display().to_string(),
                        source,
                    })?;
            for record in &mut source {
                let record = record.map_err(|e| read_err(&path, e))?;
                emit(&|f| columns[f].map_or(String::new(), |c| record.trimmed(c).to_owned()));
            }
        }
    }
    Ok((read, skipped))
}
