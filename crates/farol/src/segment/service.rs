//! One segmentation run end to end: read the lake's files, cluster (farol-segment), bring the
//! players in as CRM clients (the importer's normalizers and dedupe), store the run.

use std::collections::HashMap;
use std::path::PathBuf;

use farol_normalize::{Email, Phone};
use farol_segment::{ClusterProfile, PreviousCluster, RunParams, Segmentation, Stage, UserRow};
use serde::{Deserialize, Serialize};

use super::store;
use crate::db::bulk::json_texts;
use crate::db::{Db, now_ms};
use crate::import::rows::Candidate;
use crate::import::store::{ImportOptions, NewFile, Status};
use crate::import::writer::{self, BatchMeta, Caches, Dedupe};

/// Where a run reads from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sources {
    /// Transaction files or folders (CSV/Parquet, `dt=` partitions).
    pub transactions: Vec<PathBuf>,
    /// User files or folders.
    pub users: Vec<PathBuf>,
}

impl Sources {
    /// The data lake configured in `[segment]`.
    pub fn from_config(config: &crate::config::SegmentConfig) -> Sources {
        let one = |s: &str| {
            (!s.is_empty())
                .then(|| PathBuf::from(s))
                .into_iter()
                .collect()
        };
        Sources {
            transactions: one(&config.transactions),
            users: one(&config.users),
        }
    }
}

/// What a finished run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: i64,
    /// The import that matched players to clients.
    pub import_id: i64,
    /// Clusters with names and sizes.
    pub clusters: Vec<ClusterSummary>,
    /// Players linked to a CRM client.
    pub linked_clients: usize,
    /// The run's report.
    pub report: farol_segment::RunReport,
    /// What was fetched from an object store (s3:// sources).
    pub fetched: Vec<super::lake::SyncReport>,
}

/// One line of a run summary.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// Label.
    pub cluster: i32,
    /// pt-BR name.
    pub name_pt: String,
    /// English name.
    pub name_en: String,
    /// Players.
    pub size: usize,
}

/// Runs a segmentation for an account in this process (the CLI). The run is recorded
/// under a lease this process renews while it works, so workers leave it alone — and take it
/// over if this process dies. Blocking work runs on the blocking pool.
pub async fn run(
    db: &Db,
    config: &crate::config::Config,
    account_id: i64,
    created_by: Option<i64>,
    sources: Sources,
    params: RunParams,
    progress: impl Fn(Stage) + Send + Sync + 'static,
) -> anyhow::Result<RunSummary> {
    let owner = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let lease_ms = config.segment.lease_ms();
    let mut conn = db.pool().acquire().await?;
    let stored_params = serde_json::json!({"run": params, "sources": sources});
    let run_id = store::create_run(
        &mut conn,
        account_id,
        created_by,
        &stored_params,
        Some((&owner, now_ms() + lease_ms)),
    )
    .await?;
    drop(conn);
    execute_run(
        db, config, account_id, created_by, run_id, &owner, sources, params, progress,
    )
    .await
}

/// Queues a run for the segmentation workers ([`super::worker`]).
pub async fn create(
    db: &Db,
    account_id: i64,
    created_by: Option<i64>,
    sources: &Sources,
    params: &RunParams,
) -> anyhow::Result<i64> {
    let mut conn = db.pool().acquire().await?;
    let stored_params = serde_json::json!({"run": params, "sources": sources});
    Ok(store::create_run(&mut conn, account_id, created_by, &stored_params, None).await?)
}

/// The parameters and sources a run was recorded with.
pub fn stored_params(params: &str) -> anyhow::Result<(RunParams, Sources)> {
    #[derive(Deserialize)]
    struct Stored {
        run: RunParams,
        sources: Sources,
    }
    let stored: Stored = serde_json::from_str(params)
        .map_err(|e| anyhow::anyhow!("the run's stored parameters do not parse: {e}"))?;
    Ok((stored.run, stored.sources))
}

