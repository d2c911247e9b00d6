//! Group commit of send outcomes. Every send of a process hands its outcome (the recipient's
//! new status, the contact update, the timeline item) to one recorder task, which writes all
//! the outcomes waiting at that moment in one transaction and then answers each sender.
//!
//! A sender waits for its answer before it frees its concurrency slot, so an outcome is never
//! "sent but not yet recorded" for longer than before; the number of sends whose outcome a
//! crash can lose (and which are therefore sent again, docs/campaigns.md) is still bounded by
//! the sends in flight. What changes is the cost: one commit (one SQLite write lock, one WAL
//! sync) for many messages instead of one each.
//!
//! A group costs a fixed number of statements whatever its size: each statement takes the
//! group's rows as one JSON parameter (one prepared statement, one round trip), which is what
//! makes group commit pay on PostgreSQL, where every statement is a network round trip.
//!
//! When a group's transaction fails, each outcome of it is retried alone, so one bad row does
//! not make the others wait for their lease to expire and be sent again.

use tokio::sync::{mpsc, oneshot};

use super::policy;
use super::store::{self, Outcome};
use super::templates::Channel;
use crate::crm::timeline::{self, NewItem, Origin};
use crate::db::bulk::json_objects;
use crate::db::{Db, Tx, now_ms};

/// Most outcomes written in one transaction.
const MAX_GROUP: usize = 256;

/// One attempt's outcome, with what its side effects need.
#[derive(Debug, Clone)]
pub struct Record {
    /// Recipient row.
    pub recipient_id: i64,
    /// Client.
    pub client_id: i64,
    /// Account.
    pub account_id: i64,
    /// Campaign.
    pub campaign_id: i64,
    /// Lease owner (the outcome is written only if it still holds the lease).
    pub owner: String,
    /// Channel.
    pub channel: Channel,
    /// Address the message went to (empty for skips).
    pub address: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The e-mail subject, for the timeline text.
    pub summary: String,
}

type Request = (Record, oneshot::Sender<anyhow::Result<bool>>);

/// Handle to the recorder task of a process (cheap to clone).
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Request>,
}

impl Recorder {
    /// Starts the recorder task; it ends when every handle is dropped.
    pub fn spawn(db: Db) -> Recorder {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(db, rx));
        Recorder { tx }
    }

    /// Writes `record`; true when the owner still held the lease (false: another worker took
    /// the recipient over and nothing was written).
    pub async fn record(&self, record: Record) -> anyhow::Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((record, tx))
            .await
            .map_err(|_| anyhow::anyhow!("the outcome recorder stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the outcome recorder stopped"))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Request>) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    // A request that could not join the previous group (its recipient was already in it).
    let mut held_back: Option<Request> = None;
    loop {
        let first = match held_back.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                // One outcome per recipient in a group (one statement writes them all).
                Ok(r)
                    if group
                        .iter()
                        .any(|(g, _)| g.recipient_id == r.0.recipient_id) =>
                {
                    held_back = Some(r);
                    break;
                }
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let records: Vec<&Record> = group.iter().map(|(r, _)| r).collect();
        let results = write(&db, &records).await;
        drop(records);
        for ((_, answer), result) in group.drain(..).zip(results) {
            let _ = answer.send(result);
        }
    }
}

/// Writes `records` (distinct recipients) in one transaction; when that fails, each one alone,
/// so one bad outcome does not keep the others from being recorded. One result per record:
/// true when its owner still held the lease and the outcome was written.
pub async fn write(db: &Db, records: &[&Record]) -> Vec<anyhow::Result<bool>> {
    match write_group(db, records).await {
        Ok(held) => held.into_iter().map(Ok).collect(),
        Err(e) if records.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, outcomes = records.len(), "group commit failed; writing outcomes one by one");
            let mut results = Vec::with_capacity(records.len());
            for record in records {
                results.push(
                    write_group(db, std::slice::from_ref(record))
                        .await
                        .map(|held| held[0]),
                );
            }
            results
        }
    }
}

