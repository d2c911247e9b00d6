//! `farol segment run | export`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::service::{self, Sources};
use super::store;
use crate::config::Config;
use crate::db::Db;

/// `farol segment` subcommands.
#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// Read transactions (and users), cluster players, name the clusters, link players to
    /// CRM clients, and make the run active.
    Run(RunArgs),
    /// Write the active run's final union table: one row per player with cluster, features
    /// and CRM data (or, with `--format smartico-csv`, Smartico's imported segment file).
    Export(ExportArgs),
    /// Push a run to Smartico: the players who entered or left a segment since the last run
    /// pushed.
    PushSmartico(PushArgs),
}

/// Arguments of `farol segment push-smartico`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Segmentation run id.
    pub run_id: i64,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print the sync as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `farol segment run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Transaction files or folders (CSV/Parquet; `dt=…` partitions). Default: segment.transactions.
    #[arg(long, value_name = "PATH")]
    pub transactions: Vec<PathBuf>,
    /// User files or folders. Default: segment.users.
    #[arg(long, value_name = "PATH")]
    pub users: Vec<PathBuf>,
    /// Transaction column overrides, "column=field,…".
    #[arg(long, value_name = "SPEC")]
    pub map: Option<String>,
    /// User column overrides, "column=field,…".
    #[arg(long, value_name = "SPEC")]
    pub map_users: Option<String>,
    /// Clustering.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kmeans", "dbscan", "hdbscan"])]
    pub algorithm: String,
    /// KMeans k (default: chosen by silhouette).
    #[arg(long)]
    pub k: Option<usize>,
    /// HDBSCAN minimum cluster size.
    #[arg(long)]
    pub min_cluster_size: Option<usize>,
    /// Read every transaction file again, not only those the last run did not read.
    #[arg(long)]
    pub full: bool,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print the run report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `farol segment export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, default_value = "csv", value_parser = ["csv", "parquet", "smartico-csv"])]
    pub format: String,
    /// Output file (default: standard output; required for Parquet).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
}

/// Runs a `farol segment` command.
pub async fn run(config: Config, command: SegmentCommand) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url(), 4).await?;
    db.migrate().await?;
    match command {
        SegmentCommand::Run(args) => run_segmentation(&config, &db, args).await,
        SegmentCommand::Export(args) if args.format == "smartico-csv" => {
            export_smartico(&config, &db, args).await
        }
        SegmentCommand::Export(args) => export(&db, args).await,
        SegmentCommand::PushSmartico(args) => push_smartico(&config, &db, args).await,
    }
}

