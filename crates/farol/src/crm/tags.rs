//! Tags: labels on clients. Assigning an unknown tag name to a client creates it; renaming,
//! recoloring and deleting tags is configuration.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{DbError, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// A tag.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Tag {
    /// Id.
    pub id: i64,
    /// Name, unique in the account.
    pub name: String,
    /// Display color, `#rrggbb`.
    pub color: Option<String>,
    /// Creation time (epoch ms, shown as RFC 3339).
    #[serde(serialize_with = "ser_ms")]
    #[schema(value_type = String)]
    pub created_at: i64,
}

fn ser_ms<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

/// Body of `POST /tags` and `PATCH /tags/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagInput {
    /// Name (1–50 characters).
    pub name: Option<String>,
    /// Color, `#rrggbb`.
    pub color: Option<String>,
}

/// Normalizes a tag name: trimmed, inner whitespace collapsed.
pub fn clean_name(raw: &str) -> Result<String, String> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() || name.chars().count() > 50 {
        Err("tag names have 1 to 50 characters".into())
    } else {
        Ok(name)
    }
}

fn valid_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|ch| ch.is_ascii_hexdigit())
}

/// The ids of the named tags, creating the missing ones.
pub async fn ensure_tags(
    conn: &mut AnyConnection,
    account_id: i64,
    names: &[String],
) -> DbResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        sqlx::query("insert into tags (account_id, name, created_at) values ($1, $2, $3) on conflict (account_id, name) do nothing")
            .bind(account_id)
            .bind(name.clone())
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        let id: i64 = sqlx::query_scalar("select id from tags where account_id = $1 and name = $2")
            .bind(account_id)
            .bind(name.clone())
            .fetch_one(&mut *conn)
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

async fn get_tag(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<Tag> {
    sqlx::query_as("select id, name, color, created_at from tags where account_id = $1 and id = $2")
        .bind(account_id)
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(|e| match DbError::from(e) {
            DbError::NotFound => ApiError::NotFound("tag"),
            other => other.into(),
        })
}

fn validate(input: &TagInput, creating: bool) -> ApiResult<(Option<String>, Option<String>)> {
    let mut problems = Problems::default();
    let name = match &input.name {
        Some(n) => match clean_name(n) {
            Ok(n) => Some(n),
            Err(m) => {
                problems.add("name", "invalid_length", m);
                None
            }
        },
        None if creating => {
            problems.add("name", "required", "name is required");
            None
        }
        None => None,
    };
    if let Some(c) = &input.color
        && !valid_color(c)
    {
        problems.add("color", "invalid_color", "color must look like #660098");
    }
    problems.into_result()?;
    Ok((name, input.color.clone()))
}

/// Lists tags by name.
#[utoipa::path(get, path = "/tags", tag = "tags",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<Tag>)), security(("bearer" = [])))]
pub async fn list_tags(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<Tag>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(&["limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let mut q = SqlBuilder::new("select id, name, color, created_at from tags where account_id = ");
    q.bind(user.account_id);
    if let Some(c) = query.get("cursor") {
        let c = Cursor::decode(c)?;
        let CursorValue::Text(name) = c.v else {
            return Err(ApiError::field(
                "cursor",
                "invalid_cursor",
                "not a cursor of this list",
            ));
        };
        q.push(" and (name, id) > (")
            .bind(name)
            .push(", ")
            .bind(c.id)
            .push(")");
    }
    q.push(" order by name, id limit ").bind(limit + 1);
    let rows: Vec<Tag> = q.query_as().fetch_all(state.db.pool()).await?;
    Ok(Json(page_from(rows, limit, |t: &Tag| Cursor {
        v: CursorValue::Text(t.name.clone()),
        id: t.id,
    })))
}

/// One tag.
#[utoipa::path(get, path = "/tags/{id}", tag = "tags", params(("id" = i64, Path)),
    responses((status = 200, body = Tag), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_tag_route(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Tag>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(get_tag(&mut conn, user.account_id, id).await?))
}

/// Creates a tag.
#[utoipa::path(post, path = "/tags", tag = "tags", request_body = TagInput,
    responses((status = 201, body = Tag), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_tag(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<TagInput>,
) -> ApiResult<(StatusCode, Json<Tag>)> {
    user.require(Permission::CrmConfigure)?;
    let (name, color) = validate(&body, true)?;
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar("insert into tags (account_id, name, color, created_at) values ($1, $2, $3, $4) returning id")
        .bind(user.account_id)
        .bind(name)
        .bind(color)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
    let tag = get_tag(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "tag.create",
        "tag",
        id,
        audit::NONE,
        Some(&tag),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(tag)))
}

/// Renames or recolors a tag.
#[utoipa::path(patch, path = "/tags/{id}", tag = "tags", params(("id" = i64, Path)), request_body = TagInput,
    responses((status = 200, body = Tag), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_tag(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<TagInput>,
) -> ApiResult<Json<Tag>> {
    user.require(Permission::CrmConfigure)?;
    let (name, color) = validate(&body, false)?;
    let mut tx = state.db.begin().await?;
    let before = get_tag(&mut tx, user.account_id, id).await?;
    sqlx::query("update tags set name = coalesce($1, name), color = coalesce($2, color) where account_id = $3 and id = $4")
        .bind(name)
        .bind(color)
        .bind(user.account_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let after = get_tag(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "tag.update",
        "tag",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a tag (and removes it from every client).
#[utoipa::path(delete, path = "/tags/{id}", tag = "tags", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_tag(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CrmConfigure)?;
    let mut tx = state.db.begin().await?;
    let before = get_tag(&mut tx, user.account_id, id).await?;
    crate::audit::delete_audited(&mut tx, &user.actor(), "tags", "tag", id, &before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
