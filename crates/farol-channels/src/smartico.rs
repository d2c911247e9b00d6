//! Smartico external events API (server-to-server): push profile updates (segments, clusters)
//! and client actions in batches, and the CSV "imported segment" file.
//!
//! Contract: `POST {base}/api/external/events/v2` (base `https://apis{N}.smartico.ai`), header
//! `Authorization: <label token>` (no `Bearer`), body a JSON array of
//! `{eid, event_date (epoch ms), ext_brand_id, user_ext_id, event_type, payload}`. Array
//! properties in `update_profile` payloads take operators: `prop` replaces, `+prop` adds,
//! `-prop` removes, `^prop` removes by glob (`RISK_*`), `!prop: null` clears; `skip_cjm: true`
//! updates state without triggering journeys. Limits: ≤ 4,000 events and ≤ 10 MB per request,
//! ≤ 12 parallel requests, ≤ 6,000 requests per minute. The answer is
//! `{err_code, event_errors: {eid: [{error_code, error_message}]}}`: 20056 (duplicate eid) counts as
//! delivered, 10001 is an unknown user, 10000 a bad token.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::channel::{
    BoxFuture, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::http;
use crate::secret::Secret;

/// Most events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 4_000;
/// Largest request body.
pub const MAX_BYTES_PER_REQUEST: usize = 10 * 1024 * 1024;
/// Most requests in flight.
pub const MAX_PARALLEL_REQUESTS: usize = 12;
/// Most requests per minute.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 6_000;
/// Duplicate eid: the event was already accepted.
pub const ERR_DUPLICATE: i64 = 20_056;
/// The user does not exist at Smartico.
pub const ERR_USER_NOT_FOUND: i64 = 10_001;
/// The label token is wrong.
pub const ERR_BAD_KEY: i64 = 10_000;

/// The event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Updates profile properties.
    UpdateProfile,
    /// A custom client action.
    ClientAction,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmarticoEvent {
    /// Event id; Smartico deduplicates on it, so a retried event is not applied twice.
    pub eid: String,
    /// When it happened, epoch milliseconds.
    pub event_date: i64,
    /// Brand id, when the label has several brands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_brand_id: Option<String>,
    /// The operator's user id.
    pub user_ext_id: String,
    /// The event type.
    pub event_type: EventType,
    /// Properties (see [`ProfileUpdate`]).
    pub payload: Map<String, Value>,
}

/// A stable event id from its parts (hex SHA-256, 32 chars): the same change always gets the
/// same eid, which makes re-sending a batch safe.
pub fn stable_eid(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// How an array property is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayOp {
    /// Replaces the whole array (`prop`).
    Replace,
    /// Adds items (`+prop`).
    Add,
    /// Removes items (`-prop`).
    Remove,
    /// Removes items matching globs such as `RISK_*` (`^prop`).
    RemoveGlob,
}

/// Builder of an `update_profile` payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    payload: Map<String, Value>,
}

impl ProfileUpdate {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes an array property (`core_external_segment`...).
    pub fn array<I, S>(mut self, property: &str, op: ArrayOp, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let key = match op {
            ArrayOp::Replace => property.to_owned(),
            ArrayOp::Add => format!("+{property}"),
            ArrayOp::Remove => format!("-{property}"),
            ArrayOp::RemoveGlob => format!("^{property}"),
        };
        self.payload.insert(
            key,
            Value::Array(
                values
                    .into_iter()
                    .map(|v| Value::String(v.into()))
                    .collect(),
            ),
        );
        self
    }

    /// Clears a property (`!prop: null`).
    pub fn clear(mut self, property: &str) -> Self {
        self.payload.insert(format!("!{property}"), Value::Null);
        self
    }

    /// Sets a scalar property.
    pub fn set(mut self, property: &str, value: impl Into<Value>) -> Self {
        self.payload.insert(property.to_owned(), value.into());
        self
    }

    /// Updates state without triggering journeys/automations.
    pub fn skip_cjm(mut self, skip: bool) -> Self {
        if skip {
            self.payload.insert("skip_cjm".into(), Value::Bool(true));
        } else {
            self.payload.remove("skip_cjm");
        }
        self
    }

    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.payload.keys().all(|k| k == "skip_cjm")
    }

    /// The event for `user_ext_id`.
    pub fn into_event(
        self,
        eid: String,
        user_ext_id: impl Into<String>,
        event_date_ms: i64,
    ) -> SmarticoEvent {
        SmarticoEvent {
            eid,
            event_date: event_date_ms,
            ext_brand_id: None,
            user_ext_id: user_ext_id.into(),
            event_type: EventType::UpdateProfile,
            payload: self.payload,
        }
    }
}

