//! The `campaigns` and `campaign_recipients` tables: small focused queries. Each recipient row
//! is the durable job of one send; workers claim due rows with a lease.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::db::bulk::json_objects;
use crate::db::{Backend, Db, DbResult, Tx, now_ms};

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being prepared; can be edited and launched.
    Draft,
    /// Launched for a later time; recipients are already fixed.
    Scheduled,
    /// Workers are sending.
    Running,
    /// Stopped for now; resume continues where it stopped.
    Paused,
    /// Every recipient was handled.
    Completed,
    /// Stopped for good; recipients not yet sent were skipped.
    Cancelled,
}

impl Status {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Status {
        match s {
            "draft" => Status::Draft,
            "scheduled" => Status::Scheduled,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "completed" => Status::Completed,
            _ => Status::Cancelled,
        }
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// Name.
    pub name: String,
    /// Channel name.
    pub channel: String,
    /// Template.
    pub template_id: i64,
    /// Audience (`None`: every client).
    pub audience_id: Option<i64>,
    /// Status name.
    pub status: String,
    /// Messages per second (`None`: unthrottled).
    pub throttle_per_sec: Option<f64>,
    /// When a scheduled campaign starts (epoch ms).
    pub scheduled_at: Option<i64>,
    /// Launch (epoch ms).
    pub launched_at: Option<i64>,
    /// Completion (epoch ms).
    pub completed_at: Option<i64>,
    /// Creator.
    pub created_by: Option<i64>,
    /// Creation (epoch ms).
    pub created_at: i64,
    /// Last change (epoch ms).
    pub updated_at: i64,
    /// Frequency cap override (`None`: the account's; 0: off).
    pub frequency_cap: Option<i64>,
    /// Recurring campaigns: cron expression.
    pub cron: Option<String>,
    /// Recurring campaigns: time zone of the cron.
    pub cron_time_zone: Option<String>,
    /// Recurring campaigns: next occurrence (epoch ms).
    pub next_run_at: Option<i64>,
    /// Recurring campaigns: skip clients sent by the previous occurrence (0/1).
    pub skip_previous: i64,
    /// Occurrences: the recurring campaign.
    pub parent_id: Option<i64>,
    /// Channel account (`None`: the default of the channel).
    pub channel_account_id: Option<i64>,
    /// `auto`: JSON {channel: template id}.
    pub channel_templates: Option<String>,
}

impl CampaignRow {
    /// The status.
    pub fn status(&self) -> Status {
        Status::parse(&self.status)
    }
}

const COLUMNS: &str = "id, account_id, name, channel, template_id, audience_id, status, throttle_per_sec, \
    scheduled_at, launched_at, completed_at, created_by, created_at, updated_at, frequency_cap, cron, \
    cron_time_zone, next_run_at, skip_previous, parent_id, channel_account_id, channel_templates";

/// One campaign of an account.
pub async fn get(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<CampaignRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from campaigns where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// One campaign, whatever its account (workers).
pub async fn get_any(conn: &mut AnyConnection, id: i64) -> DbResult<CampaignRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from campaigns where id = $1"
    )))
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Campaigns of an account, newest first, before `before` (an id) when given.
pub async fn list(
    conn: &mut AnyConnection,
    account_id: i64,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<CampaignRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from campaigns where account_id = $1 and id < $2 order by id desc limit $3"
    )))
    .bind(account_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The columns of a new campaign.
#[derive(Debug, Clone, Serialize)]
pub struct NewCampaign {
    /// Name.
    pub name: String,
    /// Channel name.
    pub channel: String,
    /// Template.
    pub template_id: i64,
    /// Audience.
    pub audience_id: Option<i64>,
    /// Messages per second.
    pub throttle_per_sec: Option<f64>,
    /// Frequency cap override.
    pub frequency_cap: Option<i64>,
    /// Cron of a recurring campaign.
    pub cron: Option<String>,
    /// Its time zone.
    pub cron_time_zone: Option<String>,
    /// Skip clients sent by the previous occurrence.
    pub skip_previous: bool,
    /// Channel account.
    pub channel_account_id: Option<i64>,
    /// `auto`: JSON {channel: template id}.
    pub channel_templates: Option<String>,
}

/// The throttle as a bind parameter: text, cast in SQL. sqlx 0.9's `Any` driver binds a NULL
/// `f64` as a PostgreSQL `float4`; the statement is cached with that parameter type, and the
/// next execution on the connection binding a real `f64` (8 bytes) then fails with
/// "incorrect binary data format". A text parameter has one type whether NULL or not.
fn throttle_param(rate: Option<f64>) -> Option<String> {
    rate.map(|r| r.to_string())
}

/// Inserts a draft campaign.
pub async fn insert(
    conn: &mut AnyConnection,
    account_id: i64,
    created_by: Option<i64>,
    c: &NewCampaign,
) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "insert into campaigns (account_id, name, channel, template_id, audience_id, status, throttle_per_sec, created_by, created_at, updated_at, \
         frequency_cap, cron, cron_time_zone, skip_previous, channel_account_id, channel_templates) \
         values ($1, $2, $3, $4, $5, 'draft', cast($6 as double precision), $7, $8, $8, $9, $10, $11, $12, $13, $14) returning id",
    )
    .bind(account_id)
    .bind(c.name.clone())
    .bind(c.channel.clone())
    .bind(c.template_id)
    .bind(c.audience_id)
    .bind(throttle_param(c.throttle_per_sec))
    .bind(created_by)
    .bind(now_ms())
    .bind(c.frequency_cap)
    .bind(c.cron.clone())
    .bind(c.cron_time_zone.clone())
    .bind(c.skip_previous as i64)
    .bind(c.channel_account_id)
    .bind(c.channel_templates.clone())
    .fetch_one(conn)
    .await?)
}

