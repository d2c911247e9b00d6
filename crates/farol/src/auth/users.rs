//! Users of an account: storage and the `/users` routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use farol_normalize::Email;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::password::{self, HashCost};
use super::{AuthUser, Permission, Role, revoke_user_sessions};
use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit::{self, Actor};
use crate::db::{Db, DbResult, SqlBuilder, Tx, flag, format_ms, now_ms};
use crate::state::AppState;

/// A user as the API shows it (never with its password hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: i64,
    /// Login e-mail (lower-case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Inactive users cannot log in.
    pub active: bool,
    /// Last successful login (RFC 3339).
    pub last_login_at: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role name.
    pub role: String,
    /// 0/1.
    pub active: i64,
    /// Epoch ms.
    pub last_login_at: Option<i64>,
    /// Epoch ms.
    pub created_at: i64,
}

impl UserRow {
    /// The API view.
    pub fn to_out(&self) -> UserOut {
        UserOut {
            id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role.parse().unwrap_or(Role::Viewer),
            active: self.active != 0,
            last_login_at: self.last_login_at.map(format_ms),
            created_at: format_ms(self.created_at),
        }
    }
}

const USER_COLUMNS: &str =
    "id, account_id, email, name, password_hash, role, active, last_login_at, created_at";

/// Finds a user by login e-mail (any account: e-mails are unique across the installation).
pub async fn find_by_email(db: &Db, email: &str) -> DbResult<Option<UserRow>> {
    let mut q = SqlBuilder::new(&format!("select {USER_COLUMNS} from users where email = "));
    q.bind(email.to_string());
    Ok(q.query_as().fetch_optional(db.pool()).await?)
}

/// A user of `account_id`.
pub async fn get(db: &Db, account_id: i64, id: i64) -> DbResult<UserRow> {
    let mut q = SqlBuilder::new(&format!(
        "select {USER_COLUMNS} from users where account_id = "
    ));
    q.bind(account_id).push(" and id = ").bind(id);
    Ok(q.query_as().fetch_one(db.pool()).await?)
}

/// Inserts a user and returns its id.
pub async fn insert(
    tx: &mut Tx,
    account_id: i64,
    email: &Email,
    name: &str,
    password_hash: &str,
    role: Role,
) -> DbResult<i64> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "insert into users (account_id, email, name, password_hash, role, active, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, 1, $6, $6) returning id",
    )
    .bind(account_id)
    .bind(email.as_str().to_string())
    .bind(name.to_string())
    .bind(password_hash.to_string())
    .bind(role.as_str().to_string())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Records a successful login.
pub async fn touch_login(tx: &mut Tx, id: i64) -> DbResult<()> {
    sqlx::query("update users set last_login_at = $1 where id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Creates a user from the CLI or the API: validates, hashes (off the async threads), stores,
/// audits. Returns the new user.
pub async fn create(db: &Db, cost: HashCost, actor: &Actor, input: NewUser) -> ApiResult<UserOut> {
    let mut problems = Problems::default();
    let email = match Email::parse(&input.email) {
        Ok(e) => Some(e),
        Err(e) => {
            problems.add("email", e.code(), e.to_string());
            None
        }
    };
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
    if let Some(why) = password::weakness(&input.password) {
        problems.add("password", "weak_password", why);
    }
    problems.into_result()?;
    let email = email.expect("validated above");
    let pw = input.password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, cost))
        .await
        .map_err(|e| anyhow::anyhow!(e))??;
    let mut tx = db.begin().await?;
    let id = insert(&mut tx, actor.account_id, &email, &name, &hash, input.role).await?;
    let row = get_in_tx(&mut tx, actor.account_id, id).await?;
    let out = row.to_out();
    audit::record(
        &mut tx,
        actor,
        "user.create",
        "user",
        id,
        audit::NONE,
        Some(&out),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

async fn get_in_tx(tx: &mut Tx, account_id: i64, id: i64) -> DbResult<UserRow> {
    let mut q = SqlBuilder::new(&format!(
        "select {USER_COLUMNS} from users where account_id = "
    ));
    q.bind(account_id).push(" and id = ").bind(id);
    Ok(q.query_as().fetch_one(&mut **tx).await?)
}

/// Body of `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login e-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// At least 10 characters.
    pub password: String,
    /// Role.
    pub role: Role,
}

/// Body of `PATCH /users/{id}`: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: Option<Role>,
    /// Activate or deactivate (deactivation ends every session of the user).
    pub active: Option<bool>,
    /// New password (ends every session of the user).
    pub password: Option<String>,
}

