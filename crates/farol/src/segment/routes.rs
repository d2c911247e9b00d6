//! The segmentation API: runs, clusters of the active run, members, a player's segment and
//! behavior.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::service::{self, Sources};
use super::store::{self, ClusterRow, MemberRow, RunOut};
use crate::api::extract::ApiJson;
use crate::api::{ApiError, ApiResult, ErrorBody, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::DbError;
use crate::state::AppState;

fn not_found(what: &'static str) -> impl Fn(DbError) -> ApiError {
    move |e| match e {
        DbError::NotFound => ApiError::NotFound(what),
        other => other.into(),
    }
}

/// Body of `POST /segmentations`. Sources are the data lake configured on the server
/// (`segment.transactions`, `segment.users`); the API never reads arbitrary paths.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NewRun {
    /// `auto` (KMeans, k by silhouette), `kmeans`, `dbscan` or `hdbscan`.
    pub algorithm: Option<String>,
    /// KMeans k (omit for automatic).
    pub k: Option<usize>,
    /// HDBSCAN minimum cluster size.
    pub min_cluster_size: Option<usize>,
    /// Read every transaction file again instead of only those the last run did not read.
    pub full: bool,
}

/// Builds run parameters from the configuration and the request's choices.
pub fn run_params(
    config: &crate::config::SegmentConfig,
    algorithm: Option<&str>,
    k: Option<usize>,
    min_cluster_size: Option<usize>,
) -> Result<farol_segment::RunParams, String> {
    use farol_segment::Algorithm;
    use farol_segment::cluster::{DbscanParams, HdbscanParams, KMeansParams};
    let mut params = farol_segment::RunParams::default();
    params.etl.time_zone.clone_from(&config.time_zone);
    params
        .etl
        .tx_mapping
        .clone_from(&config.transactions_mapping);
    params.etl.user_mapping.clone_from(&config.users_mapping);
    params.stability_check = true;
    params.algorithm = match algorithm.unwrap_or("auto") {
        "auto" | "kmeans" => Algorithm::Kmeans {
            k,
            k_min: 3,
            k_max: 12,
            params: KMeansParams::default(),
        },
        "dbscan" => Algorithm::Dbscan(DbscanParams::default()),
        "hdbscan" => Algorithm::Hdbscan(HdbscanParams {
            min_cluster_size: min_cluster_size.unwrap_or(50),
            ..HdbscanParams::default()
        }),
        other => {
            return Err(format!(
                "unknown algorithm `{other}`; expected auto, kmeans, dbscan or hdbscan"
            ));
        }
    };
    if let Some(k) = k
        && !(2..=50).contains(&k)
    {
        return Err("k must be between 2 and 50".into());
    }
    Ok(params)
}

/// Queues a segmentation run (ETL + features + clustering + naming) as a durable background
/// job: `status` is `queued` until a segmentation worker takes it.
#[utoipa::path(post, path = "/segmentations", tag = "segments", request_body = NewRun,
    responses((status = 202, body = RunOut), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_run(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewRun>,
) -> ApiResult<(StatusCode, Json<RunOut>)> {
    user.require(Permission::SegmentsRun)?;
    let config = &state.config.segment;
    let mut problems = Problems::default();
    if config.transactions.is_empty() {
        problems.add(
            "sources",
            "not_configured",
            "no data lake configured: set segment.transactions (and segment.users) in farol.toml",
        );
    }
    let params = match run_params(
        config,
        body.algorithm.as_deref(),
        body.k,
        body.min_cluster_size,
    ) {
        Ok(p) => Some(p),
        Err(m) => {
            problems.add("algorithm", "invalid", m);
            None
        }
    };
    problems.into_result()?;
    let mut params = params.expect("checked");
    params.full = body.full;
    let sources = Sources::from_config(config);
    let account_id = user.account_id;
    let id = service::create(&state.db, account_id, Some(user.id), &sources, &params).await?;
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get_run(&mut conn, account_id, id).await?;
    drop(conn);
    // A durable job: a segmentation worker (this process's or another's) takes it.
    state.segment_wake.notify_waiters();
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "segmentation.start",
        "segmentation",
        id,
        audit::NONE,
        Some(&row.params),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// A segmentation run: status, parameters, report (quality, cleaning counts, timings).
#[utoipa::path(get, path = "/segmentations/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_run(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<RunOut>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get_run(&mut conn, user.account_id, id)
        .await
        .map_err(not_found("segmentation"))?;
    Ok(Json(row.into()))
}

/// A cluster of the active run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterOut {
    /// Id (changes with each run; names carry over).
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// Label within the run (−1: noise, players that fit no cluster).
    pub label: i64,
    /// Name in pt-BR.
    pub name: String,
    /// Name in English.
    pub name_en: String,
    /// Named by a person (kept across runs).
    pub user_named: bool,
    /// Players.
    pub size: i64,
    /// Share of players.
    pub share: f64,
    /// Profile: distinctive features with values, channel and ticket-band shares.
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
}

