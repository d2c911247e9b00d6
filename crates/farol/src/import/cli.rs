//! `farol import FILE...`: runs an import in this process with a progress bar and prints the
//! report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::pipeline::{self, RunEnd, RunOptions};
use super::report::{ImportOut, ReportOut, write_issues_csv};
use super::store::{self, ImportOptions, MappingEntry, NewFile, Status};
use super::writer::Dedupe;
use crate::config::Config;
use crate::db::Db;

/// Arguments of `farol import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV or XLSX files (one import job reads them in order).
    #[arg(value_name = "FILE", required_unless_present = "resume")]
    pub files: Vec<PathBuf>,
    /// Mapping overrides: "Column=field,Column=field" (fields: name, legal_name, cpf_cnpj,
    /// phone, email, current_product, status, portfolio, tags, city, category, score,
    /// external_id, cf.<key>, ignore).
    #[arg(long, value_name = "SPEC")]
    pub map: Option<String>,
    /// A saved mapping preset (applied before --map).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// What to do with rows that match a client already known.
    #[arg(long, default_value = "keep-first", value_parser = ["keep-first", "keep-last", "merge"])]
    pub dedupe: String,
    /// Portfolio (carteira) for rows without one; created when missing.
    #[arg(long, value_name = "NAME")]
    pub portfolio: Option<String>,
    /// XLSX sheet to read (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// CSV delimiter (default: sniffed): ";", ",", "tab", "|".
    #[arg(long)]
    pub delimiter: Option<String>,
    /// CSV encoding (default: sniffed): utf-8, windows-1252, utf-16le, utf-16be.
    #[arg(long)]
    pub encoding: Option<String>,
    /// Account (slug) to import into.
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Also write every kept problem sample (≤ 1,000) to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub issues_csv: Option<PathBuf>,
    /// Resume import ID (after a crash or a cancel); files and options are the stored ones.
    #[arg(long, value_name = "ID", conflicts_with_all = ["files", "map", "preset", "portfolio"])]
    pub resume: Option<i64>,
}

/// Runs `farol import`.
pub async fn run(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url(), 4).await?;
    db.migrate().await?;
    let owner = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let lease = Duration::from_secs(config.import.lease_secs.max(1));
    let id = match args.resume {
        Some(id) => {
            if !store::claim_one(&db, id, &owner, lease.as_millis() as i64).await? {
                let mut conn = db.pool().acquire().await?;
                let row = store::get_any(&mut conn, id).await?;
                anyhow::bail!(
                    "import #{id} cannot be resumed: it is {} {}",
                    row.status().as_str(),
                    if row.status() == Status::Running {
                        "and another worker holds it (wait for its lease to expire)"
                    } else {
                        ""
                    }
                );
            }
            id
        }
        None => create(&db, &owner, lease, &args).await?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C asks for a clean stop after the batch in flight.
    {
        let db = db.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping after the current batch (rows written so far stay)…");
                let mut conn = match db.pool().acquire().await {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let _ = sqlx::query("update imports set cancel_requested = 1 where id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await;
            }
        });
    }
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg} (ETA {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let opts = RunOptions {
        batch_rows: config.import.batch_rows_for(db.backend()),
        lease,
    };
    let observer = |s: &pipeline::Snapshot| {
        if let Some(bar) = &bar {
            bar.set_position((s.fraction * 1000.0) as u64);
            bar.set_message(format!(
                "{}: {} rows, {:.0} rows/s, {} new, {} invalid",
                s.file,
                s.counters.rows_read,
                s.rows_per_sec,
                s.counters.imported,
                s.counters.invalid
            ));
        }
    };
    let result = pipeline::run(&db, id, &owner, &opts, stop, &observer).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut conn = db.pool().acquire().await?;
    let row = store::get_any(&mut conn, id).await?;
    let files = store::files(&mut conn, id).await?;
    let samples = store::issues(&mut conn, id).await?;
    drop(conn);
    if let Some(path) = &args.issues_csv {
        let file = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        write_issues_csv(&samples, std::io::BufWriter::new(file))?;
    }
    let report = ReportOut::new(ImportOut::new(&row, &files), samples);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text(20));
        if report.samples.len() > 20 && args.issues_csv.is_none() {
            println!(
                "(all {} samples: --issues-csv FILE, or GET /api/v1/imports/{id}/issues.csv)",
                report.samples.len()
            );
        }
    }
    db.close().await;
    match result {
        Ok(RunEnd::Completed) => Ok(()),
        Ok(RunEnd::Cancelled) => {
            anyhow::bail!("import #{id} cancelled; resume it with: farol import --resume {id}")
        }
        Ok(other) => anyhow::bail!("import #{id} stopped: {other:?}"),
        Err(e) => anyhow::bail!("import #{id} failed: {e}"),
    }
}

async fn create(db: &Db, owner: &str, lease: Duration, args: &ImportArgs) -> anyhow::Result<i64> {
    let account_id = crate::accounts::find(db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let mut mapping: Vec<MappingEntry> = Vec::new();
    if let Some(name) = &args.preset {
        let mut conn = db.pool().acquire().await?;
        mapping = super::presets::load(&mut conn, account_id, name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("there is no mapping preset named `{name}`"))?;
    }
    if let Some(spec) = &args.map {
        for entry in spec.split(',').filter(|e| !e.trim().is_empty()) {
            let (column, field) = entry.rsplit_once('=').ok_or_else(|| {
                anyhow::anyhow!("--map: invalid entry {entry:?}: expected Column=field")
            })?;
            mapping.push(MappingEntry {
                column: column.trim().to_owned(),
                field: field.trim().to_owned(),
            });
        }
    }
    let options = ImportOptions {
        mapping,
        portfolio: args.portfolio.clone(),
        sheet: args.sheet.clone(),
        delimiter: args.delimiter.clone(),
        encoding: args.encoding.clone(),
    };
    let dedupe = Dedupe::parse(&args.dedupe).unwrap_or_default();
    // Check every file and its mapping before anything is written.
    let open = pipeline::open_options(&options).map_err(anyhow::Error::msg)?;
    let mut conn = db.pool().acquire().await?;
    let custom = crate::crm::custom_fields::definitions(&mut conn, account_id).await?;
    drop(conn);
    let mut files = Vec::new();
    for path in &args.files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let absolute =
            std::fs::canonicalize(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let source = pipeline::open_file(&absolute.to_string_lossy(), &name, &open)?;
        pipeline::resolve_mapping(&name, source.headers(), &options, &custom)?;
        files.push(NewFile {
            name,
            path: absolute.to_string_lossy().into_owned(),
            size: None,
        });
    }
    let mut tx = db.begin().await?;
    let id = store::create(
        &mut tx,
        account_id,
        None,
        Status::Queued,
        dedupe,
        &options,
        &files,
    )
    .await?;
    // Leased to this process from the start, so no `farol serve` worker takes it.
    store::take_lease(
        &mut tx,
        id,
        owner,
        crate::db::now_ms() + lease.as_millis() as i64,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}
