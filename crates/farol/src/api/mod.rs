//! The HTTP edge: the `/api/v1` router assembled from every capability's routes, the OpenAPI
//! document generated from the handlers, the interactive docs page, and the common layers.

pub mod error;
pub mod extract;
pub mod pagination;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ApiResult, ErrorBody, FieldError, Problems};
pub use extract::{ApiJson, QueryPairs};
pub use pagination::Page;

use crate::state::AppState;
use crate::{audit, auth, crm, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Farol API",
        description = "CRM and campaign engine. All routes under /api/v1 speak JSON (snake_case); \
            authenticate with `POST /api/v1/auth/login` and send `Authorization: Bearer <access_token>`. \
            Lists are cursor-paginated: pass `next_cursor` as `cursor`. Errors are \
            `{code, message, fields[]}`; validation errors (422) name every bad field.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Login, token refresh, logout"),
        (name = "clients", description = "Clients (clientes) with contacts, tags, custom fields and timeline"),
        (name = "contacts", description = "Phones and e-mails, stored normalized"),
        (name = "tags", description = "Labels on clients"),
        (name = "portfolios", description = "Portfolios (carteiras)"),
        (name = "custom fields", description = "Custom field definitions (campos dinâmicos)"),
        (name = "users", description = "Users and roles"),
        (name = "audit", description = "Append-only audit log"),
        (name = "campaigns", description = "Templates, audiences, campaigns, results, unsubscribe links"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::routes::login))
        .routes(routes!(auth::routes::refresh))
        .routes(routes!(auth::routes::logout))
        .routes(routes!(auth::routes::me))
        .routes(routes!(auth::users::list_users, auth::users::create_user))
        .routes(routes!(
            auth::users::get_user,
            auth::users::update_user,
            auth::users::delete_user
        ))
        .routes(routes!(audit::list_audit))
        .merge(crm::router())
        .merge(crate::import::router())
        .merge(crate::segment::router())
        .merge(crate::campaign::router())
        .merge(crate::channels::router())
}

/// The OpenAPI document (also served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    build().1
}

fn build() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .split_for_parts()
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (routes, openapi) = build();
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = Duration::from_secs(state.config.server.request_timeout_secs);
    let body_limit = state.config.server.max_body_bytes;
    routes
        .merge(SwaggerUi::new("/api/v1/docs").url("/api/v1/openapi.json", openapi))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn(ops::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .with_state(state)
}
