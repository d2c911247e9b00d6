//! The last suppression check before a send, coalesced: every send of a process asks one
//! checker task whether its contact may still be written to; the checker answers all the
//! questions waiting at that moment with one query. The check still happens after the
//! throttle wait and right before the send — only the round trips are shared (on SQLite each
//! read after a write also resets the reading connection's page cache, so fewer reads matter).

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, SqlBuilder};

/// Most questions answered by one query.
const MAX_GROUP: usize = 256;

/// A contact's `opted_out` and `invalid_at`.
pub type ContactState = (i64, Option<i64>);

/// (client, kind, value) → (account, state).
pub type Contacts = HashMap<(i64, String, String), (i64, ContactState)>;

/// The contacts of `client_ids` (every kind), for suppression checks.
pub async fn contacts_of(
    conn: &mut sqlx::AnyConnection,
    client_ids: &[i64],
) -> anyhow::Result<Contacts> {
    if client_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // By client only: the (account, kind, value) index would make SQLite scan every e-mail
    // contact of the account.
    let mut q = SqlBuilder::new(
        "select client_id, kind, value, account_id, opted_out, invalid_at from contacts where client_id in ",
    );
    q.bind_list(client_ids.iter().copied());
    let rows: Vec<(i64, String, String, i64, i64, Option<i64>)> =
        q.query_as().fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(client, kind, value, account, opted_out, invalid_at)| {
            ((client, kind, value), (account, (opted_out, invalid_at)))
        })
        .collect())
}

/// One question: the state of a client's contact of `kind` with `value`, in `account_id`.
#[derive(Debug, Clone)]
pub struct Check {
    /// Account.
    pub account_id: i64,
    /// Client.
    pub client_id: i64,
    /// `email` or `phone`.
    pub kind: &'static str,
    /// The address.
    pub value: String,
}

type Request = (Check, oneshot::Sender<anyhow::Result<Option<ContactState>>>);

/// Handle to the checker task of a process.
#[derive(Debug, Clone)]
pub struct Checker {
    tx: mpsc::Sender<Request>,
}

impl Checker {
    /// Starts the checker task; it ends when every handle is dropped.
    pub fn spawn(db: Db) -> Checker {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(db, rx));
        Checker { tx }
    }

    /// The contact's current state (`None`: it, or its client, no longer exists).
    pub async fn check(&self, check: Check) -> anyhow::Result<Option<ContactState>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((check, tx))
            .await
            .map_err(|_| anyhow::anyhow!("the suppression checker stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the suppression checker stopped"))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Request>) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let mut ids: Vec<i64> = group.iter().map(|(c, _)| c.client_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = async {
            let mut conn = db.pool().acquire().await?;
            contacts_of(&mut conn, &ids).await
        }
        .await;
        match found {
            Ok(contacts) => {
                for (c, answer) in group.drain(..) {
                    let state = contacts
                        .get(&(c.client_id, c.kind.to_owned(), c.value))
                        .filter(|(account, _)| *account == c.account_id)
                        .map(|(_, state)| *state);
                    let _ = answer.send(Ok(state));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (_, answer) in group.drain(..) {
                    let _ = answer.send(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
}
