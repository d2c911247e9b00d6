//! WPPConnect sessions of a channel account (several WhatsApp numbers per account; sends are
//! spread over the connected ones): start (registering Farol's webhook), status, QR code,
//! close.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use farol_channels::whatsapp::wppconnect::{SessionState, SessionStatus, WppSession};
use serde::Serialize;
use utoipa::ToSchema;

use super::accounts::{self, Provider};
use super::registry::Built;
use crate::api::{ApiError, ApiResult, ErrorBody};
use crate::auth::{AuthUser, Permission};
use crate::db::DbError;
use crate::state::AppState;

/// A session's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionOut {
    /// Session name.
    pub name: String,
    /// `connected`, `qrcode` (waiting for a scan), `initializing`, `closed`, or the server's word.
    pub state: String,
    /// The QR code (`data:image/png;base64,…`) while waiting for a scan.
    pub qrcode: Option<String>,
}

fn out(name: &str, s: SessionStatus) -> SessionOut {
    SessionOut {
        name: name.to_owned(),
        state: match s.state {
            SessionState::Connected => "connected".into(),
            SessionState::QrCode => "qrcode".into(),
            SessionState::Initializing => "initializing".into(),
            SessionState::Closed => "closed".into(),
            SessionState::Other(o) => o,
        },
        qrcode: s.qrcode,
    }
}

/// Sends use only sessions last seen connected.
fn mark(built: &Built, name: &str, status: &SessionStatus) {
    if let Some((pool, _)) = &built.wpp {
        pool.set_connected(name, status.state == SessionState::Connected);
    }
}

fn upstream(e: farol_channels::SendError) -> ApiError {
    ApiError::Unavailable(format!("the WPPConnect server answered: {e}"))
}

async fn session(
    state: &AppState,
    user: &AuthUser,
    id: i64,
    name: Option<&str>,
) -> ApiResult<(Arc<Built>, Vec<WppSession>)> {
    user.require(Permission::ChannelsManage)?;
    let mut conn = state.db.pool().acquire().await?;
    let row = accounts::get(&mut conn, user.account_id, id)
        .await
        .map_err(|e| match e {
            DbError::NotFound => ApiError::NotFound("channel account"),
            other => other.into(),
        })?;
    drop(conn);
    if row.provider() != Provider::Wppconnect {
        return Err(ApiError::field(
            "id",
            "not_wppconnect",
            "sessions belong to WPPConnect accounts",
        ));
    }
    let registry = state
        .channels
        .registry()
        .ok_or_else(|| ApiError::Unavailable("channel accounts are not available".into()))?;
    let built = registry
        .get(id)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .ok_or(ApiError::NotFound("channel account"))?;
    let sessions: Vec<WppSession> = built
        .wpp
        .as_ref()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let sessions = match name {
        None => sessions,
        Some(n) => {
            let s: Vec<WppSession> = sessions.into_iter().filter(|s| s.name() == n).collect();
            if s.is_empty() {
                return Err(ApiError::NotFound("session"));
            }
            s
        }
    };
    Ok((built, sessions))
}

/// Every session of a WPPConnect account with its state.
#[utoipa::path(get, path = "/channel-accounts/{id}/sessions", tag = "channels", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<SessionOut>), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<SessionOut>>> {
    let (built, sessions) = session(&state, &user, id, None).await?;
    let mut list = Vec::new();
    for s in sessions {
        let status = s.status().await.map_err(upstream)?;
        mark(&built, s.name(), &status);
        list.push(out(s.name(), status));
    }
    Ok(Json(list))
}

/// One session's state.
#[utoipa::path(get, path = "/channel-accounts/{id}/sessions/{name}", tag = "channels",
    params(("id" = i64, Path), ("name" = String, Path)),
    responses((status = 200, body = SessionOut), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn session_status(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Json<SessionOut>> {
    let (built, sessions) = session(&state, &user, id, Some(&name)).await?;
    let s = &sessions[0];
    let status = s.status().await.map_err(upstream)?;
    mark(&built, s.name(), &status);
    Ok(Json(out(s.name(), status)))
}

/// Starts a session with Farol's webhook registered; scan the QR code it returns.
#[utoipa::path(post, path = "/channel-accounts/{id}/sessions/{name}/start", tag = "channels",
    params(("id" = i64, Path), ("name" = String, Path)),
    responses((status = 200, body = SessionOut), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Json<SessionOut>> {
    let (built, sessions) = session(&state, &user, id, Some(&name)).await?;
    let webhook = format!(
        "{}/api/v1/webhooks/wppconnect/{id}/{}",
        crate::campaign::public_url(&state.config),
        built.secret("webhook_token").unwrap_or_default()
    );
    let s = &sessions[0];
    let status = s.start(Some(&webhook)).await.map_err(upstream)?;
    mark(&built, s.name(), &status);
    Ok(Json(out(s.name(), status)))
}

/// The session's QR code as a PNG while it waits for a scan (404 otherwise).
#[utoipa::path(get, path = "/channel-accounts/{id}/sessions/{name}/qrcode", tag = "channels",
    params(("id" = i64, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "image/png"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn session_qrcode(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let (_, sessions) = session(&state, &user, id, Some(&name)).await?;
    match sessions[0].qrcode_png().await.map_err(upstream)? {
        Some(png) => Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response()),
        None => Err(ApiError::NotFound(
            "QR code (the session is not waiting for a scan)",
        )),
    }
}

/// Closes a session; sends go to the account's other sessions.
#[utoipa::path(post, path = "/channel-accounts/{id}/sessions/{name}/close", tag = "channels",
    params(("id" = i64, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn close_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, name)): Path<(i64, String)>,
) -> ApiResult<StatusCode> {
    let (built, sessions) = session(&state, &user, id, Some(&name)).await?;
    sessions[0].close().await.map_err(upstream)?;
    if let Some((pool, _)) = &built.wpp {
        pool.set_connected(&name, false);
    }
    Ok(StatusCode::NO_CONTENT)
}
