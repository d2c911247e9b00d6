//! RabbitMQ as the queue of sends (`campaign.queue = "rabbitmq"`, `[amqp] url`). The database
//! row of each recipient stays the source of truth for its status; the broker only carries
//! "these recipients are due" to whichever worker process is free. See docs/campaigns.md,
//! "RabbitMQ queue", for the guarantee.
//!
//! Each worker process runs one task that
//! - **publishes**: for every running campaign (within business hours), takes due recipients
//!   not yet published (`dispatched_at`, migration 0007) in batches — `campaign.batch`, or
//!   about one second of sends when throttled — and publishes one persistent message per
//!   batch to the durable queue `campaign.queue_name`, waiting for the broker's confirm. Rows
//!   are marked published in the same claim (atomic: `BEGIN IMMEDIATE` / `SKIP LOCKED`), so
//!   concurrent publishers never publish a row twice; a failed publish un-marks them. A
//!   campaign with nothing left to publish or send is completed;
//! - **consumes** the queue with manual acks and a prefetch of `campaign.workers` messages:
//!   for each message it claims, by id, those recipients that are still due (queued and due,
//!   or `sending` with an expired lease) exactly as the database queue claims them, and runs
//!   them through the same send path (send-time suppression, throttle, render, send, group
//!   commit of the outcome); it acks after every outcome is committed. Recipients already
//!   sent (a redelivery), not due, or leased by a live worker are skipped. If the campaign is
//!   not running (paused, cancelled) or business hours are closed, the recipients are
//!   un-marked and the message acked: they are published again once the campaign can send.
//!   A message that cannot be processed is requeued once, then dead-lettered to
//!   `<queue_name>.dead`; a payload that does not parse goes there at once. Their rows stay
//!   due in the database and are published again after [`REPUBLISH_AFTER`].
//!
//! Retries with backoff stay in the database: a transient failure puts the row back to
//! `queued` at `next_attempt_at` (un-marked), and the publisher publishes it when that time
//! comes. Recipients whose worker died mid-send are published again when their lease expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use super::store;
use super::worker::{self, Sender};
use crate::config::Config;

/// How long a published recipient may stay due before it is published again (its message was
/// lost or dead-lettered).
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(600);

/// The body of a queue message.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendBatch {
    /// Campaign.
    pub campaign_id: i64,
    /// Recipient rows (`campaign_recipients.id`).
    pub recipient_ids: Vec<i64>,
}

/// Declares the queue of sends and its dead-letter queue (idempotent).
pub async fn declare(channel: &lapin::Channel, queue: &str) -> lapin::Result<()> {
    let dead = format!("{queue}.dead");
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await?;
    Ok(())
}

/// Starts the broker task of this process (publisher + consumer).
pub fn spawn(
    sender: Arc<Sender>,
    config: &Config,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
) -> Vec<JoinHandle<()>> {
    let broker = Broker {
        s: sender,
        url: config.amqp.url.expose_secret().to_owned(),
        queue: config.campaign.queue_name.clone(),
        prefetch: config.campaign.workers.clamp(1, u16::MAX as usize) as u16,
        owner: format!("send-{}-amqp", uuid::Uuid::new_v4().simple()),
    };
    if config.campaign.workers == 0 {
        return Vec::new();
    }
    vec![tokio::spawn(async move { broker.run(stop, wake).await })]
}

struct Broker {
    s: Arc<Sender>,
    url: String,
    queue: String,
    prefetch: u16,
    owner: String,
}

impl Broker {
    /// Connects, serves, and reconnects after a lost connection until `stop`.
    async fn run(self, stop: Arc<AtomicBool>, wake: Arc<Notify>) {
        let this = Arc::new(self);
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = this.clone().session(&stop, &wake).await {
                tracing::warn!(error = %e, queue = %this.queue, "RabbitMQ session ended; reconnecting");
                tokio::select! {
                    _ = wake.notified() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
            }
        }
    }