/// Rewrites the editable columns.
pub async fn update(conn: &mut AnyConnection, id: i64, c: &NewCampaign) -> DbResult<()> {
    sqlx::query(
        "update campaigns set name = $1, template_id = $2, audience_id = $3, throttle_per_sec = cast($4 as double precision), updated_at = $5, \
         frequency_cap = $6, cron = $7, cron_time_zone = $8, skip_previous = $9, channel_account_id = $11, \
         channel_templates = $12 where id = $10",
    )
    .bind(c.name.clone())
    .bind(c.template_id)
    .bind(c.audience_id)
    .bind(throttle_param(c.throttle_per_sec))
    .bind(now_ms())
    .bind(c.frequency_cap)
    .bind(c.cron.clone())
    .bind(c.cron_time_zone.clone())
    .bind(c.skip_previous as i64)
    .bind(id)
    .bind(c.channel_account_id)
    .bind(c.channel_templates.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a campaign from one of `from` to `to`; false when it was in none of them.
pub async fn transition(
    conn: &mut AnyConnection,
    id: i64,
    from: &[Status],
    to: Status,
) -> DbResult<bool> {
    let from: Vec<String> = from.iter().map(|s| s.as_str().to_owned()).collect();
    let mut q = crate::db::SqlBuilder::new("update campaigns set status = ");
    q.bind(to.as_str().to_owned())
        .push(", updated_at = ")
        .bind(now_ms());
    if to == Status::Completed || to == Status::Cancelled {
        q.push(", completed_at = ").bind(now_ms());
    }
    q.push(" where id = ")
        .bind(id)
        .push(" and status in ")
        .bind_list(from);
    Ok(q.query().execute(conn).await?.rows_affected() == 1)
}

/// Marks a campaign launched: running now, or scheduled for `at`.
pub async fn mark_launched(tx: &mut Tx, id: i64, scheduled_at: Option<i64>) -> DbResult<()> {
    let now = now_ms();
    let status = match scheduled_at {
        Some(at) if at > now => Status::Scheduled,
        _ => Status::Running,
    };
    sqlx::query(
        "update campaigns set status = $1, scheduled_at = $2, launched_at = $3, updated_at = $3 where id = $4",
    )
    .bind(status.as_str())
    .bind(scheduled_at)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts scheduled campaigns whose time has come.
pub async fn start_due(db: &Db) -> DbResult<u64> {
    let now = now_ms();
    // Read first: idle workers poll this, and on SQLite even an UPDATE matching nothing takes
    // the write lock.
    let due: Option<i64> = sqlx::query_scalar(
        "select id from campaigns where status = 'scheduled' and scheduled_at <= $1 limit 1",
    )
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if due.is_none() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "update campaigns set status = 'running', updated_at = $1 where status = 'scheduled' and scheduled_at <= $1",
    )
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// A running campaign, as a worker needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Runnable {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// Template.
    pub template_id: i64,
    /// Channel name.
    pub channel: String,
    /// Messages per second.
    pub throttle_per_sec: Option<f64>,
    /// `auto`: JSON {channel: template id}.
    pub channel_templates: Option<String>,
}

/// Running campaigns, oldest first.
pub async fn running(db: &Db) -> DbResult<Vec<Runnable>> {
    Ok(sqlx::query_as(
        "select id, account_id, template_id, channel, throttle_per_sec, channel_templates from campaigns where status = 'running' order by id",
    )
    .fetch_all(db.pool())
    .await?)
}

/// A campaign if it is running.
pub async fn runnable(db: &Db, id: i64) -> DbResult<Option<Runnable>> {
    Ok(sqlx::query_as(
        "select id, account_id, template_id, channel, throttle_per_sec, channel_templates from campaigns where id = $1 and status = 'running'",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?)
}

/// Completes a running campaign with no recipient left to send; true when it did.
pub async fn complete_if_done(db: &Db, id: i64) -> DbResult<bool> {
    let now = now_ms();
    Ok(sqlx::query(
        "update campaigns set status = 'completed', completed_at = $1, updated_at = $1 \
         where id = $2 and status = 'running' and not exists \
         (select 1 from campaign_recipients r where r.campaign_id = $2 and r.status in ('queued', 'sending'))",
    )
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?
    .rows_affected()
        == 1)
}

/// Skips every recipient not yet sent (cancel).
pub async fn skip_unsent(
    conn: &mut AnyConnection,
    campaign_id: i64,
    reason: &str,
) -> DbResult<u64> {
    Ok(sqlx::query(
        "update campaign_recipients set status = 'skipped', error = $1, lease_owner = null, lease_until = null, updated_at = $2 \
         where campaign_id = $3 and status = 'queued'",
    )
    .bind(reason.to_owned())
    .bind(now_ms())
    .bind(campaign_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A claimed recipient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// Id.
    pub id: i64,
    /// Client.
    pub client_id: i64,
    /// Address resolved at launch.
    pub address: Option<String>,
    /// Attempts including this one.
    pub attempts: i64,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Unsubscribe token.
    pub unsubscribe_token: String,
    /// Channel resolved at launch.
    pub channel: String,
    /// Channel account resolved at launch (`None`: the configured SMTP).
    pub channel_account_id: Option<i64>,
}

/// Claims up to `limit` due recipients of a campaign for `owner` until `now + lease_ms`:
/// queued ones whose time has come, and `sending` ones whose lease expired (their worker
/// died mid-send: they are sent again, see docs/campaigns.md). PostgreSQL skips rows other
/// workers are claiming; SQLite serializes claims with `BEGIN IMMEDIATE`.
pub async fn claim(
    db: &Db,
    campaign_id: i64,
    owner: &str,
    limit: i64,
    lease_ms: i64,
) -> DbResult<Vec<Claimed>> {
    let now = now_ms();
    let lock = match db.backend() {
        Backend::Postgres => " for update skip locked",
        Backend::Sqlite => "",
    };
    let mut tx = db.begin().await?;
    // Two index-friendly picks rather than one `or`: expired leases first (rare: a worker
    // died), then queued rows whose time has come, in (next_attempt_at, id) order.
    let picks = [
        "status = 'sending' and lease_until < $3 order by id",
        "status = 'queued' and next_attempt_at <= $3 order by next_attempt_at, id",
    ];
    let mut rows: Vec<Claimed> = Vec::new();
    for pick in picks {
        let want = limit - rows.len() as i64;
        if want <= 0 {
            break;
        }
        let mut got: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update campaign_recipients set status = 'sending', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 \
             where id in (select id from campaign_recipients where campaign_id = $4 and {pick} \
             limit $5{lock}) \
             returning id, client_id, address, attempts, idempotency_key, unsubscribe_token, channel, channel_account_id"
        )))
        .bind(owner.to_owned())
        .bind(now + lease_ms)
        .bind(now)
        .bind(campaign_id)
        .bind(want)
        .fetch_all(&mut *tx)
        .await?;
        rows.append(&mut got);
    }
    tx.commit().await?;
    Ok(rows)
}

/// Claims, among `ids` of a campaign, the recipients that are due (as [`claim`] would take
/// them: queued and due, or `sending` with an expired lease) for `owner` until
/// `now + lease_ms`. Rows already sent, failed, skipped, not yet due, or held by a live lease
/// are left alone (the RabbitMQ consumer's check that a message is still wanted).
pub async fn claim_ids(
    db: &Db,
    campaign_id: i64,
    ids: &[i64],
    owner: &str,
    lease_ms: i64,
) -> DbResult<Vec<Claimed>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut tx = db.begin().await?;
    let mut q = crate::db::SqlBuilder::new(
        "update campaign_recipients set status = 'sending', lease_owner = ",
    );
    q.bind(owner.to_owned())
        .push(", lease_until = ")
        .bind(now + lease_ms)
        .push(", attempts = attempts + 1, updated_at = ")
        .bind(now)
        .push(" where campaign_id = ")
        .bind(campaign_id)
        .push(" and id in ")
        .bind_list(ids.iter().copied())
        .push(" and ((status = 'queued' and next_attempt_at <= ")
        .bind(now)
        .push(") or (status = 'sending' and lease_until < ")
        .bind(now)
        .push(")) returning id, client_id, address, attempts, idempotency_key, unsubscribe_token, channel, channel_account_id");
    let rows: Vec<Claimed> = q.query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Due recipients of a campaign not published to the broker since they became due — queued
/// ones not yet published, `sending` ones whose lease expired since (their worker died) — or
/// published more than `republish_ms` ago and still due (a lost message), at most `limit`,
/// oldest first; marks them published now. The caller publishes them.
pub async fn take_dispatchable(
    db: &Db,
    campaign_id: i64,
    limit: i64,
    republish_ms: i64,
) -> DbResult<Vec<i64>> {
    let now = now_ms();
    let lock = match db.backend() {
        Backend::Postgres => " for update skip locked",
        Backend::Sqlite => "",
    };
    let mut tx = db.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "update campaign_recipients set dispatched_at = $1 where id in (\
           select id from campaign_recipients where campaign_id = $2 and (\
             (status = 'queued' and next_attempt_at <= $1 and (dispatched_at is null or dispatched_at < $3)) \
             or (status = 'sending' and lease_until < $1 and (dispatched_at is null or dispatched_at < lease_until or dispatched_at < $3))) \
           order by id limit $4{lock}) returning id"
    )))
    .bind(now)
    .bind(campaign_id)
    .bind(now - republish_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// Forgets that `ids` were published (the consumer could not take them now: the campaign is
/// paused or outside business hours), so they are published again once they can be sent.
pub async fn undispatch(db: &Db, ids: &[i64]) -> DbResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut q = crate::db::SqlBuilder::new(
        "update campaign_recipients set dispatched_at = null where status = 'queued' and id in ",
    );
    q.bind_list(ids.iter().copied());
    q.query().execute(db.pool()).await?;
    Ok(())
}

