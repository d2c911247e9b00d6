//! The HTTP error: every failure a handler can return, mapped once to a status and a JSON body.
//!
//! Bodies look like `{"code": "validation_failed", "message": "…", "fields": [{"field":
//! "contacts[0].value", "code": "invalid_phone", "message": "…"}]}`. Internal errors are logged
//! with their cause and answered with an opaque 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `contacts[1].value` or `custom_fields.plano`.
    pub field: String,
    /// Stable machine-readable reason, e.g. `required`, `invalid_phone`, `wrong_check_digit`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable error code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// For validation errors: every bad field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the request was understood but some fields are invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the request could not be understood.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, malformed, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated, but the role does not allow the action.
    #[error("your role does not allow this action")]
    Forbidden,
    /// 404: no such resource in the caller's account.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: the write conflicts with existing data (a unique rule).
    #[error("{message}")]
    Conflict {
        /// The conflicting field.
        field: String,
        /// Explanation.
        message: String,
    },
    /// 429: too many attempts.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a new attempt is allowed.
        retry_after_secs: u64,
    },
    /// 503: a dependency is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an infrastructure failure; details are logged, not returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 422 with one field.
    pub fn field(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    }

    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NotFound => ApiError::NotFound("resource"),
            DbError::Conflict { table, field } => ApiError::Conflict {
                message: format!("another {} already has this {field}", singular(&table)),
                field,
            },
            DbError::Other(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        DbError::from(err).into()
    }
}

fn singular(table: &str) -> &str {
    match table {
        "clients" => "client",
        "channel_accounts" => "channel account",
        "contacts" => "contact",
        "users" => "user",
        "tags" => "tag",
        "portfolios" => "portfolio",
        "custom_fields" => "custom field",
        other => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let code = self.code();
        if let ApiError::Internal(ref err) = self {
            tracing::error!(error = ?err, "internal error");
        }
        let message = match &self {
            ApiError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let fields = match self {
            ApiError::Validation(fields) => fields,
            ApiError::Conflict { field, ref message } => {
                vec![FieldError::new(field, "already_exists", message.clone())]
            }
            _ => Vec::new(),
        };
        let body = ErrorBody {
            code,
            message,
            fields,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Collects field errors while validating a request, then fails once with all of them.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Records a bad field.
    pub fn add(
        &mut self,
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError::new(field, code, message));
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else a 422 naming every bad field.
    pub fn into_result(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}
