//! Saved mapping presets: a named list of column overrides a team reuses for the files its
//! source system exports every month.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::store::MappingEntry;
use crate::api::extract::ApiJson;
use crate::api::{ApiError, ApiResult, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{DbError, DbResult, format_ms, now_ms};
use crate::state::AppState;

/// A saved mapping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preset {
    /// Id.
    pub id: i64,
    /// Unique name within the account.
    pub name: String,
    /// Column overrides.
    pub mapping: Vec<MappingEntry>,
    /// Last change.
    pub updated_at: String,
}

/// Body of `POST /import-presets` (an existing name is replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetInput {
    /// Name (1–100 characters).
    pub name: String,
    /// Column overrides.
    pub mapping: Vec<MappingEntry>,
}

/// The mapping of the preset named `name`.
pub async fn load(
    conn: &mut AnyConnection,
    account_id: i64,
    name: &str,
) -> DbResult<Option<Vec<MappingEntry>>> {
    let raw: Option<String> = sqlx::query_scalar(
        "select mapping from import_presets where account_id = $1 and name = $2",
    )
    .bind(account_id)
    .bind(name.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(raw.map(|r| serde_json::from_str(&r).unwrap_or_default()))
}

#[derive(sqlx::FromRow)]
struct PresetRow {
    id: i64,
    name: String,
    mapping: String,
    updated_at: i64,
}

impl From<PresetRow> for Preset {
    fn from(r: PresetRow) -> Self {
        Preset {
            id: r.id,
            name: r.name,
            mapping: serde_json::from_str(&r.mapping).unwrap_or_default(),
            updated_at: format_ms(r.updated_at),
        }
    }
}

/// Lists mapping presets by name.
#[utoipa::path(get, path = "/import-presets", tag = "imports",
    responses((status = 200, body = Vec<Preset>)), security(("bearer" = [])))]
pub async fn list_presets(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<Preset>>> {
    user.require(Permission::ImportsRun)?;
    let rows: Vec<PresetRow> = sqlx::query_as(
        "select id, name, mapping, updated_at from import_presets where account_id = $1 order by name",
    )
    .bind(user.account_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(Json(rows.into_iter().map(Preset::from).collect()))
}

/// Saves a mapping preset (replacing one with the same name).
#[utoipa::path(post, path = "/import-presets", tag = "imports", request_body = PresetInput,
    responses((status = 201, body = Preset), (status = 422, body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub async fn save_preset(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PresetInput>,
) -> ApiResult<(StatusCode, Json<Preset>)> {
    user.require(Permission::ImportsRun)?;
    let mut problems = Problems::default();
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 100 characters",
        );
    }
    for (i, e) in body.mapping.iter().enumerate() {
        let f = e.field.trim();
        if !matches!(
            f.to_ascii_lowercase().as_str(),
            "ignore" | "none" | "skip" | "-"
        ) && let Err(err) = f.parse::<farol_import::Field>()
        {
            problems.add(
                format!("mapping[{i}].field"),
                "unknown_field",
                err.to_string(),
            );
        }
        if e.column.trim().is_empty() {
            problems.add(
                format!("mapping[{i}].column"),
                "required",
                "column is required",
            );
        }
    }
    problems.into_result()?;
    let now = now_ms();
    let mapping = serde_json::to_string(&body.mapping).expect("mapping serializes");
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "insert into import_presets (account_id, name, mapping, created_at, updated_at) values ($1, $2, $3, $4, $4) \
         on conflict (account_id, name) do update set mapping = excluded.mapping, updated_at = excluded.updated_at",
    )
    .bind(user.account_id)
    .bind(name.clone())
    .bind(mapping)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let row: PresetRow = sqlx::query_as(
        "select id, name, mapping, updated_at from import_presets where account_id = $1 and name = $2",
    )
    .bind(user.account_id)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let preset = Preset::from(row);
    audit::record(
        &mut tx,
        &user.actor(),
        "import_preset.save",
        "import_preset",
        preset.id,
        audit::NONE,
        Some(&preset),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(preset)))
}

/// Deletes a mapping preset.
#[utoipa::path(delete, path = "/import-presets/{id}", tag = "imports", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::api::ErrorBody)), security(("bearer" = [])))]
pub async fn delete_preset(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::ImportsRun)?;
    let mut tx = state.db.begin().await?;
    let row: PresetRow = sqlx::query_as(
        "select id, name, mapping, updated_at from import_presets where account_id = $1 and id = $2",
    )
    .bind(user.account_id)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::NotFound => ApiError::NotFound("import preset"),
        other => other.into(),
    })?;
    let before = Preset::from(row);
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "import_presets",
        "import_preset",
        id,
        &before,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
