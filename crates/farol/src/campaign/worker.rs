//! Send workers: claim batches of due recipients of running campaigns with a lease, check
//! opt-out and suppression, render, pace (per-campaign throttle), send through the channel,
//! record the outcome and the client's timeline item. `farol serve` and `farol worker` start
//! `campaign.workers` of them. See docs/campaigns.md for the delivery guarantee.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use farol_channels::template::{RenderContext, TemplateEngine};
use farol_channels::{Backoff, CircuitBreaker, Content, OutboundMessage, Recipient, SendError};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::channels::Channels;
use super::checker::{self, Check, Checker, ContactState};
use super::hours::BusinessHours;
use super::recorder::{Record, Recorder};
use super::render;
use super::store::{self, Claimed, Outcome, Runnable};
use super::templates::{self, Channel, TemplateRow};
use super::throttle::{Throttle, ThrottleKey};
use crate::config::Config;
use crate::crm::clients::ClientOut;
use crate::db::{Db, now_ms};

/// What every worker of a process shares.
pub struct Sender {
    pub(super) db: Db,
    pub(super) channels: Channels,
    throttle: Arc<dyn Throttle>,
    engine: TemplateEngine,
    backoff: Backoff,
    pub(super) batch: usize,
    concurrency: usize,
    pub(super) lease_ms: i64,
    pub(super) poll: Duration,
    max_attempts: u32,
    public_url: String,
    hours: Option<BusinessHours>,
    /// One breaker per channel of this process.
    breakers: HashMap<&'static str, CircuitBreaker>,
    /// Group commit of outcomes (one task per process).
    recorder: Recorder,
    /// Coalesced last suppression checks (one task per process).
    checker: Checker,
}

impl Sender {
    /// Whether business hours allow sending now.
    pub(super) fn open_now(&self) -> bool {
        self.hours
            .as_ref()
            .is_none_or(|h| h.is_open(jiff::Timestamp::now()))
    }

    /// Workers' shared state for `config`, sending through `channels`.
    pub fn new(db: Db, channels: Channels, throttle: Arc<dyn Throttle>, config: &Config) -> Sender {
        let c = &config.campaign;
        Sender {
            recorder: Recorder::spawn(db.clone()),
            checker: Checker::spawn(db.clone()),
            db,
            channels,
            throttle,
            engine: TemplateEngine::default(),
            backoff: Backoff {
                base: Duration::from_millis(c.retry_base_ms.max(1)),
                cap: Duration::from_millis(c.retry_cap_ms.max(c.retry_base_ms).max(1)),
                max_retry_after: Duration::from_secs(15 * 60),
                max_retries: c.max_attempts.saturating_sub(1),
            },
            batch: c.batch.max(1),
            concurrency: c.concurrency.max(1),
            lease_ms: (c.lease_secs.max(1) * 1000) as i64,
            poll: Duration::from_millis(c.poll_ms.max(10)),
            max_attempts: c.max_attempts.max(1),
            public_url: super::public_url(config),
            // Validated when the configuration was loaded.
            hours: BusinessHours::parse(&c.business_hours, &c.time_zone)
                .ok()
                .flatten(),
            breakers: [Channel::Email, Channel::Whatsapp, Channel::Sms]
                .into_iter()
                .map(|ch| {
                    (
                        ch.as_str(),
                        CircuitBreaker::new(
                            c.breaker_failures.max(1),
                            Duration::from_secs(c.breaker_cool_down_secs),
                        ),
                    )
                })
                .collect(),
        }
    }
}

/// Starts `config.campaign.workers` workers pacing through `throttle` (one per process, see
/// [`super::throttle::for_process`]). Once `stop` is set (and `wake` notified) they finish the
/// sends in flight, put the claimed recipients not yet started back in the queue, and return.
pub fn spawn(
    db: &Db,
    channels: &Channels,
    throttle: Arc<dyn Throttle>,
    config: &Config,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
) -> Vec<JoinHandle<()>> {
    let sender = Arc::new(Sender::new(db.clone(), channels.clone(), throttle, config));
    if config.campaign.queue == "rabbitmq" {
        return super::broker::spawn(sender, config, stop, wake);
    }
    (0..config.campaign.workers)
        .map(|i| {
            let owner = format!("send-{}-{i}", uuid::Uuid::new_v4().simple());
            tokio::spawn(work(sender.clone(), owner, stop.clone(), wake.clone()))
        })
        .collect()
}