    async fn session(self: Arc<Self>, stop: &Arc<AtomicBool>, wake: &Notify) -> anyhow::Result<()> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let publish = conn.create_channel().await?;
        declare(&publish, &self.queue).await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = consume
            .basic_consume(
                self.queue.as_str().into(),
                self.owner.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            if let Err(e) = self.publish_due(&publish).await {
                break Err(e);
            }
            let tick = tokio::time::sleep(self.s.poll);
            tokio::pin!(tick);
            // Consume until the next publish round.
            let ended = loop {
                tokio::select! {
                    delivery = consumer.next() => match delivery {
                        Some(Ok(delivery)) => {
                            let this = self.clone();
                            let stop = stop.clone();
                            in_flight.spawn(async move { this.handle(delivery, &stop).await });
                        }
                        Some(Err(e)) => break Some(Err(e.into())),
                        None => break Some(Err(anyhow::anyhow!("the consumer was cancelled"))),
                    },
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {},
                    _ = &mut tick => break None,
                    _ = wake.notified() => break None,
                }
            };
            if let Some(e) = ended {
                break e;
            }
        };
        // Stop taking messages; those prefetched but not started go back to the queue when
        // the channel closes. Let the ones in progress finish and ack.
        let _ = consume
            .basic_cancel(self.owner.as_str().into(), BasicCancelOptions::default())
            .await;
        while in_flight.join_next().await.is_some() {}
        let _ = conn.close(200, "farol worker stopping".into()).await;
        result
    }

    /// Publishes the due recipients of every running campaign; completes finished ones.
    async fn publish_due(&self, channel: &lapin::Channel) -> anyhow::Result<()> {
        let s = &self.s;
        store::start_due(&s.db).await?;
        worker::housekeeping(s).await;
        for c in store::running(&s.db).await? {
            // Business hours are per account: outside them, recipients wait unpublished.
            if !s.open_for(c.id).await {
                continue;
            }
            let size = worker::batch_size(s, &c) as i64;
            let mut published = 0usize;
            loop {
                let ids =
                    store::take_dispatchable(&s.db, c.id, size, REPUBLISH_AFTER.as_millis() as i64)
                        .await?;
                if ids.is_empty() {
                    break;
                }
                let body = serde_json::to_vec(&SendBatch {
                    campaign_id: c.id,
                    recipient_ids: ids.clone(),
                })?;
                let confirmed = async {
                    channel
                        .basic_publish(
                            "".into(),
                            self.queue.as_str().into(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default()
                                .with_delivery_mode(2)
                                .with_content_type("application/json".into()),
                        )
                        .await?
                        .await
                }
                .await;
                match confirmed {
                    Ok(confirm) if confirm.is_ack() => published += ids.len(),
                    Ok(_) => {
                        store::undispatch(&s.db, &ids).await?;
                        anyhow::bail!("the broker refused a message (nack)");
                    }
                    Err(e) => {
                        store::undispatch(&s.db, &ids).await?;
                        return Err(e.into());
                    }
                }
            }
            if published == 0 && store::complete_if_done(&s.db, c.id).await? {
                tracing::info!(campaign = c.id, "campaign completed");
            }
        }
        Ok(())
    }

    /// Sends one message's recipients and acks it.
    async fn handle(&self, delivery: lapin::message::Delivery, stop: &AtomicBool) {
        let batch: SendBatch = match serde_json::from_slice(&delivery.data) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable send message; dead-lettered");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
        };
        match self.process(&batch, stop).await {
            Ok(()) => {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                // Requeued once; a message failing again is dead-lettered (its rows stay due
                // in the database and are published again later).
                let requeue = !delivery.redelivered;
                tracing::warn!(error = %e, campaign = batch.campaign_id, requeue, "cannot process a send message");
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue,
                        ..Default::default()
                    })
                    .await;
            }
        }
    }

    async fn process(&self, batch: &SendBatch, stop: &AtomicBool) -> anyhow::Result<()> {
        let s = &self.s;
        let runnable = store::runnable(&s.db, batch.campaign_id).await?;
        let open = match &runnable {
            Some(c) => s.open_for(c.id).await,
            None => false,
        };
        let Some(c) = runnable.filter(|_| open && !stop.load(Ordering::Relaxed)) else {
            // Paused, cancelled, closed hours or stopping: published again when it can send.
            store::undispatch(&s.db, &batch.recipient_ids).await?;
            return Ok(());
        };
        let claimed =
            store::claim_ids(&s.db, c.id, &batch.recipient_ids, &self.owner, s.lease_ms).await?;
        worker::send_claimed(s, &c, &self.owner, stop, claimed).await
    }
}
