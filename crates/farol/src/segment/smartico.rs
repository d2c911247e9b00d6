//! Smartico sync of segmentation runs. Each player's segment is its cluster, as
//! `<segment_prefix><CLUSTER NAME>` in the array property `smartico.property`
//! (`core_external_segment`). A sync pushes only the **diff** against the last run pushed
//! successfully: `+property` for the segment a player entered, `-property` for the one they left
//! (farol-channels' `diff_segments`). Event ids derive from (account, base run, run, player,
//! change), so pushing the same diff again is deduplicated by Smartico (20056 counts as
//! delivered). Batches hold at most `smartico.batch_size` (≤ 4,000) events; 429/5xx/timeouts
//! are retried with backoff; per-event errors are reconciled (10001 "user not found" is
//! recorded, the sync still completes). Each sync is a row of `smartico_syncs`.
//!
//! Runs: automatically after each completed run when `smartico.enabled`, `farol segment
//! push-smartico RUN_ID`, `POST /segmentations/{id}/smartico`; `GET` lists a run's syncs.
//! `farol segment export --format smartico-csv` writes Smartico's "imported segment" CSV.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use farol_channels::Backoff;
use farol_channels::smartico::{
    ERR_USER_NOT_FOUND, ImportedSegmentCsv, SmarticoClient, SmarticoConfig, diff_segments,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::store;
use crate::api::{ApiError, ApiResult, ErrorBody};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::config::SmarticoSettings;
use crate::db::{Db, DbError, DbResult, format_ms, now_ms};
use crate::state::AppState;

/// Failures kept per sync.
const MAX_FAILURES: usize = 1000;

/// `FAROL_` + the name in capitals without accents, non-alphanumerics as `_`.
pub fn segment_value(prefix: &str, name: &str) -> String {
    let folded = farol_normalize::fold(name);
    let mut out = String::with_capacity(prefix.len() + folded.len());
    out.push_str(prefix);
    let mut gap = false;
    for ch in folded.chars() {
        if ch.is_ascii_alphanumeric() {
            if gap && !out.ends_with('_') && out.len() > prefix.len() {
                out.push('_');
            }
            gap = false;
            out.push(ch.to_ascii_uppercase());
        } else {
            gap = true;
        }
    }
    out
}

/// Player → segment value of a run (the noise group is no segment).
async fn memberships(
    conn: &mut AnyConnection,
    run_id: i64,
    prefix: &str,
) -> DbResult<BTreeMap<String, String>> {
    let names: BTreeMap<i64, String> = store::clusters(conn, run_id)
        .await?
        .into_iter()
        .filter(|c| c.label >= 0)
        .map(|c| (c.label, segment_value(prefix, &c.name_pt)))
        .collect();
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page: Vec<(String, i64)> = sqlx::query_as(
            "select user_ext_id, label from segment_members where run_id = $1 and user_ext_id > $2 \
             order by user_ext_id limit 10000",
        )
        .bind(run_id)
        .bind(after.clone())
        .fetch_all(&mut *conn)
        .await?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (user, label) in page {
            if let Some(segment) = names.get(&label) {
                out.insert(user, segment.clone());
            }
        }
    }
    Ok(out)
}

/// One event Smartico rejected.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncFailure {
    /// Event id.
    pub eid: String,
    /// Player.
    pub user_ext_id: String,
    /// Smartico's code (`10001`: user not found) or a local one (`transient`, `http_401`…).
    pub code: String,
    /// Message.
    pub message: String,
}

/// A sync of a run to Smartico.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncOut {
    /// Id.
    pub id: i64,
    /// The run pushed.
    pub run_id: i64,
    /// The run the diff was computed against (`null`: first push).
    pub base_run_id: Option<i64>,
    /// `running`, `completed` (every event accepted or its user unknown to Smartico) or
    /// `failed`.
    pub status: String,
    /// Players who entered a segment.
    pub users_entered: i64,
    /// Players who left a segment.
    pub users_left: i64,
    /// Events sent (one per changed player).
    pub events: i64,
    /// Events accepted (duplicates included).
    pub accepted: i64,
    /// Of those, already known to Smartico (a repeated push).
    pub duplicates: i64,
    /// Events rejected.
    pub failed: i64,
    /// Of those, players Smartico does not know (10001).
    pub users_not_found: i64,
    /// HTTP requests made (retries included).
    pub requests: i64,
    /// Rejected events (at most 1,000).
    pub failures: Vec<SyncFailure>,
    /// Why the sync failed, when it did.
    pub error: Option<String>,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct SyncRow {
    id: i64,
    run_id: i64,
    base_run_id: Option<i64>,
    status: String,
    users_entered: i64,
    users_left: i64,
    events: i64,
    accepted: i64,
    duplicates: i64,
    failed: i64,
    users_not_found: i64,
    requests: i64,
    failures: Option<String>,
    error: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
}