/// One worker: starts due scheduled campaigns and runs one task per running campaign, so each
/// campaign keeps its own pace (a throttled campaign never slows another one down).
async fn work(s: Arc<Sender>, owner: String, stop: Arc<AtomicBool>, wake: Arc<Notify>) {
    let mut tasks: HashMap<i64, JoinHandle<()>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = store::start_due(&s.db).await {
            tracing::warn!(error = %e, "cannot start scheduled campaigns");
        }
        tasks.retain(|_, t| !t.is_finished());
        match store::running(&s.db).await {
            Ok(campaigns) => {
                for c in campaigns {
                    tasks.entry(c.id).or_insert_with(|| {
                        tokio::spawn(run_campaign(s.clone(), c.id, owner.clone(), stop.clone()))
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list running campaigns"),
        }
        tokio::select! {
            _ = wake.notified() => {},
            _ = tokio::time::sleep(s.poll) => {},
        }
    }
    for (_, t) in tasks {
        let _ = t.await;
    }
}

/// Sends batches of one campaign until none is due (or the campaign stops running), then
/// completes it when nothing is left. The campaign is re-read before each batch, so throttle
/// changes apply to the next batch.
async fn run_campaign(s: Arc<Sender>, id: i64, owner: String, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if !s.open_now() {
            // Outside business hours: recipients wait, queued, for the window.
            return;
        }
        let c = match store::runnable(&s.db, id).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(campaign = id, error = %e, "cannot read campaign");
                return;
            }
        };
        match run_batch(&s, &c, &owner, &stop).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(campaign = id, error = %e, "send batch failed");
                return;
            }
        }
    }
    match store::complete_if_done(&s.db, id).await {
        Ok(true) => tracing::info!(campaign = id, "campaign completed"),
        Ok(false) => {}
        Err(e) => tracing::warn!(campaign = id, error = %e, "cannot complete"),
    }
}

/// Claims and sends one batch of a campaign; returns how many recipients it claimed.
pub async fn run_batch(
    s: &Sender,
    c: &Runnable,
    owner: &str,
    stop: &AtomicBool,
) -> anyhow::Result<usize> {
    let channel_name = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    // A process without this channel leaves its recipients to processes that have it.
    if s.channels.get(channel_name).is_none() {
        return Ok(0);
    }
    let limit = batch_size(s, c);
    let claimed = store::claim(&s.db, c.id, owner, limit as i64, s.lease_ms).await?;
    let n = claimed.len();
    send_claimed(s, c, owner, stop, claimed).await?;
    Ok(n)
}

/// How many recipients of a campaign a claim (or a broker message) carries: about one second
/// of sends when throttled, so the lease never covers a long wait; else `campaign.batch`.
pub(super) fn batch_size(s: &Sender, c: &Runnable) -> usize {
    match c.throttle_per_sec {
        Some(rate) => (rate.ceil() as usize).clamp(1, s.batch),
        None => s.batch,
    }
}

/// Sends recipients claimed for `owner`: send-time checks, throttle, render, send, record.
pub(super) async fn send_claimed(
    s: &Sender,
    c: &Runnable,
    owner: &str,
    stop: &AtomicBool,
    claimed: Vec<Claimed>,
) -> anyhow::Result<()> {
    if claimed.is_empty() {
        return Ok(());
    }
    let channel_name = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    let Some(channel) = s.channels.get(channel_name) else {
        for r in &claimed {
            store::release(&s.db, r.id, owner).await?;
        }
        return Ok(());
    };
    let mut conn = s.db.pool().acquire().await?;
    let template = templates::get(&mut conn, c.account_id, c.template_id).await?;
    let ids: Vec<i64> = claimed.iter().map(|r| r.client_id).collect();
    let clients = render::load_clients(&mut conn, c.account_id, &ids).await?;
    let contacts = checker::contacts_of(&mut conn, &ids).await?;
    drop(conn);
    // A send started later than this might not be recorded before the lease expires and
    // another worker takes the recipient over: such recipients go back to the queue instead.
    let deadline = std::time::Instant::now() + Duration::from_millis(s.lease_ms as u64 / 2);
    let job = Job {
        s,
        c,
        template: &template,
        channel: channel.as_ref(),
        channel_name,
        clients: &clients,
        contacts: &contacts,
        deadline,
        owner,
        stop,
        running: std::sync::Mutex::new((std::time::Instant::now(), true)),
    };
    futures_util::stream::iter(claimed)
        .for_each_concurrent(s.concurrency, |r| {
            let job = &job;
            async move {
                let id = r.id;
                if let Err(e) = job.send_one(r).await {
                    // The recipient stays `sending`; its lease expires and it is tried again.
                    tracing::warn!(recipient = id, error = %e, "cannot record a send");
                }
            }
        })
        .await;
    Ok(())
}

