//! Send-time checks. The first one of a claimed batch reads the recipients' contacts (opt-out,
//! invalid) in one query, so a contact that may not be written to is skipped before it waits
//! for a throttle slot. The last one, right before each send, reads the contact again
//! (opt-out, invalid, the WhatsApp window's last inbound message) and the suppression lists in
//! one query; the [`Checker`] task of a process answers every check waiting at that moment
//! with one such query, so concurrent sends share a round trip. A check asked for is always
//! read after it was asked: coalescing saves round trips, never freshness.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::templates::Channel;
use crate::db::bulk::json_objects;
use crate::db::{Backend, Db, SqlBuilder};

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

/// The last check before a send of one recipient.
#[derive(Debug, Clone)]
pub struct Check {
    /// The campaign's account.
    pub account_id: i64,
    /// The recipient's channel.
    pub channel: Channel,
    /// The client.
    pub client_id: i64,
    /// The address the message goes to.
    pub address: String,
}

/// `Ok(last inbound message, epoch ms)` when the message may go; `Err(reason)` when it must
/// not (`no_address`, `opted_out`, `contact_invalid`, `suppressed:<kind>`).
pub type Verdict = Result<Option<i64>, String>;

/// The contact's kind for a channel's address.
fn contact_kind(channel: Channel) -> &'static str {
    if channel == Channel::Email {
        "email"
    } else {
        "phone"
    }
}

/// Contact id, opted out, invalid at, last inbound at, suppression kind.
type CheckRow = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Checks `checks` with one query: for each, the contact (account, kind, address, client) and
/// the suppression entries for the client id, the address or the client's CPF/CNPJ, on the
/// channel or every channel (self-exclusion first when several match). Webhook recipients are
/// the client itself, not a contact: only the suppression lists stop them.
pub async fn check_many(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    checks: &[&Check],
) -> anyhow::Result<Vec<Verdict>> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "i": i, "a": c.account_id, "c": c.client_id, "cs": c.client_id.to_string(),
                "ch": c.channel.as_str(), "k": contact_kind(c.channel), "v": c.address,
            })
        })
        .collect();
    // The list drives the join (SQLite loops over it and probes the contacts index).
    let sql = format!(
        "select v.i, k.id, k.opted_out, k.invalid_at, k.last_inbound_at, \
           (select s.kind from suppressions s where s.account_id = v.a \
              and (s.channel is null or s.channel = v.ch) and ( \
                (s.key_kind = 'client_id' and s.value = v.cs) \
                or (s.key_kind = v.k and s.value = v.addr) \
                or (s.key_kind = 'cpf_cnpj' and s.value = (select cl.cpf_cnpj from clients cl where cl.id = v.c))) \
              order by case s.kind when 'self_exclusion' then 0 when 'complaint' then 1 when 'hard_bounce' then 2 else 3 end \
              limit 1) \
         from (select cast(j.value ->> 'i' as bigint) as i, cast(j.value ->> 'a' as bigint) as a, \
                 cast(j.value ->> 'c' as bigint) as c, j.value ->> 'cs' as cs, j.value ->> 'ch' as ch, \
                 j.value ->> 'k' as k, j.value ->> 'v' as addr from {}) v \
         left join contacts k on k.account_id = v.a and k.kind = v.k and k.value = v.addr and k.client_id = v.c",
        json_objects(backend, 1)
    );
    let found: Vec<CheckRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(conn)
        .await?;
    let mut verdicts: Vec<Option<Verdict>> = vec![None; checks.len()];
    for (i, contact, opted_out, invalid_at, last_inbound, suppression) in found {
        let Some(slot) = usize::try_from(i).ok().and_then(|i| verdicts.get_mut(i)) else {
            continue;
        };
        let webhook = super::worker::addresses_client(checks[i as usize].channel);
        // The contact's own state first (as the snapshot does), then the lists.
        *slot = Some(if !webhook && contact.is_none() {
            Err("no_address".into())
        } else if !webhook && opted_out.unwrap_or(0) != 0 {
            Err("opted_out".into())
        } else if !webhook && invalid_at.is_some() {
            Err("contact_invalid".into())
        } else if let Some(kind) = suppression {
            Err(format!("suppressed:{kind}"))
        } else if webhook {
            Ok(None)
        } else {
            Ok(last_inbound)
        });
    }
    verdicts
        .into_iter()
        .map(|v| v.ok_or_else(|| anyhow::anyhow!("the send-time check lost a row")))
        .collect()
}

/// Most checks answered by one query.
const MAX_GROUP: usize = 256;

type Request = (Check, oneshot::Sender<anyhow::Result<Verdict>>);

/// Handle to the checker task of a process (cheap to clone).
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

    /// Checks one recipient right before its send (read after this call, with the other
    /// checks waiting at that moment).
    pub async fn check(&self, check: Check) -> anyhow::Result<Verdict> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((check, tx))
            .await
            .map_err(|_| anyhow::anyhow!("the send-time checker stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the send-time checker stopped"))?
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
        let checks: Vec<&Check> = group.iter().map(|(c, _)| c).collect();
        let result = match db.pool().acquire().await {
            Ok(mut conn) => check_many(&mut conn, db.backend(), &checks).await,
            Err(e) => Err(e.into()),
        };
        drop(checks);
        match result {
            Ok(verdicts) => {
                for ((_, answer), verdict) in group.drain(..).zip(verdicts) {
                    let _ = answer.send(Ok(verdict));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for (_, answer) in group.drain(..) {
                    let _ = answer.send(Err(anyhow::anyhow!("send-time check failed: {message}")));
                }
            }
        }
    }
}