/// Writes a group's outcomes in one transaction with a fixed number of statements whatever
/// its size (each statement takes the group's rows as one JSON parameter): the recipients'
/// statuses (only where the lease is still held), then for those written: the contacts'
/// `last_contacted_at` and the frequency-cap counts of the sends, the reservations of failed
/// sends dropped, contacts the provider called invalid marked (rare: one by one), and the
/// timeline items (`campaign_message` for a send, `campaign_failed` for a failure).
async fn write_group(db: &Db, group: &[&Record]) -> anyhow::Result<Vec<bool>> {
    let backend = db.backend();
    let mut tx = db.begin().await?;
    let outcomes: Vec<(i64, &str, &Outcome)> = group
        .iter()
        .map(|r| (r.recipient_id, r.owner.as_str(), &r.outcome))
        .collect();
    let written = store::record_many(&mut tx, backend, &outcomes).await?;
    let held: Vec<bool> = group
        .iter()
        .map(|r| written.contains(&r.recipient_id))
        .collect();
    let now = now_ms();
    let mut contacted = Vec::new();
    let mut counted = Vec::new();
    let mut released = Vec::new();
    let mut items = Vec::new();
    for (r, held) in group.iter().zip(&held) {
        if !held {
            tracing::warn!(
                recipient = r.recipient_id,
                "lease lost before recording the send"
            );
            continue;
        }
        let kind = contact_kind(r.channel);
        match &r.outcome {
            Outcome::Sent { .. } => {
                contacted.push(serde_json::json!({
                    "a": r.account_id, "c": r.client_id, "k": kind, "v": r.address,
                }));
                // Every message to the client counts towards the frequency caps (a webhook
                // push or a Smartico event is not a message to the client).
                if !super::worker::addresses_client(r.channel) {
                    counted.push((r.account_id, r.client_id, r.recipient_id));
                }
            }
            Outcome::Failed { error } => {
                // A reservation for a send that did not happen no longer counts.
                released.push(r.recipient_id);
                if error.starts_with("contact_invalid") {
                    mark_invalid(&mut tx, r, kind, error, now).await?;
                }
            }
            Outcome::Retry { .. } | Outcome::Skipped { .. } => {}
        }
        if let Some(item) = timeline_item(r) {
            items.push(item);
        }
    }
    if !contacted.is_empty() {
        // One indexed lookup per contact (a scalar subquery on the unique (account, kind,
        // value) index), whatever the planner thinks of the list's size: as a join, a
        // PostgreSQL table without statistics yet (just imported) got a sequential scan.
        let sql = format!(
            "update contacts set last_contacted_at = $2 where id in (select \
               (select c.id from contacts c where c.account_id = cast(j.value ->> 'a' as bigint) \
                and c.kind = j.value ->> 'k' and c.value = j.value ->> 'v' \
                and c.client_id = cast(j.value ->> 'c' as bigint)) \
             from {})",
            json_objects(backend, 1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(contacted).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    policy::count_sent_many(&mut tx, backend, &counted, now).await?;
    policy::release_many(&mut tx, backend, &released).await?;
    let items: Vec<NewItem> = items
        .iter()
        .map(|(r, kind, text, metadata)| NewItem {
            account_id: r.account_id,
            client_id: r.client_id,
            kind,
            origin: Origin::System,
            text,
            metadata: metadata.clone(),
            author_id: None,
        })
        .collect();
    timeline::add_many(&mut tx, backend, &items).await?;
    tx.commit().await?;
    Ok(held)
}

fn contact_kind(channel: Channel) -> &'static str {
    if channel == Channel::Email {
        "email"
    } else {
        "phone"
    }
}

/// The contact the provider called invalid: `invalid_at`/`invalid_reason`, and a
/// `hard_bounce` suppression entry.
async fn mark_invalid(
    tx: &mut Tx,
    r: &Record,
    kind: &str,
    error: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "update contacts set invalid_at = $1, invalid_reason = $2 where client_id = $3 and kind = $4 and value = $5",
    )
    .bind(now)
    .bind(error.to_owned())
    .bind(r.client_id)
    .bind(kind)
    .bind(r.address.clone())
    .execute(&mut **tx)
    .await?;
    super::suppressions::record_bounce(tx, r.account_id, kind, &r.address, error).await?;
    Ok(())
}

/// The timeline item of an outcome (kind, text, metadata), if it has one: a send or a failure.
fn timeline_item(r: &Record) -> Option<(&Record, &'static str, String, serde_json::Value)> {
    let label = match r.channel {
        Channel::Email => "E-mail",
        Channel::Whatsapp => "WhatsApp message",
        Channel::Sms => "SMS",
        Channel::Webhook | Channel::Auto => "Webhook",
        Channel::Smartico => "Smartico event",
    };
    let metadata = |extra: serde_json::Value| {
        let mut m = serde_json::json!({
            "campaign_id": r.campaign_id,
            "recipient_id": r.recipient_id,
            "channel": r.channel.as_str(),
            "address": r.address,
        });
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        m
    };
    match &r.outcome {
        Outcome::Sent {
            provider_message_id,
        } => Some((
            r,
            "campaign_message",
            if r.summary.is_empty() {
                format!("{label} sent")
            } else {
                format!("{label} sent: {}", r.summary)
            },
            metadata(serde_json::json!({ "provider_message_id": provider_message_id })),
        )),
        Outcome::Failed { error } => Some((
            r,
            "campaign_failed",
            format!("{label} not delivered: {error}"),
            metadata(serde_json::json!({ "error": error })),
        )),
        Outcome::Retry { .. } | Outcome::Skipped { .. } => None,
    }
}
