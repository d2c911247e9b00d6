//! Portfolios (carteiras): the books of clients a team works, e.g. "Vivo Empresas SP".

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{DbError, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// A portfolio with its size.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Portfolio {
    /// Id.
    pub id: i64,
    /// Name, unique in the account.
    pub name: String,
    /// Free description.
    pub description: Option<String>,
    /// Number of clients in it.
    pub client_count: i64,
    /// Creation time.
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct PortfolioRow {
    id: i64,
    name: String,
    description: Option<String>,
    client_count: i64,
    created_at: i64,
}

impl From<PortfolioRow> for Portfolio {
    fn from(r: PortfolioRow) -> Self {
        Portfolio {
            id: r.id,
            name: r.name,
            description: r.description,
            client_count: r.client_count,
            created_at: format_ms(r.created_at),
        }
    }
}

const SELECT: &str = "select p.id, p.name, p.description, p.created_at, \
     (select count(*) from clients c where c.account_id = p.account_id and c.portfolio_id = p.id) as client_count \
     from portfolios p where p.account_id = ";

/// Body of `POST /portfolios` and `PATCH /portfolios/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortfolioInput {
    /// Name (1–100 characters).
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// Whether `id` is a portfolio of `account_id`.
pub async fn exists(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("select id from portfolios where account_id = $1 and id = $2")
            .bind(account_id)
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

/// The id of the portfolio named `name`, creating it when missing (importer, demo).
pub async fn ensure(conn: &mut AnyConnection, account_id: i64, name: &str) -> DbResult<i64> {
    let now = now_ms();
    sqlx::query("insert into portfolios (account_id, name, created_at, updated_at) values ($1, $2, $3, $3) on conflict (account_id, name) do nothing")
        .bind(account_id)
        .bind(name.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar("select id from portfolios where account_id = $1 and name = $2")
            .bind(account_id)
            .bind(name.to_string())
            .fetch_one(conn)
            .await?,
    )
}

async fn get_portfolio(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<Portfolio> {
    let mut q = SqlBuilder::new(SELECT);
    q.bind(account_id).push(" and p.id = ").bind(id);
    let row: PortfolioRow =
        q.query_as()
            .fetch_one(conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::NotFound => ApiError::NotFound("portfolio"),
                other => other.into(),
            })?;
    Ok(row.into())
}

fn validate(input: &PortfolioInput, creating: bool) -> ApiResult<Option<String>> {
    let mut problems = Problems::default();
    let name = input.name.as_ref().map(|n| n.trim().to_string());
    match &name {
        Some(n) if n.is_empty() || n.chars().count() > 100 => problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 100 characters",
        ),
        None if creating => problems.add("name", "required", "name is required"),
        _ => {}
    }
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        problems.add(
            "description",
            "too_long",
            "description has at most 2000 characters",
        );
    }
    problems.into_result()?;
    Ok(name)
}

/// Lists portfolios by name, with client counts.
#[utoipa::path(get, path = "/portfolios", tag = "portfolios",
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<Portfolio>)), security(("bearer" = [])))]
pub async fn list_portfolios(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<Portfolio>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(&["limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let mut q = SqlBuilder::new(SELECT);
    q.bind(user.account_id);
    if let Some(c) = query.get("cursor") {
        let c = Cursor::decode(c)?;
        let CursorValue::Text(name) = c.v else {
            return Err(ApiError::field(
                "cursor",
                "invalid_cursor",
                "not a cursor of this list",
            ));
        };
        q.push(" and (p.name, p.id) > (")
            .bind(name)
            .push(", ")
            .bind(c.id)
            .push(")");
    }
    q.push(" order by p.name, p.id limit ").bind(limit + 1);
    let rows: Vec<PortfolioRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items: Vec<Portfolio> = rows.into_iter().map(Portfolio::from).collect();
    Ok(Json(page_from(items, limit, |p: &Portfolio| Cursor {
        v: CursorValue::Text(p.name.clone()),
        id: p.id,
    })))
}

/// One portfolio.
#[utoipa::path(get, path = "/portfolios/{id}", tag = "portfolios", params(("id" = i64, Path)),
    responses((status = 200, body = Portfolio), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_portfolio_route(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Portfolio>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(get_portfolio(&mut conn, user.account_id, id).await?))
}

/// Creates a portfolio.
#[utoipa::path(post, path = "/portfolios", tag = "portfolios", request_body = PortfolioInput,
    responses((status = 201, body = Portfolio), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_portfolio(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PortfolioInput>,
) -> ApiResult<(StatusCode, Json<Portfolio>)> {
    user.require(Permission::CrmConfigure)?;
    let name = validate(&body, true)?;
    let mut tx = state.db.begin().await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar("insert into portfolios (account_id, name, description, created_at, updated_at) values ($1, $2, $3, $4, $4) returning id")
        .bind(user.account_id)
        .bind(name)
        .bind(body.description.clone())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let p = get_portfolio(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "portfolio.create",
        "portfolio",
        id,
        audit::NONE,
        Some(&p),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Renames or describes a portfolio.
#[utoipa::path(patch, path = "/portfolios/{id}", tag = "portfolios", params(("id" = i64, Path)), request_body = PortfolioInput,
    responses((status = 200, body = Portfolio), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_portfolio(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PortfolioInput>,
) -> ApiResult<Json<Portfolio>> {
    user.require(Permission::CrmConfigure)?;
    let name = validate(&body, false)?;
    let mut tx = state.db.begin().await?;
    let before = get_portfolio(&mut tx, user.account_id, id).await?;
    sqlx::query("update portfolios set name = coalesce($1, name), description = coalesce($2, description), updated_at = $3 where account_id = $4 and id = $5")
        .bind(name)
        .bind(body.description.clone())
        .bind(now_ms())
        .bind(user.account_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let after = get_portfolio(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "portfolio.update",
        "portfolio",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a portfolio; its clients stay, without a portfolio.
#[utoipa::path(delete, path = "/portfolios/{id}", tag = "portfolios", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_portfolio(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CrmConfigure)?;
    let mut tx = state.db.begin().await?;
    let before = get_portfolio(&mut tx, user.account_id, id).await?;
    crate::audit::delete_audited(
        &mut tx,
        &user.actor(),
        "portfolios",
        "portfolio",
        id,
        &before,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
