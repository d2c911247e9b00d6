//! Send workers: claim batches of due recipients of running campaigns with a lease, check
//! opt-out and suppression, render, pace (per-campaign throttle), send through the channel,
//! record the outcome and the client's timeline item. `farol serve` and `farol worker` start
//! `campaign.workers` of them. See docs/campaigns.md for the delivery guarantee.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use farol_channels::template::{RenderContext, TemplateEngine};
use farol_channels::{Backoff, CircuitBreaker, Content, OutboundMessage, Recipient, SendError};
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use super::channels::Channels;
use super::checker::{self, ContactState};
use super::hours::BusinessHours;
use super::pacing::{self, AccountRate};
use super::policy::{self, Effective, Reservation};
use super::recorder::{Record, Recorder};
use super::render;
use super::store::{self, Claimed, Outcome, Runnable};
use super::templates::{self, Channel, TemplateRow};
use super::throttle::{Throttle, ThrottleKey};
use crate::config::{CampaignConfig, Config};
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
    /// Defaults of the per-account policies (business hours, frequency cap).
    policy: CampaignConfig,
    /// One breaker per channel of this process.
    breakers: HashMap<&'static str, CircuitBreaker>,
    /// Group commit of outcomes (one task per process).
    recorder: Recorder,
    /// Alerts when a breaker opens or closes.
    alerter: crate::channels::alerts::Alerter,
    /// The last check before each send, coalesced (one task per process).
    checker: checker::Checker,
}

/// Whether business hours allow sending now.
fn open_now(hours: &Option<BusinessHours>) -> bool {
    hours
        .as_ref()
        .is_none_or(|h| h.is_open(jiff::Timestamp::now()))
}

impl Sender {
    /// Whether campaign `campaign_id`'s account is inside its business hours now.
    pub(super) async fn open_for(&self, campaign_id: i64) -> bool {
        match policy::effective(&self.db, campaign_id, &self.policy).await {
            Ok(p) => open_now(&p.hours),
            Err(e) => {
                tracing::warn!(campaign = campaign_id, error = %e, "cannot read campaign policies");
                false
            }
        }
    }
}