const SYNC_COLUMNS: &str = "id, run_id, base_run_id, status, users_entered, users_left, events, accepted, \
    duplicates, failed, users_not_found, requests, failures, error, started_at, finished_at";

impl From<SyncRow> for SyncOut {
    fn from(r: SyncRow) -> Self {
        SyncOut {
            id: r.id,
            run_id: r.run_id,
            base_run_id: r.base_run_id,
            status: r.status,
            users_entered: r.users_entered,
            users_left: r.users_left,
            events: r.events,
            accepted: r.accepted,
            duplicates: r.duplicates,
            failed: r.failed,
            users_not_found: r.users_not_found,
            requests: r.requests,
            failures: r
                .failures
                .and_then(|f| serde_json::from_str(&f).ok())
                .unwrap_or_default(),
            error: r.error,
            started_at: format_ms(r.started_at),
            finished_at: r.finished_at.map(format_ms),
        }
    }
}

fn client(settings: &SmarticoSettings) -> SmarticoClient {
    let mut config = SmarticoConfig::new(
        settings.base_url.trim().to_owned(),
        settings.label_token.expose_secret().to_owned(),
    );
    let brand = settings.brand.trim();
    config.ext_brand_id = (!brand.is_empty()).then(|| brand.to_owned());
    config.timeout = Duration::from_secs(settings.timeout_secs.max(1));
    config.max_events_per_request = settings.batch_size.clamp(1, 4000);
    config.backoff = Backoff {
        base: Duration::from_millis(settings.retry_base_ms.max(1)),
        cap: Duration::from_secs(60),
        max_retry_after: Duration::from_secs(5 * 60),
        max_retries: settings.max_retries,
    };
    SmarticoClient::new(config)
}

/// Pushes run `run_id` of the actor's account to Smartico (the diff against the last run
/// pushed successfully) and records the sync.
pub async fn sync_run(
    db: &Db,
    settings: &SmarticoSettings,
    actor: &Actor,
    run_id: i64,
) -> ApiResult<SyncOut> {
    if !settings.enabled {
        return Err(ApiError::Conflict {
            field: "smartico".into(),
            message: "Smartico is not configured (smartico.enabled, smartico.base_url, smartico.label_token)".into(),
        });
    }
    let mut conn = db.pool().acquire().await?;
    let run = store::get_run(&mut conn, actor.account_id, run_id)
        .await
        .map_err(|e| match e {
            DbError::NotFound => ApiError::NotFound("segmentation"),
            other => other.into(),
        })?;
    if run.status != "completed" {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "segmentation #{run_id} is {}; only completed runs are pushed",
                run.status
            ),
        });
    }
    let base: Option<i64> = sqlx::query_scalar(
        "select run_id from smartico_syncs where account_id = $1 and status = 'completed' and run_id <> $2 \
         order by id desc limit 1",
    )
    .bind(actor.account_id)
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    let started = now_ms();
    let id: i64 = sqlx::query_scalar(
        "insert into smartico_syncs (account_id, run_id, base_run_id, status, created_by, started_at) \
         values ($1, $2, $3, 'running', $4, $5) returning id",
    )
    .bind(actor.account_id)
    .bind(run_id)
    .bind(base)
    .bind(actor.user_id)
    .bind(started)
    .fetch_one(&mut *conn)
    .await?;
    let prefix = settings.segment_prefix.as_str();
    let previous = match base {
        Some(b) => memberships(&mut conn, b, prefix).await?,
        None => BTreeMap::new(),
    };
    let current = memberships(&mut conn, run_id, prefix).await?;
    drop(conn);
    let entered = current
        .iter()
        .filter(|(u, s)| previous.get(*u) != Some(*s))
        .count() as i64;
    let left = previous
        .iter()
        .filter(|(u, s)| current.get(*u) != Some(*s))
        .count() as i64;
    let snapshot = format!(
        "farol:{}:{}:{run_id}",
        actor.account_id,
        base.map_or("none".to_owned(), |b| b.to_string())
    );
    let events = diff_segments(
        &previous,
        &current,
        settings.property.trim(),
        &snapshot,
        started,
        settings.skip_cjm,
    );
    let n_events = events.len() as i64;
    let report = if events.is_empty() {
        Default::default()
    } else {
        client(settings).push(events).await
    };
    let not_found = report.users_not_found().count() as i64;
    let other: Vec<&farol_channels::smartico::EventFailure> = report
        .failed
        .iter()
        .filter(|f| f.code != ERR_USER_NOT_FOUND.to_string())
        .collect();
    let (status, error) = match other.first() {
        None => ("completed", None),
        Some(f) => (
            "failed",
            Some(format!(
                "{} event(s) not delivered; first: {} ({})",
                other.len(),
                f.code,
                f.message
            )),
        ),
    };
    let failures: Vec<SyncFailure> = report
        .failed
        .iter()
        .take(MAX_FAILURES)
        .map(|f| SyncFailure {
            eid: f.eid.clone(),
            user_ext_id: f.user_ext_id.clone(),
            code: f.code.clone(),
            message: f.message.clone(),
        })
        .collect();
    let mut tx = db.begin().await?;
    sqlx::query(
        "update smartico_syncs set status = $1, users_entered = $2, users_left = $3, events = $4, accepted = $5, \
         duplicates = $6, failed = $7, users_not_found = $8, requests = $9, failures = $10, error = $11, finished_at = $12 \
         where id = $13",
    )
    .bind(status)
    .bind(entered)
    .bind(left)
    .bind(n_events)
    .bind(report.accepted as i64)
    .bind(report.duplicates as i64)
    .bind(report.failed.len() as i64)
    .bind(not_found)
    .bind(report.requests as i64)
    .bind(serde_json::to_string(&failures).expect("serializes"))
    .bind(error.clone())
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let row: SyncRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {SYNC_COLUMNS} from smartico_syncs where id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let out = SyncOut::from(row);
    audit::record(
        &mut tx,
        actor,
        "segmentation.smartico_sync",
        "segmentation",
        run_id,
        audit::NONE,
        Some(&serde_json::json!({
            "sync_id": id,
            "base_run_id": base,
            "status": status,
            "events": n_events,
            "accepted": out.accepted,
            "failed": out.failed,
            "users_not_found": not_found,
        })),
    )
    .await?;
    tx.commit().await?;
    match &error {
        None => tracing::info!(
            run = run_id,
            sync = id,
            events = n_events,
            users_not_found = not_found,
            "Smartico sync completed"
        ),
        Some(e) => tracing::warn!(run = run_id, sync = id, error = %e, "Smartico sync failed"),
    }
    Ok(out)
}

