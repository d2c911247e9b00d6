//! The `segment_runs`, `segment_clusters` and `segment_members` tables.

use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::db::bulk::{SqlValue, insert_rows};
use crate::db::{Backend, DbError, DbResult, Tx, format_ms, now_ms};

/// A run as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// running, completed, failed.
    pub status: String,
    /// Parameters JSON.
    pub params: String,
    /// Report JSON.
    pub report: Option<String>,
    /// Failure.
    pub error: Option<String>,
    /// 1 for the account's active run.
    pub active: i64,
    /// Users clustered.
    pub users: i64,
    /// Clusters (noise group included).
    pub clusters: i64,
    /// The import that brought the players in as clients.
    pub import_id: Option<i64>,
    /// First transaction (epoch ms).
    pub window_start: Option<i64>,
    /// Last transaction (epoch ms).
    pub window_end: Option<i64>,
    /// Creation.
    pub created_at: i64,
    /// End.
    pub finished_at: Option<i64>,
    /// The worker holding the run (none: queued, waiting for a worker).
    pub lease_owner: Option<String>,
    /// When the holder's lease expires unless renewed (epoch ms).
    pub lease_until: Option<i64>,
    /// Times a worker took the run.
    pub attempts: i64,
    /// Who started it.
    pub created_by: Option<i64>,
}

const RUN_COLUMNS: &str = "id, account_id, status, params, report, error, active, users, clusters, import_id, \
    window_start, window_end, created_at, finished_at, lease_owner, lease_until, attempts, created_by";

impl RunRow {
    /// The status as the API shows it: a `running` run nobody has taken yet is `queued`.
    pub fn shown_status(&self) -> &str {
        if self.status == "running" && self.lease_owner.is_none() {
            "queued"
        } else {
            &self.status
        }
    }
}

/// A run, for the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunOut {
    /// Id.
    pub id: i64,
    /// `queued` (waiting for a worker), `running`, `completed` or `failed`.
    pub status: String,
    /// Times a worker took the run (more than one: a worker died and another took over).
    pub attempts: i64,
    /// Whether this is the account's active run (the one clusters are served from).
    pub active: bool,
    /// Players clustered.
    pub users: i64,
    /// Clusters (the noise group counts as one).
    pub clusters: i64,
    /// The import that matched players to CRM clients.
    pub import_id: Option<i64>,
    /// Parameters (farol_segment::RunParams plus sources).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Report: cleaning counts, quality (silhouette, Davies–Bouldin, Calinski–Harabasz,
    /// sizes, stability ARI), timings, matches with the previous run.
    #[schema(value_type = Object)]
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Data window start.
    pub window_start: Option<String>,
    /// Data window end.
    pub window_end: Option<String>,
    /// Start.
    pub created_at: String,
    /// End.
    pub finished_at: Option<String>,
}

impl From<RunRow> for RunOut {
    fn from(r: RunRow) -> Self {
        RunOut {
            id: r.id,
            status: r.shown_status().to_owned(),
            attempts: r.attempts,
            active: r.active != 0,
            users: r.users,
            clusters: r.clusters,
            import_id: r.import_id,
            params: serde_json::from_str(&r.params).unwrap_or_default(),
            report: r.report.and_then(|s| serde_json::from_str(&s).ok()),
            error: r.error,
            window_start: r.window_start.map(format_ms),
            window_end: r.window_end.map(format_ms),
            created_at: format_ms(r.created_at),
            finished_at: r.finished_at.map(format_ms),
        }
    }
}

