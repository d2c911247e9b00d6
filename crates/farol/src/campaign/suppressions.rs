//! Suppression lists: who must receive nothing, whatever a campaign's audience says —
//! self-excluded players (responsible gambling), hard bounces, complaints and a do-not-contact
//! list. Entries are keyed by e-mail, E.164 phone, CPF/CNPJ or client id (normalized with
//! farol-normalize) and optionally limited to one channel. The send workers check them right
//! before each send (reason `suppressed:<kind>`). API: `GET/POST /suppressions`,
//! `DELETE /suppressions/{id}`, `POST /suppressions/import` (CSV); CLI:
//! `farol suppressions import FILE`.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use farol_normalize::{Email, Phone, TaxId};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::db::bulk::{SqlValue, insert_rows};
use crate::db::{Db, DbResult, SqlBuilder, Tx, format_ms, now_ms};
use crate::state::AppState;

/// Why an entry suppresses sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The player excluded themself (responsible gambling): nothing, on any channel.
    SelfExclusion,
    /// The address bounced for good.
    HardBounce,
    /// The recipient complained (spam report).
    Complaint,
    /// Global do-not-contact list.
    DoNotContact,
}

impl Kind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SelfExclusion => "self_exclusion",
            Kind::HardBounce => "hard_bounce",
            Kind::Complaint => "complaint",
            Kind::DoNotContact => "do_not_contact",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "self_exclusion" => Kind::SelfExclusion,
                "hard_bounce" => Kind::HardBounce,
                "complaint" => Kind::Complaint,
                "do_not_contact" => Kind::DoNotContact,
                _ => return None,
            },
        )
    }
}

const KINDS: &str = "self_exclusion, hard_bounce, complaint, do_not_contact";

/// What an entry's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A normalized e-mail address.
    Email,
    /// An E.164 phone number.
    Phone,
    /// An unmasked CPF or CNPJ.
    CpfCnpj,
    /// A client id of the account.
    ClientId,
}

impl KeyKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Email => "email",
            KeyKind::Phone => "phone",
            KeyKind::CpfCnpj => "cpf_cnpj",
            KeyKind::ClientId => "client_id",
        }
    }

    fn parse(s: &str) -> KeyKind {
        match s {
            "email" => KeyKind::Email,
            "phone" => KeyKind::Phone,
            "cpf_cnpj" => KeyKind::CpfCnpj,
            _ => KeyKind::ClientId,
        }
    }

    /// Normalizes a raw value: `(code, message)` when it is not valid.
    pub fn normalize(self, raw: &str) -> Result<String, (&'static str, String)> {
        let raw = raw.trim();
        match self {
            KeyKind::Email => Email::parse(raw)
                .map(Email::into_string)
                .map_err(|e| (e.code(), e.to_string())),
            KeyKind::Phone => Phone::parse(raw)
                .map(|o| o.phone.into_string())
                .map_err(|e| (e.code(), e.to_string())),
            KeyKind::CpfCnpj => TaxId::parse(raw)
                .map(|d| d.as_str().to_owned())
                .map_err(|e| (e.code(), e.to_string())),
            KeyKind::ClientId => match raw.parse::<i64>() {
                Ok(id) if id > 0 => Ok(id.to_string()),
                _ => Err((
                    "invalid_client_id",
                    format!("`{raw}` is not a client id (a positive integer)"),
                )),
            },
        }
    }
}

/// A suppression entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuppressionOut {
    /// Id.
    pub id: i64,
    /// What `value` is.
    pub key_kind: KeyKind,
    /// The normalized e-mail, E.164 phone, CPF/CNPJ or client id.
    pub value: String,
    /// Why.
    pub kind: Kind,
    /// Only this channel (`null`: every channel).
    pub channel: Option<String>,
    /// Free text.
    pub reason: Option<String>,
    /// Where it came from: `api`, `import`, `cli`, `bounce`.
    pub source: String,
    /// Creation time.
    pub created_at: String,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    key_kind: String,
    value: String,
    kind: String,
    channel: Option<String>,
    reason: Option<String>,
    source: String,
    created_at: i64,
}

