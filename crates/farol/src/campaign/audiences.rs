//! Audiences: who a campaign targets. A saved filter over clients (status, portfolio, tags,
//! custom fields, creation range) or a static list of client ids. The audience is evaluated
//! when a campaign launches (a snapshot); opted-out and invalid contacts are excluded again at
//! send time, whatever the audience says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::crm::clients::ClientStatus;
use crate::db::{Backend, DbError, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// A saved filter over clients. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudienceFilter {
    /// Client status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ClientStatus>,
    /// Portfolio id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portfolio_id: Option<i64>,
    /// Tag names; clients must have all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Custom field values by key (`{"plano": "ouro"}` is `cf.plano=ouro`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// Created at or after (RFC 3339 time or date, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_from: Option<String>,
    /// Created before (RFC 3339 time or date, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_to: Option<String>,
    /// Score class from `clients.score`: `hot` (≥ `campaign.score_hot_min`, 70 by default),
    /// `warm` (≥ `campaign.score_warm_min`, 40), `cold` (below).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_class: Option<ScoreClass>,
    /// Member of the cluster with this label in the account's active segmentation run (at
    /// launch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<i64>,
    /// Last contacted (any contact's `last_contacted_at`) at or after this time (RFC 3339 time
    /// or date, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_contacted_after: Option<String>,
    /// Contacted at least once, and last before this time (RFC 3339 time or date, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_contacted_before: Option<String>,
    /// `true`: never contacted by a campaign; `false`: contacted at least once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub never_contacted: Option<bool>,
}

/// A score class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScoreClass {
    /// Score ≥ `campaign.score_hot_min`.
    Hot,
    /// Score ≥ `campaign.score_warm_min` and below the hot threshold.
    Warm,
    /// Score below `campaign.score_warm_min`.
    Cold,
}

static SCORE_HOT_MIN: AtomicI64 = AtomicI64::new(70);
static SCORE_WARM_MIN: AtomicI64 = AtomicI64::new(40);

/// Sets the score class thresholds (`campaign.score_hot_min`, `campaign.score_warm_min`) of
/// this process; called when the application is built from its configuration.
pub fn set_score_classes(hot_min: i64, warm_min: i64) {
    SCORE_HOT_MIN.store(hot_min, Ordering::Relaxed);
    SCORE_WARM_MIN.store(warm_min, Ordering::Relaxed);
}

impl ScoreClass {
    /// `[min, max)` of the class's scores.
    pub fn range(self) -> (i64, i64) {
        let hot = SCORE_HOT_MIN.load(Ordering::Relaxed);
        let warm = SCORE_WARM_MIN.load(Ordering::Relaxed);
        match self {
            ScoreClass::Hot => (hot, i64::MAX),
            ScoreClass::Warm => (warm, hot),
            ScoreClass::Cold => (i64::MIN, warm),
        }
    }
}

/// What an audience holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Definition {
    /// A filter, evaluated at launch.
    Filter(AudienceFilter),
    /// Fixed client ids.
    ClientIds(Vec<i64>),
}

/// Body of `POST /audiences` and `PATCH /audiences/{id}`: a name and exactly one of `filter`
/// or `client_ids`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceInput {
    /// Name (1–200 characters), unique in the account.
    pub name: Option<String>,
    /// A filter over clients.
    pub filter: Option<AudienceFilter>,
    /// A static list of client ids.
    pub client_ids: Option<Vec<i64>>,
}

/// An audience.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudienceOut {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The filter, for filter audiences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<AudienceFilter>,
    /// The client ids, for static audiences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ids: Option<Vec<i64>>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct AudienceRow {
    id: i64,
    name: String,
    kind: String,
    definition: String,
    created_at: i64,
    updated_at: i64,
}

impl AudienceRow {
    fn definition(&self) -> Definition {
        if self.kind == "static" {
            #[derive(Deserialize)]
            struct Ids {
                client_ids: Vec<i64>,
            }
            Definition::ClientIds(
                serde_json::from_str::<Ids>(&self.definition)
                    .map(|i| i.client_ids)
                    .unwrap_or_default(),
            )
        } else {
            Definition::Filter(serde_json::from_str(&self.definition).unwrap_or_default())
        }
    }
}