impl Sender {
    /// Workers' shared state for `config`, sending through `channels`.
    pub fn new(db: Db, channels: Channels, throttle: Arc<dyn Throttle>, config: &Config) -> Sender {
        let c = &config.campaign;
        Sender {
            recorder: Recorder::spawn(db.clone()),
            alerter: crate::channels::alerts::Alerter::new(db.clone(), config),
            checker: checker::Checker::spawn(db.clone()),
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
            policy: c.clone(),
            // The configured SMTP's and Smartico label's; stored channel accounts carry their own.
            breakers: [Channel::Email, Channel::Smartico]
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

/// Starts `config.campaign.workers` workers. Once `stop` is set (and `wake` notified) they
/// finish the sends in flight, put the claimed recipients not yet started back in the queue,
/// and return.
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

/// When this process last deleted frequency cap records older than the window.
static LAST_PRUNE: AtomicI64 = AtomicI64::new(0);
const PRUNE_EVERY_MS: i64 = 10 * 60 * 1000;

/// What the workers of a process do now and then, whichever queue sends: delete frequency
/// cap records older than the window (every 10 minutes), and launch the occurrences of
/// recurring campaigns whose time has come.
pub(super) async fn housekeeping(s: &Sender) {
    let now = now_ms();
    let last = LAST_PRUNE.load(Ordering::Relaxed);
    if now - last > PRUNE_EVERY_MS
        && LAST_PRUNE
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let window = (s.policy.frequency_window_hours.max(1) * 3_600_000) as i64;
        if let Err(e) = policy::prune(&s.db, window, now).await {
            tracing::warn!(error = %e, "cannot prune frequency cap records");
        }
    }
    if let Err(e) = super::recurring::tick(&s.db, &s.channels).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot launch recurring campaign occurrences");
    }
}

/// One worker: starts due scheduled campaigns and runs one task per running campaign, so each
/// campaign keeps its own pace (a throttled campaign never slows another one down).
async fn work(s: Arc<Sender>, owner: String, stop: Arc<AtomicBool>, wake: Arc<Notify>) {
    let mut tasks: HashMap<i64, JoinHandle<()>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = store::start_due(&s.db).await {
            tracing::warn!(error = %e, "cannot start scheduled campaigns");
        }
        housekeeping(&s).await;
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
///
/// Batches overlap: the next one is claimed as soon as every recipient of the current one has
/// started, so its claim and preload (a commit each on PostgreSQL) run while the current
/// batch's last sends finish, instead of leaving every send slot idle at each boundary. The
/// campaign's sends in flight stay within `campaign.concurrency` across both batches (one
/// semaphore), and at most two batches are open at once.
async fn run_campaign(s: Arc<Sender>, id: i64, owner: String, stop: Arc<AtomicBool>) {
    let slots = Arc::new(Semaphore::new(s.concurrency));
    let mut finishing: Option<JoinHandle<()>> = None;
    let mut done = false;
    while !stop.load(Ordering::Relaxed) {
        let c = match store::runnable(&s.db, id).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(campaign = id, error = %e, "cannot read campaign");
                break;
            }
        };
        // The account's business hours and frequency cap, read again for every batch.
        let policy = match policy::effective(&s.db, id, &s.policy).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(campaign = id, error = %e, "cannot read campaign policies");
                break;
            }
        };
        if !open_now(&policy.hours) {
            // Outside business hours: recipients wait, queued, for the window.
            break;
        }
        let claimed = match claim_batch(&s, &c, &owner).await {
            Ok(claimed) if claimed.is_empty() => {
                done = true;
                break;
            }
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(campaign = id, error = %e, "send batch failed");
                break;
            }
        };
        let (started, all_started) = tokio::sync::oneshot::channel();
        let batch = tokio::spawn({
            let (s, owner, stop, slots) = (s.clone(), owner.clone(), stop.clone(), slots.clone());
            async move {
                if let Err(e) =
                    send_claimed_in(&s, &c, &owner, &stop, claimed, &slots, Some(started)).await
                {
                    tracing::warn!(campaign = c.id, error = %e, "send batch failed");
                }
            }
        });
        // Err: the batch ended (or failed) before signalling, which is as good.
        let _ = all_started.await;
        if let Some(previous) = finishing.replace(batch) {
            let _ = previous.await;
        }
    }
    if let Some(last) = finishing {
        let _ = last.await;
    }
    if !done && !stop.load(Ordering::Relaxed) {
        return;
    }
    match store::complete_if_done(&s.db, id).await {
        Ok(true) => tracing::info!(campaign = id, "campaign completed"),
        Ok(false) => {}
        Err(e) => tracing::warn!(campaign = id, error = %e, "cannot complete"),
    }
}

