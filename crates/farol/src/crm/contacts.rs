//! Contacts (phones and e-mails) of clients, stored normalized: phones in E.164 with Brazil's
//! rules, e-mails trimmed and lower-cased, by the same normalizers the importer uses.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use farol_normalize::{Email, Phone};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::clients::{ensure_client, refresh_search_text};
use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{DbError, DbResult, SqlBuilder, flag, format_ms, now_ms};
use crate::state::AppState;

/// Kind of contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    /// A phone number (E.164).
    Phone,
    /// An e-mail address.
    Email,
}

impl ContactKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Phone => "phone",
            ContactKind::Email => "email",
        }
    }

    fn parse(s: &str) -> Option<ContactKind> {
        match s {
            "phone" => Some(ContactKind::Phone),
            "email" => Some(ContactKind::Email),
            _ => None,
        }
    }
}

/// Normalizes a contact value, or explains why it is refused: `(code, message)`.
pub fn normalize(kind: ContactKind, raw: &str) -> Result<String, (String, String)> {
    match kind {
        ContactKind::Phone => Phone::parse(raw)
            .map(|o| o.phone.as_str().to_string())
            .map_err(|e| (format!("invalid_phone.{}", e.code()), e.to_string())),
        ContactKind::Email => Email::parse(raw)
            .map(|e| e.as_str().to_string())
            .map_err(|e| (format!("invalid_email.{}", e.code()), e.to_string())),
    }
}

/// A contact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactOut {
    /// Id.
    pub id: i64,
    /// Client.
    pub client_id: i64,
    /// Kind.
    pub kind: ContactKind,
    /// Normalized value: `+5511987654321` or `ana@example.com`.
    pub value: String,
    /// The client's preferred contact of this kind.
    pub preferred: bool,
    /// Confirmed to reach the client.
    pub verified: bool,
    /// The client asked not to be contacted here (LGPD opt-out).
    pub opted_out: bool,
    /// Last time Farol or a user contacted the client here.
    pub last_contacted_at: Option<String>,
    /// Creation time.
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: i64,
    client_id: i64,
    kind: String,
    value: String,
    preferred: i64,
    verified: i64,
    opted_out: i64,
    last_contacted_at: Option<i64>,
    created_at: i64,
}

impl From<ContactRow> for ContactOut {
    fn from(r: ContactRow) -> Self {
        ContactOut {
            id: r.id,
            client_id: r.client_id,
            kind: ContactKind::parse(&r.kind).unwrap_or(ContactKind::Phone),
            value: r.value,
            preferred: r.preferred != 0,
            verified: r.verified != 0,
            opted_out: r.opted_out != 0,
            last_contacted_at: r.last_contacted_at.map(format_ms),
            created_at: format_ms(r.created_at),
        }
    }
}

const COLUMNS: &str =
    "id, client_id, kind, value, preferred, verified, opted_out, last_contacted_at, created_at";

/// A contact to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// Kind.
    pub kind: ContactKind,
    /// Value as typed: `(11) 98765-4321`, ` Ana@Example.COM `…
    pub value: String,
    /// Preferred contact of its kind (default false; the first of a kind becomes preferred).
    #[serde(default)]
    pub preferred: bool,
    /// Verified (default false).
    #[serde(default)]
    pub verified: bool,
    /// Opted out (default false).
    #[serde(default)]
    pub opted_out: bool,
}

/// A contact whose value has been normalized.
#[derive(Debug, Clone)]
pub struct ValidContact {
    /// Kind.
    pub kind: ContactKind,
    /// Normalized value.
    pub value: String,
    /// Preferred.
    pub preferred: bool,
    /// Verified.
    pub verified: bool,
    /// Opted out.
    pub opted_out: bool,
}

/// Validates contacts of a request; errors are reported under `{prefix}[i].value`.
pub fn validate_all(
    inputs: &[ContactInput],
    prefix: &str,
    problems: &mut Problems,
) -> Vec<ValidContact> {
    let mut out: Vec<ValidContact> = Vec::new();
    for (i, c) in inputs.iter().enumerate() {
        match normalize(c.kind, &c.value) {
            Ok(value) => {
                if out.iter().any(|o| o.kind == c.kind && o.value == value) {
                    problems.add(
                        format!("{prefix}[{i}].value"),
                        "duplicate",
                        format!("{value} is listed twice"),
                    );
                    continue;
                }
                out.push(ValidContact {
                    kind: c.kind,
                    value,
                    preferred: c.preferred,
                    verified: c.verified,
                    opted_out: c.opted_out,
                });
            }
            Err((code, message)) => problems.add(format!("{prefix}[{i}].value"), code, message),
        }
    }
    out
}