fn contact_kind(channel: Channel) -> &'static str {
    if channel == Channel::Email {
        "email"
    } else {
        "phone"
    }
}

/// Why a contact in this state must not receive the message, if it must not.
fn suppression(state: Option<ContactState>) -> Option<&'static str> {
    match state {
        None => Some("no_address"),
        Some((opted_out, _)) if opted_out != 0 => Some("opted_out"),
        Some((_, Some(_))) => Some("contact_invalid"),
        Some(_) => None,
    }
}

struct Job<'a> {
    s: &'a Sender,
    c: &'a Runnable,
    template: &'a TemplateRow,
    channel: &'a dyn farol_channels::Channel,
    channel_name: Channel,
    clients: &'a HashMap<i64, (ClientOut, Option<String>)>,
    /// The recipients' contacts as read right after the claim.
    contacts: &'a checker::Contacts,
    deadline: std::time::Instant,
    owner: &'a str,
    stop: &'a AtomicBool,
    /// Whether the campaign was still running when last checked, and when.
    running: std::sync::Mutex<(std::time::Instant, bool)>,
}

/// How stale the campaign status a send relies on may be: a pause or cancel stops the sends
/// of a claimed batch within this time.
const STATUS_TTL: Duration = Duration::from_millis(250);

impl Job<'_> {
    /// Why the contact must not receive the message now, if it must not.
    async fn suppressed(
        &self,
        client_id: i64,
        address: &str,
    ) -> anyhow::Result<Option<&'static str>> {
        let state = self
            .s
            .checker
            .check(Check {
                account_id: self.c.account_id,
                client_id,
                kind: contact_kind(self.channel_name),
                value: address.to_owned(),
            })
            .await?;
        Ok(suppression(state))
    }

    async fn skip(&self, r: &Claimed, reason: &str) -> anyhow::Result<()> {
        self.finish(
            r,
            "",
            Outcome::Skipped {
                reason: reason.to_owned(),
            },
            String::new(),
        )
        .await
    }

    /// Whether the campaign is still running (paused or cancelled ones stop mid-batch).
    async fn still_running(&self) -> bool {
        {
            let (at, running) = *self.running.lock().expect("status lock");
            if at.elapsed() < STATUS_TTL {
                return running;
            }
        }
        let status: Option<String> =
            sqlx::query_scalar("select status from campaigns where id = $1")
                .bind(self.c.id)
                .fetch_optional(self.s.db.pool())
                .await
                .ok()
                .flatten();
        let running = status.as_deref() == Some("running");
        *self.running.lock().expect("status lock") = (std::time::Instant::now(), running);
        running
    }

    async fn send_one(&self, r: Claimed) -> anyhow::Result<()> {
        let s = self.s;
        // Send-time checks: whatever the snapshot said, an opted-out or invalid contact, or a
        // deleted client or contact, gets nothing. Checked before waiting for a throttle slot
        // (a skip does not use one) and again right before the send.
        let Some((client, portfolio)) = self.clients.get(&r.client_id) else {
            return self.skip(&r, "client_deleted").await;
        };
        let Some(address) = r.address.clone() else {
            return self.skip(&r, "no_address").await;
        };
        let preloaded = self
            .contacts
            .get(&(
                r.client_id,
                contact_kind(self.channel_name).to_owned(),
                address.clone(),
            ))
            .filter(|(account, _)| *account == self.c.account_id)
            .map(|(_, state)| *state);
        if let Some(reason) = suppression(preloaded) {
            return self.skip(&r, reason).await;
        }
        if let Some(rate) = self.c.throttle_per_sec {
            s.throttle
                .acquire(ThrottleKey::Campaign(self.c.id), rate)
                .await;
        }
        if self.stop.load(Ordering::Relaxed)
            || std::time::Instant::now() > self.deadline
            || !s.open_now()
            || !self.still_running().await
        {
            store::release(&s.db, r.id, self.owner).await?;
            return Ok(());
        }
        if let Some(reason) = self.suppressed(r.client_id, &address).await? {
            return self.skip(&r, reason).await;
        }

        let email = (self.channel_name == Channel::Email).then_some(address.as_str());
        let ctx = RenderContext {
            client: render::client_vars(client, portfolio.clone(), email),
            unsubscribe_url: Some(format!(
                "{}/api/v1/unsubscribe/{}",
                s.public_url, r.unsubscribe_token
            )),
            ..Default::default()
        };
        let (outcome, summary) = match render::render(&s.engine, self.template, &ctx) {
            Err(e) => (
                Outcome::Failed {
                    error: format!("render_error: {e}"),
                },
                String::new(),
            ),
            Ok(content) => {
                let summary = match &content {
                    Content::Email(e) => e.subject.clone(),
                    _ => String::new(),
                };
                let to = if self.channel_name == Channel::Email {
                    Recipient::email(address.clone())
                } else {
                    Recipient::phone(address.clone())
                };
                let mut msg = OutboundMessage::new(to, content, r.idempotency_key.clone());
                msg.metadata
                    .insert("campaign_id".into(), self.c.id.to_string());
                msg.metadata
                    .insert("client_id".into(), r.client_id.to_string());
                let breaker = &s.breakers[self.channel_name.as_str()];
                if let Err(wait) = breaker.try_acquire() {
                    // The channel keeps failing: hold the send, uncounted, until the breaker
                    // lets a probe through.
                    let at = now_ms() + wait.max(Duration::from_millis(100)).as_millis() as i64;
                    store::defer(&s.db, r.id, self.owner, at).await?;
                    return Ok(());
                }
                let result = self.channel.send(&msg).await;
                match &result {
                    Err(SendError::Transient { .. }) => breaker.record_failure(),
                    _ => breaker.record_success(),
                }
                (self.outcome(&r, result), summary)
            }
        };
        self.finish(&r, &address, outcome, summary).await
    }

    fn outcome(
        &self,
        r: &Claimed,
        result: Result<farol_channels::SendReceipt, SendError>,
    ) -> Outcome {
        match result {
            Ok(receipt) => Outcome::Sent {
                provider_message_id: receipt.provider_message_id,
            },
            Err(e @ SendError::Transient { .. }) => {
                let attempt = r.attempts.max(1) as u32;
                if attempt < self.s.max_attempts {
                    let delay = self.s.backoff.delay(attempt - 1, e.retry_after());
                    Outcome::Retry {
                        at: now_ms() + delay.as_millis() as i64,
                        error: e.to_string(),
                    }
                } else {
                    Outcome::Failed {
                        error: format!("gave up after {attempt} attempts: {e}"),
                    }
                }
            }
            Err(e) => Outcome::Failed {
                error: match &e {
                    SendError::Permanent {
                        contact_invalid: true,
                        ..
                    } => format!("contact_invalid: {e}"),
                    _ => e.to_string(),
                },
            },
        }
    }

    /// Records the outcome (group commit, see [`super::recorder`]); returns once it is
    /// committed, so the send keeps its concurrency slot until then.
    async fn finish(
        &self,
        r: &Claimed,
        address: &str,
        outcome: Outcome,
        summary: String,
    ) -> anyhow::Result<()> {
        self.s
            .recorder
            .record(Record {
                recipient_id: r.id,
                client_id: r.client_id,
                account_id: self.c.account_id,
                campaign_id: self.c.id,
                owner: self.owner.to_owned(),
                channel: self.channel_name,
                address: address.to_owned(),
                outcome,
                summary,
            })
            .await?;
        Ok(())
    }
}
