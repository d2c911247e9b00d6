//! The imports API: create, upload in chunks (resumable), preview, start, follow, cancel,
//! report.
//!
//! Upload protocol (tus-like, documented in docs/import.md): `POST /imports` declares the
//! files and their sizes; each file's bytes go in order with
//! `PUT /imports/{id}/files/{position}` and an `Upload-Offset` header equal to the bytes the
//! server already has (`HEAD` on the same URL answers it, after a dropped connection). A chunk
//! at the wrong offset is refused with 409 and the expected offset. `POST /imports/{id}/start`
//! queues the import once every byte is in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::pipeline::{self, ImportError};
use super::report::{ImportOut, ReportOut, write_issues_csv};
use super::rows::{Problem, RowContext, RowOutcome, normalize};
use super::store::{self, ImportOptions, NewFile, Status};
use super::writer::Dedupe;
use crate::api::extract::ApiJson;
use crate::api::{ApiError, ApiResult, ErrorBody, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::DbError;
use crate::state::AppState;

/// A file declared by `POST /imports`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDecl {
    /// Original file name (shown in reports; identifies the file for re-imports).
    pub name: String,
    /// Size in bytes.
    pub size: i64,
}

/// Body of `POST /imports`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImport {
    /// Files, read in this order.
    pub files: Vec<FileDecl>,
    /// Dedupe policy (default keep-first).
    #[serde(default)]
    pub dedupe: Dedupe,
    /// Mapping overrides and reading options.
    #[serde(default)]
    pub options: ImportOptions,
    /// A saved preset whose mapping comes before `options.mapping`.
    pub preset: Option<String>,
}

/// Body of `POST /imports/{id}/start` (all optional: change the policy or options last-minute).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartImport {
    /// Dedupe policy.
    pub dedupe: Option<Dedupe>,
    /// Replaces the options.
    pub options: Option<ImportOptions>,
}

/// An optional JSON body: empty means absent.
fn optional_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<Option<T>> {
    let text = bytes.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(None);
    }
    crate::api::extract::parse_json(bytes).map(Some)
}

fn not_found(e: DbError) -> ApiError {
    match e {
        DbError::NotFound => ApiError::NotFound("import"),
        other => other.into(),
    }
}

fn upload_path(state: &AppState, id: i64, position: i64) -> PathBuf {
    state
        .config
        .data_dir
        .join("uploads")
        .join(id.to_string())
        .join(position.to_string())
}

async fn view(state: &AppState, account_id: i64, id: i64) -> ApiResult<ImportOut> {
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get(&mut conn, account_id, id)
        .await
        .map_err(not_found)?;
    let files = store::files(&mut conn, id).await?;
    Ok(ImportOut::new(&row, &files))
}

/// Query of `GET /imports`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Imports with an id below this one (the previous page's last id).
    pub before: Option<i64>,
    /// Page size (1–100, default 20).
    pub limit: Option<i64>,
}

/// Lists imports, newest first.
#[utoipa::path(get, path = "/imports", tag = "imports", params(ListQuery),
    responses((status = 200, body = Vec<ImportOut>)), security(("bearer" = [])))]
pub async fn list_imports(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ImportOut>>> {
    user.require(Permission::ImportsRun)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            "out_of_range",
            "limit must be between 1 and 100",
        ));
    }
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::list(&mut conn, user.account_id, q.before, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let files = store::files(&mut conn, r.id).await?;
        out.push(ImportOut::new(&r, &files));
    }
    Ok(Json(out))
}

