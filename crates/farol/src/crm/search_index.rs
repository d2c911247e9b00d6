//! Keeping client search indexed during bulk writes.
//!
//! Every write of `clients.search_text` keeps search current in its own transaction: on SQLite
//! through the FTS5 triggers, on PostgreSQL through the triggers that copy the text into
//! `client_search`, the table its GIN index lives on (migration 0011).
//!
//! A bulk writer on PostgreSQL (an import, the players of a segmentation run) can do better:
//! GIN maintenance is two thirds of the database's work in a bulk load and runs in the
//! inserting backend, on one core. The writer [`defer`]s it in its batch transactions and hands
//! each committed batch's client ids to an [`Indexer`], which feeds `client_search` from a
//! second connection while the writer goes on with the next batch, so both cores work.
//!
//! What that promises (docs/import.md, "Search during an import"): a batch's clients are
//! found by exact phone, e-mail or document as soon as the batch commits, and by name or
//! fragment a moment later, when the indexer's transaction for it commits; when the import
//! completes, [`Indexer::finish`] has drained the queue and [`repair`]ed whatever a crash left
//! behind, so every client is searchable. On SQLite all of this is a no-op: FTS5 is cheap
//! enough to stay in the writer's transaction.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::db::bulk::json_ints;
use crate::db::{Backend, Db, DbResult};
use sqlx::AnyConnection;

/// Batches waiting for the indexer before the writer waits for it.
const QUEUE: usize = 2;

/// Defers search indexing for the rest of the current transaction (PostgreSQL): the
/// `client_search` triggers skip it, and the caller hands the ids it wrote to an [`Indexer`].
pub async fn defer(conn: &mut AnyConnection, backend: Backend) -> DbResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("select set_config('farol.search_deferred', 'on', true)")
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Copies the current search text of `ids` into `client_search` (PostgreSQL).
///
/// The clients are read `for share`: a concurrent edit of one of them either committed before
/// (its text is the one read) or waits for this transaction and then writes its own text
/// through the trigger, so an older text never overwrites a newer one.
pub async fn index_clients(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[i64],
) -> DbResult<()> {
    if backend != Backend::Postgres || ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "insert into client_search (client_id, account_id, search_text) \
         select c.id, c.account_id, c.search_text from {} cross join clients c where c.id = j.value \
         for share of c \
         on conflict (client_id) do update set search_text = excluded.search_text",
        json_ints(backend, 1)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(ids).expect("ints serialize"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Indexes every client of `account_id` whose search row is missing or out of date (what a
/// crash between a batch's commit and its indexing leaves behind). Returns how many.
pub async fn repair(conn: &mut AnyConnection, backend: Backend, account_id: i64) -> DbResult<u64> {
    if backend != Backend::Postgres {
        return Ok(0);
    }
    let done = sqlx::query(
        "insert into client_search (client_id, account_id, search_text) \
         select c.id, c.account_id, c.search_text from clients c \
         left join client_search s on s.client_id = c.id \
         where c.account_id = $1 and (s.client_id is null or s.search_text <> c.search_text) \
         for share of c \
         on conflict (client_id) do update set search_text = excluded.search_text",
    )
    .bind(account_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Merges the GIN index's pending list (PostgreSQL), so the first searches after a bulk load
/// do not pay for it.
pub async fn tidy(conn: &mut AnyConnection, backend: Backend) -> DbResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("select gin_clean_pending_list('client_search_text'::regclass)")
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Feeds `client_search` from its own connection while a bulk writer goes on (see the module
/// documentation). On SQLite it does nothing.
#[derive(Debug)]
pub struct Indexer {
    db: Db,
    queue: Option<mpsc::Sender<Vec<i64>>>,
    task: Option<JoinHandle<DbResult<()>>>,
}

impl Indexer {
    /// Starts the indexer task (PostgreSQL only).
    pub fn start(db: &Db) -> Indexer {
        if db.backend() != Backend::Postgres {
            return Indexer {
                db: db.clone(),
                queue: None,
                task: None,
            };
        }
        let (tx, mut rx) = mpsc::channel::<Vec<i64>>(QUEUE);
        let pool_db = db.clone();
        let task = tokio::spawn(async move {
            while let Some(ids) = rx.recv().await {
                let mut tx = pool_db.begin().await?;
                // The same pending-list size the writers use: a batch goes in as cheap
                // appends and is merged in larger runs.
                sqlx::query("select set_config('gin_pending_list_limit', '65536', true)")
                    .execute(&mut *tx)
                    .await?;
                index_clients(&mut tx, Backend::Postgres, &ids).await?;
                tx.commit().await?;
                // Merge the pending entries while the writer works on its next batch, so
                // little is left to merge when the import ends (measured: a 64 MB list
                // merged at the end took longer than all the indexing before it).
                if rx.is_empty() {
                    let mut conn = pool_db.pool().acquire().await?;
                    tidy(&mut conn, Backend::Postgres).await?;
                }
            }
            Ok(())
        });
        Indexer {
            db: db.clone(),
            queue: Some(tx),
            task: Some(task),
        }
    }

    /// Queues the ids of a committed batch. Waits when the indexer is [`QUEUE`] batches behind
    /// (so a fast writer cannot pile up unbounded work), and fails if the indexer has failed.
    pub async fn add(&mut self, ids: Vec<i64>) -> DbResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        if queue.send(ids).await.is_err() {
            // The task ended early: it failed; report its error.
            return self.join().await;
        }
        Ok(())
    }

    /// Waits for the queued batches, then [`repair`]s `account_id` and merges the pending list:
    /// afterwards every client of the account is searchable.
    pub async fn finish(mut self, account_id: i64) -> DbResult<()> {
        self.join().await?;
        let mut conn = self.db.pool().acquire().await?;
        repair(&mut conn, self.db.backend(), account_id).await?;
        tidy(&mut conn, self.db.backend()).await
    }

    async fn join(&mut self) -> DbResult<()> {
        self.queue = None;
        match self.task.take() {
            // A panic in the indexer is a bug: let it surface where the import runs.
            Some(task) => task
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            None => Ok(()),
        }
    }
}