impl From<ClusterRow> for ClusterOut {
    fn from(c: ClusterRow) -> Self {
        ClusterOut {
            id: c.id,
            run_id: c.run_id,
            label: c.label,
            name: c.name_pt,
            name_en: c.name_en,
            user_named: c.user_named != 0,
            size: c.size,
            share: c.share,
            profile: serde_json::from_str(&c.profile).unwrap_or_default(),
        }
    }
}

async fn active(state: &AppState, account_id: i64) -> ApiResult<store::RunRow> {
    let mut conn = state.db.pool().acquire().await?;
    store::active_run(&mut conn, account_id)
        .await?
        .ok_or(ApiError::NotFound(
            "segmentation (no run has completed yet)",
        ))
}

/// The clusters of the active run.
#[utoipa::path(get, path = "/clusters", tag = "segments",
    responses((status = 200, body = Vec<ClusterOut>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_clusters(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<ClusterOut>>> {
    user.require(Permission::CrmRead)?;
    let run = active(&state, user.account_id).await?;
    let key = state
        .segment_cache
        .key(user.account_id, run.id, "clusters")
        .await;
    if let Some(hit) = state.segment_cache.get(&key).await
        && let Ok(clusters) = serde_json::from_str(&hit)
    {
        return Ok(Json(clusters));
    }
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::clusters(&mut conn, run.id).await?;
    let out: Vec<ClusterOut> = rows.into_iter().map(ClusterOut::from).collect();
    let json = serde_json::to_string(&out).map_err(|e| ApiError::Internal(e.into()))?;
    state.segment_cache.set(&key, &json).await;
    Ok(Json(
        serde_json::from_str(&json).map_err(|e| ApiError::Internal(e.into()))?,
    ))
}

/// One cluster with its profile.
#[utoipa::path(get, path = "/clusters/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = ClusterOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_cluster(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ClusterOut>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    let row = store::cluster(&mut conn, user.account_id, id)
        .await
        .map_err(not_found("cluster"))?;
    Ok(Json(row.into()))
}

/// Body of `PATCH /clusters/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCluster {
    /// New pt-BR name (1–80 characters).
    pub name: Option<String>,
    /// New English name (1–80 characters).
    pub name_en: Option<String>,
}

/// Renames a cluster; the name sticks to the matching cluster in later runs.
#[utoipa::path(patch, path = "/clusters/{id}", tag = "segments", params(("id" = i64, Path)), request_body = RenameCluster,
    responses((status = 200, body = ClusterOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rename_cluster(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RenameCluster>,
) -> ApiResult<Json<ClusterOut>> {
    user.require(Permission::SegmentsRun)?;
    let mut problems = Problems::default();
    for (field, v) in [("name", &body.name), ("name_en", &body.name_en)] {
        if let Some(v) = v
            && (v.trim().is_empty() || v.chars().count() > 80)
        {
            problems.add(field, "invalid_length", "names have 1 to 80 characters");
        }
    }
    problems.into_result()?;
    let mut tx = state.db.begin().await?;
    let before = store::cluster(&mut tx, user.account_id, id)
        .await
        .map_err(not_found("cluster"))?;
    let name_pt = body
        .name
        .map(|n| n.trim().to_owned())
        .unwrap_or(before.name_pt.clone());
    let name_en = body
        .name_en
        .map(|n| n.trim().to_owned())
        .unwrap_or(before.name_en.clone());
    sqlx::query(
        "update segment_clusters set name_pt = $1, name_en = $2, user_named = 1 where id = $3",
    )
    .bind(name_pt)
    .bind(name_en)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let after = store::cluster(&mut tx, user.account_id, id).await?;
    let (b, a) = (ClusterOut::from(before), ClusterOut::from(after.clone()));
    audit::record(
        &mut tx,
        &user.actor(),
        "cluster.rename",
        "cluster",
        id,
        Some(&b.name),
        Some(&a.name),
    )
    .await?;
    tx.commit().await?;
    state.segment_cache.invalidate(user.account_id).await;
    Ok(Json(after.into()))
}

/// Query of `GET /clusters/{id}/users`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MembersQuery {
    /// The last user id of the previous page.
    pub after: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<i64>,
}

/// A page of players.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersPage {
    /// Players with their CRM client.
    pub items: Vec<MemberRow>,
    /// Pass as `after` for the next page (absent on the last one).
    pub next_after: Option<String>,
}

/// Players of a cluster, with their CRM client data.
#[utoipa::path(get, path = "/clusters/{id}/users", tag = "segments", params(("id" = i64, Path), MembersQuery),
    responses((status = 200, body = MembersPage), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cluster_users(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Query(q): Query<MembersQuery>,
) -> ApiResult<Json<MembersPage>> {
    user.require(Permission::CrmRead)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            "out_of_range",
            "limit must be between 1 and 500",
        ));
    }
    let mut conn = state.db.pool().acquire().await?;
    let c = store::cluster(&mut conn, user.account_id, id)
        .await
        .map_err(not_found("cluster"))?;
    let items = store::members(
        &mut conn,
        c.run_id,
        c.label,
        q.after.as_deref().unwrap_or(""),
        limit,
    )
    .await?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|m| m.user_ext_id.clone()))
        .flatten();
    Ok(Json(MembersPage { items, next_after }))
}