async fn run_segmentation(config: &Config, db: &Db, args: RunArgs) -> anyhow::Result<()> {
    let account_id = crate::accounts::find(db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let mut seg_config = config.segment.clone();
    if let Some(m) = &args.map {
        seg_config.transactions_mapping.clone_from(m);
    }
    if let Some(m) = &args.map_users {
        seg_config.users_mapping.clone_from(m);
    }
    let params = super::routes::run_params(
        &seg_config,
        Some(&args.algorithm),
        args.k,
        args.min_cluster_size,
    )
    .map_err(anyhow::Error::msg)?;
    let params = farol_segment::RunParams {
        full: args.full,
        ..params
    };
    let configured = Sources::from_config(&config.segment);
    let sources = Sources {
        transactions: if args.transactions.is_empty() {
            configured.transactions
        } else {
            args.transactions
        },
        users: if args.users.is_empty() {
            configured.users
        } else {
            args.users
        },
    };
    if sources.transactions.is_empty() {
        anyhow::bail!("no transactions: pass --transactions PATH or set segment.transactions");
    }
    let quiet = args.json;
    let summary = service::run(
        db,
        config,
        account_id,
        None,
        sources,
        params,
        move |stage| {
            if !quiet {
                match stage {
                    farol_segment::Stage::Reading(p) if p.units_done == p.units_total => {
                        eprintln!("read {} transaction rows", p.rows_read)
                    }
                    farol_segment::Stage::Features => eprintln!("computing features…"),
                    farol_segment::Stage::Clustering { k, silhouette } if k > 0 => {
                        eprintln!("  k = {k}: silhouette {silhouette:.3}")
                    }
                    farol_segment::Stage::Profiling => eprintln!("profiling and naming clusters…"),
                    _ => {}
                }
            }
        },
    )
    .await?;
    if !args.json {
        for r in &summary.fetched {
            eprintln!(
                "object store: {} objects listed, {} downloaded ({} bytes)",
                r.listed, r.downloaded, r.bytes
            );
        }
        if let Some(i) = &summary.report.incremental {
            match &i.full_reason {
                None => eprintln!(
                    "incremental: {} files read, {} reused from the last run",
                    i.new_files, i.reused_files
                ),
                Some(why) => eprintln!("full pass ({why}): {} files read", i.new_files),
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let q = &summary.report.quality;
        println!(
            "Segmentation #{}: {} players in {} clusters; {} linked to CRM clients (import #{})",
            summary.run_id,
            summary.report.users,
            summary.clusters.len(),
            summary.linked_clients,
            summary.import_id
        );
        println!("quality: {}", serde_json::to_string(q)?);
        for c in &summary.clusters {
            println!(
                "  {:>3}  {:>8}  {}  ({})",
                c.cluster, c.size, c.name_pt, c.name_en
            );
        }
    }
    Ok(())
}

async fn push_smartico(config: &Config, db: &Db, args: PushArgs) -> anyhow::Result<()> {
    let account_id = crate::accounts::find(db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let actor = crate::audit::Actor::system(account_id, "cli");
    let sync = super::smartico::sync_run(db, &config.smartico, &actor, args.run_id)
        .await
        .map_err(|e| match e {
            crate::api::ApiError::Conflict { field, message } => {
                anyhow::anyhow!("{field}: {message}")
            }
            other => anyhow::anyhow!("{other}"),
        })?;
    if args.json {
        println!("{}", serde_json::to_string(&sync)?);
    } else {
        println!(
            "sync #{} of segmentation #{}: {} — {} entered, {} left, {} events, {} accepted ({} already known), {} failed ({} users not found)",
            sync.id,
            sync.run_id,
            sync.status,
            sync.users_entered,
            sync.users_left,
            sync.events,
            sync.accepted,
            sync.duplicates,
            sync.failed,
            sync.users_not_found
        );
    }
    if sync.status != "completed" {
        anyhow::bail!(
            "{}",
            sync.error.unwrap_or_else(|| "the sync failed".to_owned())
        );
    }
    Ok(())
}

async fn export_smartico(config: &Config, db: &Db, args: ExportArgs) -> anyhow::Result<()> {
    let account_id = crate::accounts::find(db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let mut conn = db.pool().acquire().await?;
    let run = store::active_run(&mut conn, account_id)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("no segmentation has completed yet: run `farol segment run`")
        })?;
    drop(conn);
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let n = super::smartico::write_csv(db, &config.smartico, run.id, out).await?;
    eprintln!(
        "exported {n} players of segmentation #{} for Smartico",
        run.id
    );
    Ok(())
}

async fn export(db: &Db, args: ExportArgs) -> anyhow::Result<()> {
    use farol_segment::table::{Cell, ColumnType, ParquetTable};
    let account_id = crate::accounts::find(db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let mut conn = db.pool().acquire().await?;
    let run = store::active_run(&mut conn, account_id)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("no segmentation has completed yet: run `farol segment run`")
        })?;
    let names: std::collections::HashMap<i64, (String, String)> =
        store::clusters(&mut conn, run.id)
            .await?
            .into_iter()
            .map(|c| (c.label, (c.name_pt, c.name_en)))
            .collect();
    let parquet = args.format == "parquet";
    if parquet && args.output.is_none() {
        anyhow::bail!("--format parquet needs --output FILE");
    }
    let base: [(&str, ColumnType); 8] = [
        ("user_id", ColumnType::Text),
        ("cluster_id", ColumnType::Int),
        ("cluster_name", ColumnType::Text),
        ("cluster_name_en", ColumnType::Text),
        ("client_id", ColumnType::Int),
        ("name", ColumnType::Text),
        ("email", ColumnType::Text),
        ("phone", ColumnType::Text),
    ];
    let mut columns: Vec<(String, ColumnType)> = Vec::new();
    let mut csv_out: Option<csv::Writer<Box<dyn Write>>> = None;
    let mut parquet_out: Option<ParquetTable> = None;
    let mut after = String::new();
    let mut written = 0u64;
    loop {
        let page = store::all_members(&mut conn, run.id, &after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.user_ext_id.clone();
        let features: Vec<serde_json::Map<String, serde_json::Value>> = page
            .iter()
            .map(|m| serde_json::from_str(&m.features).unwrap_or_default())
            .collect();
        if columns.is_empty() {
            // Feature columns and their types from the first page (numbers → float).
            columns = base.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect();
            for key in features[0].keys().filter(|k| *k != "user_id") {
                let numeric = features
                    .iter()
                    .filter_map(|f| f.get(key).filter(|v| !v.is_null()))
                    .all(serde_json::Value::is_number);
                columns.push((
                    key.clone(),
                    if numeric {
                        ColumnType::Float
                    } else {
                        ColumnType::Text
                    },
                ));
            }
            if parquet {
                let path = args.output.as_ref().expect("checked");
                parquet_out = Some(ParquetTable::create(path, &columns)?);
            } else {
                let out: Box<dyn Write> = match &args.output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
                    )),
                    None => Box::new(std::io::stdout().lock()),
                };
                let mut w = csv::Writer::from_writer(out);
                w.write_record(columns.iter().map(|(n, _)| n.as_str()))?;
                csv_out = Some(w);
            }
        }
        for (m, f) in page.iter().zip(&features) {
            let (pt, en) = names.get(&m.label).cloned().unwrap_or_default();
            let text = |v: &Option<String>| v.clone().map_or(Cell::Null, Cell::Text);
            let mut row = vec![
                Cell::Text(m.user_ext_id.clone()),
                Cell::Int(m.label),
                Cell::Text(pt),
                Cell::Text(en),
                m.client_id.map_or(Cell::Null, Cell::Int),
                text(&m.name),
                text(&m.email),
                text(&m.phone),
            ];
            for (key, ty) in &columns[base.len()..] {
                row.push(match (f.get(key), ty) {
                    (None | Some(serde_json::Value::Null), _) => Cell::Null,
                    (Some(v), ColumnType::Float) => v.as_f64().map_or(Cell::Null, Cell::Float),
                    (Some(serde_json::Value::String(s)), _) => Cell::Text(s.clone()),
                    (Some(v), _) => Cell::Text(v.to_string()),
                });
            }
            if let Some(p) = &mut parquet_out {
                p.push(row)?;
            } else if let Some(w) = &mut csv_out {
                w.write_record(row.iter().map(|c| match c {
                    Cell::Null => String::new(),
                    Cell::Text(s) => s.clone(),
                    Cell::Int(i) => i.to_string(),
                    Cell::Float(x) => x.to_string(),
                }))?;
            }
            written += 1;
        }
    }
    if let Some(p) = parquet_out {
        p.finish()?;
    }
    if let Some(mut w) = csv_out {
        w.flush()?;
    }
    eprintln!("exported {written} players of segmentation #{}", run.id);
    Ok(())
}
