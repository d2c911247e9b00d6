//! Custom field definitions (campos dinâmicos) and typed values on clients.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{DbError, DbResult, SqlBuilder, flag, format_ms, now_ms};
use crate::state::AppState;

/// Type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Free text (up to 2,000 characters).
    Text,
    /// A number.
    Number,
    /// One of the definition's `options`.
    Select,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// `true` or `false`.
    Boolean,
}

impl FieldType {
    fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Select => "select",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
        }
    }

    fn parse(s: &str) -> FieldType {
        match s {
            "number" => FieldType::Number,
            "select" => FieldType::Select,
            "date" => FieldType::Date,
            "boolean" => FieldType::Boolean,
            _ => FieldType::Text,
        }
    }
}

/// A custom field definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomField {
    /// Id.
    pub id: i64,
    /// Key used in `custom_fields` objects, filters (`cf.<key>=`) and templates (`{{ key }}`).
    pub key: String,
    /// Label shown in the UI.
    pub label: String,
    /// Type.
    pub field_type: FieldType,
    /// Allowed values of a `select` field.
    pub options: Vec<String>,
    /// Clients must have a value.
    pub required: bool,
    /// Shown in the UI.
    pub visible: bool,
    /// Display order.
    pub position: i64,
    /// Creation time.
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct FieldRow {
    id: i64,
    key: String,
    label: String,
    field_type: String,
    options: Option<String>,
    required: i64,
    visible: i64,
    position: i64,
    created_at: i64,
}

impl From<FieldRow> for CustomField {
    fn from(r: FieldRow) -> Self {
        CustomField {
            id: r.id,
            key: r.key,
            label: r.label,
            field_type: FieldType::parse(&r.field_type),
            options: r
                .options
                .and_then(|o| serde_json::from_str(&o).ok())
                .unwrap_or_default(),
            required: r.required != 0,
            visible: r.visible != 0,
            position: r.position,
            created_at: format_ms(r.created_at),
        }
    }
}

const FIELD_COLUMNS: &str =
    "id, key, label, field_type, options, required, visible, position, created_at";

/// Every definition of an account, by key.
pub async fn definitions(
    conn: &mut AnyConnection,
    account_id: i64,
) -> DbResult<BTreeMap<String, CustomField>> {
    let rows: Vec<FieldRow> = sqlx::query_as(
        "select id, key, label, field_type, options, required, visible, position, created_at \
         from custom_fields where account_id = $1",
    )
    .bind(account_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.key.clone(), CustomField::from(r)))
        .collect())
}

/// A typed custom-field value, as stored: `(value_text, value_number)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    /// Text, select, date (YYYY-MM-DD).
    pub text: Option<String>,
    /// Number, boolean (0/1).
    pub number: Option<f64>,
}

impl CustomField {
    /// Checks a JSON value against this field and converts it for storage.
    pub fn parse_json(&self, value: &Value) -> Result<StoredValue, (String, String)> {
        let bad = |code: &str, msg: String| Err((code.to_string(), msg));
        match (self.field_type, value) {
            (FieldType::Text, Value::String(s)) => {
                if s.chars().count() > 2000 {
                    return bad(
                        "too_long",
                        "text values have at most 2000 characters".into(),
                    );
                }
                Ok(StoredValue {
                    text: Some(s.clone()),
                    number: None,
                })
            }
            (FieldType::Number, Value::Number(n)) => Ok(StoredValue {
                text: None,
                number: n.as_f64(),
            }),
            (FieldType::Boolean, Value::Bool(b)) => Ok(StoredValue {
                text: None,
                number: Some(if *b { 1.0 } else { 0.0 }),
            }),
            (FieldType::Select, Value::String(s)) => {
                if self.options.iter().any(|o| o == s) {
                    Ok(StoredValue {
                        text: Some(s.clone()),
                        number: None,
                    })
                } else {
                    bad(
                        "not_an_option",
                        format!("`{s}` is not one of: {}", self.options.join(", ")),
                    )
                }
            }
            (FieldType::Date, Value::String(s)) => match s.parse::<jiff::civil::Date>() {
                Ok(d) => Ok(StoredValue {
                    text: Some(d.to_string()),
                    number: None,
                }),
                Err(_) => bad("invalid_date", format!("`{s}` is not a date (YYYY-MM-DD)")),
            },
            (t, _) => bad("wrong_type", format!("expected a {} value", t.as_str())),
        }
    }