/// Pushes a run to Smartico now (the diff against the last run pushed) and returns the sync.
#[utoipa::path(post, path = "/segmentations/{id}/smartico", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = SyncOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn push_run(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<SyncOut>> {
    user.require(Permission::SegmentsRun)?;
    Ok(Json(
        sync_run(&state.db, &state.config.smartico, &user.actor(), id).await?,
    ))
}

/// The Smartico syncs of a run, newest first.
#[utoipa::path(get, path = "/segmentations/{id}/smartico", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<SyncOut>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_syncs(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<SyncOut>>> {
    user.require(Permission::SegmentsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    store::get_run(&mut conn, user.account_id, id)
        .await
        .map_err(|e| match e {
            DbError::NotFound => ApiError::NotFound("segmentation"),
            other => other.into(),
        })?;
    let rows: Vec<SyncRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {SYNC_COLUMNS} from smartico_syncs where account_id = $1 and run_id = $2 order by id desc limit 100"
    )))
    .bind(user.account_id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Writes Smartico's "imported segment" CSV of a run: `user_ext_id,<property>` with each
/// player's segment value (noise excluded); returns the rows written.
pub async fn write_csv(
    db: &Db,
    settings: &SmarticoSettings,
    run_id: i64,
    out: impl Write,
) -> anyhow::Result<u64> {
    let mut conn = db.pool().acquire().await?;
    let members = memberships(&mut conn, run_id, &settings.segment_prefix).await?;
    let mut csv = ImportedSegmentCsv::new(out, &[settings.property.trim()])?;
    for (user, segment) in &members {
        csv.write_row(user, &[segment])?;
    }
    csv.finish()?.flush()?;
    Ok(members.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_values_are_capitals_without_accents() {
        assert_eq!(
            segment_value("FAROL_", "Apostadores de alto valor"),
            "FAROL_APOSTADORES_DE_ALTO_VALOR"
        );
        assert_eq!(
            segment_value("FAROL_", "  Caça-níqueis à noite! "),
            "FAROL_CACA_NIQUEIS_A_NOITE"
        );
        assert_eq!(segment_value("", "VIP"), "VIP");
    }
}