/// Segment membership changes between two snapshots (user → set of segments), as
/// `update_profile` events that add (`+property`) the segments a user entered and remove
/// (`-property`) those they left. Users whose membership did not change get no event; users
/// absent from `current` lose all their segments. Eids derive from `snapshot_id`, the user and the
/// change, so re-running the same diff is deduplicated by Smartico.
pub fn diff_memberships(
    previous: &BTreeMap<String, BTreeSet<String>>,
    current: &BTreeMap<String, BTreeSet<String>>,
    property: &str,
    snapshot_id: &str,
    event_date_ms: i64,
    skip_cjm: bool,
) -> Vec<SmarticoEvent> {
    let empty = BTreeSet::new();
    let users: BTreeSet<&String> = previous.keys().chain(current.keys()).collect();
    users
        .into_iter()
        .filter_map(|user| {
            let old = previous.get(user).unwrap_or(&empty);
            let new = current.get(user).unwrap_or(&empty);
            let entered: Vec<&String> = new.difference(old).collect();
            let left: Vec<&String> = old.difference(new).collect();
            if entered.is_empty() && left.is_empty() {
                return None;
            }
            let mut update = ProfileUpdate::new().skip_cjm(skip_cjm);
            if !entered.is_empty() {
                update = update.array(property, ArrayOp::Add, entered.iter().map(|s| s.as_str()));
            }
            if !left.is_empty() {
                update = update.array(property, ArrayOp::Remove, left.iter().map(|s| s.as_str()));
            }
            let signature = format!(
                "+{}|-{}",
                entered
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                left.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            Some(update.into_event(
                stable_eid(&[snapshot_id, user, property, &signature]),
                user.as_str(),
                event_date_ms,
            ))
        })
        .collect()
}

/// [`diff_memberships`] for one segment per user (user → segment name, e.g. a cluster).
pub fn diff_segments(
    previous: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    property: &str,
    snapshot_id: &str,
    event_date_ms: i64,
    skip_cjm: bool,
) -> Vec<SmarticoEvent> {
    let sets = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(u, s)| (u.clone(), BTreeSet::from([s.clone()])))
            .collect()
    };
    diff_memberships(
        &sets(previous),
        &sets(current),
        property,
        snapshot_id,
        event_date_ms,
        skip_cjm,
    )
}

/// Removes repeated eids, keeping the first occurrence; returns how many were dropped.
pub fn dedupe(events: &mut Vec<SmarticoEvent>) -> usize {
    let before = events.len();
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.eid.clone()));
    before - events.len()
}

