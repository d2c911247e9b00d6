//! Set-oriented helpers for batch work (the importer): multi-row inserts with values of
//! mixed types, and lists passed as one JSON parameter.
//!
//! A list bound as one JSON text parameter keeps the statement's shape fixed whatever the list's
//! length, so both databases prepare it once (an `in ($1, …, $n)` list is a new statement for
//! every length, and PostgreSQL re-plans each).

use sqlx::AnyConnection;

use super::{Backend, DbResult, SqlBuilder};

/// One value of a multi-row insert.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// An integer (or NULL).
    Int(Option<i64>),
    /// A float (or NULL).
    Real(Option<f64>),
    /// Text (or NULL).
    Text(Option<String>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(v: Option<i64>) -> Self {
        SqlValue::Int(v)
    }
}
impl From<Option<f64>> for SqlValue {
    fn from(v: Option<f64>) -> Self {
        SqlValue::Real(v)
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}

impl SqlBuilder {
    /// Appends a placeholder bound to `value`.
    pub fn bind_value(&mut self, value: SqlValue) -> &mut Self {
        match value {
            SqlValue::Int(v) => self.bind(v),
            SqlValue::Real(v) => self.bind(v),
            SqlValue::Text(v) => self.bind(v),
        }
    }
}

/// Parameters per statement: under SQLite's default limit (32,766) and PostgreSQL's (65,535).
const MAX_PARAMS: usize = 30_000;

/// Inserts `rows` (each with the same number of values) with as few statements as the
/// parameter limits allow: `head` is `insert into t (a, b, …) values `, `tail` what follows
/// the values (`on conflict …`, or empty). Returns the number of rows written.
///
/// On PostgreSQL the rows travel as one JSON parameter (`json_array_elements`): one statement
/// shape whatever the row count, prepared and planned once, instead of a multi-row `values`
/// list that PostgreSQL plans again for every execution (measured 6× slower on 100k clients).
/// Column types come from the first row's [`SqlValue`] variants.
pub async fn insert_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    head: &str,
    tail: &str,
    rows: Vec<Vec<SqlValue>>,
) -> DbResult<u64> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(0);
    };
    if backend == Backend::Postgres {
        return insert_rows_json(conn, head, tail, rows).await;
    }
    let per_statement = (MAX_PARAMS / width.max(1)).max(1);
    let mut written = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = SqlBuilder::bulk(backend, head);
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            debug_assert_eq!(row.len(), width, "every row has the same width");
            q.push(if i == 0 { "(" } else { ", (" });
            for (j, v) in row.into_iter().enumerate() {
                if j > 0 {
                    q.push(", ");
                }
                q.bind_value(v);
            }
            q.push(")");
        }
        q.push(tail);
        written += q.query().execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

async fn insert_rows_json(
    conn: &mut AnyConnection,
    head: &str,
    tail: &str,
    rows: Vec<Vec<SqlValue>>,
) -> DbResult<u64> {
    let prefix = head
        .trim_end()
        .strip_suffix("values")
        .expect("insert_rows takes `insert into t (…) values `");
    let columns: Vec<String> = rows[0]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = match v {
                SqlValue::Int(_) => "bigint",
                SqlValue::Real(_) => "double precision",
                SqlValue::Text(_) => "text",
            };
            format!("(e->>{i})::{ty}")
        })
        .collect();
    let sql = format!(
        "{prefix} select {} from jsonb_array_elements($1::jsonb) e{tail}",
        columns.join(", ")
    );
    let json: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| {
            serde_json::Value::Array(
                row.into_iter()
                    .map(|v| match v {
                        SqlValue::Int(i) => i.into(),
                        SqlValue::Real(f) => f.into(),
                        SqlValue::Text(t) => t.into(),
                    })
                    .collect(),
            )
        })
        .collect();
    let body = serde_json::to_string(&json).expect("values serialize");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(body)
        .execute(conn)
        .await?
        .rows_affected())
}

/// A `from` item over the JSON text array bound at `$n`: rows with one column, `j.value`.
///
/// Put it first and `cross join` the indexed table (`from {json} cross join contacts c where
/// c.value = j.value`): `cross join` makes SQLite loop over the array and probe the index
/// (with a plain join it may scan the table and probe the array), and PostgreSQL's generic
/// plan for `in (select …)` re-reads the whole array for every row of the table.
pub fn json_texts(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${n}) j"),
        Backend::Postgres => format!("json_array_elements_text(${n}::json) as j(value)"),
    }
}

/// A `from` item over the JSON integer array bound at `$n`: rows with one column, `j.value`.
pub fn json_ints(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${n}) j"),
        Backend::Postgres => {
            format!("(select e::bigint as value from json_array_elements_text(${n}::json) e) j")
        }
    }
}

/// A `from` item over the JSON array of objects bound at `$n`: one row per object, the object
/// in `j.value`; read its fields with `j.value ->> 'key'` (text; `cast(… as bigint)` for
/// integers), which both databases understand. One statement shape whatever the number of
/// rows, so a group of rows costs one prepared statement and one round trip.
pub fn json_objects(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${n}) j"),
        Backend::Postgres => format!("jsonb_array_elements(${n}::jsonb) as j(value)"),
    }
}
