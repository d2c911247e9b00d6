//! `/auth/login`, `/auth/refresh`, `/auth/logout`, `/auth/me`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::{self, UserOut};
use super::{AuthUser, Rotation, open_session, password, revoke_session, rotate_refresh_token};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::audit::{self, Actor};
use crate::state::AppState;

/// Body of `POST /auth/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /auth/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh (each one works once).
    pub refresh_token: String,
}

/// Tokens issued by login and refresh.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Exchange at `/auth/refresh` for new tokens; single use.
    pub refresh_token: String,
    /// The logged-in user.
    pub user: UserOut,
}

/// Exchanges e-mail and password for tokens. Failed attempts are rate limited per client
/// address and e-mail (429 with `Retry-After`).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let email = body.email.trim().to_lowercase();
    let ip = peer.ip().to_string();
    let pair_key = format!("{ip}|{email}");
    let ip_key = format!("{ip}|*");
    for (key, factor) in [(&pair_key, 1), (&ip_key, 5)] {
        if let Err(retry_after_secs) = state.login_limiter.check(key, factor).await {
            metrics::counter!("farol_login_total", "outcome" => "rate_limited").increment(1);
            return Err(ApiError::RateLimited { retry_after_secs });
        }
    }

    let user = users::find_by_email(&state.db, &email).await?;
    // Unknown e-mails are verified against a decoy hash of the same cost, so the response time
    // does not reveal which e-mails have accounts.
    let stored = match &user {
        Some(u) => u.password_hash.clone(),
        None => state.decoy_hash().await?,
    };
    let password = body.password;
    let valid = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let user = match user {
        Some(u) if valid && u.active != 0 => u,
        _ => {
            state.login_limiter.hit(&pair_key).await;
            state.login_limiter.hit(&ip_key).await;
            metrics::counter!("farol_login_total", "outcome" => "failed").increment(1);
            tracing::warn!(%ip, "failed login");
            return Err(ApiError::Unauthorized("wrong e-mail or password"));
        }
    };
    state.login_limiter.clear(&pair_key).await;

    let mut tx = state.db.begin().await?;
    let (session_id, refresh_token) = open_session(
        &mut tx,
        user.id,
        user.account_id,
        state.config.auth.refresh_token_ttl_secs,
    )
    .await?;
    users::touch_login(&mut tx, user.id).await?;
    let actor = Actor {
        account_id: user.account_id,
        user_id: Some(user.id),
        label: user.email.clone(),
    };
    audit::record(
        &mut tx,
        &actor,
        "auth.login",
        "session",
        &session_id,
        audit::NONE,
        Some(&serde_json::json!({"ip": ip})),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("farol_login_total", "outcome" => "ok").increment(1);

    let access_token = state.tokens.issue(user.id, user.account_id, &session_id)?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl_secs,
        refresh_token,
        user: user.to_out(),
    }))
}

/// Exchanges a refresh token for a new access token and a new refresh token. Presenting a
/// refresh token twice revokes its whole session (someone copied it).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    match rotate_refresh_token(&state.db, body.refresh_token.trim()).await? {
        Rotation::Rotated {
            user_id,
            account_id,
            session_id,
            refresh_token,
        } => {
            let user = users::get(&state.db, account_id, user_id).await?;
            let access_token = state.tokens.issue(user_id, account_id, &session_id)?;
            Ok(Json(TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in: state.tokens.access_ttl_secs,
                refresh_token,
                user: user.to_out(),
            }))
        }
        Rotation::Invalid => Err(ApiError::Unauthorized("invalid or expired refresh token")),
        Rotation::Reused => {
            tracing::warn!("refresh token reuse detected; session revoked");
            Err(ApiError::Unauthorized(
                "refresh token already used; the session has been revoked",
            ))
        }
    }
}

/// Ends the caller's session: its access and refresh tokens stop working immediately.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    revoke_session(&mut tx, &user.session_id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "auth.logout",
        "session",
        &user.session_id,
        audit::NONE,
        audit::NONE,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = UserOut), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<UserOut>> {
    Ok(Json(
        users::get(&state.db, user.account_id, user.id)
            .await?
            .to_out(),
    ))
}