/// Splits events into request bodies within the count and size limits. An event larger than the
/// size limit on its own is returned in `oversized` instead.
pub fn batch(
    events: &[SmarticoEvent],
    max_events: usize,
    max_bytes: usize,
) -> (Vec<Vec<&SmarticoEvent>>, Vec<&SmarticoEvent>) {
    let mut batches = Vec::new();
    let mut oversized = Vec::new();
    let mut current: Vec<&SmarticoEvent> = Vec::new();
    let mut size = 2; // "[]"
    for event in events {
        let len = serde_json::to_vec(event).map_or(usize::MAX, |v| v.len());
        if len.saturating_add(2) > max_bytes {
            oversized.push(event);
            continue;
        }
        let added = len + usize::from(!current.is_empty()); // comma
        if !current.is_empty() && (current.len() >= max_events || size + added > max_bytes) {
            batches.push(std::mem::take(&mut current));
            size = 2;
        }
        size += len + usize::from(!current.is_empty());
        current.push(event);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    (batches, oversized)
}

/// Smartico settings. In JSON only `base_url` and `label_token` are required; limits default to
/// the documented maximums (and are clamped to them).
#[derive(Debug, Clone, Deserialize)]
pub struct SmarticoConfig {
    /// API base URL, `https://apis{N}.smartico.ai` (the path is appended).
    pub base_url: String,
    /// The label's API token (sent as `Authorization: <token>`).
    pub label_token: Secret,
    /// Brand id put on every event that has none.
    #[serde(default)]
    pub ext_brand_id: Option<String>,
    /// Request timeout (`timeout_secs` in JSON).
    #[serde(
        rename = "timeout_secs",
        default = "default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
    /// Events per request (≤ 4,000).
    #[serde(default = "default_max_events")]
    pub max_events_per_request: usize,
    /// Bytes per request (≤ 10 MB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes_per_request: usize,
    /// Requests in flight (≤ 12).
    #[serde(default = "default_max_parallel")]
    pub max_parallel_requests: usize,
    /// Requests per minute (≤ 6,000).
    #[serde(default = "default_max_per_minute")]
    pub max_requests_per_minute: u32,
    /// Retry policy for transient failures of a whole request.
    #[serde(default)]
    pub backoff: Backoff,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_events() -> usize {
    MAX_EVENTS_PER_REQUEST
}
fn default_max_bytes() -> usize {
    MAX_BYTES_PER_REQUEST
}
fn default_max_parallel() -> usize {
    MAX_PARALLEL_REQUESTS
}
fn default_max_per_minute() -> u32 {
    MAX_REQUESTS_PER_MINUTE
}

impl SmarticoConfig {
    /// Settings at the documented limits.
    pub fn new(base_url: impl Into<String>, label_token: impl Into<Secret>) -> Self {
        Self {
            base_url: base_url.into(),
            label_token: label_token.into(),
            ext_brand_id: None,
            timeout: default_timeout(),
            max_events_per_request: MAX_EVENTS_PER_REQUEST,
            max_bytes_per_request: MAX_BYTES_PER_REQUEST,
            max_parallel_requests: MAX_PARALLEL_REQUESTS,
            max_requests_per_minute: MAX_REQUESTS_PER_MINUTE,
            backoff: Backoff::default(),
        }
    }
}

/// One event Smartico did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFailure {
    /// The event id.
    pub eid: String,
    /// The user.
    pub user_ext_id: String,
    /// Smartico's error code, or a local one (`transient`, `oversized`, `http_401`...).
    pub code: String,
    /// The message.
    pub message: String,
}

/// The outcome of a push, event by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Events accepted (duplicates included).
    pub accepted: usize,
    /// Of those, events Smartico already had (20056).
    pub duplicates: usize,
    /// Events dropped locally because their eid repeated in the input.
    pub deduplicated: usize,
    /// Events rejected, with why.
    pub failed: Vec<EventFailure>,
    /// HTTP requests made (retries included).
    pub requests: usize,
}

impl SyncReport {
    /// Failed events whose user is unknown to Smartico.
    pub fn users_not_found(&self) -> impl Iterator<Item = &str> {
        self.failed
            .iter()
            .filter(|f| f.code == ERR_USER_NOT_FOUND.to_string())
            .map(|f| f.user_ext_id.as_str())
    }
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    #[serde(default)]
    err_code: i64,
    #[serde(default)]
    err_message: Option<String>,
    #[serde(default)]
    event_errors: BTreeMap<String, Vec<ApiEventError>>,
}

#[derive(Debug, Deserialize)]
struct ApiEventError {
    error_code: i64,
    #[serde(default)]
    error_message: Option<String>,
}

/// Spaces request starts so no more than `per_minute` begin in any minute.
#[derive(Debug)]
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / per_minute.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The Smartico client.
#[derive(Debug, Clone)]
pub struct SmarticoClient {
    config: Arc<SmarticoConfig>,
    client: reqwest::Client,
    limiter: Arc<RateLimiter>,
    permits: Arc<Semaphore>,
}

/// What one batch came to.
struct BatchOutcome {
    accepted: usize,
    duplicates: usize,
    failed: Vec<EventFailure>,
}