/// What sets a cluster apart: its profile (descriptors with values and z-scores, channel and
/// ticket-band shares, median ticket) beside its size and share.
#[utoipa::path(get, path = "/clusters/{id}/analytics", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cluster_analytics(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    let c = store::cluster(&mut conn, user.account_id, id)
        .await
        .map_err(not_found("cluster"))?;
    let profile: serde_json::Value = serde_json::from_str(&c.profile).unwrap_or_default();
    let linked: i64 = sqlx::query_scalar(
        "select count(*) from segment_members where run_id = $1 and label = $2 and client_id is not null",
    )
    .bind(c.run_id)
    .bind(c.label)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Json(serde_json::json!({
        "id": c.id,
        "name": c.name_pt,
        "name_en": c.name_en,
        "size": c.size,
        "share": c.share,
        "linked_clients": linked,
        "median_ticket": profile["median_ticket"],
        "channel_share": {
            "sms": profile["channel_share"][0],
            "whatsapp": profile["channel_share"][1],
            "email": profile["channel_share"][2],
            "push": profile["channel_share"][3],
        },
        "ticket_band_share": {
            "low": profile["ticket_band_share"][0],
            "medium": profile["ticket_band_share"][1],
            "high": profile["ticket_band_share"][2],
        },
        "descriptors": profile["descriptors"],
    })))
}

/// A player's segment in the active run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlayerSegment {
    /// The operator's user id.
    pub user_id: String,
    /// CRM client.
    pub client_id: Option<i64>,
    /// The cluster.
    pub cluster: ClusterOut,
}

async fn find_member(
    state: &AppState,
    account_id: i64,
    id: &str,
) -> ApiResult<(store::RunRow, MemberRow)> {
    let run = active(state, account_id).await?;
    let mut conn = state.db.pool().acquire().await?;
    let client_id = id.parse::<i64>().ok();
    let m = store::member(&mut conn, run.id, Some(id), None).await?;
    let m = match (m, client_id) {
        (Some(m), _) => Some(m),
        (None, Some(cid)) => store::member(&mut conn, run.id, None, Some(cid)).await?,
        (None, None) => None,
    };
    Ok((
        run,
        m.ok_or(ApiError::NotFound("player in the active segmentation"))?,
    ))
}

/// A player's cluster, by the operator's user id (or by CRM client id).
#[utoipa::path(get, path = "/users/{id}/segment", tag = "segments", params(("id" = String, Path, description = "external user id, or CRM client id")),
    responses((status = 200, body = PlayerSegment), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn player_segment(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<PlayerSegment>> {
    user.require(Permission::CrmRead)?;
    let key = match active(&state, user.account_id).await {
        Ok(run) => Some(
            state
                .segment_cache
                .key(user.account_id, run.id, &format!("player:{id}"))
                .await,
        ),
        Err(_) => None,
    };
    if let Some(key) = &key
        && let Some(hit) = state.segment_cache.get(key).await
        && let Ok(segment) = serde_json::from_str::<PlayerSegment>(&hit)
    {
        return Ok(Json(segment));
    }
    let (run, m) = find_member(&state, user.account_id, &id).await?;
    let mut conn = state.db.pool().acquire().await?;
    let c: ClusterRow = sqlx::query_as(
        "select c.id, c.run_id, c.label, c.name_pt, c.name_en, c.user_named, c.size, c.share, c.profile \
         from segment_clusters c where c.run_id = $1 and c.label = $2",
    )
    .bind(run.id)
    .bind(m.label)
    .fetch_one(&mut *conn)
    .await?;
    let out = PlayerSegment {
        user_id: m.user_ext_id,
        client_id: m.client_id,
        cluster: c.into(),
    };
    if let (Some(key), Ok(json)) = (&key, serde_json::to_string(&out)) {
        state.segment_cache.set(key, &json).await;
    }
    Ok(Json(out))
}

/// A player's behavior: the features computed from their transactions.
#[utoipa::path(get, path = "/users/{id}/behavior", tag = "segments", params(("id" = String, Path, description = "external user id, or CRM client id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn player_behavior(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    user.require(Permission::CrmRead)?;
    let (_, m) = find_member(&state, user.account_id, &id).await?;
    Ok(Json(serde_json::from_str(&m.features).unwrap_or_default()))
}