    /// Parses a filter value from a query string (`cf.plano=Controle`).
    pub fn parse_str(&self, raw: &str) -> Result<StoredValue, (String, String)> {
        let json = match self.field_type {
            FieldType::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(raw.into())),
            FieldType::Boolean => match raw {
                "true" | "1" | "sim" => Value::Bool(true),
                "false" | "0" | "nao" | "não" => Value::Bool(false),
                _ => Value::String(raw.into()),
            },
            _ => Value::String(raw.into()),
        };
        self.parse_json(&json)
    }

    /// Converts a stored value back to JSON.
    pub fn to_json(&self, text: Option<String>, number: Option<f64>) -> Value {
        match self.field_type {
            // Whole numbers read back as integers (12, not 12.0): they are usually counts.
            FieldType::Number => match number {
                Some(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
                other => other
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
            },
            FieldType::Boolean => number.map(|n| Value::Bool(n != 0.0)).unwrap_or(Value::Null),
            _ => text.map(Value::String).unwrap_or(Value::Null),
        }
    }
}

/// Body of `POST /custom-fields`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomField {
    /// Key: lower-case letters, digits and `_`, starting with a letter (e.g. `plano_atual`).
    pub key: String,
    /// Label.
    pub label: String,
    /// Type (cannot change later).
    pub field_type: FieldType,
    /// Options of a `select` field.
    #[serde(default)]
    pub options: Vec<String>,
    /// Required on every client.
    #[serde(default)]
    pub required: bool,
    /// Shown in the UI (default true).
    #[serde(default = "yes")]
    pub visible: bool,
    /// Display order.
    #[serde(default)]
    pub position: i64,
}

fn yes() -> bool {
    true
}

/// Body of `PATCH /custom-fields/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldPatch {
    /// Label.
    pub label: Option<String>,
    /// Options of a `select` field (replaces the list).
    pub options: Option<Vec<String>>,
    /// Required.
    pub required: Option<bool>,
    /// Visible.
    pub visible: Option<bool>,
    /// Display order.
    pub position: Option<i64>,
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && key.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_options(problems: &mut Problems, field_type: FieldType, options: &[String]) {
    if field_type == FieldType::Select && options.is_empty() {
        problems.add(
            "options",
            "required",
            "a select field needs at least one option",
        );
    }
    if field_type != FieldType::Select && !options.is_empty() {
        problems.add("options", "not_allowed", "only select fields have options");
    }
    for (i, o) in options.iter().enumerate() {
        if o.trim().is_empty() || o.chars().count() > 200 {
            problems.add(
                format!("options[{i}]"),
                "invalid_length",
                "options have 1 to 200 characters",
            );
        }
    }
}

