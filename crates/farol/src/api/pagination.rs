//! Cursor pagination: every list answers `{items, next_cursor}`; pass `cursor=<next_cursor>` to
//! get the next page. Cursors are opaque (base64 of the last row's sort key), stable under
//! inserts, and cost one index seek whatever the page number.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The position after the last item of a page: its sort value and its id (ties).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sort value of the last item (a number or a string).
    pub v: CursorValue,
    /// Id of the last item.
    pub id: i64,
}

/// A sort value inside a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    /// Integer sort keys (ids, times, scores).
    Int(i64),
    /// Text sort keys (names).
    Text(String),
}

impl Cursor {
    /// Encodes the cursor for a response.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a `cursor` parameter.
    pub fn decode(raw: &str) -> Result<Cursor, ApiError> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ApiError::field(
                    "cursor",
                    "invalid_cursor",
                    "not a cursor returned by this list",
                )
            })
    }
}

/// Parses a `limit` parameter: 1..=MAX_LIMIT, default DEFAULT_LIMIT.
pub fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                "limit",
                "out_of_range",
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// Builds a page from `rows` fetched with `limit + 1`: the extra row only says whether a next
/// page exists.
pub fn page_from<T: ToSchema>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Page<T> {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| cursor_of(r).encode())
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        for c in [
            Cursor {
                v: CursorValue::Int(42),
                id: 7,
            },
            Cursor {
                v: CursorValue::Text("Ana Souza".into()),
                id: 9,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        assert!(Cursor::decode("%%%").is_err());
        assert!(Cursor::decode("bm90anNvbg").is_err());
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("10")).unwrap(), 10);
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("100000")).is_err());
        assert!(parse_limit(Some("x")).is_err());
    }
}