impl SmarticoClient {
    /// A client with its own HTTP client, rate limiter and parallelism cap.
    pub fn new(config: SmarticoConfig) -> Self {
        let client = http::client(config.timeout);
        let limiter = Arc::new(RateLimiter::new(
            config.max_requests_per_minute.min(MAX_REQUESTS_PER_MINUTE),
        ));
        let permits = Arc::new(Semaphore::new(
            config.max_parallel_requests.clamp(1, MAX_PARALLEL_REQUESTS),
        ));
        Self {
            config: Arc::new(config),
            client,
            limiter,
            permits,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/api/external/events/v2",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// Pushes events: dedupes by eid, batches within the limits, sends batches in parallel
    /// (capped), retries transient failures with backoff, and reconciles per-event errors.
    pub async fn push(&self, mut events: Vec<SmarticoEvent>) -> SyncReport {
        let mut report = SyncReport {
            deduplicated: dedupe(&mut events),
            ..Default::default()
        };
        if let Some(brand) = &self.config.ext_brand_id {
            for e in events.iter_mut().filter(|e| e.ext_brand_id.is_none()) {
                e.ext_brand_id = Some(brand.clone());
            }
        }
        let max_events = self
            .config
            .max_events_per_request
            .clamp(1, MAX_EVENTS_PER_REQUEST);
        let max_bytes = self
            .config
            .max_bytes_per_request
            .clamp(1, MAX_BYTES_PER_REQUEST);
        let (batches, oversized) = batch(&events, max_events, max_bytes);
        report
            .failed
            .extend(oversized.into_iter().map(|e| EventFailure {
                eid: e.eid.clone(),
                user_ext_id: e.user_ext_id.clone(),
                code: "oversized".into(),
                message: format!("event larger than {max_bytes} bytes"),
            }));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for batch in batches {
            let owned: Vec<SmarticoEvent> = batch.into_iter().cloned().collect();
            let this = self.clone();
            let requests = requests.clone();
            tasks.spawn(async move { this.send_batch(owned, &requests).await });
        }
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(BatchOutcome {
                    accepted,
                    duplicates,
                    failed,
                }) => {
                    report.accepted += accepted;
                    report.duplicates += duplicates;
                    report.failed.extend(failed);
                }
                Err(e) => tracing::error!(error = %e, "Smartico batch task failed"),
            }
        }
        report.requests = requests.load(std::sync::atomic::Ordering::Relaxed);
        report.failed.sort_by(|a, b| a.eid.cmp(&b.eid));
        report
    }

    async fn send_batch(
        &self,
        events: Vec<SmarticoEvent>,
        requests: &std::sync::atomic::AtomicUsize,
    ) -> BatchOutcome {
        let body = match serde_json::to_vec(&events) {
            Ok(body) => body,
            Err(e) => return fail_all(&events, "encode", &e.to_string()),
        };
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore is never closed");
                self.limiter.acquire().await;
                requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.post(body.clone()).await
            };
            match result {
                Ok(response) => return reconcile(&events, &response),
                Err(SendError::Transient {
                    retry_after,
                    reason,
                }) if self.config.backoff.allows(attempt) => {
                    let wait = self.config.backoff.delay(attempt, retry_after);
                    tracing::warn!(attempt, ?wait, %reason, events = events.len(), "Smartico batch failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(SendError::Transient { reason, .. }) => {
                    return fail_all(&events, "transient", &reason);
                }
                Err(SendError::Permanent { code, reason, .. }) => {
                    return fail_all(&events, &code, &reason);
                }
                Err(SendError::OutsideWindow) => {
                    return fail_all(&events, "unexpected", "outside window");
                }
            }
        }
    }

    /// One request with `events` (the configured brand added), no retry: what the campaign
    /// channel sends.
    async fn post_once(&self, events: &[&SmarticoEvent]) -> Result<ApiResponse, SendError> {
        let body = if let Some(brand) = &self.config.ext_brand_id {
            let branded: Vec<SmarticoEvent> = events
                .iter()
                .map(|e| {
                    let mut e = (*e).clone();
                    e.ext_brand_id.get_or_insert_with(|| brand.clone());
                    e
                })
                .collect();
            serde_json::to_vec(&branded)
        } else {
            serde_json::to_vec(events)
        }
        .map_err(|e| SendError::permanent("encode", e.to_string()))?;
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        self.limiter.acquire().await;
        self.post(body).await
    }

    async fn post(&self, body: Vec<u8>) -> Result<ApiResponse, SendError> {
        let response = self
            .client
            .post(self.url())
            .header("authorization", self.config.label_token.expose())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let parsed = serde_json::from_str::<ApiResponse>(&text);
        if let Ok(parsed) = &parsed
            && parsed.err_code == ERR_BAD_KEY
        {
            return Err(SendError::permanent(
                ERR_BAD_KEY.to_string(),
                parsed
                    .err_message
                    .clone()
                    .unwrap_or_else(|| "bad label token".into()),
            ));
        }
        if !status.is_success() {
            return Err(http::status_error(status, &headers, http::snippet(&text)));
        }
        match parsed {
            Ok(parsed) if parsed.err_code == 0 || !parsed.event_errors.is_empty() => Ok(parsed),
            Ok(parsed) => Err(SendError::permanent(
                parsed.err_code.to_string(),
                parsed
                    .err_message
                    .unwrap_or_else(|| format!("Smartico err_code {}", parsed.err_code)),
            )),
            Err(_) if status == StatusCode::OK && text.trim().is_empty() => Ok(ApiResponse {
                err_code: 0,
                err_message: None,
                event_errors: BTreeMap::new(),
            }),
            Err(e) => Err(SendError::transient(format!(
                "unreadable Smartico response: {e}"
            ))),
        }
    }
}