/// Declares an import and its files; upload each file's bytes next.
#[utoipa::path(post, path = "/imports", tag = "imports", request_body = NewImport,
    responses((status = 201, body = ImportOut), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_import(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(mut body): ApiJson<NewImport>,
) -> ApiResult<(StatusCode, Json<ImportOut>)> {
    user.require(Permission::ImportsRun)?;
    let mut problems = Problems::default();
    if body.files.is_empty() {
        problems.add("files", "required", "declare at least one file");
    }
    let max = state.config.import.max_file_bytes as i64;
    for (i, f) in body.files.iter().enumerate() {
        if f.name.trim().is_empty() || f.name.len() > 255 {
            problems.add(
                format!("files[{i}].name"),
                "invalid_length",
                "name must have 1 to 255 bytes",
            );
        }
        if f.size < 1 || f.size > max {
            problems.add(
                format!("files[{i}].size"),
                "out_of_range",
                format!("size must be between 1 and {max} bytes"),
            );
        }
    }
    if let Err(m) = pipeline::open_options(&body.options) {
        problems.add("options", "invalid", m);
    }
    if let Some(name) = &body.preset {
        let mut conn = state.db.pool().acquire().await?;
        match super::presets::load(&mut conn, user.account_id, name).await? {
            Some(mut mapping) => {
                mapping.append(&mut body.options.mapping);
                body.options.mapping = mapping;
            }
            None => problems.add(
                "preset",
                "not_found",
                format!("there is no mapping preset named `{name}`"),
            ),
        }
    }
    problems.into_result()?;
    let files: Vec<NewFile> = body
        .files
        .iter()
        .map(|f| NewFile {
            name: f.name.trim().to_owned(),
            path: String::new(),
            size: Some(f.size),
        })
        .collect();
    let mut tx = state.db.begin().await?;
    let id = store::create(
        &mut tx,
        user.account_id,
        Some(user.id),
        Status::Uploading,
        body.dedupe,
        &body.options,
        &files,
    )
    .await?;
    for i in 0..files.len() as i64 {
        let path = upload_path(&state, id, i);
        store::set_file_path(&mut tx, id, i, &path.to_string_lossy()).await?;
    }
    audit::record(
        &mut tx,
        &user.actor(),
        "import.create",
        "import",
        id,
        audit::NONE,
        Some(&body.options),
    )
    .await?;
    tx.commit().await?;
    tokio::fs::create_dir_all(upload_path(&state, id, 0).parent().expect("has a parent"))
        .await
        .map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("cannot create the upload directory: {e}"))
        })?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, user.account_id, id).await?),
    ))
}

/// One import: status, counts, progress (rows/s, percent, ETA).
#[utoipa::path(get, path = "/imports/{id}", tag = "imports", params(("id" = i64, Path)),
    responses((status = 200, body = ImportOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ImportOut>> {
    user.require(Permission::ImportsRun)?;
    Ok(Json(view(&state, user.account_id, id).await?))
}

async fn upload_target(
    state: &AppState,
    user: &AuthUser,
    id: i64,
    position: i64,
) -> ApiResult<store::FileRow> {
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    if row.status() != Status::Uploading {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "the import is {}; uploads are accepted only before it starts",
                row.status().as_str()
            ),
        });
    }
    store::files(&mut conn, id)
        .await?
        .into_iter()
        .find(|f| f.position == position)
        .ok_or(ApiError::NotFound("import file"))
}

fn offset_headers(received: i64, size: Option<i64>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("upload-offset", HeaderValue::from(received));
    if let Some(s) = size {
        h.insert("upload-length", HeaderValue::from(s));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

/// Bytes received so far for a file (`Upload-Offset`), to resume an interrupted upload.
#[utoipa::path(head, path = "/imports/{id}/files/{position}", tag = "imports",
    params(("id" = i64, Path), ("position" = i64, Path)),
    responses((status = 204, description = "Upload-Offset and Upload-Length headers")), security(("bearer" = [])))]
pub async fn upload_offset(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, position)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    user.require(Permission::ImportsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    let file = store::files(&mut conn, id)
        .await?
        .into_iter()
        .find(|f| f.position == position)
        .ok_or(ApiError::NotFound("import file"))?;
    Ok((
        StatusCode::NO_CONTENT,
        offset_headers(file.received, file.size),
    )
        .into_response())
}

