//! The client timeline: every interaction, note and change, newest first.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::clients::ensure_client;
use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::bulk::json_objects;
use crate::db::{Backend, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// Who produced a timeline item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A person, through the UI or API.
    User,
    /// Farol itself: imports, campaigns, webhooks, automations.
    System,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::System => "system",
        }
    }
}

/// A timeline item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineItem {
    /// Id (increasing).
    pub id: i64,
    /// Client.
    pub client_id: i64,
    /// What happened: `note`, `call`, `meeting`, `client_created`, `status_changed`, …
    pub kind: String,
    /// Who produced it.
    pub origin: Origin,
    /// Text.
    pub text: String,
    /// Structured details (e.g. `{"from": "lead", "to": "active"}`).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// User who wrote it, for user items.
    pub author_id: Option<i64>,
    /// When.
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: i64,
    client_id: i64,
    kind: String,
    origin: String,
    text: String,
    metadata: String,
    author_id: Option<i64>,
    created_at: i64,
}

impl From<ItemRow> for TimelineItem {
    fn from(r: ItemRow) -> Self {
        TimelineItem {
            id: r.id,
            client_id: r.client_id,
            kind: r.kind,
            origin: if r.origin == "system" {
                Origin::System
            } else {
                Origin::User
            },
            text: r.text,
            metadata: serde_json::from_str(&r.metadata).unwrap_or(serde_json::Value::Null),
            author_id: r.author_id,
            created_at: format_ms(r.created_at),
        }
    }
}

/// A new timeline item (for other modules to record events).
pub struct NewItem<'a> {
    /// Account.
    pub account_id: i64,
    /// Client.
    pub client_id: i64,
    /// Kind.
    pub kind: &'a str,
    /// Origin.
    pub origin: Origin,
    /// Text.
    pub text: &'a str,
    /// Details.
    pub metadata: serde_json::Value,
    /// Author.
    pub author_id: Option<i64>,
}

/// Appends an item and returns its id.
pub async fn add(conn: &mut AnyConnection, item: NewItem<'_>) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "insert into timeline_items (account_id, client_id, kind, origin, text, metadata, author_id, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
    )
    .bind(item.account_id)
    .bind(item.client_id)
    .bind(item.kind.to_string())
    .bind(item.origin.as_str().to_string())
    .bind(item.text.to_string())
    .bind(item.metadata.to_string())
    .bind(item.author_id)
    .bind(now_ms())
    .fetch_one(conn)
    .await?)
}

/// Appends many items with one statement (the items travel as one JSON parameter, so the
/// statement is prepared once whatever their number); returns how many were written.
pub async fn add_many(
    conn: &mut AnyConnection,
    backend: Backend,
    items: &[NewItem<'_>],
) -> DbResult<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            serde_json::json!({
                "a": i.account_id,
                "c": i.client_id,
                "k": i.kind,
                "o": i.origin.as_str(),
                "t": i.text,
                "m": i.metadata.to_string(),
                "u": i.author_id,
            })
        })
        .collect();
    let sql = format!(
        "insert into timeline_items (account_id, client_id, kind, origin, text, metadata, author_id, created_at) \
         select cast(j.value ->> 'a' as bigint), cast(j.value ->> 'c' as bigint), j.value ->> 'k', \
         j.value ->> 'o', j.value ->> 't', j.value ->> 'm', cast(j.value ->> 'u' as bigint), $2 \
         from {}",
        json_objects(backend, 1)
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now_ms())
        .execute(conn)
        .await?
        .rows_affected())
}

/// Kinds a person may add by hand.
pub const MANUAL_KINDS: [&str; 4] = ["note", "call", "meeting", "task"];

/// Body of `POST /clients/{id}/timeline`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// `note` (default), `call`, `meeting` or `task`.
    #[serde(default = "note_kind")]
    pub kind: String,
    /// Text (1–10,000 characters).
    pub text: String,
    /// Optional structured details.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

fn note_kind() -> String {
    "note".into()
}

/// A client's timeline, newest first.
#[utoipa::path(get, path = "/clients/{id}/timeline", tag = "clients",
    params(("id" = i64, Path), ("kind" = Option<String>, Query, description = "Only items of this kind"),
           ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<TimelineItem>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_timeline(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    query: QueryPairs,
) -> ApiResult<Json<Page<TimelineItem>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(&["kind", "limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let mut conn = state.db.pool().acquire().await?;
    ensure_client(&mut conn, user.account_id, id).await?;
    let mut q = SqlBuilder::new(
        "select id, client_id, kind, origin, text, metadata, author_id, created_at from timeline_items where account_id = ",
    );
    q.bind(user.account_id).push(" and client_id = ").bind(id);
    if let Some(kind) = query.get("kind") {
        q.push(" and kind = ").bind(kind.to_string());
    }
    if let Some(c) = query.get("cursor") {
        q.push(" and id < ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id desc limit ").bind(limit + 1);
    let rows: Vec<ItemRow> = q.query_as().fetch_all(&mut *conn).await?;
    let items: Vec<TimelineItem> = rows.into_iter().map(TimelineItem::from).collect();
    Ok(Json(page_from(items, limit, |i: &TimelineItem| Cursor {
        v: CursorValue::Int(i.id),
        id: i.id,
    })))
}

/// Adds a note (or call, meeting, task) to a client's timeline.
#[utoipa::path(post, path = "/clients/{id}/timeline", tag = "clients", params(("id" = i64, Path)), request_body = NewNote,
    responses((status = 201, body = TimelineItem), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_note(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<NewNote>,
) -> ApiResult<(StatusCode, Json<TimelineItem>)> {
    user.require(Permission::CrmWrite)?;
    let mut problems = Problems::default();
    if !MANUAL_KINDS.contains(&body.kind.as_str()) {
        problems.add(
            "kind",
            "invalid_kind",
            format!("kind must be one of {}", MANUAL_KINDS.join(", ")),
        );
    }
    if body.text.trim().is_empty() || body.text.chars().count() > 10_000 {
        problems.add(
            "text",
            "invalid_length",
            "text must have 1 to 10000 characters",
        );
    }
    if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        problems.add("metadata", "wrong_type", "metadata must be an object");
    }
    problems.into_result()?;
    let mut tx = state.db.begin().await?;
    ensure_client(&mut tx, user.account_id, id).await?;
    let item_id = add(
        &mut tx,
        NewItem {
            account_id: user.account_id,
            client_id: id,
            kind: &body.kind,
            origin: Origin::User,
            text: body.text.trim(),
            metadata: body.metadata.unwrap_or_else(|| serde_json::json!({})),
            author_id: Some(user.id),
        },
    )
    .await?;
    let row: ItemRow = sqlx::query_as("select id, client_id, kind, origin, text, metadata, author_id, created_at from timeline_items where id = $1")
        .bind(item_id)
        .fetch_one(&mut *tx)
        .await?;
    let item = TimelineItem::from(row);
    audit::record(
        &mut tx,
        &user.actor(),
        "timeline.create",
        "timeline_item",
        item_id,
        audit::NONE,
        Some(&item),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(item)))
}
