//! What an import tells its user: status, counts, progress and problem samples (JSON for the
//! API and `--json`, text for the terminal, CSV for the samples).

use serde::Serialize;
use utoipa::ToSchema;

use super::store::{Counters, FileRow, ImportOptions, ImportRow, Issue, MAX_SAMPLES, Status};
use super::writer::Dedupe;
use crate::db::{format_ms, now_ms};

/// A file of an import.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileOut {
    /// Position (0-based), as in `PUT /imports/{id}/files/{position}`.
    pub position: i64,
    /// Original name.
    pub name: String,
    /// Expected size in bytes (uploads).
    pub size: Option<i64>,
    /// Bytes received so far (uploads).
    pub received: i64,
}

/// Progress of a running import.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressOut {
    /// Percent done, 0–100.
    pub percent: f64,
    /// Rows read per second since the import started.
    pub rows_per_sec: f64,
    /// Estimated seconds left (running imports).
    pub eta_secs: Option<f64>,
}

/// An import job: status, counts and progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportOut {
    /// Id.
    pub id: i64,
    /// Status.
    pub status: Status,
    /// Dedupe policy.
    pub dedupe: Dedupe,
    /// Reading options and mapping overrides.
    pub options: ImportOptions,
    /// Files, in order.
    pub files: Vec<FileOut>,
    /// Counts so far (final once completed).
    pub counts: Counters,
    /// Progress.
    pub progress: ProgressOut,
    /// One sentence on the outcome.
    pub summary: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Start of the first run.
    pub started_at: Option<String>,
    /// End.
    pub finished_at: Option<String>,
}

impl ImportOut {
    /// Builds the view of a stored import.
    pub fn new(row: &ImportRow, files: &[FileRow]) -> ImportOut {
        let counts = Counters::of(row);
        let status = row.status();
        let fraction = row.progress_done as f64 / 1e6;
        let end = row.finished_at.unwrap_or_else(now_ms);
        let secs = row
            .started_at
            .map(|s| ((end - s) as f64 / 1000.0).max(1e-3));
        let rows_per_sec = secs.map_or(0.0, |s| counts.rows_read as f64 / s);
        let eta_secs = match (status, secs) {
            (Status::Running, Some(s)) if fraction > 0.0 => Some(s * (1.0 - fraction) / fraction),
            _ => None,
        };
        ImportOut {
            id: row.id,
            status,
            dedupe: row.dedupe(),
            options: row.options(),
            files: files
                .iter()
                .map(|f| FileOut {
                    position: f.position,
                    name: f.name.clone(),
                    size: f.size,
                    received: f.received,
                })
                .collect(),
            summary: summary(status, &counts, row.error.as_deref()),
            counts,
            progress: ProgressOut {
                percent: (fraction * 1000.0).round() / 10.0,
                rows_per_sec: rows_per_sec.round(),
                eta_secs: eta_secs.map(f64::round),
            },
            error: row.error.clone(),
            created_at: format_ms(row.created_at),
            started_at: row.started_at.map(format_ms),
            finished_at: row.finished_at.map(format_ms),
        }
    }
}

/// The sentence at the top of a report.
pub fn summary(status: Status, c: &Counters, error: Option<&str>) -> String {
    let counts = format!(
        "{} rows read: {} new, {} updated, {} unchanged, {} duplicates, {} invalid, {} warnings",
        c.rows_read, c.imported, c.updated, c.unchanged, c.duplicates, c.invalid, c.warnings
    );
    match status {
        Status::Completed
            if c.rows_read > 0 && c.imported == 0 && c.updated == 0 && c.unchanged > 0 =>
        {
            format!(
                "Nothing changed: every row matches what an earlier import of this file stored ({counts})."
            )
        }
        Status::Completed => format!("Completed: {counts}."),
        Status::Failed => format!(
            "Failed: {}. Before that, {counts}.",
            error.unwrap_or("unknown error")
        ),
        Status::Cancelled => format!("Cancelled; the rows written before stay: {counts}."),
        Status::Running => format!("Running: {counts} so far."),
        Status::Queued => "Queued: waiting for a worker.".into(),
        Status::Uploading => "Waiting for the files to be uploaded.".into(),
    }
}

/// The full report: the import plus up to 1,000 problem samples.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportOut {
    /// The import.
    #[serde(flatten)]
    pub import: ImportOut,
    /// Problem samples in file and row order (at most 1,000; the counts cover every row).
    pub samples: Vec<Issue>,
    /// True when more problems happened than samples kept.
    pub samples_truncated: bool,
}

impl ReportOut {
    /// Assembles a report.
    pub fn new(import: ImportOut, samples: Vec<Issue>) -> ReportOut {
        let total_problems: u64 = import.counts.reasons.values().sum();
        ReportOut {
            samples_truncated: samples.len() as i64 >= MAX_SAMPLES
                && total_problems > samples.len() as u64,
            import,
            samples,
        }
    }

    /// The report for a terminal.
    pub fn to_text(&self, max_samples: usize) -> String {
        let i = &self.import;
        let c = &i.counts;
        let mut s = format!("Import #{} — {}\n", i.id, i.summary);
        s.push_str(&format!(
            "  rows read   {:>10}\n  new         {:>10}\n  updated     {:>10}\n  unchanged   {:>10}\n  duplicates  {:>10}  (policy: {})\n  invalid     {:>10}\n  warnings    {:>10}\n",
            c.rows_read, c.imported, c.updated, c.unchanged, c.duplicates, i.dedupe.as_str(), c.invalid, c.warnings
        ));
        if !c.reasons.is_empty() {
            s.push_str("Reasons:\n");
            let mut reasons: Vec<(&String, &u64)> = c.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (code, n) in reasons {
                s.push_str(&format!("  {n:>10}  {code}\n"));
            }
        }
        if !self.samples.is_empty() {
            s.push_str(&format!(
                "First problems ({} of {} kept):\n",
                self.samples.len().min(max_samples),
                self.samples.len()
            ));
            for p in self.samples.iter().take(max_samples) {
                s.push_str(&format!(
                    "  {} row {}{}: {}{} ({})\n",
                    p.file,
                    p.row_number,
                    p.column_name
                        .as_deref()
                        .map(|c| format!(", column {c:?}"))
                        .unwrap_or_default(),
                    p.message,
                    p.value
                        .as_deref()
                        .map(|v| format!(" — value {v:?}"))
                        .unwrap_or_default(),
                    p.code
                ));
            }
        }
        s
    }
}

/// Writes problem samples as CSV (file, row, column, value, severity, code, message).
pub fn write_issues_csv<W: std::io::Write>(issues: &[Issue], out: W) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "file", "row", "column", "value", "severity", "code", "message",
    ])?;
    for i in issues {
        w.write_record([
            i.file.as_str(),
            &i.row_number.to_string(),
            i.column_name.as_deref().unwrap_or(""),
            i.value.as_deref().unwrap_or(""),
            i.severity.as_str(),
            i.code.as_str(),
            i.message.as_str(),
        ])?;
    }
    w.flush()
}