/// How a recipient's channel account can be used in this batch.
#[derive(Clone)]
enum Adapter {
    /// Send through it (`built`: a stored channel account; `None`: the configured SMTP).
    Ready(
        Arc<dyn farol_channels::Channel>,
        Option<Arc<crate::channels::registry::Built>>,
    ),
    /// The account cannot send: the recipient fails with this reason.
    Unusable(&'static str),
    /// Not available in this process right now: the recipient waits, uncounted.
    Later,
}

/// Claims and sends one batch of a campaign; returns how many recipients it claimed.
pub async fn run_batch(
    s: &Sender,
    c: &Runnable,
    owner: &str,
    stop: &AtomicBool,
) -> anyhow::Result<usize> {
    let claimed = claim_batch(s, c, owner).await?;
    let n = claimed.len();
    send_claimed(s, c, owner, stop, claimed).await?;
    Ok(n)
}

/// Claims the next batch of a campaign for `owner` (nothing when this process cannot send
/// the campaign's channel).
async fn claim_batch(s: &Sender, c: &Runnable, owner: &str) -> anyhow::Result<Vec<Claimed>> {
    let campaign_channel = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    // A process without the configured SMTP leaves plain e-mail campaigns to processes that
    // have it (stored channel accounts are available to every process).
    if campaign_channel == Channel::Email
        && s.channels.get(Channel::Email).is_none()
        && s.channels.registry().is_none()
    {
        return Ok(Vec::new());
    }
    let limit = batch_size(s, c);
    Ok(store::claim(&s.db, c.id, owner, limit as i64, s.lease_ms).await?)
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
    send_claimed_in(
        s,
        c,
        owner,
        stop,
        claimed,
        &Semaphore::new(s.concurrency),
        None,
    )
    .await
}

/// [`send_claimed`] with the campaign's send slots (`slots`, shared with an overlapping
/// batch); `started` is told once every recipient has taken a slot.
async fn send_claimed_in(
    s: &Sender,
    c: &Runnable,
    owner: &str,
    stop: &AtomicBool,
    claimed: Vec<Claimed>,
    slots: &Semaphore,
    started: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    if claimed.is_empty() {
        return Ok(());
    }
    let campaign_channel = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    // The account's business hours and frequency cap, read again for every batch.
    let policy = policy::effective(&s.db, c.id, &s.policy).await?;
    let mut conn = s.db.pool().acquire().await?;
    let mut templates = HashMap::new();
    for (channel, id) in crate::channels::routing::templates_of(
        campaign_channel,
        c.template_id,
        c.channel_templates.as_deref(),
    ) {
        templates.insert(channel, templates::get(&mut conn, c.account_id, id).await?);
    }
    let ids: Vec<i64> = claimed.iter().map(|r| r.client_id).collect();
    let clients = render::load_clients(&mut conn, c.account_id, &ids).await?;
    let contacts = checker::contacts_of(&mut conn, &ids).await?;
    drop(conn);
    let mut adapters: HashMap<(String, Option<i64>), Adapter> = HashMap::new();
    for r in &claimed {
        let key = (r.channel.clone(), r.channel_account_id);
        if adapters.contains_key(&key) {
            continue;
        }
        let adapter = match (r.channel_account_id, s.channels.registry()) {
            (None, _) => match s
                .channels
                .get(Channel::parse(&r.channel).unwrap_or(Channel::Email))
            {
                Some(ch) => Adapter::Ready(ch, None),
                None => Adapter::Later,
            },
            (Some(_), None) => Adapter::Later,
            (Some(id), Some(registry)) => match registry.get(id).await {
                Ok(Some(b)) if b.enabled => Adapter::Ready(b.channel.clone(), Some(b)),
                Ok(Some(_)) => Adapter::Unusable("channel_account_disabled"),
                Ok(None) => Adapter::Unusable("channel_account_deleted"),
                Err(e) => {
                    tracing::warn!(campaign = c.id, channel_account = id, error = %e, "cannot build the channel account's adapter");
                    Adapter::Later
                }
            },
        };
        adapters.insert(key, adapter);
    }
    // A send started later than this might not be recorded before the lease expires and
    // another worker takes the recipient over: such recipients go back to the queue instead.
    let deadline = std::time::Instant::now() + Duration::from_millis(s.lease_ms as u64 / 2);
    let job = Job {
        s,
        c,
        policy: &policy,
        templates: &templates,
        adapters: &adapters,
        clients: &clients,
        contacts: &contacts,
        deadline,
        owner,
        stop,
        running: std::sync::Mutex::new((std::time::Instant::now(), true)),
    };
    let unstarted = std::sync::atomic::AtomicUsize::new(claimed.len());
    let started = std::sync::Mutex::new(started);
    futures_util::stream::iter(claimed)
        .for_each_concurrent(s.concurrency, |r| {
            let (job, unstarted, started) = (&job, &unstarted, &started);
            async move {
                let id = r.id;
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                if unstarted.fetch_sub(1, Ordering::Relaxed) == 1
                    && let Some(tx) = started.lock().expect("started lock").take()
                {
                    let _ = tx.send(());
                }
                if let Err(e) = job.send_one(r).await {
                    // The recipient stays `sending`; its lease expires and it is tried again.
                    tracing::warn!(recipient = id, error = %e, "cannot record a send");
                }
            }
        })
        .await;
    Ok(())
}

struct Job<'a> {
    s: &'a Sender,
    c: &'a Runnable,
    policy: &'a Effective,
    templates: &'a HashMap<Channel, TemplateRow>,
    adapters: &'a HashMap<(String, Option<i64>), Adapter>,
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

/// Why a contact in this state must not receive the message, if it must not.
fn contact_problem(state: Option<ContactState>) -> Option<&'static str> {
    match state {
        None => Some("no_address"),
        Some((opted_out, _)) if opted_out != 0 => Some("opted_out"),
        Some((_, Some(_))) => Some("contact_invalid"),
        Some(_) => None,
    }
}