/// Appends a chunk to a file. `Upload-Offset` must equal the bytes already received.
#[utoipa::path(put, path = "/imports/{id}/files/{position}", tag = "imports",
    params(("id" = i64, Path), ("position" = i64, Path), ("Upload-Offset" = i64, Header, description = "bytes already received")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204, description = "stored; Upload-Offset has the new offset"), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_chunk(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, position)): Path<(i64, i64)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    user.require(Permission::ImportsRun)?;
    let offset: i64 = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::field(
                "Upload-Offset",
                "required",
                "send the Upload-Offset header (bytes already received; 0 for the first chunk)",
            )
        })?;
    let file = upload_target(&state, &user, id, position).await?;
    if offset != file.received {
        return Ok(offset_mismatch(file.received, file.size));
    }
    // The body goes to a file of its own first (the slow part, no lock held); then the offset
    // is advanced with a compare-and-set in a write transaction, and the chunk is appended while
    // that transaction holds the row: of two concurrent chunks at the same offset, exactly one
    // lands, the other gets 409 with the new offset.
    let size = file.size.unwrap_or(i64::MAX);
    let path = PathBuf::from(&file.path);
    let io = |e: std::io::Error| ApiError::Internal(anyhow::anyhow!("{}: {e}", path.display()));
    let staged = path.with_extension(format!("chunk-{}", uuid::Uuid::new_v4().simple()));
    let written = match stage_chunk(&staged, body, offset, size, &state).await {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e);
        }
    };
    let received = offset + written;
    let mut tx = state.db.begin().await?;
    let landed = store::advance_upload(&mut tx, id, position, offset, received).await?;
    if landed {
        let appended = append_at(&path, &staged, offset).await.map_err(io);
        if appended.is_ok() {
            tx.commit().await?;
        }
        let _ = tokio::fs::remove_file(&staged).await;
        appended?;
    } else {
        drop(tx);
        let _ = tokio::fs::remove_file(&staged).await;
        let file = upload_target(&state, &user, id, position).await?;
        return Ok(offset_mismatch(file.received, file.size));
    }
    Ok((StatusCode::NO_CONTENT, offset_headers(received, file.size)).into_response())
}

fn too_large(message: String) -> ApiError {
    ApiError::field("body", "too_large", message)
}

/// The 409 answer to a chunk at the wrong offset, with the offset the server has.
fn offset_mismatch(received: i64, size: Option<i64>) -> Response {
    let mut h = offset_headers(received, size);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({
        "code": "offset_mismatch",
        "message": format!("the server has {received} bytes of this file; send the chunk at that offset"),
        "fields": [],
    });
    (StatusCode::CONFLICT, h, body.to_string()).into_response()
}

/// Streams a request body into `staged`, enforcing the chunk and file size limits; returns its
/// length.
async fn stage_chunk(
    staged: &std::path::Path,
    body: Body,
    offset: i64,
    size: i64,
    state: &AppState,
) -> ApiResult<i64> {
    let io = |e: std::io::Error| ApiError::Internal(anyhow::anyhow!("{}: {e}", staged.display()));
    let mut out = tokio::fs::File::create(staged).await.map_err(io)?;
    let max_chunk = state.config.import.max_chunk_bytes as i64;
    let mut written: i64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?;
        written += chunk.len() as i64;
        if written > max_chunk {
            return Err(too_large(format!(
                "a chunk may have at most {max_chunk} bytes"
            )));
        }
        if offset + written > size {
            return Err(too_large(format!(
                "the file was declared with {size} bytes"
            )));
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(written)
}

/// Appends `staged` to `path` at `offset`, dropping whatever a chunk that broke halfway left
/// past it, and syncs.
async fn append_at(
    path: &std::path::Path,
    staged: &std::path::Path,
    offset: i64,
) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .await?;
    out.set_len(offset as u64).await?;
    out.seek(std::io::SeekFrom::Start(offset as u64)).await?;
    let mut chunk = tokio::fs::File::open(staged).await?;
    tokio::io::copy(&mut chunk, &mut out).await?;
    out.sync_data().await
}

/// Query of `POST /imports/{id}/preview`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PreviewQuery {
    /// Rows per file (1–100, default 20).
    pub rows: Option<usize>,
}

/// A column and the field it feeds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnOut {
    /// Header.
    pub column: String,
    /// Field (`None`: ignored).
    pub field: Option<String>,
}

/// One previewed row.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewRow {
    /// Row number.
    pub row: u64,
    /// `valid`, `invalid` or `blank`.
    pub status: String,
    /// Values as they would be stored, by field.
    #[schema(value_type = Object)]
    pub values: BTreeMap<String, serde_json::Value>,
    /// Per-cell problems.
    pub problems: Vec<ProblemOut>,
}

/// A problem in a previewed row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemOut {
    /// `error` or `warning`.
    pub severity: String,
    /// Column header.
    pub column: Option<String>,
    /// Raw value.
    pub value: Option<String>,
    /// Reason code.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl From<Problem> for ProblemOut {
    fn from(p: Problem) -> Self {
        ProblemOut {
            severity: p.severity.as_str().into(),
            column: p.column,
            value: p.value,
            code: p.code,
            message: p.message,
        }
    }
}

/// Preview of one file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilePreview {
    /// File name.
    pub name: String,
    /// Detected format (CSV encoding and delimiter, or XLSX sheet).
    #[schema(value_type = Object)]
    pub format: serde_json::Value,
    /// Columns and their fields (proposal plus overrides).
    pub columns: Vec<ColumnOut>,
    /// The first rows as they would be stored.
    pub rows: Vec<PreviewRow>,
}