impl From<AudienceRow> for AudienceOut {
    fn from(r: AudienceRow) -> Self {
        let (filter, client_ids) = match r.definition() {
            Definition::Filter(f) => (Some(f), None),
            Definition::ClientIds(ids) => (None, Some(ids)),
        };
        AudienceOut {
            id: r.id,
            name: r.name,
            filter,
            client_ids,
            created_at: format_ms(r.created_at),
            updated_at: format_ms(r.updated_at),
        }
    }
}

fn parse_time(problems: &mut Problems, field: &str, raw: &str) -> Option<i64> {
    if let Ok(ts) = raw.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(date) = raw.parse::<jiff::civil::Date>()
        && let Ok(zoned) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Some(zoned.timestamp().as_millisecond());
    }
    problems.add(
        field,
        "invalid_time",
        "use an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01, UTC)",
    );
    None
}

/// `select <columns> from clients c where …` for a definition. Problems name the bad fields
/// under `prefix` (`filter.tags`, …).
async fn clients_query(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    def: &Definition,
    columns: &str,
) -> ApiResult<SqlBuilder> {
    let mut problems = Problems::default();
    let q = match def {
        Definition::ClientIds(ids) => {
            // The list is one JSON parameter; `cross join` drives the lookup from it (see
            // db::bulk::json_ints).
            let json = serde_json::to_string(ids).expect("ids serialize");
            let mut q = SqlBuilder::new(&format!("select {columns} from "));
            match backend {
                Backend::Sqlite => q.push("json_each(").bind(json).push(") j"),
                Backend::Postgres => q
                    .push("(select e::bigint as value from json_array_elements_text(")
                    .bind(json)
                    .push("::json) e) j"),
            };
            q.push(" cross join clients c where c.id = j.value and c.account_id = ")
                .bind(account_id);
            q
        }
        Definition::Filter(f) => {
            let mut q = SqlBuilder::new(&format!(
                "select {columns} from clients c where c.account_id = "
            ));
            q.bind(account_id);
            if let Some(s) = f.status {
                q.push(" and c.status = ").bind(s.as_str().to_owned());
            }
            if let Some(p) = f.portfolio_id {
                q.push(" and c.portfolio_id = ").bind(p);
            }
            for tag in &f.tags {
                q.push(" and exists (select 1 from client_tags ct join tags t on t.id = ct.tag_id where ct.client_id = c.id and t.account_id = ")
                    .bind(account_id)
                    .push(" and t.name = ")
                    .bind(tag.trim().to_owned())
                    .push(")");
            }
            if !f.custom_fields.is_empty() {
                let defs = crate::crm::custom_fields::definitions(conn, account_id).await?;
                for (key, value) in &f.custom_fields {
                    let field = format!("filter.custom_fields.{key}");
                    let Some(d) = defs.get(key) else {
                        problems.add(
                            field,
                            "unknown_field",
                            format!("no custom field `{key}` is defined"),
                        );
                        continue;
                    };
                    let raw = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match d.parse_str(&raw) {
                        Ok(v) => {
                            q.push(" and exists (select 1 from client_field_values v where v.client_id = c.id and v.field_id = ")
                                .bind(d.id);
                            match (v.text, v.number) {
                                (Some(t), _) => q.push(" and v.value_text = ").bind(t),
                                (None, Some(n)) => q.push(" and v.value_number = ").bind(n),
                                (None, None) => q.push(" and 1 = 0"),
                            };
                            q.push(")");
                        }
                        Err((code, message)) => problems.add(field, code, message),
                    }
                }
            }
            for (field, raw, op) in [
                (
                    "filter.created_from",
                    &f.created_from,
                    " and c.created_at >= ",
                ),
                ("filter.created_to", &f.created_to, " and c.created_at < "),
            ] {
                if let Some(raw) = raw
                    && let Some(ms) = parse_time(&mut problems, field, raw)
                {
                    q.push(op).bind(ms);
                }
            }
            if let Some(class) = f.score_class {
                let (min, max) = class.range();
                q.push(" and c.score >= ")
                    .bind(min)
                    .push(" and c.score < ")
                    .bind(max);
            }
            if let Some(label) = f.cluster {
                q.push(" and exists (select 1 from segment_members m join segment_runs r on r.id = m.run_id \
                         where r.account_id = ")
                    .bind(account_id)
                    .push(" and r.active = 1 and m.client_id = c.id and m.label = ")
                    .bind(label)
                    .push(")");
            }
            for (field, raw, op) in [
                (
                    "filter.last_contacted_after",
                    &f.last_contacted_after,
                    " and exists (select 1 from contacts lc where lc.client_id = c.id and lc.last_contacted_at >= ",
                ),
                (
                    "filter.last_contacted_before",
                    &f.last_contacted_before,
                    " and exists (select 1 from contacts lc where lc.client_id = c.id and lc.last_contacted_at is not null) \
                     and not exists (select 1 from contacts lc where lc.client_id = c.id and lc.last_contacted_at >= ",
                ),
            ] {
                if let Some(raw) = raw
                    && let Some(ms) = parse_time(&mut problems, field, raw)
                {
                    q.push(op).bind(ms).push(")");
                }
            }
            match f.never_contacted {
                Some(true) => {
                    q.push(" and not exists (select 1 from contacts lc where lc.client_id = c.id and lc.last_contacted_at is not null)");
                }
                Some(false) => {
                    q.push(" and exists (select 1 from contacts lc where lc.client_id = c.id and lc.last_contacted_at is not null)");
                }
                None => {}
            }
            q
        }
    };
    problems.into_result()?;
    Ok(q)
}