impl From<Row> for SuppressionOut {
    fn from(r: Row) -> Self {
        SuppressionOut {
            id: r.id,
            key_kind: KeyKind::parse(&r.key_kind),
            value: r.value,
            kind: Kind::parse(&r.kind).unwrap_or(Kind::DoNotContact),
            channel: r.channel,
            reason: r.reason,
            source: r.source,
            created_at: format_ms(r.created_at),
        }
    }
}

const COLUMNS: &str = "id, key_kind, value, kind, channel, reason, source, created_at";

/// Body of `POST /suppressions`: exactly one of `email`, `phone`, `cpf_cnpj`, `client_id`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionInput {
    /// An e-mail address (normalized).
    pub email: Option<String>,
    /// A phone number (normalized to E.164; Brazilian by default).
    pub phone: Option<String>,
    /// A CPF or CNPJ, masked or not.
    pub cpf_cnpj: Option<String>,
    /// A client of the account.
    pub client_id: Option<i64>,
    /// Why.
    pub kind: Option<Kind>,
    /// Only this channel (`email`, `whatsapp`, `sms`); absent: every channel.
    pub channel: Option<String>,
    /// Free text (≤ 500 characters).
    pub reason: Option<String>,
}

fn check_channel(problems: &mut Problems, field: &str, channel: Option<&str>) -> Option<String> {
    let c = channel?.trim().to_ascii_lowercase();
    if c.is_empty() {
        return None;
    }
    if !matches!(c.as_str(), "email" | "whatsapp" | "sms") {
        problems.add(
            field,
            "invalid_channel",
            format!("unknown channel `{c}`; use email, whatsapp or sms"),
        );
        return None;
    }
    Some(c)
}

/// One entry to add.
#[derive(Debug, Clone, Serialize)]
pub struct NewSuppression {
    /// What `value` is.
    pub key_kind: KeyKind,
    /// Normalized value.
    pub value: String,
    /// Why.
    pub kind: Kind,
    /// Only this channel.
    pub channel: Option<String>,
    /// Free text.
    pub reason: Option<String>,
    /// Origin.
    pub source: String,
}

/// Adds an entry unless the same one exists; its id and whether it was new.
pub async fn add(tx: &mut Tx, actor: &Actor, s: &NewSuppression) -> DbResult<(i64, bool)> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "insert into suppressions (account_id, key_kind, value, kind, channel, reason, source, created_by, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict do nothing returning id",
    )
    .bind(actor.account_id)
    .bind(s.key_kind.as_str())
    .bind(s.value.clone())
    .bind(s.kind.as_str())
    .bind(s.channel.clone())
    .bind(s.reason.clone())
    .bind(s.source.clone())
    .bind(actor.user_id)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        audit::record(
            tx,
            actor,
            "suppression.create",
            "suppression",
            id,
            audit::NONE,
            Some(s),
        )
        .await?;
        return Ok((id, true));
    }
    let id: i64 = sqlx::query_scalar(
        "select id from suppressions where account_id = $1 and key_kind = $2 and value = $3 and kind = $4 \
         and coalesce(channel, '') = $5",
    )
    .bind(actor.account_id)
    .bind(s.key_kind.as_str())
    .bind(s.value.clone())
    .bind(s.kind.as_str())
    .bind(s.channel.clone().unwrap_or_default())
    .fetch_one(&mut **tx)
    .await?;
    Ok((id, false))
}

/// Why a send to `address` (an e-mail or E.164 phone, `address_kind`) of `client_id` through
/// `channel` must not happen: the kind of the first matching entry (self-exclusion first).
pub async fn check(
    conn: &mut AnyConnection,
    account_id: i64,
    channel: &str,
    client_id: i64,
    address_kind: &str,
    address: &str,
) -> DbResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "select s.kind from suppressions s where s.account_id = $1 \
         and (s.channel is null or s.channel = $2) and ( \
           (s.key_kind = 'client_id' and s.value = $3) \
           or (s.key_kind = $4 and s.value = $5) \
           or (s.key_kind = 'cpf_cnpj' and s.value = (select c.cpf_cnpj from clients c where c.id = $6))) \
         order by case s.kind when 'self_exclusion' then 0 when 'complaint' then 1 when 'hard_bounce' then 2 else 3 end \
         limit 1",
    )
    .bind(account_id)
    .bind(channel.to_owned())
    .bind(client_id.to_string())
    .bind(address_kind.to_owned())
    .bind(address.to_owned())
    .bind(client_id)
    .fetch_optional(conn)
    .await?)
}