fn contact_kind(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Smartico => "external_id",
        _ => "phone",
    }
}

/// Channels whose recipient is the client itself (a webhook push, a Smartico event by the
/// client's external id), not one of its contacts: contact opt-outs do not apply to them and
/// they are not messages counted by the frequency cap.
pub(super) fn addresses_client(channel: Channel) -> bool {
    matches!(channel, Channel::Webhook | Channel::Smartico)
}

impl Job<'_> {
    /// Why the contact must not receive the message now (opted out, invalid, on a suppression
    /// list), if it must not; else the contact's last inbound message (epoch ms), for the
    /// WhatsApp window. Webhook and Smartico recipients are the client itself, not a contact:
    /// only the client-level suppressions (client id, CPF/CNPJ) and a deleted client stop them.
    /// One query, shared with the other sends checking at the same moment (`checker::Checker`).
    async fn suppressed(
        &self,
        channel: Channel,
        client_id: i64,
        address: &str,
    ) -> anyhow::Result<Result<Option<i64>, String>> {
        self.s
            .checker
            .check(checker::Check {
                account_id: self.c.account_id,
                channel,
                client_id,
                address: address.to_owned(),
            })
            .await
    }

    async fn skip(&self, r: &Claimed, reason: &str) -> anyhow::Result<()> {
        // A frequency-cap reservation made for this send no longer stands.
        if self.policy.frequency_cap > 0 {
            policy::release(&mut *self.s.db.pool().acquire().await?, r.id).await?;
        }
        // An auto campaign tries the client's next channel first — unless the client may not
        // receive anything more now, on any channel (the frequency cap).
        if self.c.channel == Channel::Auto.as_str()
            && reason != "frequency_cap"
            && let Some(current) = Channel::parse(&r.channel)
            && let Some((route, address)) = crate::channels::routing::reroute(
                &self.s.db,
                &self.s.channels,
                self.c.id,
                r.client_id,
                current,
            )
            .await?
        {
            store::reassign(
                &self.s.db,
                r.id,
                self.owner,
                route.channel.as_str(),
                route.account,
                &address,
                &format!("{reason} on {}", current.as_str()),
            )
            .await?;
            return Ok(());
        }
        let mut tx = self.s.db.begin().await?;
        store::record(
            &mut tx,
            r.id,
            self.owner,
            &Outcome::Skipped {
                reason: reason.to_owned(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
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
        let channel_name = Channel::parse(&r.channel).unwrap_or(Channel::Email);
        let (channel, built) = match self
            .adapters
            .get(&(r.channel.clone(), r.channel_account_id))
        {
            Some(Adapter::Ready(ch, built)) => (ch.clone(), built.clone()),
            Some(Adapter::Unusable(reason)) => {
                let outcome = Outcome::Failed {
                    error: (*reason).to_owned(),
                };
                return self
                    .finish(
                        &r,
                        channel_name,
                        r.address.as_deref().unwrap_or_default(),
                        &outcome,
                        "",
                    )
                    .await;
            }
            Some(Adapter::Later) | None => {
                store::defer(&s.db, r.id, self.owner, now_ms() + 5_000).await?;
                return Ok(());
            }
        };
        let Some(template) = self.templates.get(&channel_name) else {
            let outcome = Outcome::Failed {
                error: format!("no template for channel {}", channel_name.as_str()),
            };
            return self
                .finish(
                    &r,
                    channel_name,
                    r.address.as_deref().unwrap_or_default(),
                    &outcome,
                    "",
                )
                .await;
        };
        // Send-time checks: whatever the snapshot said, an opted-out or invalid contact, or a
        // deleted client or contact, gets nothing. Checked before waiting for a throttle slot
        // (a skip does not use one) and again right before the send.
        let Some((client, portfolio)) = self.clients.get(&r.client_id) else {
            return self.skip(&r, "client_deleted").await;
        };
        let Some(address) = r.address.clone() else {
            return self.skip(&r, "no_address").await;
        };
        // The first check uses the contacts read with the batch; suppression lists and the
        // WhatsApp window are read right before the send.
        if !addresses_client(channel_name) {
            let preloaded = self
                .contacts
                .get(&(
                    r.client_id,
                    contact_kind(channel_name).to_owned(),
                    address.clone(),
                ))
                .filter(|(account, _)| *account == self.c.account_id)
                .map(|(_, state)| *state);
            if let Some(reason) = contact_problem(preloaded) {
                return self.skip(&r, reason).await;
            }
        }
        // The sender account's limits, whatever campaign sends through it. A reached daily
        // cap holds the recipient at once, without waiting for throttle slots.
        let account_rate = built
            .as_ref()
            .and_then(|b| Some((b.id, AccountRate::from_settings(&b.settings)?)));
        if pacing::hold_if_full(
            &s.db,
            account_rate,
            &self.policy.time_zone,
            r.id,
            self.owner,
        )
        .await?
        {
            return Ok(());
        }
        if let Some(rate) = self.c.throttle_per_sec {
            s.throttle
                .acquire(ThrottleKey::Campaign(self.c.id), rate)
                .await;
        }
        // Then the account's own pace.
        if let Some((account, pace)) = account_rate.and_then(|(id, r)| Some((id, r.pace()?))) {
            s.throttle
                .acquire(ThrottleKey::Account(account), pace)
                .await;
        }
        if self.stop.load(Ordering::Relaxed)
            || std::time::Instant::now() > self.deadline
            || !open_now(&self.policy.hours)
            || !self.still_running().await
        {
            store::release(&s.db, r.id, self.owner).await?;
            return Ok(());
        }
        let last_inbound = match self.suppressed(channel_name, r.client_id, &address).await? {
            Err(reason) => return self.skip(&r, &reason).await,
            Ok(at) => at,
        };
        // The frequency cap counts messages to the client; a webhook push or a Smartico event
        // is not one.
        if !addresses_client(channel_name)
            && self.policy.frequency_cap > 0
            && policy::reserve(
                &s.db,
                self.c.account_id,
                r.client_id,
                r.id,
                self.policy.frequency_cap,
                self.policy.window_ms,
                now_ms(),
            )
            .await?
                == Reservation::CapReached
        {
            return self.skip(&r, "frequency_cap").await;
        }

        let email = (channel_name == Channel::Email).then_some(address.as_str());
        let ctx = RenderContext {
            client: render::client_vars(client, portfolio.clone(), email),
            unsubscribe_url: Some(format!(
                "{}/api/v1/unsubscribe/{}",
                s.public_url, r.unsubscribe_token
            )),
            ..Default::default()
        };
        let (outcome, summary) = match render::render(&s.engine, template, &ctx) {
            Err(e) => (
                Outcome::Failed {
                    error: format!("render_error: {e}"),
                },
                String::new(),
            ),
            Ok(mut content) => {
                let summary = match &content {
                    Content::Email(e) => e.subject.clone(),
                    _ => String::new(),
                };
                if let Content::WhatsApp(w) = &mut content {
                    w.last_inbound_at =
                        last_inbound.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
                }
                let to = match channel_name {
                    Channel::Email => Recipient::email(address.clone()),
                    Channel::Webhook | Channel::Auto => Recipient::Url {
                        url: built
                            .as_ref()
                            .and_then(|b| b.webhook_url.clone())
                            .unwrap_or_default(),
                    },
                    Channel::Whatsapp | Channel::Sms => Recipient::phone(address.clone()),
                    Channel::Smartico => Recipient::External {
                        user_ext_id: address.clone(),
                    },
                };
                let mut msg = OutboundMessage::new(to, content, r.idempotency_key.clone());
                msg.metadata
                    .insert("campaign_id".into(), self.c.id.to_string());
                msg.metadata
                    .insert("client_id".into(), r.client_id.to_string());
                // The account's daily cap: over it, the recipient is held until the next day.
                let day = pacing::reserve_or_hold(
                    &s.db,
                    account_rate,
                    &self.policy.time_zone,
                    r.id,
                    self.owner,
                )
                .await?;
                if day == pacing::DayCap::Held {
                    policy::release(&mut *s.db.pool().acquire().await?, r.id).await?;
                    return Ok(());
                }
                let breaker = match &built {
                    Some(b) => &b.breaker,
                    None => &s.breakers[channel_name.as_str()],
                };
                if let Err(wait) = breaker.try_acquire() {
                    // The channel keeps failing: hold the send, uncounted, until the breaker
                    // lets a probe through.
                    let at = now_ms() + wait.max(Duration::from_millis(100)).as_millis() as i64;
                    if let pacing::DayCap::Counted(account, day) = &day {
                        pacing::release_day(&s.db, *account, day).await?;
                    }
                    policy::release(&mut *s.db.pool().acquire().await?, r.id).await?;
                    store::defer(&s.db, r.id, self.owner, at).await?;
                    return Ok(());
                }
                let result = channel.send(&msg).await;
                s.alerter.observe(
                    breaker,
                    || crate::channels::alerts::Subject {
                        account_id: self.c.account_id,
                        channel_account_id: built.as_ref().map(|b| b.id),
                        provider: built
                            .as_ref()
                            .map_or(
                                // The configuration's account of the channel.
                                if channel_name == Channel::Smartico {
                                    "smartico"
                                } else {
                                    "smtp"
                                },
                                |b| b.provider.as_str(),
                            )
                            .to_owned(),
                    },
                    &result,
                );
                (self.outcome(&r, result), summary)
            }
        };
        if let Outcome::Skipped { reason } = &outcome {
            return self.skip(&r, reason).await;
        }
        self.finish(&r, channel_name, &address, &outcome, &summary)
            .await
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
            Err(SendError::OutsideWindow) => Outcome::Skipped {
                reason: "outside_whatsapp_window".into(),
            },
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

    async fn finish(
        &self,
        r: &Claimed,
        channel_name: Channel,
        address: &str,
        outcome: &Outcome,
        summary: &str,
    ) -> anyhow::Result<()> {
        self.s
            .recorder
            .record(Record {
                recipient_id: r.id,
                client_id: r.client_id,
                account_id: self.c.account_id,
                campaign_id: self.c.id,
                owner: self.owner.to_owned(),
                channel: channel_name,
                address: address.to_owned(),
                outcome: outcome.clone(),
                summary: summary.to_owned(),
            })
            .await?;
        Ok(())
    }
}