/// Records a run. With `lease` (`(owner, until)`) the caller runs it at once under that
/// lease; without, it is queued for the segmentation workers.
pub async fn create_run(
    conn: &mut AnyConnection,
    account_id: i64,
    created_by: Option<i64>,
    params: &serde_json::Value,
    lease: Option<(&str, i64)>,
) -> DbResult<i64> {
    let (owner, until) = match lease {
        Some((o, u)) => (Some(o.to_owned()), Some(u)),
        None => (None, None),
    };
    Ok(sqlx::query_scalar(
        "insert into segment_runs (account_id, status, params, created_by, created_at, lease_owner, lease_until, attempts) \
         values ($1, 'running', $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(account_id)
    .bind(params.to_string())
    .bind(created_by)
    .bind(now_ms())
    .bind(owner)
    .bind(until)
    .bind(i64::from(lease.is_some()))
    .fetch_one(conn)
    .await?)
}

/// Claims the oldest run that is queued or whose holder's lease expired, for `owner` until
/// `now + lease_ms`. Runs already taken `max_attempts` times are failed instead (a run that
/// kills its worker every time must not loop forever).
pub async fn claim_run(
    db: &crate::db::Db,
    owner: &str,
    lease_ms: i64,
    max_attempts: i64,
) -> DbResult<Option<RunRow>> {
    let now = now_ms();
    let lock = match db.backend() {
        Backend::Postgres => " for update skip locked",
        Backend::Sqlite => "",
    };
    // Read first: idle workers poll this every second, and on SQLite a transaction that may
    // write takes the database's only write lock.
    let any: Option<i64> = sqlx::query_scalar(
        "select id from segment_runs where status = 'running' \
         and (lease_owner is null or lease_until < $1) limit 1",
    )
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if any.is_none() {
        return Ok(None);
    }
    loop {
        let mut tx = db.begin().await?;
        let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {RUN_COLUMNS} from segment_runs where status = 'running' \
             and (lease_owner is null or lease_until < $1) order by id limit 1{lock}"
        )))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        if row.attempts >= max_attempts {
            let error = format!(
                "interrupted {} times: the workers running it stopped before it finished",
                row.attempts
            );
            sqlx::query(
                "update segment_runs set status = 'failed', error = $1, finished_at = $2, lease_owner = null, lease_until = null where id = $3",
            )
            .bind(error)
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            continue;
        }
        sqlx::query(
            "update segment_runs set lease_owner = $1, lease_until = $2, attempts = attempts + 1 where id = $3",
        )
        .bind(owner.to_owned())
        .bind(now + lease_ms)
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        row.lease_owner = Some(owner.to_owned());
        row.lease_until = Some(now + lease_ms);
        row.attempts += 1;
        return Ok(Some(row));
    }
}

/// Extends `owner`'s lease on a run; false when the run is no longer its (taken over,
/// released, finished).
pub async fn renew_run_lease(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    lease_ms: i64,
) -> DbResult<bool> {
    Ok(sqlx::query(
        "update segment_runs set lease_until = $1 where id = $2 and lease_owner = $3 and status = 'running'",
    )
    .bind(now_ms() + lease_ms)
    .bind(id)
    .bind(owner.to_owned())
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Puts a run `owner` holds back in the queue (graceful stop): another worker starts it over.
pub async fn release_run(conn: &mut AnyConnection, id: i64, owner: &str) -> DbResult<()> {
    sqlx::query(
        "update segment_runs set lease_owner = null, lease_until = null, attempts = attempts - 1 \
         where id = $1 and lease_owner = $2 and status = 'running'",
    )
    .bind(id)
    .bind(owner.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// One run of an account.
pub async fn get_run(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<RunRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RUN_COLUMNS} from segment_runs where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// The active run of an account.
pub async fn active_run(conn: &mut AnyConnection, account_id: i64) -> DbResult<Option<RunRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RUN_COLUMNS} from segment_runs where account_id = $1 and active = 1"
    )))
    .bind(account_id)
    .fetch_optional(conn)
    .await?)
}

/// Marks a run `owner` holds failed.
pub async fn fail_run(conn: &mut AnyConnection, id: i64, owner: &str, error: &str) -> DbResult<()> {
    sqlx::query(
        "update segment_runs set status = 'failed', error = $1, finished_at = $2, lease_owner = null, lease_until = null \
         where id = $3 and lease_owner = $4 and status = 'running'",
    )
    .bind(error.to_owned())
    .bind(now_ms())
    .bind(id)
    .bind(owner.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored cluster.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClusterRow {
    /// Id (stable handle for the API).
    pub id: i64,
    /// Run.
    pub run_id: i64,
    /// Label in the run (−1: noise).
    pub label: i64,
    /// pt-BR name.
    pub name_pt: String,
    /// English name.
    pub name_en: String,
    /// Named by a person.
    pub user_named: i64,
    /// Members.
    pub size: i64,
    /// Share of players.
    pub share: f64,
    /// Profile JSON.
    pub profile: String,
}

const CLUSTER_COLUMNS: &str =
    "c.id, c.run_id, c.label, c.name_pt, c.name_en, c.user_named, c.size, c.share, c.profile";

/// Clusters of a run, by label (noise last).
pub async fn clusters(conn: &mut AnyConnection, run_id: i64) -> DbResult<Vec<ClusterRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CLUSTER_COLUMNS} from segment_clusters c where c.run_id = $1 \
         order by case when c.label < 0 then 1 else 0 end, c.label"
    )))
    .bind(run_id)
    .fetch_all(conn)
    .await?)
}