async fn get_field(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<CustomField> {
    let mut q = SqlBuilder::new(&format!(
        "select {FIELD_COLUMNS} from custom_fields where account_id = "
    ));
    q.bind(account_id).push(" and id = ").bind(id);
    let row: FieldRow = q
        .query_as()
        .fetch_one(conn)
        .await
        .map_err(|e| match DbError::from(e) {
            DbError::NotFound => ApiError::NotFound("custom field"),
            other => other.into(),
        })?;
    Ok(row.into())
}

/// Lists custom field definitions in display order.
#[utoipa::path(get, path = "/custom-fields", tag = "custom fields",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<CustomField>)), security(("bearer" = [])))]
pub async fn list_fields(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<CustomField>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(&["limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let mut q = SqlBuilder::new(&format!(
        "select {FIELD_COLUMNS} from custom_fields where account_id = "
    ));
    q.bind(user.account_id);
    if let Some(c) = query.get("cursor") {
        q.push(" and id > ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id limit ").bind(limit + 1);
    let rows: Vec<FieldRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items: Vec<CustomField> = rows.into_iter().map(CustomField::from).collect();
    Ok(Json(page_from(items, limit, |f: &CustomField| Cursor {
        v: CursorValue::Int(f.id),
        id: f.id,
    })))
}

/// One definition.
#[utoipa::path(get, path = "/custom-fields/{id}", tag = "custom fields", params(("id" = i64, Path)),
    responses((status = 200, body = CustomField), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_field_route(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<CustomField>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(get_field(&mut conn, user.account_id, id).await?))
}

/// Creates a definition.
#[utoipa::path(post, path = "/custom-fields", tag = "custom fields", request_body = NewCustomField,
    responses((status = 201, body = CustomField), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_field(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewCustomField>,
) -> ApiResult<(StatusCode, Json<CustomField>)> {
    user.require(Permission::CrmConfigure)?;
    let mut problems = Problems::default();
    if !valid_key(&body.key) {
        problems.add(
            "key",
            "invalid_key",
            "use lower-case letters, digits and _, starting with a letter (max 64)",
        );
    }
    if body.label.trim().is_empty() || body.label.chars().count() > 200 {
        problems.add(
            "label",
            "invalid_length",
            "label must have 1 to 200 characters",
        );
    }
    check_options(&mut problems, body.field_type, &body.options);
    problems.into_result()?;
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "insert into custom_fields (account_id, key, label, field_type, options, required, visible, position, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) returning id",
    )
    .bind(user.account_id)
    .bind(body.key.clone())
    .bind(body.label.trim().to_string())
    .bind(body.field_type.as_str().to_string())
    .bind((!body.options.is_empty()).then(|| serde_json::to_string(&body.options).unwrap_or_default()))
    .bind(flag(body.required))
    .bind(flag(body.visible))
    .bind(body.position)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let field = get_field(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "custom_field.create",
        "custom_field",
        id,
        audit::NONE,
        Some(&field),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(field)))
}

/// Changes a definition (key and type are fixed once created).
#[utoipa::path(patch, path = "/custom-fields/{id}", tag = "custom fields", params(("id" = i64, Path)), request_body = CustomFieldPatch,
    responses((status = 200, body = CustomField), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_field(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<CustomFieldPatch>,
) -> ApiResult<Json<CustomField>> {
    user.require(Permission::CrmConfigure)?;
    let mut tx = state.db.begin().await?;
    let before = get_field(&mut tx, user.account_id, id).await?;
    let mut problems = Problems::default();
    if let Some(label) = &patch.label
        && (label.trim().is_empty() || label.chars().count() > 200)
    {
        problems.add(
            "label",
            "invalid_length",
            "label must have 1 to 200 characters",
        );
    }
    if let Some(options) = &patch.options {
        check_options(&mut problems, before.field_type, options);
    }
    problems.into_result()?;
    let mut q = SqlBuilder::new("update custom_fields set updated_at = ");
    q.bind(now_ms());
    if let Some(label) = &patch.label {
        q.push(", label = ").bind(label.trim().to_string());
    }
    if let Some(options) = &patch.options {
        q.push(", options = ")
            .bind(serde_json::to_string(options).unwrap_or_default());
    }
    if let Some(required) = patch.required {
        q.push(", required = ").bind(flag(required));
    }
    if let Some(visible) = patch.visible {
        q.push(", visible = ").bind(flag(visible));
    }
    if let Some(position) = patch.position {
        q.push(", position = ").bind(position);
    }
    q.push(" where account_id = ")
        .bind(user.account_id)
        .push(" and id = ")
        .bind(id);
    q.query().execute(&mut *tx).await?;
    let after = get_field(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "custom_field.update",
        "custom_field",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a definition and every client's value for it.
#[utoipa::path(delete, path = "/custom-fields/{id}", tag = "custom fields", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_field(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CrmConfigure)?;
    let mut tx = state.db.begin().await?;
    let before = get_field(&mut tx, user.account_id, id).await?;
    crate::audit::delete_audited(
        &mut tx,
        &user.actor(),
        "custom_fields",
        "custom_field",
        id,
        &before,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(field_type: FieldType, options: &[&str]) -> CustomField {
        CustomField {
            id: 1,
            key: "k".into(),
            label: "K".into(),
            field_type,
            options: options.iter().map(|s| s.to_string()).collect(),
            required: false,
            visible: true,
            position: 0,
            created_at: String::new(),
        }
    }

    #[test]
    fn values_are_checked_against_the_type() {
        let sel = field(FieldType::Select, &["Pré", "Controle"]);
        assert!(sel.parse_json(&Value::String("Controle".into())).is_ok());
        assert_eq!(
            sel.parse_json(&Value::String("Pós".into())).unwrap_err().0,
            "not_an_option"
        );
        let num = field(FieldType::Number, &[]);
        assert_eq!(
            num.parse_json(&serde_json::json!(12.5)).unwrap().number,
            Some(12.5)
        );
        assert_eq!(
            num.parse_json(&serde_json::json!("12")).unwrap_err().0,
            "wrong_type"
        );
        assert_eq!(num.parse_str("12").unwrap().number, Some(12.0));
        let date = field(FieldType::Date, &[]);
        assert_eq!(
            date.parse_json(&serde_json::json!("2026-02-30"))
                .unwrap_err()
                .0,
            "invalid_date"
        );
        assert_eq!(
            date.parse_json(&serde_json::json!("2026-02-28"))
                .unwrap()
                .text
                .as_deref(),
            Some("2026-02-28")
        );
        let b = field(FieldType::Boolean, &[]);
        assert_eq!(b.to_json(None, Some(1.0)), Value::Bool(true));
    }

    #[test]
    fn keys_are_identifiers() {
        assert!(valid_key("plano_atual"));
        assert!(!valid_key("Plano"));
        assert!(!valid_key("1x"));
        assert!(!valid_key("a-b"));
    }
}
