//! Request extractors whose rejections speak the API's own error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// A JSON body. Deserialization errors become a 422 naming the field (`contacts[0].kind`),
/// syntax errors a 400 with the position.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/json") || v.contains("+json"))
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::BadRequest(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON bytes into `T`, naming the bad field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            de.end()
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::BadRequest(format!("invalid JSON: {inner}")));
            }
            let message = inner.to_string();
            let mut field = if path == "." { String::new() } else { path };
            let mut code = "invalid";
            if let Some(rest) = message.strip_prefix("missing field `")
                && let Some(name) = rest.split('`').next()
            {
                field = if field.is_empty() {
                    name.to_string()
                } else {
                    format!("{field}.{name}")
                };
                code = "required";
            } else if message.starts_with("unknown field `") {
                code = "unknown_field";
                if let Some(name) = message
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    field = if field.is_empty() {
                        name.to_string()
                    } else {
                        field
                    };
                }
            }
            let message = strip_serde_position(&message);
            Err(ApiError::Validation(vec![FieldError::new(
                if field.is_empty() {
                    "body".into()
                } else {
                    field
                },
                code,
                message,
            )]))
        }
    }
}

/// serde_json appends " at line 1 column 42" to messages; the field path says more.
fn strip_serde_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query-string parameters as ordered pairs, so a key may repeat (`?tag=a&tag=b`).
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(QueryPairs)
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
    }
}

impl QueryPairs {
    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Fails with a 422 when a key is not one of `allowed` (and does not start with one of
    /// `prefixes`): a misspelt filter must not silently return everything.
    pub fn reject_unknown(&self, allowed: &[&str], prefixes: &[&str]) -> Result<(), ApiError> {
        let bad: Vec<FieldError> = self
            .0
            .iter()
            .filter(|(k, _)| {
                !allowed.contains(&k.as_str()) && !prefixes.iter().any(|p| k.starts_with(p))
            })
            .map(|(k, _)| {
                FieldError::new(
                    k.clone(),
                    "unknown_parameter",
                    format!("unknown query parameter; allowed: {}", allowed.join(", ")),
                )
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(bad))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        kind: u8,
    }

    fn fields(err: ApiError) -> Vec<FieldError> {
        match err {
            ApiError::Validation(f) => f,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let f = fields(parse_json::<Body>(br#"{"items": []}"#).unwrap_err());
        assert_eq!(f[0].field, "name");
        assert_eq!(f[0].code, "required");

        let f =
            fields(parse_json::<Body>(br#"{"name": "a", "items": [{"kind": "x"}]}"#).unwrap_err());
        assert_eq!(f[0].field, "items[0].kind");

        let f =
            fields(parse_json::<Body>(br#"{"name": "a", "items": [], "nmae": 1}"#).unwrap_err());
        assert_eq!(f[0].code, "unknown_field");
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\": ").unwrap_err(),
            ApiError::BadRequest(_)
        ));
    }
}
