//! Authentication and authorization: users, password login, access and refresh tokens,
//! sessions, login rate limiting, and the role × permission matrix.

pub mod password;
pub mod ratelimit;
pub mod rbac;
pub mod routes;
pub mod token;
pub mod users;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

pub use rbac::{Permission, Role};

use crate::api::{ApiError, ApiResult};
use crate::audit::Actor;
use crate::db::{Db, DbError, DbResult, Tx, now_ms};
use crate::state::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// User id.
    pub id: i64,
    /// The user's account: every query of the request is confined to it.
    pub account_id: i64,
    /// E-mail.
    pub email: String,
    /// Role, read from the database on each request (a demotion applies at once).
    pub role: Role,
    /// Session the access token belongs to.
    pub session_id: String,
}

impl AuthUser {
    /// Fails with 403 unless the role allows `permission`.
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The caller as an audit-log actor.
    pub fn actor(&self) -> Actor {
        Actor {
            account_id: self.account_id,
            user_id: Some(self.id),
            label: self.email.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct PrincipalRow {
    id: i64,
    account_id: i64,
    email: String,
    role: String,
    active: i64,
    revoked_at: Option<i64>,
    expires_at: i64,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> header",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized(
                "Authorization header must be `Bearer <token>`",
            ))?;
        let claims = state.tokens.verify(token.trim()).map_err(|e| match e {
            token::TokenError::Expired => ApiError::Unauthorized("access token expired"),
            token::TokenError::Invalid => ApiError::Unauthorized("invalid access token"),
        })?;
        let user_id: i64 = claims
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthorized("invalid access token"))?;
        let row: Option<PrincipalRow> = sqlx::query_as(
            "select u.id, u.account_id, u.email, u.role, u.active, s.revoked_at, s.expires_at \
             from users u join auth_sessions s on s.user_id = u.id \
             where u.id = $1 and s.id = $2",
        )
        .bind(user_id)
        .bind(claims.sid.clone())
        .fetch_optional(state.db.pool())
        .await
        .map_err(DbError::from)?;
        let row = row.ok_or(ApiError::Unauthorized("session not found"))?;
        if row.revoked_at.is_some() || row.expires_at <= now_ms() {
            return Err(ApiError::Unauthorized("session revoked or expired"));
        }
        if row.active == 0 {
            return Err(ApiError::Unauthorized("user deactivated"));
        }
        if row.account_id != claims.acc {
            return Err(ApiError::Unauthorized("invalid access token"));
        }
        let role = row
            .role
            .parse()
            .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
        Ok(AuthUser {
            id: row.id,
            account_id: row.account_id,
            email: row.email,
            role,
            session_id: claims.sid,
        })
    }
}

/// Opens a session for a user and returns `(session id, refresh token)`.
pub async fn open_session(
    tx: &mut Tx,
    user_id: i64,
    account_id: i64,
    refresh_ttl_secs: u64,
) -> DbResult<(String, String)> {
    let now = now_ms();
    let session_id = uuid::Uuid::now_v7().to_string();
    let expires_at = now + (refresh_ttl_secs as i64) * 1000;
    sqlx::query(
        "insert into auth_sessions (id, user_id, account_id, created_at, expires_at) values ($1, $2, $3, $4, $5)",
    )
    .bind(session_id.clone())
    .bind(user_id)
    .bind(account_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    let refresh = insert_refresh_token(tx, &session_id, expires_at).await?;
    Ok((session_id, refresh))
}

async fn insert_refresh_token(tx: &mut Tx, session_id: &str, expires_at: i64) -> DbResult<String> {
    let refresh = token::new_refresh_token();
    sqlx::query(
        "insert into refresh_tokens (token_hash, session_id, expires_at, created_at) values ($1, $2, $3, $4)",
    )
    .bind(token::hash_refresh_token(&refresh))
    .bind(session_id.to_string())
    .bind(expires_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(refresh)
}

/// What presenting a refresh token led to.
pub enum Rotation {
    /// A new refresh token in the same session.
    Rotated {
        /// User id.
        user_id: i64,
        /// Account id.
        account_id: i64,
        /// Session id.
        session_id: String,
        /// The new refresh token (the presented one is now spent).
        refresh_token: String,
    },
    /// Unknown, expired, or the session is revoked.
    Invalid,
    /// The token had already been used: someone holds a copy. The whole session is revoked.
    Reused,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    session_id: String,
    expires_at: i64,
    used_at: Option<i64>,
    user_id: i64,
    account_id: i64,
    revoked_at: Option<i64>,
    active: i64,
}

/// Spends `refresh_token` and issues its successor (rotation with reuse detection).
pub async fn rotate_refresh_token(db: &Db, refresh_token: &str) -> DbResult<Rotation> {
    let hash = token::hash_refresh_token(refresh_token);
    let mut tx = db.begin().await?;
    let row: Option<RefreshRow> = sqlx::query_as(
        "select r.session_id, r.expires_at, r.used_at, s.user_id, s.account_id, s.revoked_at, u.active \
         from refresh_tokens r join auth_sessions s on s.id = r.session_id join users u on u.id = s.user_id \
         where r.token_hash = $1",
    )
    .bind(hash.clone())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Rotation::Invalid);
    };
    let now = now_ms();
    if row.revoked_at.is_some() || row.expires_at <= now || row.active == 0 {
        return Ok(Rotation::Invalid);
    }
    // The conditional update makes two concurrent uses of one token resolve to one winner.
    let spent = sqlx::query(
        "update refresh_tokens set used_at = $1 where token_hash = $2 and used_at is null",
    )
    .bind(now)
    .bind(hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if row.used_at.is_some() || spent == 0 {
        revoke_session(&mut tx, &row.session_id).await?;
        tx.commit().await?;
        return Ok(Rotation::Reused);
    }
    let refresh_token = insert_refresh_token(&mut tx, &row.session_id, row.expires_at).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        user_id: row.user_id,
        account_id: row.account_id,
        session_id: row.session_id,
        refresh_token,
    })
}

/// Revokes a session: its refresh tokens and access tokens stop working at once.
pub async fn revoke_session(tx: &mut Tx, session_id: &str) -> DbResult<()> {
    sqlx::query("update auth_sessions set revoked_at = $1 where id = $2 and revoked_at is null")
        .bind(now_ms())
        .bind(session_id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Revokes every session of a user (deactivation, password change).
pub async fn revoke_user_sessions(tx: &mut Tx, user_id: i64) -> DbResult<()> {
    sqlx::query(
        "update auth_sessions set revoked_at = $1 where user_id = $2 and revoked_at is null",
    )
    .bind(now_ms())
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Returns the HMAC secret for access tokens: from configuration, or generated once and kept
/// in the database so that all nodes share it.
pub async fn load_or_create_jwt_secret(db: &Db) -> anyhow::Result<String> {
    let existing: Option<String> =
        sqlx::query_scalar("select value from server_secrets where name = 'jwt'")
            .fetch_optional(db.pool())
            .await?;
    if let Some(secret) = existing {
        return Ok(secret);
    }
    let mut tx = db.begin().await?;
    let secret = token::new_secret();
    sqlx::query(
        "insert into server_secrets (name, value, created_at) values ('jwt', $1, $2) on conflict (name) do nothing",
    )
    .bind(secret)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Another node may have won the race: read back whatever is stored.
    Ok(
        sqlx::query_scalar("select value from server_secrets where name = 'jwt'")
            .fetch_one(db.pool())
            .await?,
    )
}