fn fail_all(events: &[SmarticoEvent], code: &str, message: &str) -> BatchOutcome {
    BatchOutcome {
        accepted: 0,
        duplicates: 0,
        failed: events
            .iter()
            .map(|e| EventFailure {
                eid: e.eid.clone(),
                user_ext_id: e.user_ext_id.clone(),
                code: code.to_owned(),
                message: message.to_owned(),
            })
            .collect(),
    }
}

fn reconcile(events: &[SmarticoEvent], response: &ApiResponse) -> BatchOutcome {
    let mut accepted = 0;
    let mut duplicates = 0;
    let mut failed = Vec::new();
    for event in events {
        match response.event_errors.get(&event.eid).map(Vec::as_slice) {
            None | Some([]) => accepted += 1,
            Some(errors) if errors.iter().all(|e| e.error_code == ERR_DUPLICATE) => {
                accepted += 1;
                duplicates += 1;
            }
            Some(errors) => {
                let e = errors
                    .iter()
                    .find(|e| e.error_code != ERR_DUPLICATE)
                    .unwrap_or(&errors[0]);
                failed.push(EventFailure {
                    eid: event.eid.clone(),
                    user_ext_id: event.user_ext_id.clone(),
                    code: e.error_code.to_string(),
                    message: e.error_message.clone().unwrap_or_default(),
                });
            }
        }
    }
    BatchOutcome {
        accepted,
        duplicates,
        failed,
    }
}

/// Smartico as a campaign channel: each message ([`Content::SmarticoEvent`] to
/// [`Recipient::External`]) becomes one event, so Smartico's own journeys act on it.
///
/// Sends are **coalesced**: one task per adapter keeps at most one request in flight and puts
/// every send that arrived meanwhile (up to the count and size limits) into the next request,
/// answering each send from its own entry in `event_errors`. Concurrent sends (a worker's
/// claimed batch) therefore travel together, while a lone send is not delayed. The eid derives
/// from the message's idempotency key, so a message sent again (a retry, a crash before its
/// outcome was recorded) is deduplicated by Smartico (20056, counted as sent).
///
/// Outcomes per event: accepted or 20056 → sent; 10001 (unknown user) and other event codes →
/// permanent; a request that fails as a whole (transport, 429, 5xx) → transient for each of its
/// events, with `Retry-After`; a bad token (10000) → permanent. No retry happens here: the
/// caller's queue retries with its own backoff.
pub struct SmarticoChannel {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

impl std::fmt::Debug for SmarticoChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmarticoChannel").finish_non_exhaustive()
    }
}

/// A send waiting for its request.
struct Pending {
    event: SmarticoEvent,
    size: usize,
    reply: tokio::sync::oneshot::Sender<Result<SendReceipt, SendError>>,
}

/// The eid of a campaign message: stable for its idempotency key.
pub fn message_eid(idempotency_key: &str) -> String {
    stable_eid(&["farol-message", idempotency_key])
}

impl SmarticoChannel {
    /// A channel sending through `config` (its retry policy is not used: see the type's docs).
    /// Spawns the coalescing task on the current Tokio runtime; it ends when the channel is
    /// dropped.
    pub fn new(config: SmarticoConfig) -> Self {
        let max_events = config
            .max_events_per_request
            .clamp(1, MAX_EVENTS_PER_REQUEST);
        let max_bytes = config.max_bytes_per_request.clamp(1, MAX_BYTES_PER_REQUEST);
        let client = SmarticoClient::new(config);
        let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_EVENTS_PER_REQUEST);
        tokio::spawn(coalesce(client, rx, max_events, max_bytes));
        Self { queue: tx }
    }
}