/// Renews `owner`'s lease on a run every third of the lease until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(db: &Db, run_id: i64, owner: &str, lease_ms: i64) -> Heartbeat {
        let (db, owner) = (db.clone(), owner.to_owned());
        let every = std::time::Duration::from_millis((lease_ms / 3).max(100) as u64);
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let renewed = match db.pool().acquire().await {
                    Ok(mut conn) => {
                        store::renew_run_lease(&mut conn, run_id, &owner, lease_ms).await
                    }
                    Err(e) => Err(e.into()),
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            run = run_id,
                            "segmentation run no longer held by this worker; its result will be discarded"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(run = run_id, error = %e, "cannot renew the segmentation run's lease")
                    }
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Does run `run_id`, held by `owner`: mirrors `s3://` sources (see [`super::lake`]), then
/// reads, clusters and stores; on failure the run is marked failed with the reason. The lease
/// is renewed meanwhile; if another worker took the run over, nothing is stored.
#[allow(clippy::too_many_arguments)]
pub async fn execute_run(
    db: &Db,
    config: &crate::config::Config,
    account_id: i64,
    created_by: Option<i64>,
    run_id: i64,
    owner: &str,
    sources: Sources,
    params: RunParams,
    progress: impl Fn(Stage) + Send + Sync + 'static,
) -> anyhow::Result<RunSummary> {
    let _heartbeat = Heartbeat::start(db, run_id, owner, config.segment.lease_ms());
    let state =
        super::state::RunState::new(&config.data_dir, account_id, run_id, &sources.transactions);
    let (sources, fetched) =
        match super::lake::materialize_all(&config.segment, &config.data_dir, sources).await {
            Ok(s) => s,
            Err(e) => {
                let mut conn = db.pool().acquire().await?;
                store::fail_run(&mut conn, run_id, owner, &e.to_string()).await?;
                return Err(
                    anyhow::Error::new(e).context(format!("segmentation run #{run_id} failed"))
                );
            }
        };
    let mut conn = db.pool().acquire().await?;
    let previous = previous_clusters(&mut conn, account_id).await?;
    drop(conn);
    match execute(
        db, account_id, created_by, run_id, owner, sources, params, previous, &state, progress,
    )
    .await
    {
        Ok(summary) => {
            if config.smartico.enabled {
                // The run is stored; a failed push is recorded in its sync and retried by hand.
                let actor = crate::audit::Actor::system(account_id, "segment");
                if let Err(e) =
                    super::smartico::sync_run(db, &config.smartico, &actor, run_id).await
                {
                    tracing::warn!(run = run_id, error = %e, "cannot push the run to Smartico");
                }
            }
            Ok(RunSummary { fetched, ..summary })
        }
        Err(e) => {
            state.discard();
            let mut conn = db.pool().acquire().await?;
            store::fail_run(&mut conn, run_id, owner, &format!("{e:#}")).await?;
            Err(e.context(format!("segmentation run #{run_id} failed")))
        }
    }
}

/// The active run's clusters as the matcher needs them, with the names people gave.
async fn previous_clusters(
    conn: &mut sqlx::AnyConnection,
    account_id: i64,
) -> anyhow::Result<Vec<PreviousCluster>> {
    let Some(active) = store::active_run(conn, account_id).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for c in store::clusters(conn, active.id).await? {
        let Ok(profile) = serde_json::from_str::<ClusterProfile>(&c.profile) else {
            continue;
        };
        let mut p = PreviousCluster::from(&profile);
        p.name_pt = c.name_pt;
        p.name_en = c.name_en;
        p.user_named = c.user_named != 0;
        out.push(p);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    db: &Db,
    account_id: i64,
    created_by: Option<i64>,
    run_id: i64,
    owner: &str,
    sources: Sources,
    params: RunParams,
    previous: Vec<PreviousCluster>,
    state: &super::state::RunState,
    progress: impl Fn(Stage) + Send + Sync + 'static,
) -> anyhow::Result<RunSummary> {
    let files = state.files(params.full).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the aggregation state folder {}: {e}",
            state.current.parent().unwrap_or(&state.current).display()
        )
    })?;
    let (seg, users): (Segmentation, Vec<UserRow>) = tokio::task::spawn_blocking(move || {
        let seg = farol_segment::run_incremental(
            &sources.transactions,
            &sources.users,
            &params,
            &previous,
            &progress,
            &files,
        )?;
        let mut users = Vec::new();
        farol_segment::read_users(&sources.users, &params.etl, |u| users.push(u))?;
        Ok::<_, farol_segment::EtlError>((seg, users))
    })
    .await??;
    let import_id = players_to_clients(db, account_id, created_by, &users).await?;
    let clients = client_ids(db, account_id, &seg).await?;
    let mut tx = db.begin().await?;
    store::complete_run(
        &mut tx,
        db.backend(),
        run_id,
        owner,
        account_id,
        Some(import_id),
        &seg,
        &clients,
    )
    .await
    .map_err(|e| match e {
        crate::db::DbError::NotFound => anyhow::anyhow!(
            "run #{run_id} was taken over by another worker (this one's lease expired); this result is discarded"
        ),
        e => e.into(),
    })?;
    tx.commit().await?;
    // Stored: the next run may start from this run's aggregation.
    if let Err(e) = state.promote() {
        tracing::warn!(run = run_id, error = %e, path = %state.current.display(),
            "cannot keep the aggregation state; the next run reads every file");
    }
    Ok(RunSummary {
        run_id,
        import_id,
        linked_clients: clients.len(),
        clusters: seg
            .profiles
            .iter()
            .map(|p| ClusterSummary {
                cluster: p.cluster,
                name_pt: p.name_pt.clone(),
                name_en: p.name_en.clone(),
                size: p.size,
            })
            .collect(),
        report: seg.report,
        fetched: Vec::new(),
    })
}