/// Shows the first rows of each file as they would be stored, with per-cell problems, using
/// the import's options (or the ones in the body, to try a mapping before saving it).
#[utoipa::path(post, path = "/imports/{id}/preview", tag = "imports", params(("id" = i64, Path), PreviewQuery),
    request_body(content = Option<ImportOptions>),
    responses((status = 200, body = Vec<FilePreview>), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn preview_import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Vec<FilePreview>>> {
    user.require(Permission::ImportsRun)?;
    let n = q.rows.unwrap_or(20);
    if !(1..=100).contains(&n) {
        return Err(ApiError::field(
            "rows",
            "out_of_range",
            "rows must be between 1 and 100",
        ));
    }
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    let files = store::files(&mut conn, id).await?;
    let custom = crate::crm::custom_fields::definitions(&mut conn, user.account_id).await?;
    drop(conn);
    let options = optional_json::<ImportOptions>(&body)?.unwrap_or_else(|| row.options());
    let open =
        pipeline::open_options(&options).map_err(|m| ApiError::field("options", "invalid", m))?;
    let mut out = Vec::new();
    for f in files {
        if f.received == 0 && f.size.is_some() {
            return Err(ApiError::field(
                format!("files[{}]", f.position),
                "not_uploaded",
                format!("{}: no bytes uploaded yet", f.name),
            ));
        }
        let (options, open, custom) = (options.clone(), open.clone(), custom.clone());
        let preview =
            tokio::task::spawn_blocking(move || preview_file(&f, &options, &open, &custom, n))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
        out.push(preview.map_err(|e| ApiError::field("files", "unreadable", e.to_string()))?);
    }
    Ok(Json(out))
}

fn preview_file(
    f: &store::FileRow,
    options: &ImportOptions,
    open: &farol_import::OpenOptions,
    custom: &BTreeMap<String, crate::crm::custom_fields::CustomField>,
    n: usize,
) -> Result<FilePreview, ImportError> {
    let source = pipeline::open_file(&f.path, &f.name, open)?;
    let mapping = pipeline::resolve_mapping(&f.name, source.headers(), options, custom)?;
    let format = serde_json::to_value(source.format()).unwrap_or_default();
    let headers = source.headers().to_vec();
    let ctx = RowContext {
        headers: headers.clone(),
        mapping: mapping.clone(),
        custom_fields: custom.clone().into_iter().collect(),
        default_portfolio: options.portfolio.clone(),
    };
    let mut rows = Vec::new();
    for record in source.take(n) {
        // A partially uploaded file may end mid-row: show what could be read.
        let Ok(record) = record else { break };
        rows.push(match normalize(&record, &ctx) {
            RowOutcome::Blank => PreviewRow {
                row: record.row,
                status: "blank".into(),
                values: BTreeMap::new(),
                problems: vec![],
            },
            RowOutcome::Invalid(row, ps) => PreviewRow {
                row,
                status: "invalid".into(),
                values: BTreeMap::new(),
                problems: ps.into_iter().map(ProblemOut::from).collect(),
            },
            RowOutcome::Valid(c, ps) => PreviewRow {
                row: c.row,
                status: "valid".into(),
                values: candidate_values(&c),
                problems: ps.into_iter().map(ProblemOut::from).collect(),
            },
        });
    }
    Ok(FilePreview {
        name: f.name.clone(),
        format,
        columns: headers
            .iter()
            .zip(&mapping)
            .map(|(h, m)| ColumnOut {
                column: h.trim().to_owned(),
                field: m.as_ref().map(|f| f.name().into_owned()),
            })
            .collect(),
        rows,
    })
}

fn candidate_values(c: &super::rows::Candidate) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut v = BTreeMap::new();
    v.insert("name".into(), json!(c.name));
    let mut opt = |k: &str, val: &Option<String>| {
        if let Some(x) = val {
            v.insert(k.to_owned(), json!(x));
        }
    };
    opt("legal_name", &c.legal_name);
    opt("cpf_cnpj", &c.cpf_cnpj);
    opt("portfolio", &c.portfolio);
    opt("city", &c.city);
    opt("category", &c.category);
    opt("current_product", &c.current_product);
    opt("external_id", &c.external_id);
    if !c.phones.is_empty() {
        v.insert("phones".into(), json!(c.phones));
    }
    if !c.emails.is_empty() {
        v.insert("emails".into(), json!(c.emails));
    }
    if let Some(s) = c.status {
        v.insert("status".into(), json!(s.as_str()));
    }
    if !c.tags.is_empty() {
        v.insert("tags".into(), json!(c.tags));
    }
    if let Some(s) = c.score {
        v.insert("score".into(), json!(s));
    }
    for (k, val) in &c.custom {
        v.insert(
            format!("cf.{k}"),
            val.text
                .clone()
                .map(|t| json!(t))
                .unwrap_or_else(|| json!(val.number)),
        );
    }
    v
}

