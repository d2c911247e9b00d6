//! The storage error: small on purpose. Callers care whether a row was missing, whether a
//! uniqueness rule was hit (and which one), or something else went wrong.

/// Result of a storage call.
pub type DbResult<T> = Result<T, DbError>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No row matched (within the caller's account).
    #[error("not found")]
    NotFound,
    /// A unique index rejected the write. `table` and `field` name the rule, e.g.
    /// `contacts` / `value`.
    #[error("{table}.{field} already exists")]
    Conflict {
        /// Table of the unique index.
        table: String,
        /// Column the index guards (the last one, for composite indexes).
        field: String,
    },
    /// Anything else: connection loss, bad SQL, constraint other than uniqueness.
    #[error(transparent)]
    Other(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::Database(ref db)
                if db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                match unique_rule(db.constraint(), db.message()) {
                    Some((table, field)) => DbError::Conflict { table, field },
                    None => DbError::Other(err),
                }
            }
            other => DbError::Other(other),
        }
    }
}

/// Names the violated unique rule. PostgreSQL reports the index name, which this schema
/// spells `uq_<table>__<field>`; SQLite reports the columns: `UNIQUE constraint failed:
/// contacts.account_id, contacts.kind, contacts.value`.
fn unique_rule(constraint: Option<&str>, message: &str) -> Option<(String, String)> {
    if let Some(name) = constraint {
        let rest = name.strip_prefix("uq_")?;
        let (table, field) = rest.split_once("__")?;
        return Some((table.to_string(), field.to_string()));
    }
    let columns = message.split("failed:").nth(1)?;
    let last = columns.split(',').next_back()?.trim();
    let (table, field) = last.split_once('.')?;
    Some((table.to_string(), field.to_string()))
}

#[cfg(test)]
mod tests {
    use super::unique_rule;

    #[test]
    fn names_the_rule_from_either_database() {
        assert_eq!(
            unique_rule(Some("uq_contacts__value"), "duplicate key"),
            Some(("contacts".into(), "value".into()))
        );
        assert_eq!(
            unique_rule(
                None,
                "UNIQUE constraint failed: contacts.account_id, contacts.kind, contacts.value"
            ),
            Some(("contacts".into(), "value".into()))
        );
        assert_eq!(
            unique_rule(None, "UNIQUE constraint failed: users.email"),
            Some(("users".into(), "email".into()))
        );
    }
}