/// Takes sends from `rx` and posts them in groups, one request at a time.
async fn coalesce(
    client: SmarticoClient,
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
    max_events: usize,
    max_bytes: usize,
) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut size = 2 + first.size;
        let mut group = vec![first];
        while group.len() < max_events {
            match rx.try_recv() {
                Ok(p) if size + 1 + p.size > max_bytes => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    size += 1 + p.size;
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let events: Vec<&SmarticoEvent> = group.iter().map(|p| &p.event).collect();
        let answer = client.post_once(&events).await;
        for p in group {
            let result = match &answer {
                Err(e) => Err(e.clone()),
                Ok(response) => event_result(&p.event, response),
            };
            // The sender may have given up waiting; nothing to tell then.
            let _ = p.reply.send(result);
        }
    }
}

/// One event's outcome in a request's answer.
fn event_result(event: &SmarticoEvent, response: &ApiResponse) -> Result<SendReceipt, SendError> {
    let receipt = |status: &str| SendReceipt {
        provider_message_id: event.eid.clone(),
        provider: "smartico".into(),
        status: Some(status.into()),
    };
    match response.event_errors.get(&event.eid).map(Vec::as_slice) {
        None | Some([]) => Ok(receipt("accepted")),
        Some(errors) if errors.iter().all(|e| e.error_code == ERR_DUPLICATE) => {
            Ok(receipt("duplicate"))
        }
        Some(errors) => {
            let e = errors
                .iter()
                .find(|e| e.error_code != ERR_DUPLICATE)
                .unwrap_or(&errors[0]);
            let message = e.error_message.clone().unwrap_or_default();
            Err(if e.error_code == ERR_USER_NOT_FOUND {
                SendError::permanent(
                    e.error_code.to_string(),
                    format!(
                        "user_not_found: Smartico has no user `{}` ({message})",
                        event.user_ext_id
                    ),
                )
            } else {
                SendError::permanent(e.error_code.to_string(), message)
            })
        }
    }
}

impl crate::channel::Channel for SmarticoChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Smartico
    }

    fn provider(&self) -> &'static str {
        "smartico"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let Content::SmarticoEvent {
                event_type,
                payload,
            } = &msg.content
            else {
                return Err(SendError::unsupported_content(ChannelKind::Smartico));
            };
            let Recipient::External { user_ext_id } = &msg.to else {
                return Err(SendError::permanent(
                    "unsupported_recipient",
                    "a Smartico event goes to a user_ext_id",
                ));
            };
            let event = SmarticoEvent {
                eid: message_eid(&msg.idempotency_key),
                event_date: jiff::Timestamp::now().as_millisecond(),
                ext_brand_id: None,
                user_ext_id: user_ext_id.clone(),
                event_type: *event_type,
                payload: payload.clone(),
            };
            let size = serde_json::to_vec(&event).map_or(usize::MAX, |v| v.len());
            if size.saturating_add(2) > MAX_BYTES_PER_REQUEST {
                return Err(SendError::permanent(
                    "oversized",
                    format!("event larger than {MAX_BYTES_PER_REQUEST} bytes"),
                ));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.queue
                .send(Pending {
                    event,
                    size,
                    reply: tx,
                })
                .await
                .map_err(|_| SendError::transient("the Smartico sender stopped"))?;
            rx.await
                .unwrap_or_else(|_| Err(SendError::transient("the Smartico sender stopped")))
        })
    }
}

/// Writes the CSV Smartico imports as an "imported segment": a `user_ext_id` column followed by
/// the given columns, one row per user.
pub struct ImportedSegmentCsv<W: Write> {
    writer: csv::Writer<W>,
    columns: usize,
}

impl<W: Write> ImportedSegmentCsv<W> {
    /// Starts the file and writes the header (`user_ext_id`, then `columns`).
    pub fn new(writer: W, columns: &[&str]) -> csv::Result<Self> {
        let mut writer = csv::Writer::from_writer(writer);
        writer.write_record(std::iter::once("user_ext_id").chain(columns.iter().copied()))?;
        Ok(Self {
            writer,
            columns: columns.len(),
        })
    }