/// A player as an import candidate: external id first, then phone, then e-mail identify the
/// client (the importer's precedence), values normalized by the same normalizers.
fn candidate(row: u64, u: &UserRow) -> Option<Candidate> {
    let phones: Vec<String> = Phone::parse(&u.phone)
        .ok()
        .map(|p| p.phone.into_string())
        .into_iter()
        .collect();
    let emails: Vec<String> = Email::parse(&u.email)
        .ok()
        .map(Email::into_string)
        .into_iter()
        .collect();
    if phones.is_empty() && emails.is_empty() {
        return None;
    }
    let name = if u.name.trim().is_empty() {
        u.user_id.clone()
    } else {
        u.name.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let mut c = Candidate {
        row,
        name,
        phones,
        emails,
        external_id: Some(u.user_id.clone()),
        city: (!u.state.trim().is_empty()).then(|| u.state.trim().to_owned()),
        ..Candidate::default()
    };
    c.hash = crate::import::rows::hash(&c);
    Some(c)
}

/// Upserts the players as clients (dedupe `merge`: fills empty fields, adds contacts, never
/// overwrites what the CRM team typed) through an import job, so the report is the importer's.
async fn players_to_clients(
    db: &Db,
    account_id: i64,
    created_by: Option<i64>,
    users: &[UserRow],
) -> anyhow::Result<i64> {
    const FILE: &str = "data-lake:users";
    const OWNER: &str = "segmentation";
    let mut tx = db.begin().await?;
    let import_id = crate::import::store::create(
        &mut tx,
        account_id,
        created_by,
        Status::Running,
        Dedupe::Merge,
        &ImportOptions::default(),
        &[NewFile {
            name: FILE.into(),
            path: String::new(),
            size: None,
        }],
    )
    .await?;
    // Leased to this run, so no import worker takes it.
    crate::import::store::take_lease(&mut tx, import_id, OWNER, now_ms() + 86_400_000).await?;
    tx.commit().await?;
    let meta = BatchMeta {
        account_id,
        import_id,
        created_by,
        dedupe: Dedupe::Merge,
        file: FILE,
    };
    let mut caches = Caches::default();
    let mut counts = crate::import::store::Counters::default();
    let mut indexer = crate::crm::search_index::Indexer::start(db);
    for (chunk_no, chunk) in users.chunks(5000).enumerate() {
        let mut valid = Vec::with_capacity(chunk.len());
        for (i, u) in chunk.iter().enumerate() {
            counts.rows_read += 1;
            match candidate((chunk_no * 5000 + i + 2) as u64, u) {
                Some(c) => valid.push(c),
                None => {
                    counts.invalid += 1;
                    *counts.reasons.entry("no_contact".into()).or_default() += 1;
                }
            }
        }
        let mut attempt = 0;
        let mut outcome = loop {
            attempt += 1;
            let mut tx = writer::begin_batch(db, account_id).await?;
            match writer::write_batch(&mut tx, db.backend(), &meta, &mut caches, &valid).await {
                Ok(o) => {
                    tx.commit().await?;
                    break o;
                }
                Err(e) if writer::should_retry(&e, attempt, &mut caches) => {}
                Err(e) => return Err(e.into()),
            }
        };
        indexer.add(std::mem::take(&mut outcome.written)).await?;
        counts.absorb(outcome);
    }
    indexer.finish(account_id).await?;
    // The same bookkeeping as any import: counters, then completed.
    let mut tx = db.begin().await?;
    crate::import::store::save_progress(
        &mut tx, import_id, OWNER, &counts, 1, 0, 1_000_000, 60_000,
    )
    .await?;
    tx.commit().await?;
    let mut conn = db.pool().acquire().await?;
    crate::import::store::finish(&mut conn, import_id, OWNER, Status::Completed, None).await?;
    Ok(import_id)
}

/// CRM client of each clustered player, by external id.
async fn client_ids(
    db: &Db,
    account_id: i64,
    seg: &Segmentation,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    let sql = format!(
        "select c.external_id, c.id from {} cross join clients c where c.account_id = $1 and c.external_id = j.value",
        json_texts(db.backend(), 2)
    );
    let mut conn = db.pool().acquire().await?;
    for chunk in seg.features.chunks(5000) {
        let ids: Vec<&str> = chunk.iter().map(|f| f.user_id.as_str()).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(account_id)
            .bind(serde_json::to_string(&ids)?)
            .fetch_all(&mut *conn)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}
