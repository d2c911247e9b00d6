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
//! When a group's transaction fails, each outcome of it is retried alone, so one bad row does
//! not make the others wait for their lease to expire and be sent again.

use tokio::sync::{mpsc, oneshot};

use super::policy;
use super::store::{self, Outcome};
use super::templates::Channel;
use crate::crm::timeline::{self, NewItem, Origin};
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
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let records: Vec<&Record> = group.iter().map(|(r, _)| r).collect();
        let written = write_group(&db, &records).await;
        drop(records);
        match written {
            Ok(held) => {
                for ((_, answer), held) in group.drain(..).zip(held) {
                    let _ = answer.send(Ok(held));
                }
            }
            Err(e) => {
                if group.len() > 1 {
                    tracing::warn!(error = %e, outcomes = group.len(), "group commit failed; writing outcomes one by one");
                }
                for (record, answer) in group.drain(..) {
                    let result = write_group(&db, &[&record]).await.map(|held| held[0]);
                    let _ = answer.send(result);
                }
            }
        }
    }
}

async fn write_group(db: &Db, group: &[&Record]) -> anyhow::Result<Vec<bool>> {
    let mut tx = db.begin().await?;
    let mut held = Vec::with_capacity(group.len());
    for record in group {
        held.push(apply(&mut tx, record).await?);
    }
    tx.commit().await?;
    Ok(held)
}

/// Writes one outcome inside `tx`: the recipient's status (only if the lease is still held),
/// then for a send the contact's `last_contacted_at` and a `campaign_message` timeline item,
/// for a failure a `campaign_failed` item (and the contact marked invalid when the provider
/// said so).
async fn apply(tx: &mut Tx, r: &Record) -> anyhow::Result<bool> {
    if !store::record(tx, r.recipient_id, &r.owner, &r.outcome).await? {
        tracing::warn!(
            recipient = r.recipient_id,
            "lease lost before recording the send"
        );
        return Ok(false);
    }
    let kind = if r.channel == Channel::Email {
        "email"
    } else {
        "phone"
    };
    let label = match r.channel {
        Channel::Email => "E-mail",
        Channel::Whatsapp => "WhatsApp message",
        Channel::Sms => "SMS",
        Channel::Webhook | Channel::Auto => "Webhook",
        Channel::Smartico => "Smartico event",
    };
    let now = now_ms();
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
    let item = match &r.outcome {
        Outcome::Sent {
            provider_message_id,
        } => {
            sqlx::query(
                "update contacts set last_contacted_at = $1 where client_id = $2 and kind = $3 and value = $4",
            )
            .bind(now)
            .bind(r.client_id)
            .bind(kind)
            .bind(r.address.clone())
            .execute(&mut **tx)
            .await?;
            // Every message to the client counts towards the frequency caps (a webhook push
            // or a Smartico event is not a message to the client).
            if !matches!(r.channel, Channel::Webhook | Channel::Smartico) {
                policy::count_sent(tx, r.account_id, r.client_id, r.recipient_id, now).await?;
            }
            Some((
                "campaign_message",
                if r.summary.is_empty() {
                    format!("{label} sent")
                } else {
                    format!("{label} sent: {}", r.summary)
                },
                metadata(serde_json::json!({ "provider_message_id": provider_message_id })),
            ))
        }
        Outcome::Failed { error } => {
            // A reservation for a send that did not happen no longer counts.
            policy::release(tx, r.recipient_id).await?;
            if error.starts_with("contact_invalid") {
                sqlx::query(
                    "update contacts set invalid_at = $1, invalid_reason = $2 where client_id = $3 and kind = $4 and value = $5",
                )
                .bind(now)
                .bind(error.clone())
                .bind(r.client_id)
                .bind(kind)
                .bind(r.address.clone())
                .execute(&mut **tx)
                .await?;
                super::suppressions::record_bounce(tx, r.account_id, kind, &r.address, error)
                    .await?;
            }
            Some((
                "campaign_failed",
                format!("{label} not delivered: {error}"),
                metadata(serde_json::json!({ "error": error })),
            ))
        }
        Outcome::Retry { .. } | Outcome::Skipped { .. } => None,
    };
    if let Some((kind, text, metadata)) = item {
        timeline::add(
            tx,
            NewItem {
                account_id: r.account_id,
                client_id: r.client_id,
                kind,
                origin: Origin::System,
                text: &text,
                metadata,
                author_id: None,
            },
        )
        .await?;
    }
    Ok(true)
}