/// One cluster of an account.
pub async fn cluster(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<ClusterRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CLUSTER_COLUMNS} from segment_clusters c where c.account_id = $1 and c.id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Stores a finished run: clusters, members, report; makes it the active run. Only while
/// `owner` still holds it: a worker whose lease was taken over stores nothing
/// ([`DbError::NotFound`]).
#[allow(clippy::too_many_arguments)]
pub async fn complete_run(
    tx: &mut Tx,
    backend: Backend,
    run_id: i64,
    owner: &str,
    account_id: i64,
    import_id: Option<i64>,
    seg: &farol_segment::Segmentation,
    clients: &std::collections::HashMap<String, i64>,
) -> DbResult<()> {
    // Locks the run's row for the transaction (a take-over waits, then finds it completed).
    let held = sqlx::query(
        "update segment_runs set lease_until = lease_until where id = $1 and lease_owner = $2 and status = 'running'",
    )
    .bind(run_id)
    .bind(owner.to_owned())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if held != 1 {
        return Err(DbError::NotFound);
    }
    let rows = seg
        .profiles
        .iter()
        .map(|p| {
            vec![
                run_id.into(),
                account_id.into(),
                i64::from(p.cluster).into(),
                p.name_pt.clone().into(),
                p.name_en.clone().into(),
                i64::from(p.user_named).into(),
                (p.size as i64).into(),
                SqlValue::Real(Some(p.share)),
                serde_json::to_string(p).expect("profile serializes").into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        backend,
        "insert into segment_clusters (run_id, account_id, label, name_pt, name_en, user_named, size, share, profile) values ",
        "",
        rows,
    )
    .await?;
    for (features, labels) in seg.features.chunks(2000).zip(seg.labels.chunks(2000)) {
        let rows = features
            .iter()
            .zip(labels)
            .map(|(f, label)| {
                vec![
                    run_id.into(),
                    account_id.into(),
                    f.user_id.clone().into(),
                    clients.get(&f.user_id).copied().into(),
                    i64::from(*label).into(),
                    serde_json::to_string(f).expect("features serialize").into(),
                ]
            })
            .collect();
        insert_rows(
            tx,
            backend,
            "insert into segment_members (run_id, account_id, user_ext_id, client_id, label, features) values ",
            "",
            rows,
        )
        .await?;
    }
    sqlx::query("update segment_runs set active = 0 where account_id = $1 and active = 1")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "update segment_runs set status = 'completed', active = 1, report = $1, users = $2, clusters = $3, \
         import_id = $4, window_start = $5, window_end = $6, finished_at = $7, lease_owner = null, lease_until = null \
         where id = $8",
    )
    .bind(serde_json::to_string(&seg.report).expect("report serializes"))
    .bind(seg.features.len() as i64)
    .bind(seg.profiles.len() as i64)
    .bind(import_id)
    .bind(seg.report.window.0)
    .bind(seg.report.window.1)
    .bind(now_ms())
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A member of a cluster with its CRM client.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct MemberRow {
    /// The operator's user id.
    pub user_ext_id: String,
    /// The CRM client, when the player could be matched or created.
    pub client_id: Option<i64>,
    /// Label in the run.
    pub label: i64,
    /// Client name.
    pub name: Option<String>,
    /// Preferred e-mail.
    pub email: Option<String>,
    /// Preferred phone.
    pub phone: Option<String>,
    /// Features JSON.
    #[serde(skip)]
    pub features: String,
}

const MEMBER_SELECT: &str = "select m.user_ext_id, m.client_id, m.label, cl.name, \
    (select value from contacts where client_id = m.client_id and kind = 'email' order by preferred desc, id limit 1) as email, \
    (select value from contacts where client_id = m.client_id and kind = 'phone' order by preferred desc, id limit 1) as phone, \
    m.features from segment_members m left join clients cl on cl.id = m.client_id";

/// Members of a cluster, by user id, after `after` (keyset pagination).
pub async fn members(
    conn: &mut AnyConnection,
    run_id: i64,
    label: i64,
    after: &str,
    limit: i64,
) -> DbResult<Vec<MemberRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} where m.run_id = $1 and m.label = $2 and m.user_ext_id > $3 order by m.user_ext_id limit $4"
    )))
    .bind(run_id)
    .bind(label)
    .bind(after.to_owned())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Every member of a run, after `after` (for exports).
pub async fn all_members(
    conn: &mut AnyConnection,
    run_id: i64,
    after: &str,
    limit: i64,
) -> DbResult<Vec<MemberRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} where m.run_id = $1 and m.user_ext_id > $2 order by m.user_ext_id limit $3"
    )))
    .bind(run_id)
    .bind(after.to_owned())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A player's membership in a run, by external user id or CRM client id.
pub async fn member(
    conn: &mut AnyConnection,
    run_id: i64,
    user_ext_id: Option<&str>,
    client_id: Option<i64>,
) -> DbResult<Option<MemberRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} where m.run_id = $1 and (m.user_ext_id = $2 or m.client_id = $3) limit 1"
    )))
    .bind(run_id)
    .bind(user_ext_id.map(str::to_owned))
    .bind(client_id)
    .fetch_optional(conn)
    .await?)
}