/// Puts a claimed recipient back in the queue untouched (graceful stop, or the campaign was
/// paused before its send); skipped instead when the campaign was cancelled meanwhile.
pub async fn release(db: &Db, id: i64, owner: &str) -> DbResult<()> {
    sqlx::query(
        "update campaign_recipients set \
           status = case when (select status from campaigns c where c.id = campaign_id) = 'cancelled' \
             then 'skipped' else 'queued' end, \
           error = case when (select status from campaigns c where c.id = campaign_id) = 'cancelled' \
             then 'cancelled' else error end, \
           lease_owner = null, lease_until = null, attempts = attempts - 1, dispatched_at = null \
         where id = $1 and lease_owner = $2 and status = 'sending'",
    )
    .bind(id)
    .bind(owner.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Puts a claimed recipient back in the queue until `at` without counting the attempt (the
/// channel's circuit breaker is open).
pub async fn defer(db: &Db, id: i64, owner: &str, at: i64) -> DbResult<()> {
    sqlx::query(
        "update campaign_recipients set status = 'queued', next_attempt_at = $1, lease_owner = null, \
         lease_until = null, attempts = attempts - 1, dispatched_at = null where id = $2 and lease_owner = $3 and status = 'sending'",
    )
    .bind(at)
    .bind(id)
    .bind(owner.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Moves a claimed recipient of an `auto` campaign to another channel and puts it back in the
/// queue, due now (the attempt is not counted); `error` says why it left its channel.
pub async fn reassign(
    db: &Db,
    id: i64,
    owner: &str,
    channel: &str,
    channel_account_id: Option<i64>,
    address: &str,
    error: &str,
) -> DbResult<()> {
    let now = now_ms();
    sqlx::query(
        "update campaign_recipients set channel = $1, channel_account_id = $2, address = $3, error = $4, \
         status = 'queued', next_attempt_at = $5, lease_owner = null, lease_until = null, \
         attempts = attempts - 1, updated_at = $5 where id = $6 and lease_owner = $7 and status = 'sending'",
    )
    .bind(channel.to_owned())
    .bind(channel_account_id)
    .bind(address.to_owned())
    .bind(error.to_owned())
    .bind(now)
    .bind(id)
    .bind(owner.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted by the provider.
    Sent {
        /// Provider's message id.
        provider_message_id: String,
    },
    /// Will be tried again at `at` (epoch ms).
    Retry {
        /// Next attempt.
        at: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
    /// Not sent, on purpose (opt-out, invalid contact...).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// The recipient columns an outcome sets: status, next attempt, provider message id, error,
/// sent at.
type OutcomeColumns = (
    &'static str,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn outcome_columns(outcome: &Outcome, now: i64) -> OutcomeColumns {
    match outcome {
        Outcome::Sent {
            provider_message_id,
        } => (
            "sent",
            None,
            Some(provider_message_id.clone()),
            None,
            Some(now),
        ),
        Outcome::Retry { at, error } => ("queued", Some(*at), None, Some(error.clone()), None),
        Outcome::Failed { error } => ("failed", None, None, Some(error.clone()), None),
        Outcome::Skipped { reason } => ("skipped", None, None, Some(reason.clone()), None),
    }
}

/// Records the outcomes of many attempts — (recipient, lease owner, outcome), recipients
/// distinct — with one statement, each only if its owner still holds the lease; returns the
/// recipients whose outcome was written (the others lost their lease).
pub async fn record_many(
    tx: &mut Tx,
    backend: Backend,
    outcomes: &[(i64, &str, &Outcome)],
) -> DbResult<HashSet<i64>> {
    if outcomes.is_empty() {
        return Ok(HashSet::new());
    }
    let now = now_ms();
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|(id, owner, outcome)| {
            let (status, next, pmid, error, sent_at) = outcome_columns(outcome, now);
            serde_json::json!({
                "id": id, "o": owner, "s": status, "n": next, "p": pmid, "e": error, "t": sent_at,
            })
        })
        .collect();
    let sql = format!(
        "update campaign_recipients set status = v.status, \
         next_attempt_at = coalesce(v.next_at, campaign_recipients.next_attempt_at), \
         provider_message_id = coalesce(v.pmid, campaign_recipients.provider_message_id), \
         error = v.error, sent_at = v.sent_at, lease_owner = null, lease_until = null, \
         dispatched_at = null, updated_at = $2 \
         from (select cast(j.value ->> 'id' as bigint) as id, j.value ->> 'o' as owner, \
           j.value ->> 's' as status, cast(j.value ->> 'n' as bigint) as next_at, \
           j.value ->> 'p' as pmid, j.value ->> 'e' as error, cast(j.value ->> 't' as bigint) as sent_at \
           from {}) v \
         where campaign_recipients.id = v.id and campaign_recipients.lease_owner = v.owner \
         and campaign_recipients.status = 'sending' \
         returning campaign_recipients.id",
        json_objects(backend, 1)
    );
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    Ok(ids.into_iter().collect())
}

/// Records an attempt's outcome if `owner` still holds the lease; false when it lost it.
pub async fn record(tx: &mut Tx, id: i64, owner: &str, outcome: &Outcome) -> DbResult<bool> {
    let now = now_ms();
    let (status, next, pmid, error, sent_at) = outcome_columns(outcome, now);
    let r = sqlx::query(
        "update campaign_recipients set status = $1, next_attempt_at = coalesce($2, next_attempt_at), \
         provider_message_id = coalesce($3, provider_message_id), error = $4, sent_at = $5, \
         lease_owner = null, lease_until = null, dispatched_at = null, updated_at = $6 \
         where id = $7 and lease_owner = $8 and status = 'sending'",
    )
    .bind(status)
    .bind(next)
    .bind(pmid)
    .bind(error)
    .bind(sent_at)
    .bind(now)
    .bind(id)
    .bind(owner.to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Counts of recipients by (channel, status, error) of a campaign.
pub async fn counts(
    conn: &mut AnyConnection,
    campaign_id: i64,
) -> DbResult<Vec<(String, String, Option<String>, i64)>> {
    Ok(sqlx::query_as(
        "select channel, status, case when status = 'skipped' then error end as reason, count(*) \
         from campaign_recipients where campaign_id = $1 group by 1, 2, 3",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?)
}

/// Sends accepted per minute (epoch ms of the minute, count), oldest first.
pub async fn sent_per_minute(
    conn: &mut AnyConnection,
    campaign_id: i64,
) -> DbResult<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "select (sent_at / 60000) * 60000 as minute, count(*) from campaign_recipients \
         where campaign_id = $1 and status = 'sent' group by 1 order by 1",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?)
}