    /// Writes one user's row; `values` must have one value per column.
    pub fn write_row(&mut self, user_ext_id: &str, values: &[&str]) -> csv::Result<()> {
        if values.len() != self.columns {
            return Err(csv::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("expected {} values, got {}", self.columns, values.len()),
            )));
        }
        self.writer
            .write_record(std::iter::once(user_ext_id).chain(values.iter().copied()))
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> csv::Result<W> {
        self.writer
            .into_inner()
            .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
    }
}

/// A `client_action` event (`payload` is free-form, e.g. `{"action": "crm_cluster_changed"}`).
pub fn client_action(
    eid: String,
    user_ext_id: impl Into<String>,
    event_date_ms: i64,
    payload: Value,
) -> SmarticoEvent {
    SmarticoEvent {
        eid,
        event_date: event_date_ms,
        ext_brand_id: None,
        user_ext_id: user_ext_id.into(),
        event_type: EventType::ClientAction,
        payload: match payload {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(eid: &str, user: &str, payload_bytes: usize) -> SmarticoEvent {
        ProfileUpdate::new()
            .set("note", "x".repeat(payload_bytes))
            .into_event(eid.into(), user, 1_700_000_000_000)
    }

    #[test]
    fn profile_update_uses_the_array_operators() {
        let e = ProfileUpdate::new()
            .array("core_external_segment", ArrayOp::Replace, ["A"])
            .array("core_external_segment", ArrayOp::Add, ["B"])
            .array("core_external_markers", ArrayOp::Remove, ["C"])
            .array("core_external_markers", ArrayOp::RemoveGlob, ["RISK_*"])
            .clear("core_old")
            .skip_cjm(true)
            .into_event("e1".into(), "u1", 5);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"eid": "e1", "event_date": 5, "user_ext_id": "u1", "event_type": "update_profile", "payload": {
                "core_external_segment": ["A"], "+core_external_segment": ["B"], "-core_external_markers": ["C"],
                "^core_external_markers": ["RISK_*"], "!core_old": null, "skip_cjm": true}})
        );
    }

    #[test]
    fn diff_emits_events_only_for_users_who_entered_or_left() {
        let prev = BTreeMap::from([
            ("u1".to_owned(), "VIP".to_owned()),
            ("u2".to_owned(), "CASUAL".to_owned()),
            ("u3".to_owned(), "VIP".to_owned()),
        ]);
        let cur = BTreeMap::from([
            ("u1".to_owned(), "VIP".to_owned()),
            ("u2".to_owned(), "VIP".to_owned()),
            ("u4".to_owned(), "NOVO".to_owned()),
        ]);
        let events = diff_segments(&prev, &cur, "core_external_segment", "snap-2", 10, true);
        let by_user: BTreeMap<_, _> = events
            .iter()
            .map(|e| (e.user_ext_id.as_str(), Value::Object(e.payload.clone())))
            .collect();
        assert_eq!(by_user.len(), 3, "u1 did not change");
        assert_eq!(
            by_user["u2"],
            json!({"+core_external_segment": ["VIP"], "-core_external_segment": ["CASUAL"], "skip_cjm": true})
        );
        assert_eq!(
            by_user["u3"],
            json!({"-core_external_segment": ["VIP"], "skip_cjm": true})
        );
        assert_eq!(
            by_user["u4"],
            json!({"+core_external_segment": ["NOVO"], "skip_cjm": true})
        );
        // Same diff, same eids: a re-run is deduplicated by Smartico.
        let again = diff_segments(&prev, &cur, "core_external_segment", "snap-2", 99, true);
        assert_eq!(
            events.iter().map(|e| &e.eid).collect::<Vec<_>>(),
            again.iter().map(|e| &e.eid).collect::<Vec<_>>()
        );
        let other = diff_segments(&prev, &cur, "core_external_segment", "snap-3", 10, true);
        assert_ne!(events[0].eid, other[0].eid);
        assert!(diff_segments(&cur, &cur, "p", "s", 0, false).is_empty());
    }

    #[test]
    fn dedupe_keeps_the_first_event_per_eid() {
        let mut events = vec![
            event("a", "u1", 1),
            event("b", "u2", 1),
            event("a", "u3", 1),
        ];
        assert_eq!(dedupe(&mut events), 1);
        assert_eq!(
            events
                .iter()
                .map(|e| e.user_ext_id.as_str())
                .collect::<Vec<_>>(),
            vec!["u1", "u2"]
        );
    }

    #[test]
    fn batches_respect_count_and_size_limits() {
        let events: Vec<_> = (0..10).map(|i| event(&format!("e{i}"), "u", 100)).collect();
        let (batches, oversized) = batch(&events, 4, usize::MAX);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert!(oversized.is_empty());

        let one = serde_json::to_vec(&events[0]).unwrap().len();
        let limit = 2 + one * 3 + 2; // three events and their commas fit, four do not
        let (batches, _) = batch(&events, 100, limit);
        assert!(
            batches
                .iter()
                .all(|b| serde_json::to_vec(b).unwrap().len() <= limit)
        );
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );

        let mut with_big = events.clone();
        with_big.push(event("big", "u", 10_000));
        let (batches, oversized) = batch(&with_big, 100, 5_000);
        assert_eq!(oversized.len(), 1);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 10);
    }

    #[test]
    fn reconcile_counts_duplicates_as_accepted_and_reports_the_rest() {
        let events = vec![
            event("a", "u1", 1),
            event("b", "u2", 1),
            event("c", "u3", 1),
        ];
        let response: ApiResponse = serde_json::from_value(json!({"err_code": 0, "event_errors": {
            "b": [{"error_code": 20056, "error_message": "duplicate"}],
            "c": [{"error_code": 10001, "error_message": "user not found"}]
        }}))
        .unwrap();
        let BatchOutcome {
            accepted,
            duplicates,
            failed,
        } = reconcile(&events, &response);
        assert_eq!((accepted, duplicates), (2, 1));
        assert_eq!(
            failed,
            vec![EventFailure {
                eid: "c".into(),
                user_ext_id: "u3".into(),
                code: "10001".into(),
                message: "user not found".into()
            }]
        );
    }

    #[test]
    fn campaign_events_map_to_per_recipient_outcomes() {
        let events = [
            event("a", "u1", 1),
            event("b", "u2", 1),
            event("c", "u3", 1),
            event("d", "u4", 1),
        ];
        let response: ApiResponse = serde_json::from_value(json!({"err_code": 0, "event_errors": {
            "b": [{"error_code": 20056, "error_message": "duplicate"}],
            "c": [{"error_code": 10001, "error_message": "User not found"}],
            "d": [{"error_code": 12345, "error_message": "odd"}]
        }}))
        .unwrap();
        let a = event_result(&events[0], &response).unwrap();
        assert_eq!(
            (a.provider_message_id.as_str(), a.status.as_deref()),
            ("a", Some("accepted"))
        );
        let b = event_result(&events[1], &response).unwrap();
        assert_eq!(b.status.as_deref(), Some("duplicate"));
        match event_result(&events[2], &response).unwrap_err() {
            SendError::Permanent {
                code,
                reason,
                contact_invalid,
            } => {
                assert_eq!(code, "10001");
                assert!(
                    reason.contains("user_not_found") && reason.contains("u3"),
                    "{reason}"
                );
                assert!(!contact_invalid);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            event_result(&events[3], &response).unwrap_err().code(),
            "12345"
        );
        // The eid of a message is stable for its idempotency key and differs between keys.
        assert_eq!(
            message_eid("campaign:1:client:2"),
            message_eid("campaign:1:client:2")
        );
        assert_ne!(
            message_eid("campaign:1:client:2"),
            message_eid("campaign:1:client:3")
        );
    }

    #[test]
    fn imported_segment_csv_has_a_header_and_quotes_values() {
        let mut csv = ImportedSegmentCsv::new(Vec::new(), &["segment"]).unwrap();
        csv.write_row("u1", &["VIP"]).unwrap();
        csv.write_row("u,2", &["Alto \"valor\""]).unwrap();
        assert!(csv.write_row("u3", &[]).is_err());
        let out = String::from_utf8(csv.finish().unwrap()).unwrap();
        assert_eq!(
            out,
            "user_ext_id,segment\nu1,VIP\n\"u,2\",\"Alto \"\"valor\"\"\"\n"
        );
    }
}