/// Lists the account's users.
#[utoipa::path(get, path = "/users", tag = "users",
    params(("limit" = Option<i64>, Query, description = "Page size, 1–500"), ("cursor" = Option<String>, Query, description = "From next_cursor")),
    responses((status = 200, body = Page<UserOut>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<UserOut>>> {
    user.require(Permission::UsersRead)?;
    query.reject_unknown(&["limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let mut q = SqlBuilder::new(&format!(
        "select {USER_COLUMNS} from users where account_id = "
    ));
    q.bind(user.account_id);
    if let Some(c) = query.get("cursor") {
        q.push(" and id > ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id limit ").bind(limit + 1);
    let rows: Vec<UserRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items = rows.iter().map(UserRow::to_out).collect();
    Ok(Json(page_from(items, limit, |u: &UserOut| Cursor {
        v: CursorValue::Int(u.id),
        id: u.id,
    })))
}

/// Creates a user in the caller's account.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    user.require(Permission::UsersManage)?;
    let out = create(&state.db, state.hash_cost, &user.actor(), body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserOut), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserOut>> {
    user.require(Permission::UsersRead)?;
    let row = get(&state.db, user.account_id, id)
        .await
        .map_err(not_found)?;
    Ok(Json(row.to_out()))
}

fn not_found(e: crate::db::DbError) -> ApiError {
    match e {
        crate::db::DbError::NotFound => ApiError::NotFound("user"),
        other => other.into(),
    }
}

/// Changes a user. The last active admin of an account cannot be demoted or deactivated.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UserPatch,
    responses((status = 200, body = UserOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserOut>> {
    user.require(Permission::UsersManage)?;
    let mut problems = Problems::default();
    if let Some(name) = &patch.name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
    if let Some(pw) = &patch.password
        && let Some(why) = password::weakness(pw)
    {
        problems.add("password", "weak_password", why);
    }
    problems.into_result()?;
    let new_hash = match patch.password.clone() {
        Some(pw) => {
            let cost = state.hash_cost;
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw, cost))
                    .await
                    .map_err(|e| anyhow::anyhow!(e))??,
            )
        }
        None => None,
    };

    let mut tx = state.db.begin().await?;
    let before = get_in_tx(&mut tx, user.account_id, id)
        .await
        .map_err(not_found)?;
    let demotes = patch.role.is_some_and(|r| r != Role::Admin) || patch.active == Some(false);
    if demotes && before.role == "admin" && before.active != 0 {
        let admins: i64 = sqlx::query_scalar(
            "select count(*) from users where account_id = $1 and role = 'admin' and active = 1",
        )
        .bind(user.account_id)
        .fetch_one(&mut *tx)
        .await?;
        if admins <= 1 {
            return Err(ApiError::field(
                "role",
                "last_admin",
                "the account must keep at least one active admin",
            ));
        }
    }
    let mut q = SqlBuilder::new("update users set updated_at = ");
    q.bind(now_ms());
    if let Some(name) = &patch.name {
        q.push(", name = ").bind(name.trim().to_string());
    }
    if let Some(role) = patch.role {
        q.push(", role = ").bind(role.as_str().to_string());
    }
    if let Some(active) = patch.active {
        q.push(", active = ").bind(flag(active));
    }
    if let Some(hash) = new_hash {
        q.push(", password_hash = ").bind(hash);
    }
    q.push(" where account_id = ")
        .bind(user.account_id)
        .push(" and id = ")
        .bind(id);
    q.query().execute(&mut *tx).await?;
    if patch.active == Some(false) || patch.password.is_some() {
        revoke_user_sessions(&mut tx, id).await?;
    }
    let after = get_in_tx(&mut tx, user.account_id, id).await?;
    let (b, a) = (before.to_out(), after.to_out());
    audit::record(
        &mut tx,
        &user.actor(),
        "user.update",
        "user",
        id,
        Some(&b),
        Some(&a),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(a))
}

/// Deactivates a user (users are never deleted: the audit log and timelines refer to them).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_user(
    state: State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let patch = UserPatch {
        name: None,
        role: None,
        active: Some(false),
        password: None,
    };
    let _deactivated = update_user(state, user, Path(id), ApiJson(patch)).await?;
    Ok(StatusCode::NO_CONTENT)
}