/// Inserts a contact of `client_id`. Keeps one preferred contact per kind: a preferred insert
/// demotes the others, and the first contact of a kind is preferred.
pub async fn insert(
    conn: &mut AnyConnection,
    account_id: i64,
    client_id: i64,
    c: &ValidContact,
) -> DbResult<i64> {
    let existing_of_kind: i64 =
        sqlx::query_scalar("select count(*) from contacts where client_id = $1 and kind = $2")
            .bind(client_id)
            .bind(c.kind.as_str().to_string())
            .fetch_one(&mut *conn)
            .await?;
    let preferred = c.preferred || existing_of_kind == 0;
    if preferred && existing_of_kind > 0 {
        demote_preferred(conn, client_id, c.kind).await?;
    }
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "insert into contacts (account_id, client_id, kind, value, preferred, verified, opted_out, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8) returning id",
    )
    .bind(account_id)
    .bind(client_id)
    .bind(c.kind.as_str().to_string())
    .bind(c.value.clone())
    .bind(flag(preferred))
    .bind(flag(c.verified))
    .bind(flag(c.opted_out))
    .bind(now)
    .fetch_one(conn)
    .await?)
}

async fn demote_preferred(
    conn: &mut AnyConnection,
    client_id: i64,
    kind: ContactKind,
) -> DbResult<()> {
    sqlx::query(
        "update contacts set preferred = 0 where client_id = $1 and kind = $2 and preferred = 1",
    )
    .bind(client_id)
    .bind(kind.as_str().to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Contacts of several clients (already confined to one account by the caller).
pub async fn for_clients(
    conn: &mut AnyConnection,
    client_ids: &[i64],
) -> DbResult<Vec<ContactOut>> {
    if client_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = SqlBuilder::new(&format!(
        "select {COLUMNS} from contacts where client_id in "
    ));
    q.bind_list(client_ids.iter().copied())
        .push(" order by client_id, kind desc, preferred desc, id");
    let rows: Vec<ContactRow> = q.query_as().fetch_all(conn).await?;
    Ok(rows.into_iter().map(ContactOut::from).collect())
}

/// Maps a unique-index conflict on a contact value to a 409 naming the field.
pub fn conflict(field: &str, value: &str) -> impl Fn(DbError) -> ApiError {
    let field = field.to_string();
    let value = value.to_string();
    move |e| match e {
        DbError::Conflict { table, .. } if table == "contacts" => ApiError::Conflict {
            field: field.clone(),
            message: format!("{value} already belongs to another client of this account"),
        },
        other => other.into(),
    }
}

async fn get_contact(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<ContactOut> {
    let mut q = SqlBuilder::new(&format!(
        "select {COLUMNS} from contacts where account_id = "
    ));
    q.bind(account_id).push(" and id = ").bind(id);
    let row: ContactRow =
        q.query_as()
            .fetch_one(conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::NotFound => ApiError::NotFound("contact"),
                other => other.into(),
            })?;
    Ok(row.into())
}

/// Lists contacts. Filter by client, kind, value (normalized before matching) or opt-out.
#[utoipa::path(get, path = "/contacts", tag = "contacts",
    params(("client_id" = Option<i64>, Query), ("kind" = Option<ContactKind>, Query),
           ("value" = Option<String>, Query, description = "A phone or e-mail as typed; normalized before matching"),
           ("opted_out" = Option<bool>, Query), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<ContactOut>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_contacts(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<ContactOut>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(
        &["client_id", "kind", "value", "opted_out", "limit", "cursor"],
        &[],
    )?;
    let limit = parse_limit(query.get("limit"))?;
    let mut problems = Problems::default();
    let mut q = SqlBuilder::new(&format!(
        "select {COLUMNS} from contacts where account_id = "
    ));
    q.bind(user.account_id);
    if let Some(raw) = query.get("client_id") {
        match raw.parse::<i64>() {
            Ok(id) => {
                q.push(" and client_id = ").bind(id);
            }
            Err(_) => problems.add("client_id", "invalid", "client_id must be an integer"),
        }
    }
    let kind = query.get("kind").map(|k| (k, ContactKind::parse(k)));
    if let Some((raw, parsed)) = kind {
        match parsed {
            Some(k) => {
                q.push(" and kind = ").bind(k.as_str().to_string());
            }
            None => problems.add(
                "kind",
                "invalid",
                format!("unknown kind `{raw}`; expected phone or email"),
            ),
        }
    }
    if let Some(value) = query.get("value") {
        let kind = if value.contains('@') {
            ContactKind::Email
        } else {
            ContactKind::Phone
        };
        match normalize(kind, value) {
            Ok(v) => {
                q.push(" and kind = ")
                    .bind(kind.as_str().to_string())
                    .push(" and value = ")
                    .bind(v);
            }
            Err((code, message)) => problems.add("value", code, message),
        }
    }
    if let Some(raw) = query.get("opted_out") {
        match raw {
            "true" | "false" => {
                q.push(" and opted_out = ").bind(flag(raw == "true"));
            }
            _ => problems.add("opted_out", "invalid", "opted_out must be true or false"),
        }
    }
    problems.into_result()?;
    if let Some(c) = query.get("cursor") {
        q.push(" and id > ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id limit ").bind(limit + 1);
    let rows: Vec<ContactRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items: Vec<ContactOut> = rows.into_iter().map(ContactOut::from).collect();
    Ok(Json(page_from(items, limit, |c: &ContactOut| Cursor {
        v: CursorValue::Int(c.id),
        id: c.id,
    })))
}

/// One contact.
#[utoipa::path(get, path = "/contacts/{id}", tag = "contacts", params(("id" = i64, Path)),
    responses((status = 200, body = ContactOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_contact_route(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ContactOut>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(get_contact(&mut conn, user.account_id, id).await?))
}

/// Adds a contact to a client.
#[utoipa::path(post, path = "/clients/{id}/contacts", tag = "contacts", params(("id" = i64, Path)), request_body = ContactInput,
    responses((status = 201, body = ContactOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_contact(
    State(state): State<AppState>,
    user: AuthUser,
    Path(client_id): Path<i64>,
    ApiJson(body): ApiJson<ContactInput>,
) -> ApiResult<(StatusCode, Json<ContactOut>)> {
    user.require(Permission::CrmWrite)?;
    let value = normalize(body.kind, &body.value)
        .map_err(|(code, message)| ApiError::field("value", code, message))?;
    let contact = &ValidContact {
        kind: body.kind,
        value,
        preferred: body.preferred,
        verified: body.verified,
        opted_out: body.opted_out,
    };
    let mut tx = state.db.begin().await?;
    ensure_client(&mut tx, user.account_id, client_id).await?;
    let id = insert(&mut tx, user.account_id, client_id, contact)
        .await
        .map_err(conflict("value", &contact.value))?;
    refresh_search_text(&mut tx, client_id).await?;
    let out = get_contact(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "contact.create",
        "contact",
        id,
        audit::NONE,
        Some(&out),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Body of `PATCH /contacts/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// New value (normalized like on creation).
    pub value: Option<String>,
    /// Make this the preferred contact of its kind (`false` is ignored: prefer another instead).
    pub preferred: Option<bool>,
    /// Verified.
    pub verified: Option<bool>,
    /// Opted out (LGPD).
    pub opted_out: Option<bool>,
}

/// Changes a contact.
#[utoipa::path(patch, path = "/contacts/{id}", tag = "contacts", params(("id" = i64, Path)), request_body = ContactPatch,
    responses((status = 200, body = ContactOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_contact(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> ApiResult<Json<ContactOut>> {
    user.require(Permission::CrmWrite)?;
    let mut tx = state.db.begin().await?;
    let before = get_contact(&mut tx, user.account_id, id).await?;
    let new_value = match &patch.value {
        Some(raw) => Some(
            normalize(before.kind, raw)
                .map_err(|(code, message)| ApiError::field("value", code, message))?,
        ),
        None => None,
    };
    if patch.preferred == Some(true) {
        demote_preferred(&mut tx, before.client_id, before.kind).await?;
    }
    let mut q = SqlBuilder::new("update contacts set updated_at = ");
    q.bind(now_ms());
    if let Some(v) = &new_value {
        q.push(", value = ").bind(v.clone());
    }
    if patch.preferred == Some(true) {
        q.push(", preferred = 1");
    }
    if let Some(v) = patch.verified {
        q.push(", verified = ").bind(flag(v));
    }
    if let Some(v) = patch.opted_out {
        q.push(", opted_out = ").bind(flag(v));
    }
    q.push(" where account_id = ")
        .bind(user.account_id)
        .push(" and id = ")
        .bind(id);
    q.query()
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict("value", new_value.as_deref().unwrap_or_default())(e.into()))?;
    refresh_search_text(&mut tx, before.client_id).await?;
    let after = get_contact(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "contact.update",
        "contact",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a contact.
#[utoipa::path(delete, path = "/contacts/{id}", tag = "contacts", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_contact(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CrmDelete)?;
    let mut tx = state.db.begin().await?;
    let before = get_contact(&mut tx, user.account_id, id).await?;
    crate::audit::delete_audited(&mut tx, &user.actor(), "contacts", "contact", id, &before)
        .await?;
    refresh_search_text(&mut tx, before.client_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