/// Query of `GET /suppressions`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only entries with this exact (normalized) value.
    pub value: Option<String>,
    /// Entries with an id below this one (the previous page's last id).
    pub before: Option<i64>,
    /// Page size (1–1000, default 100).
    pub limit: Option<i64>,
}

/// Lists suppression entries, newest first.
#[utoipa::path(get, path = "/suppressions", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = Vec<SuppressionOut>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_suppressions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<SuppressionOut>>> {
    user.require(Permission::CampaignsRun)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            "out_of_range",
            "limit must be between 1 and 1000",
        ));
    }
    let mut sql = SqlBuilder::new(&format!(
        "select {COLUMNS} from suppressions where account_id = "
    ));
    sql.bind(user.account_id);
    if let Some(k) = q.kind.as_deref() {
        let kind = Kind::parse(k).ok_or_else(|| {
            ApiError::field("kind", "invalid_kind", format!("use one of {KINDS}"))
        })?;
        sql.push(" and kind = ").bind(kind.as_str().to_owned());
    }
    if let Some(v) = q.value {
        sql.push(" and value = ").bind(v.trim().to_owned());
    }
    sql.push(" and id < ")
        .bind(q.before.unwrap_or(i64::MAX))
        .push(" order by id desc limit ")
        .bind(limit);
    let rows: Vec<Row> = sql.query_as().fetch_all(state.db.pool()).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Adds a suppression entry (201; 200 with the existing entry when it was already there).
#[utoipa::path(post, path = "/suppressions", tag = "campaigns", request_body = SuppressionInput,
    responses((status = 201, body = SuppressionOut), (status = 200, body = SuppressionOut), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_suppression(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<SuppressionInput>,
) -> ApiResult<(StatusCode, Json<SuppressionOut>)> {
    user.require(Permission::CampaignsRun)?;
    let mut problems = Problems::default();
    let keys: Vec<(KeyKind, String)> = [
        (KeyKind::Email, body.email.clone()),
        (KeyKind::Phone, body.phone.clone()),
        (KeyKind::CpfCnpj, body.cpf_cnpj.clone()),
        (KeyKind::ClientId, body.client_id.map(|i| i.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let mut key = None;
    match keys.as_slice() {
        [] => problems.add(
            "email",
            "required",
            "give one of email, phone, cpf_cnpj or client_id",
        ),
        [(k, raw)] => match k.normalize(raw) {
            Ok(v) => key = Some((*k, v)),
            Err((code, message)) => problems.add(k.as_str(), code, message),
        },
        [_, (k, _), ..] => problems.add(
            k.as_str(),
            "conflict",
            "give only one of email, phone, cpf_cnpj or client_id",
        ),
    }
    if body.kind.is_none() {
        problems.add("kind", "required", format!("give a kind: {KINDS}"));
    }
    let channel = check_channel(&mut problems, "channel", body.channel.as_deref());
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        problems.add(
            "reason",
            "too_long",
            "reason must have at most 500 characters",
        );
    }
    if let Some((KeyKind::ClientId, v)) = &key {
        let exists: Option<i64> =
            sqlx::query_scalar("select id from clients where account_id = $1 and id = $2")
                .bind(user.account_id)
                .bind(v.parse::<i64>().unwrap_or_default())
                .fetch_optional(state.db.pool())
                .await?;
        if exists.is_none() {
            problems.add("client_id", "not_found", "no such client in this account");
        }
    }
    problems.into_result()?;
    let (key_kind, value) = key.expect("checked");
    let new = NewSuppression {
        key_kind,
        value,
        kind: body.kind.expect("checked"),
        channel,
        reason,
        source: "api".into(),
    };
    let mut tx = state.db.begin().await?;
    let (id, created) = add(&mut tx, &user.actor(), &new).await?;
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from suppressions where id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(row.into())))
}

/// Removes a suppression entry (sends to it are allowed again).
#[utoipa::path(delete, path = "/suppressions/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_suppression(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CampaignsRun)?;
    let mut tx = state.db.begin().await?;
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from suppressions where account_id = $1 and id = $2"
    )))
    .bind(user.account_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound("suppression"));
    };
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "suppressions",
        "suppression",
        id,
        &SuppressionOut::from(row),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A row of an import that was not added.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InvalidRow {
    /// Line of the file (the header is line 1).
    pub row: u64,
    /// Column name as written in the header (empty when the row as a whole is wrong).
    pub column: String,
    /// Stable reason (`invalid_email`, `wrong_check_digit`, `missing_key`, …).
    pub code: String,
    /// Explanation quoting the value.
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Data rows read.
    pub rows: u64,
    /// Entries added.
    pub inserted: u64,
    /// Entries that were already there.
    pub duplicates: u64,
    /// Rows (or values) rejected, with their place and reason.
    pub invalid: Vec<InvalidRow>,
}

