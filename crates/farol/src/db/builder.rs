//! A small SQL builder for queries whose shape depends on the request (filters, sorting).
//!
//! sqlx's own `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL
//! rejects; this one writes `$n`, which both databases accept. SQLite resolves `$n` by name,
//! though, with a linear scan per parameter: a multi-row insert with thousands of parameters
//! becomes quadratic (measured: 80% of a bulk load's time). [`SqlBuilder::bulk`] therefore
//! writes anonymous `?` placeholders when the backend is SQLite.

use sqlx::any::{Any, AnyArguments};

use super::Backend;
use sqlx::{Arguments, AssertSqlSafe, Encode, Type};

/// SQL text plus its bound arguments.
#[derive(Default)]
pub struct SqlBuilder {
    sql: String,
    args: AnyArguments,
    count: usize,
    anonymous: bool,
    rows: usize,
}

/// A tuple of values bound as one parenthesized row: `($1, $2, …)`.
pub trait Row {
    /// Appends `(…)` with one placeholder per value.
    fn bind_into(self, q: &mut SqlBuilder);
}

macro_rules! impl_row {
    ($($v:ident),+) => {
        #[allow(non_snake_case)]
        impl<$($v: for<'q> Encode<'q, Any> + Type<Any> + 'static),+> Row for ($($v,)+) {
            fn bind_into(self, q: &mut SqlBuilder) {
                let ($($v,)+) = self;
                q.sql.push('(');
                let mut first = true;
                $(
                    if !first {
                        q.sql.push_str(", ");
                    }
                    first = false;
                    q.bind($v);
                )+
                let _ = first;
                q.sql.push(')');
            }
        }
    };
}
impl_row!(A, B);
impl_row!(A, B, C, D);
impl_row!(A, B, C, D, E, F, G, H);
impl_row!(A, B, C, D, E, F, G, H, I);
impl_row!(A, B, C, D, E, F, G, H, I, J, K, L, M);

impl SqlBuilder {
    /// Starts with `sql`.
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_string(),
            args: AnyArguments::default(),
            count: 0,
            anonymous: false,
            rows: 0,
        }
    }

    /// Starts a statement with many parameters (multi-row inserts): placeholders are `?` on
    /// SQLite, `$n` on PostgreSQL. Only append placeholders in order with this builder.
    pub fn bulk(backend: Backend, sql: &str) -> Self {
        Self {
            anonymous: backend == Backend::Sqlite,
            ..Self::new(sql)
        }
    }

    /// Appends literal SQL. Never pass user input here; bind it with [`SqlBuilder::bind`].
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any> + 'static,
    {
        self.count += 1;
        if self.anonymous {
            self.sql.push('?');
        } else {
            self.sql.push('$');
            self.sql.push_str(&self.count.to_string());
        }
        self.args
            .add(value)
            .expect("encoding a value into AnyArguments does not fail");
        self
    }

    /// Appends one row of a multi-row `values` list, with the comma between rows.
    pub fn row(&mut self, row: impl Row) -> &mut Self {
        if self.rows > 0 {
            self.sql.push_str(", ");
        }
        self.rows += 1;
        row.bind_into(self);
        self
    }

    /// Number of rows appended with [`SqlBuilder::row`].
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Appends `(p1, p2, …)` binding every value.
    pub fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: for<'q> Encode<'q, Any> + Type<Any> + 'static,
    {
        self.sql.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(v);
        }
        self.sql.push(')');
        self
    }

    /// The SQL text so far (for tests and logs; arguments are not included).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// A query ready to run.
    pub fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(AssertSqlSafe(self.sql), self.args)
    }

    /// A typed query ready to run.
    pub fn query_as<T>(self) -> sqlx::query::QueryAs<'static, Any, T, AnyArguments>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as_with(AssertSqlSafe(self.sql), self.args)
    }

    /// A scalar query ready to run.
    pub fn query_scalar<T>(self) -> sqlx::query::QueryScalar<'static, Any, T, AnyArguments>
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar_with(AssertSqlSafe(self.sql), self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, SqlBuilder};

    #[test]
    fn numbers_placeholders_in_order() {
        let mut b = SqlBuilder::new("select * from t where a = ");
        b.bind(1_i64)
            .push(" and b in ")
            .bind_list(["x", "y"].map(String::from));
        assert_eq!(b.sql(), "select * from t where a = $1 and b in ($2, $3)");
    }

    #[test]
    fn rows_are_separated_and_numbered() {
        let mut b = SqlBuilder::new("insert into t (a, b) values ");
        b.row((1_i64, "x".to_string())).row((2_i64, None::<String>));
        assert_eq!(b.sql(), "insert into t (a, b) values ($1, $2), ($3, $4)");
        assert_eq!(b.row_count(), 2);
    }

    #[test]
    fn bulk_statements_use_anonymous_placeholders_on_sqlite_only() {
        let mut s = SqlBuilder::bulk(Backend::Sqlite, "insert into t values ");
        s.bind_list([1_i64, 2]);
        assert_eq!(s.sql(), "insert into t values (?, ?)");
        let mut p = SqlBuilder::bulk(Backend::Postgres, "insert into t values ");
        p.bind_list([1_i64, 2]);
        assert_eq!(p.sql(), "insert into t values ($1, $2)");
    }
}
