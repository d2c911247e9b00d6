//! The append-only audit log: who changed what, when, with the state before and after.
//!
//! Entries are written in the same transaction as the change they describe, so a change
//! without its entry (or the reverse) cannot be committed. The tables refuse UPDATE and DELETE
//! (triggers in both schemas).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiResult, Page, QueryPairs};
use crate::auth::{AuthUser, Permission};
use crate::db::{DbResult, SqlBuilder, Tx, format_ms, now_ms};
use crate::state::AppState;

/// Who performed a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The account the change belongs to.
    pub account_id: i64,
    /// The user, when a user did it.
    pub user_id: Option<i64>,
    /// E-mail of the user, or `system:<component>`.
    pub label: String,
}

impl Actor {
    /// A change made by Farol itself (CLI, importer, scheduler…).
    pub fn system(account_id: i64, component: &str) -> Self {
        Self {
            account_id,
            user_id: None,
            label: format!("system:{component}"),
        }
    }
}

/// Appends an entry. `before`/`after` are snapshots of the entity (absent on create/delete).
pub async fn record<B: Serialize, A: Serialize>(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    entity_type: &str,
    entity_id: impl ToString,
    before: Option<&B>,
    after: Option<&A>,
) -> DbResult<()> {
    let before = before.map(|b| serde_json::to_string(b).unwrap_or_default());
    let after = after.map(|a| serde_json::to_string(a).unwrap_or_default());
    sqlx::query(
        "insert into audit_log (account_id, actor_user_id, actor, action, entity_type, entity_id, before, after, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(actor.account_id)
    .bind(actor.user_id)
    .bind(actor.label.clone())
    .bind(action.to_string())
    .bind(entity_type.to_string())
    .bind(entity_id.to_string())
    .bind(before)
    .bind(after)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marker for "no snapshot".
pub const NONE: Option<&()> = None;

/// An audit log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// User who made the change, if a user did.
    pub actor_user_id: Option<i64>,
    /// E-mail of the user or `system:<component>`.
    pub actor: String,
    /// What happened, e.g. `client.update`.
    pub action: String,
    /// Kind of entity, e.g. `client`.
    pub entity_type: String,
    /// Id of the entity.
    pub entity_id: Option<String>,
    /// State before the change.
    pub before: Option<serde_json::Value>,
    /// State after the change.
    pub after: Option<serde_json::Value>,
    /// When (RFC 3339).
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    actor_user_id: Option<i64>,
    actor: String,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    before: Option<String>,
    after: Option<String>,
    created_at: i64,
}

fn parse_doc(doc: Option<String>) -> Option<serde_json::Value> {
    doc.and_then(|d| serde_json::from_str(&d).ok())
}

/// Lists audit entries, newest first.
#[utoipa::path(
    get, path = "/audit", tag = "audit",
    params(
        ("entity_type" = Option<String>, Query, description = "Only entries about this kind of entity (client, contact, user, …)"),
        ("entity_id" = Option<String>, Query, description = "Only entries about this entity"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. client.update"),
        ("limit" = Option<i64>, Query, description = "Page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = crate::api::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    user.require(Permission::AuditRead)?;
    query.reject_unknown(
        &["entity_type", "entity_id", "action", "limit", "cursor"],
        &[],
    )?;
    let limit = parse_limit(query.get("limit"))?;
    let mut q = SqlBuilder::new(
        "select id, actor_user_id, actor, action, entity_type, entity_id, before, after, created_at \
         from audit_log where account_id = ",
    );
    q.bind(user.account_id);
    for (param, column) in [
        ("entity_type", "entity_type"),
        ("entity_id", "entity_id"),
        ("action", "action"),
    ] {
        if let Some(v) = query.get(param) {
            q.push(&format!(" and {column} = ")).bind(v.to_string());
        }
    }
    if let Some(c) = query.get("cursor") {
        q.push(" and id < ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id desc limit ").bind(limit + 1);
    let rows: Vec<AuditRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            actor_user_id: r.actor_user_id,
            actor: r.actor,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            before: parse_doc(r.before),
            after: parse_doc(r.after),
            created_at: format_ms(r.created_at),
        })
        .collect();
    Ok(axum::Json(page_from(items, limit, |e: &AuditEntry| {
        Cursor {
            v: CursorValue::Int(e.id),
            id: e.id,
        }
    })))
}

/// Deletes row `id` of `table` in the actor's account and audits the deletion as
/// `<entity>.delete` with the row's last state (`before`), in `tx`. `table` and `entity` are
/// always literals of the calling module, never user input.
pub async fn delete_audited<T: Serialize>(
    tx: &mut Tx,
    actor: &Actor,
    table: &'static str,
    entity: &'static str,
    id: i64,
    before: &T,
) -> DbResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "delete from {table} where account_id = $1 and id = $2"
    )))
    .bind(actor.account_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    record(
        tx,
        actor,
        &format!("{entity}.delete"),
        entity,
        id,
        Some(before),
        NONE,
    )
    .await
}