/// Defaults of an import for rows without their own kind/channel column.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct ImportQuery {
    /// Kind of rows without a `kind` column value.
    pub kind: Option<String>,
    /// Channel of rows without a `channel` column value (absent: every channel).
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Key(KeyKind),
    Kind,
    Channel,
    Reason,
    Other,
}

fn column(name: &str) -> Column {
    match farol_normalize::fold(name.trim())
        .replace([' ', '-'], "_")
        .as_str()
    {
        "email" | "e_mail" => Column::Key(KeyKind::Email),
        "phone" | "telefone" | "celular" | "whatsapp" => Column::Key(KeyKind::Phone),
        "cpf_cnpj" | "cpf" | "cnpj" | "documento" | "document" => Column::Key(KeyKind::CpfCnpj),
        "client_id" | "cliente_id" => Column::Key(KeyKind::ClientId),
        "kind" | "tipo" => Column::Kind,
        "channel" | "canal" => Column::Channel,
        "reason" | "motivo" => Column::Reason,
        _ => Column::Other,
    }
}

/// Imports a CSV of suppressions (header row; `,` or `;` separated; UTF-8 or Windows-1252).
/// Columns: any of `email`, `phone`, `cpf_cnpj`, `client_id` (a row adds one entry per filled
/// key), optional `kind`, `channel`, `reason`. Valid rows are added even when others are not;
/// the report names every rejected value by row and column.
pub async fn import_csv(
    db: &Db,
    actor: &Actor,
    data: &[u8],
    defaults: &ImportQuery,
    source: &str,
) -> ApiResult<ImportReport> {
    let mut problems = Problems::default();
    let default_kind = match defaults.kind.as_deref() {
        None => None,
        Some(k) => match Kind::parse(k) {
            Some(k) => Some(k),
            None => {
                problems.add("kind", "invalid_kind", format!("use one of {KINDS}"));
                None
            }
        },
    };
    let default_channel = check_channel(&mut problems, "channel", defaults.channel.as_deref());
    problems.into_result()?;
    let text = match std::str::from_utf8(data) {
        Ok(t) => std::borrow::Cow::Borrowed(t.trim_start_matches('\u{feff}')),
        Err(_) => encoding_rs::WINDOWS_1252.decode(data).0,
    };
    let first_line = text.lines().next().unwrap_or_default();
    let delimiter = if first_line.matches(';').count() > first_line.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| {
            ApiError::field(
                "file",
                "invalid_csv",
                format!("cannot read the header: {e}"),
            )
        })?
        .clone();
    let columns: Vec<Column> = headers.iter().map(column).collect();
    if !columns.iter().any(|c| matches!(c, Column::Key(_))) {
        return Err(ApiError::field(
            "file",
            "missing_key_column",
            "the header needs at least one of the columns email, phone, cpf_cnpj, client_id",
        ));
    }
    if default_kind.is_none() && !columns.contains(&Column::Kind) {
        return Err(ApiError::field(
            "kind",
            "required",
            format!("give a kind (?kind= or --kind) or a `kind` column: {KINDS}"),
        ));
    }
    let mut report = ImportReport::default();
    // (line, column index, entry) before the client id check.
    let mut entries: Vec<(u64, usize, NewSuppression)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.rows += 1;
                report.invalid.push(InvalidRow {
                    row: line,
                    column: String::new(),
                    code: "invalid_csv".into(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        if record.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        report.rows += 1;
        let value_of = |c: Column| {
            columns
                .iter()
                .position(|x| *x == c)
                .and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let bad = |column: usize, code: &str, message: String| InvalidRow {
            row: line,
            column: headers.get(column).unwrap_or_default().trim().to_owned(),
            code: code.to_owned(),
            message,
        };
        let kind_col = columns.iter().position(|c| *c == Column::Kind).unwrap_or(0);
        let kind = match value_of(Column::Kind) {
            Some(k) => match Kind::parse(k) {
                Some(k) => k,
                None => {
                    report.invalid.push(bad(
                        kind_col,
                        "invalid_kind",
                        format!("unknown kind `{k}`; use one of {KINDS}"),
                    ));
                    continue;
                }
            },
            None => match default_kind {
                Some(k) => k,
                None => {
                    report.invalid.push(bad(
                        kind_col,
                        "required",
                        format!("no kind; use one of {KINDS}"),
                    ));
                    continue;
                }
            },
        };
        let channel = match value_of(Column::Channel) {
            Some(c) => {
                let mut p = Problems::default();
                let ch = check_channel(&mut p, "channel", Some(c));
                if !p.is_empty() {
                    let col = columns
                        .iter()
                        .position(|c| *c == Column::Channel)
                        .unwrap_or(0);
                    report.invalid.push(bad(
                        col,
                        "invalid_channel",
                        format!("unknown channel `{c}`; use email, whatsapp or sms"),
                    ));
                    continue;
                }
                ch
            }
            None => default_channel.clone(),
        };
        let reason = value_of(Column::Reason).map(|r| r.chars().take(500).collect::<String>());
        let mut any = false;
        for (col, c) in columns.iter().enumerate() {
            let Column::Key(key_kind) = c else { continue };
            let Some(raw) = record.get(col).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            any = true;
            match key_kind.normalize(raw) {
                Ok(value) => entries.push((
                    line,
                    col,
                    NewSuppression {
                        key_kind: *key_kind,
                        value,
                        kind,
                        channel: channel.clone(),
                        reason: reason.clone(),
                        source: source.to_owned(),
                    },
                )),
                Err((code, message)) => report.invalid.push(bad(col, code, message)),
            }
        }
        if !any {
            report.invalid.push(InvalidRow {
                row: line,
                column: String::new(),
                code: "missing_key".into(),
                message: "the row has no e-mail, phone, CPF/CNPJ or client id".into(),
            });
        }
    }
    // Client ids must belong to the account.
    let ids: Vec<i64> = entries
        .iter()
        .filter(|(_, _, e)| e.key_kind == KeyKind::ClientId)
        .filter_map(|(_, _, e)| e.value.parse().ok())
        .collect::<HashSet<i64>>()
        .into_iter()
        .collect();
    let mut known: HashSet<String> = HashSet::new();
    let mut conn = db.pool().acquire().await?;
    for chunk in ids.chunks(1000) {
        let mut q = SqlBuilder::new("select id from clients where account_id = ");
        q.bind(actor.account_id)
            .push(" and id in ")
            .bind_list(chunk.iter().copied());
        let found: Vec<i64> = q.query_scalar().fetch_all(&mut *conn).await?;
        known.extend(found.into_iter().map(|i| i.to_string()));
    }
    drop(conn);
    let mut rows = Vec::new();
    let now = now_ms();
    let mut seen = HashSet::new();
    for (line, col, e) in entries {
        if e.key_kind == KeyKind::ClientId && !known.contains(&e.value) {
            report.invalid.push(InvalidRow {
                row: line,
                column: headers.get(col).unwrap_or_default().trim().to_owned(),
                code: "not_found".into(),
                message: format!("no client {} in this account", e.value),
            });
            continue;
        }
        let key = (
            e.key_kind,
            e.value.clone(),
            e.kind,
            e.channel.clone().unwrap_or_default(),
        );
        if !seen.insert(key) {
            report.duplicates += 1;
            continue;
        }
        rows.push(vec![
            SqlValue::from(actor.account_id),
            SqlValue::from(e.key_kind.as_str()),
            SqlValue::from(e.value),
            SqlValue::from(e.kind.as_str()),
            SqlValue::from(e.channel),
            SqlValue::from(e.reason),
            SqlValue::from(e.source),
            SqlValue::Int(actor.user_id),
            SqlValue::from(now),
        ]);
    }
    report.invalid.sort_by_key(|r| r.row);
    let candidates = rows.len() as u64;
    let mut tx = db.begin().await?;
    let mut inserted = 0;
    for chunk in rows.chunks(5000) {
        inserted += insert_rows(
            &mut tx,
            db.backend(),
            "insert into suppressions (account_id, key_kind, value, kind, channel, reason, source, created_by, created_at) values ",
            " on conflict do nothing",
            chunk.to_vec(),
        )
        .await?;
    }
    report.inserted = inserted;
    report.duplicates += candidates - inserted;
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        if let SqlValue::Text(Some(k)) = &r[3] {
            *by_kind
                .entry(Kind::parse(k).map_or("other", Kind::as_str))
                .or_default() += 1;
        }
    }
    audit::record(
        &mut tx,
        actor,
        "suppression.import",
        "suppression",
        "import",
        audit::NONE,
        Some(&serde_json::json!({
            "source": source,
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates": report.duplicates,
            "invalid": report.invalid.len(),
            "by_kind": by_kind,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// Imports a CSV body (`text/csv`) of suppressions; see [`import_csv`] for the columns.
#[utoipa::path(post, path = "/suppressions/import", tag = "campaigns", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn import_suppressions(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ImportQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ImportReport>> {
    user.require(Permission::CampaignsRun)?;
    if body.trim_ascii().is_empty() {
        return Err(ApiError::field("file", "required", "the CSV body is empty"));
    }
    Ok(Json(
        import_csv(&state.db, &user.actor(), &body, &q, "import").await?,
    ))
}

/// Records a hard bounce reported by a provider as a suppression (besides the contact's
/// `invalid_at`), in the transaction recording the send.
pub async fn record_bounce(
    tx: &mut Tx,
    account_id: i64,
    address_kind: &str,
    address: &str,
    reason: &str,
) -> DbResult<()> {
    record_from_provider(
        tx,
        account_id,
        address_kind,
        address,
        Kind::HardBounce,
        reason,
        "bounce",
    )
    .await
}

/// Records what a provider's delivery webhook reported about an address — a hard bounce or
/// a complaint (spam report) — as a suppression, in the webhook's transaction.
pub async fn record_from_provider(
    tx: &mut Tx,
    account_id: i64,
    address_kind: &str,
    address: &str,
    kind: Kind,
    reason: &str,
    source: &str,
) -> DbResult<()> {
    let key_kind = if address_kind == "email" {
        KeyKind::Email
    } else {
        KeyKind::Phone
    };
    add(
        tx,
        &Actor::system(account_id, "webhook"),
        &NewSuppression {
            key_kind,
            value: address.to_owned(),
            kind,
            channel: None,
            reason: Some(reason.chars().take(500).collect()),
            source: source.into(),
        },
    )
    .await?;
    Ok(())
}

/// `farol suppressions …`.
#[derive(Debug, clap::Subcommand)]
pub enum SuppressionsCommand {
    /// Import a CSV of suppressions (columns email, phone, cpf_cnpj, client_id; optional
    /// kind, channel, reason); prints the report.
    Import(ImportArgs),
}

/// Arguments of `farol suppressions import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: std::path::PathBuf,
    /// Kind of rows without a `kind` value: self_exclusion, hard_bounce, complaint,
    /// do_not_contact.
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    /// Channel of rows without a `channel` value (default: every channel).
    #[arg(long)]
    pub channel: Option<String>,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `farol suppressions …`.
pub async fn run(
    config: crate::config::Config,
    command: SuppressionsCommand,
) -> anyhow::Result<()> {
    let SuppressionsCommand::Import(args) = command;
    let data = std::fs::read(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let app = crate::app::App::build(config).await?;
    let account_id = crate::accounts::find(&app.state.db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let actor = Actor::system(account_id, "cli");
    let defaults = ImportQuery {
        kind: args.kind,
        channel: args.channel,
    };
    let report = import_csv(&app.state.db, &actor, &data, &defaults, "cli")
        .await
        .map_err(|e| match e {
            ApiError::Validation(fields) => anyhow::anyhow!(
                "{}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::anyhow!("{other}"),
        })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} rows: {} added, {} already there, {} invalid",
            report.rows,
            report.inserted,
            report.duplicates,
            report.invalid.len()
        );
        for r in &report.invalid {
            eprintln!("row {} {}: {} ({})", r.row, r.column, r.message, r.code);
        }
    }
    Ok(())
}
