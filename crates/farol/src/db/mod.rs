//! Storage: one pool that speaks SQLite (the embedded default) or PostgreSQL.
//!
//! Queries are written once, in the SQL both databases share (`$1` placeholders, `returning`,
//! row-value comparisons, `on conflict`), and run through sqlx's `Any` driver. The few places
//! where the dialects differ (full-text search, write-transaction start) ask [`Backend`].
//! See docs/architecture.md for why this design was chosen.

mod builder;
pub mod bulk;
mod error;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use builder::{Row, SqlBuilder};
pub use error::{DbError, DbResult};

/// A transaction on either database.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The name used in logs, metrics and `/ready`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The backend a URL points at.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database handle shared by the whole process.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url`. For SQLite, the file is created when missing and put in WAL mode.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| {
            anyhow::anyhow!("unsupported database URL (expected sqlite: or postgres:)")
        })?;
        if backend == Backend::Sqlite {
            ensure_sqlite_parent_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run while one writer writes; busy_timeout makes a
                        // second writer wait instead of failing; NORMAL is durable in WAL mode
                        // except for the last transactions on power loss (not on process crash).
                        conn.execute(sqlx::raw_sql(
                            "pragma busy_timeout = 15000; pragma synchronous = normal; \
                             pragma foreign_keys = on; pragma temp_store = memory; \
                             pragma cache_size = -65536;",
                        ))
                        .await?;
                        // Switching to WAL only when needed: `journal_mode = wal` on a file
                        // already in WAL mode can still answer "database is locked", without
                        // waiting, while another process writes (seen when a CLI command
                        // opened a connection next to a running server).
                        let mode: String = sqlx::query_scalar("pragma journal_mode")
                            .fetch_one(&mut *conn)
                            .await?;
                        if !mode.eq_ignore_ascii_case("wal") {
                            conn.execute(sqlx::raw_sql("pragma journal_mode = wal"))
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db { pool, backend })
    }

    /// Applies pending migrations. Refuses to run against a database migrated by a newer
    /// Farol (a migration it does not know), rather than guessing.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => anyhow::anyhow!(
                "the database was migrated by a newer Farol (migration {v} is unknown to this \
                 binary); refusing to downgrade"
            ),
            other => anyhow::Error::new(other),
        })
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind this handle.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue on `busy_timeout` instead of one failing
    /// with "database is locked" when it upgrades from reading to writing.
    pub async fn begin(&self) -> DbResult<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("begin immediate").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// A cheap round trip, for `/ready`.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn ensure_sqlite_parent_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!(
            "in-memory SQLite is not supported: each pooled connection would see its own empty database"
        );
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow::anyhow!("cannot create data directory {}: {e}", parent.display())
        })?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Formats a stored time for the API (RFC 3339, UTC).
pub fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A stored 0/1 flag.
pub fn flag(value: bool) -> i64 {
    i64::from(value)
}