/// Every client id of an audience, in id order (the snapshot taken at launch). `None`: every
/// client of the account.
pub async fn client_ids(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    audience_id: Option<i64>,
) -> ApiResult<Vec<i64>> {
    let def = match audience_id {
        Some(id) => get(conn, account_id, id)
            .await
            .map_err(not_found)?
            .definition(),
        None => Definition::Filter(AudienceFilter::default()),
    };
    let mut q = clients_query(conn, backend, account_id, &def, "c.id").await?;
    q.push(" order by c.id");
    Ok(q.query_scalar().fetch_all(&mut *conn).await?)
}

const COLUMNS: &str = "id, name, kind, definition, created_at, updated_at";

async fn get(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<AudienceRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from audiences where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Whether `id` is an audience of `account_id`.
pub async fn exists(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<bool> {
    match get(conn, account_id, id).await {
        Ok(_) => Ok(true),
        Err(DbError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

fn not_found(e: DbError) -> ApiError {
    match e {
        DbError::NotFound => ApiError::NotFound("audience"),
        other => other.into(),
    }
}

/// Validates an input into a name and definition (checking the filter compiles).
async fn check(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    input: AudienceInput,
    current: Option<&AudienceRow>,
) -> ApiResult<(String, Definition)> {
    let mut problems = Problems::default();
    let name = input
        .name
        .or_else(|| current.map(|c| c.name.clone()))
        .unwrap_or_default()
        .trim()
        .to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
    let def = match (input.filter, input.client_ids) {
        (Some(_), Some(_)) => {
            problems.add(
                "client_ids",
                "conflict",
                "give either filter or client_ids, not both",
            );
            None
        }
        (Some(f), None) => Some(Definition::Filter(f)),
        (None, Some(mut ids)) => {
            ids.sort_unstable();
            ids.dedup();
            if ids.len() > 1_000_000 {
                problems.add("client_ids", "too_many", "at most 1,000,000 client ids");
            }
            Some(Definition::ClientIds(ids))
        }
        (None, None) => match current {
            Some(c) => Some(c.definition()),
            None => {
                problems.add("filter", "required", "give a filter or client_ids");
                None
            }
        },
    };
    problems.into_result()?;
    let def = def.expect("checked above");
    // Compiles the filter, naming unknown custom fields and bad times.
    clients_query(conn, backend, account_id, &def, "c.id").await?;
    Ok((name, def))
}

fn stored(def: &Definition) -> (&'static str, String) {
    match def {
        Definition::Filter(f) => ("filter", serde_json::to_string(f).expect("serializes")),
        Definition::ClientIds(ids) => (
            "static",
            serde_json::json!({ "client_ids": ids }).to_string(),
        ),
    }
}

/// Lists audiences.
#[utoipa::path(get, path = "/audiences", tag = "campaigns",
    responses((status = 200, body = Vec<AudienceOut>)), security(("bearer" = [])))]
pub async fn list_audiences(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<AudienceOut>>> {
    user.require(Permission::CampaignsRun)?;
    let rows: Vec<AudienceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from audiences where account_id = $1 order by id limit 1000"
    )))
    .bind(user.account_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates an audience.
#[utoipa::path(post, path = "/audiences", tag = "campaigns", request_body = AudienceInput,
    responses((status = 201, body = AudienceOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_audience(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AudienceInput>,
) -> ApiResult<(StatusCode, Json<AudienceOut>)> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let (name, def) = check(&mut conn, state.db.backend(), user.account_id, body, None).await?;
    drop(conn);
    let (kind, definition) = stored(&def);
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "insert into audiences (account_id, name, kind, definition, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $5) returning id",
    )
    .bind(user.account_id)
    .bind(name)
    .bind(kind)
    .bind(definition)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let out = AudienceOut::from(get(&mut tx, user.account_id, id).await?);
    audit::record(
        &mut tx,
        &user.actor(),
        "audience.create",
        "audience",
        id,
        audit::NONE,
        Some(&out),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One audience.
#[utoipa::path(get, path = "/audiences/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = AudienceOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_audience(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<AudienceOut>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(
        get(&mut conn, user.account_id, id)
            .await
            .map_err(not_found)?
            .into(),
    ))
}

/// Changes an audience's name or definition (campaigns already launched keep their snapshot).
#[utoipa::path(patch, path = "/audiences/{id}", tag = "campaigns", params(("id" = i64, Path)), request_body = AudienceInput,
    responses((status = 200, body = AudienceOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_audience(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<AudienceInput>,
) -> ApiResult<Json<AudienceOut>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let before = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    let (name, def) = check(
        &mut conn,
        state.db.backend(),
        user.account_id,
        body,
        Some(&before),
    )
    .await?;
    drop(conn);
    let (kind, definition) = stored(&def);
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "update audiences set name = $1, kind = $2, definition = $3, updated_at = $4 where id = $5",
    )
    .bind(name)
    .bind(kind)
    .bind(definition)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let out = AudienceOut::from(get(&mut tx, user.account_id, id).await?);
    audit::record(
        &mut tx,
        &user.actor(),
        "audience.update",
        "audience",
        id,
        Some(&AudienceOut::from(before)),
        Some(&out),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(out))
}

/// Deletes an audience no campaign uses.
#[utoipa::path(delete, path = "/audiences/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_audience(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CampaignsRun)?;
    let mut tx = state.db.begin().await?;
    let before = get(&mut tx, user.account_id, id).await.map_err(not_found)?;
    let used: Option<i64> =
        sqlx::query_scalar("select id from campaigns where audience_id = $1 limit 1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(c) = used {
        return Err(ApiError::Conflict {
            field: "id".into(),
            message: format!("campaign {c} uses this audience"),
        });
    }
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "audiences",
        "audience",
        id,
        &AudienceOut::from(before),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A client in an audience preview.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SampleClient {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
}

/// Size and sample of an audience now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudiencePreview {
    /// Clients matching now.
    pub size: i64,
    /// Up to 20 of them, by id.
    pub sample: Vec<SampleClient>,
}

/// How many clients the audience holds now, and a sample (opted-out contacts are excluded
/// later, at send time).
#[utoipa::path(get, path = "/audiences/{id}/preview", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = AudiencePreview), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn preview_audience(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<AudiencePreview>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let def = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?
        .definition();
    let backend = state.db.backend();
    let q = clients_query(&mut conn, backend, user.account_id, &def, "count(*)").await?;
    let size: i64 = q.query_scalar().fetch_one(&mut *conn).await?;
    let mut q = clients_query(
        &mut conn,
        backend,
        user.account_id,
        &def,
        "c.id, c.name, c.status",
    )
    .await?;
    q.push(" order by c.id limit 20");
    let sample: Vec<SampleClient> = q.query_as().fetch_all(&mut *conn).await?;
    Ok(Json(AudiencePreview { size, sample }))
}