/// Queues an uploaded import (every byte of every file must be in).
#[utoipa::path(post, path = "/imports/{id}/start", tag = "imports", params(("id" = i64, Path)),
    request_body(content = Option<StartImport>),
    responses((status = 202, body = ImportOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<ImportOut>)> {
    user.require(Permission::ImportsRun)?;
    let body = optional_json::<StartImport>(&body)?.unwrap_or_default();
    let mut conn = state.db.pool().acquire().await?;
    let row = store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    if row.status() != Status::Uploading {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!("the import is already {}", row.status().as_str()),
        });
    }
    let files = store::files(&mut conn, id).await?;
    let custom = crate::crm::custom_fields::definitions(&mut conn, user.account_id).await?;
    drop(conn);
    let mut problems = Problems::default();
    for f in &files {
        if Some(f.received) != f.size {
            problems.add(
                format!("files[{}]", f.position),
                "incomplete_upload",
                format!(
                    "{}: {} of {} bytes received",
                    f.name,
                    f.received,
                    f.size.unwrap_or(0)
                ),
            );
        }
    }
    problems.into_result()?;
    let options = body.options.unwrap_or_else(|| row.options());
    let dedupe = body.dedupe.unwrap_or_else(|| row.dedupe());
    let open =
        pipeline::open_options(&options).map_err(|m| ApiError::field("options", "invalid", m))?;
    // Every file must open and fit the mapping before the job is queued.
    for f in files {
        let (options, open, custom) = (options.clone(), open.clone(), custom.clone());
        let checked = tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
            let source = pipeline::open_file(&f.path, &f.name, &open)?;
            pipeline::resolve_mapping(&f.name, source.headers(), &options, &custom)?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
        checked
            .map_err(|e| ApiError::field("options.mapping", "invalid_mapping", e.to_string()))?;
    }
    let mut tx = state.db.begin().await?;
    store::set_options(&mut tx, id, dedupe, &options).await?;
    if !store::transition(&mut tx, id, &[Status::Uploading], Status::Queued).await? {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: "the import was started or cancelled meanwhile".into(),
        });
    }
    audit::record(
        &mut tx,
        &user.actor(),
        "import.start",
        "import",
        id,
        audit::NONE,
        Some(&options),
    )
    .await?;
    tx.commit().await?;
    state.import_wake.notify_waiters();
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&state, user.account_id, id).await?),
    ))
}

/// Cancels an import. A running one stops after the batch in flight; rows already written
/// stay (the report says how many).
#[utoipa::path(post, path = "/imports/{id}/cancel", tag = "imports", params(("id" = i64, Path)),
    responses((status = 202, body = ImportOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel_import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<ImportOut>)> {
    user.require(Permission::ImportsRun)?;
    store::request_cancel(&state.db, user.account_id, id)
        .await
        .map_err(not_found)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&state, user.account_id, id).await?),
    ))
}

/// The report: counts, reasons and up to 1,000 problem samples.
#[utoipa::path(get, path = "/imports/{id}/report", tag = "imports", params(("id" = i64, Path)),
    responses((status = 200, body = ReportOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn import_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ReportOut>> {
    user.require(Permission::ImportsRun)?;
    let import = view(&state, user.account_id, id).await?;
    let mut conn = state.db.pool().acquire().await?;
    let samples = store::issues(&mut conn, id).await?;
    Ok(Json(ReportOut::new(import, samples)))
}

/// The problem samples as CSV (file, row, column, value, severity, code, message).
#[utoipa::path(get, path = "/imports/{id}/issues.csv", tag = "imports", params(("id" = i64, Path)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn import_issues_csv(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    user.require(Permission::ImportsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    let samples = store::issues(&mut conn, id).await?;
    let mut buf = Vec::new();
    write_issues_csv(&samples, &mut buf).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"import-{id}-issues.csv\""),
            ),
        ],
        buf,
    )
        .into_response())
}
