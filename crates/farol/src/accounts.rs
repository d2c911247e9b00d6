//! Accounts (tenants). Every other row belongs to one; a fresh installation has `default`.

use crate::db::{Db, DbResult, now_ms};

/// Slug of the account created by the first migration.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Checks an account slug: lower-case letters, digits and `-`, 1 to 63 characters.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid account `{slug}`: use 1–63 lower-case letters, digits or '-'"
        ))
    }
}

/// The id of the account `slug`, if it exists.
pub async fn find(db: &Db, slug: &str) -> DbResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("select id from accounts where slug = $1")
            .bind(slug.to_string())
            .fetch_optional(db.pool())
            .await?,
    )
}

/// The id of the account `slug`, creating it when missing.
pub async fn ensure(db: &Db, slug: &str) -> DbResult<i64> {
    if let Some(id) = find(db, slug).await? {
        return Ok(id);
    }
    let mut tx = db.begin().await?;
    sqlx::query("insert into accounts (slug, name, created_at) values ($1, $2, $3) on conflict (slug) do nothing")
        .bind(slug.to_string())
        .bind(slug.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(
        sqlx::query_scalar("select id from accounts where slug = $1")
            .bind(slug.to_string())
            .fetch_one(db.pool())
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::validate_slug;

    #[test]
    fn slugs() {
        assert!(validate_slug("default").is_ok());
        assert!(validate_slug("acme-2").is_ok());
        assert!(validate_slug("Acme").is_err());
        assert!(validate_slug("").is_err());
        assert!(validate_slug("a b").is_err());
    }
}
