//! Campaigns: create, edit, launch (snapshot of the audience into recipients), pause, resume,
//! cancel, results. The operations are plain functions shared by the API and the CLI.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audiences;
use super::channels::Channels;
use super::store::{self, CampaignRow, NewCampaign, Status};
use super::templates::{self, Channel};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::db::bulk::{SqlValue, insert_rows};
use crate::db::{Db, DbError, SqlBuilder, Tx, format_ms, now_ms};
use crate::state::AppState;

/// A campaign, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignOut {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: Channel,
    /// Template.
    pub template_id: i64,
    /// Audience (`null`: every client of the account).
    pub audience_id: Option<i64>,
    /// Status.
    pub status: Status,
    /// Messages per second (`null`: unthrottled).
    pub throttle_per_sec: Option<f64>,
    /// When a scheduled campaign starts.
    pub scheduled_at: Option<String>,
    /// Launch time.
    pub launched_at: Option<String>,
    /// Completion or cancellation time.
    pub completed_at: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Frequency cap of this campaign (`null`: the account's; 0: no cap).
    pub frequency_cap: Option<i64>,
    /// Recurring campaigns: cron expression (`0 9 * * 1-5`).
    pub cron: Option<String>,
    /// Recurring campaigns: time zone of the cron.
    pub time_zone: Option<String>,
    /// Recurring campaigns: skip clients the previous occurrence sent to.
    pub skip_previous: bool,
    /// Recurring campaigns: when the next occurrence starts.
    pub next_run_at: Option<String>,
    /// Occurrences: the recurring campaign they belong to.
    pub parent_id: Option<i64>,
}

impl From<CampaignRow> for CampaignOut {
    fn from(r: CampaignRow) -> Self {
        CampaignOut {
            id: r.id,
            channel: Channel::parse(&r.channel).unwrap_or(Channel::Email),
            status: r.status(),
            name: r.name,
            template_id: r.template_id,
            audience_id: r.audience_id,
            throttle_per_sec: r.throttle_per_sec,
            scheduled_at: r.scheduled_at.map(format_ms),
            launched_at: r.launched_at.map(format_ms),
            completed_at: r.completed_at.map(format_ms),
            created_at: format_ms(r.created_at),
            updated_at: format_ms(r.updated_at),
            frequency_cap: r.frequency_cap,
            cron: r.cron,
            time_zone: r.cron_time_zone,
            skip_previous: r.skip_previous != 0,
            next_run_at: r.next_run_at.map(format_ms),
            parent_id: r.parent_id,
        }
    }
}

/// Body of `POST /campaigns`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    /// Name (1–200 characters).
    pub name: String,
    /// Channel; the template must be of this channel.
    pub channel: Channel,
    /// Template.
    pub template_id: i64,
    /// Audience; absent or `null`: every client of the account.
    pub audience_id: Option<i64>,
    /// Messages per second (0 < x ≤ 100000); absent: unthrottled.
    pub throttle_per_sec: Option<f64>,
    /// Campaign messages per client per window (0: no cap, ≤ 1000); absent: the account's.
    #[serde(default)]
    pub frequency_cap: Option<i64>,
    /// Makes the campaign recurring: a cron expression (`0 9 * * 1-5`).
    #[serde(default)]
    pub cron: Option<String>,
    /// Time zone of `cron` (default `America/Sao_Paulo`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Recurring: skip clients the previous occurrence sent to.
    #[serde(default)]
    pub skip_previous: Option<bool>,
}

/// Body of `PATCH /campaigns/{id}`. Name, template and audience change only in draft; the
/// throttle changes at any time and applies to the next batch.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    /// New name.
    pub name: Option<String>,
    /// New template.
    pub template_id: Option<i64>,
    /// New audience.
    pub audience_id: Option<i64>,
    /// New throttle, messages per second (0: unthrottled).
    pub throttle_per_sec: Option<f64>,
    /// New frequency cap (0: no cap); changes at any time, from the next batch.
    pub frequency_cap: Option<i64>,
    /// New cron (draft only).
    pub cron: Option<String>,
    /// New time zone of the cron (draft only).
    pub time_zone: Option<String>,
    /// Skip clients the previous occurrence sent to (draft only).
    pub skip_previous: Option<bool>,
}

/// Time zone of a recurring campaign's cron when none is given.
pub const DEFAULT_CRON_TIME_ZONE: &str = "America/Sao_Paulo";

fn not_found(e: DbError) -> ApiError {
    match e {
        DbError::NotFound => ApiError::NotFound("campaign"),
        other => other.into(),
    }
}

async fn check(db: &Db, account_id: i64, c: &mut NewCampaign) -> ApiResult<()> {
    let mut problems = Problems::default();
    c.name = c.name.trim().to_owned();
    if c.name.is_empty() || c.name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
    if let Some(t) = c.throttle_per_sec
        && !(t > 0.0 && t <= 100_000.0)
    {
        problems.add(
            "throttle_per_sec",
            "out_of_range",
            "throttle_per_sec must be greater than 0 and at most 100000",
        );
    }
    if let Some(f) = c.frequency_cap
        && !(0..=1000).contains(&f)
    {
        problems.add(
            "frequency_cap",
            "out_of_range",
            "frequency_cap must be from 0 (no cap) to 1000",
        );
    }
    if c.cron.is_some() || c.cron_time_zone.is_some() {
        match super::recurring::check(
            &mut problems,
            c.cron.as_deref(),
            c.cron_time_zone.as_deref(),
            DEFAULT_CRON_TIME_ZONE,
        ) {
            Some((cron, tz)) => {
                c.cron = Some(cron);
                c.cron_time_zone = Some(tz);
            }
            None => {
                c.cron = None;
                c.cron_time_zone = None;
            }
        }
    }
    let mut conn = db.pool().acquire().await?;
    match templates::get(&mut conn, account_id, c.template_id).await {
        Ok(t) if t.channel != c.channel => problems.add(
            "template_id",
            "wrong_channel",
            format!(
                "template {} is a {} template; the campaign sends by {}",
                t.id, t.channel, c.channel
            ),
        ),
        Ok(_) => {}
        Err(DbError::NotFound) => problems.add("template_id", "not_found", "no such template"),
        Err(e) => return Err(e.into()),
    }
    if let Some(a) = c.audience_id
        && !audiences::exists(&mut conn, account_id, a).await?
    {
        problems.add("audience_id", "not_found", "no such audience");
    }
    problems.into_result()
}

/// Creates a draft campaign (API and CLI).
pub async fn create(db: &Db, actor: &Actor, input: CampaignInput) -> ApiResult<CampaignOut> {
    let mut new = NewCampaign {
        name: input.name,
        channel: input.channel.as_str().to_owned(),
        template_id: input.template_id,
        audience_id: input.audience_id,
        throttle_per_sec: input.throttle_per_sec,
        frequency_cap: input.frequency_cap,
        cron: input.cron,
        cron_time_zone: input.time_zone,
        skip_previous: input.skip_previous.unwrap_or(false),
    };
    check(db, actor.account_id, &mut new).await?;
    let mut tx = db.begin().await?;
    let id = store::insert(&mut tx, actor.account_id, actor.user_id, &new).await?;
    audit::record(
        &mut tx,
        actor,
        "campaign.create",
        "campaign",
        id,
        audit::NONE,
        Some(&new),
    )
    .await?;
    let row = store::get(&mut tx, actor.account_id, id).await?;
    tx.commit().await?;
    Ok(row.into())
}

/// One campaign (API and CLI).
pub async fn fetch(db: &Db, account_id: i64, id: i64) -> ApiResult<CampaignOut> {
    let mut conn = db.pool().acquire().await?;
    Ok(store::get(&mut conn, account_id, id)
        .await
        .map_err(not_found)?
        .into())
}

/// Fixes the recipients of a campaign: one row per client of the audience, with the address
/// resolved now. Clients without a usable address are recorded as skipped (opted out,
/// invalid, none), so the snapshot accounts for every member of the audience.
async fn snapshot(db: &Db, tx: &mut Tx, c: &CampaignRow) -> ApiResult<u64> {
    let backend = db.backend();
    let ids = audiences::client_ids(tx, backend, c.account_id, c.audience_id).await?;
    let kind = if c.channel == "email" {
        "email"
    } else {
        "phone"
    };
    let now = now_ms();
    let mut written = 0;
    let previous = super::recurring::previously_sent(tx, c).await?;
    for chunk in ids.chunks(1000) {
        let mut q = SqlBuilder::new(
            "select client_id, value, opted_out, invalid_at from contacts where kind = ",
        );
        q.bind(kind.to_owned())
            .push(" and client_id in ")
            .bind_list(chunk.iter().copied())
            .push(" order by client_id, preferred desc, id");
        let contacts: Vec<(i64, String, i64, Option<i64>)> =
            q.query_as().fetch_all(&mut **tx).await?;
        let mut best: HashMap<i64, Result<String, &'static str>> = HashMap::new();
        for (client, value, opted_out, invalid_at) in contacts {
            let this = if opted_out != 0 {
                Err("opted_out")
            } else if invalid_at.is_some() {
                Err("contact_invalid")
            } else {
                Ok(value)
            };
            match best.get(&client) {
                Some(Ok(_)) => {}
                Some(Err(_)) if this.is_err() => {}
                _ => {
                    best.insert(client, this);
                }
            }
        }
        let rows: Vec<Vec<SqlValue>> = chunk
            .iter()
            .map(|client| {
                let (address, status, error) = match best.remove(client) {
                    Some(Ok(a)) if previous.contains(client) => {
                        (Some(a), "skipped", Some("previous_occurrence".to_owned()))
                    }
                    Some(Ok(a)) => (Some(a), "queued", None),
                    Some(Err(reason)) => (None, "skipped", Some(reason.to_owned())),
                    None => (None, "skipped", Some("no_address".to_owned())),
                };
                vec![
                    SqlValue::from(c.id),
                    SqlValue::from(c.account_id),
                    SqlValue::from(*client),
                    SqlValue::from(c.channel.clone()),
                    SqlValue::from(address),
                    SqlValue::from(status),
                    SqlValue::from(now),
                    SqlValue::from(error),
                    SqlValue::from(format!("campaign:{}:client:{client}", c.id)),
                    SqlValue::from(uuid::Uuid::new_v4().simple().to_string()),
                    SqlValue::from(now),
                    SqlValue::from(now),
                ]
            })
            .collect();
        written += insert_rows(
            tx,
            backend,
            "insert into campaign_recipients (campaign_id, account_id, client_id, channel, address, status, \
             next_attempt_at, error, idempotency_key, unsubscribe_token, created_at, updated_at) values ",
            "",
            rows,
        )
        .await?;
    }
    Ok(written)
}

/// Parses a launch time: RFC 3339 (`2026-11-23T09:00:00-03:00`) or a zoned time
/// (`2026-11-23T09:00[America/Sao_Paulo]`).
pub fn parse_schedule(raw: &str) -> Option<i64> {
    if let Ok(ts) = raw.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    raw.parse::<jiff::Zoned>()
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// Launches a draft campaign now or at `scheduled_at` (epoch ms): snapshots the audience into
/// recipients and hands them to the send workers.
pub async fn launch(
    db: &Db,
    channels: &Channels,
    actor: &Actor,
    id: i64,
    scheduled_at: Option<i64>,
) -> ApiResult<CampaignOut> {
    let mut tx = db.begin().await?;
    let c = store::get(&mut tx, actor.account_id, id)
        .await
        .map_err(not_found)?;
    if c.status() != Status::Draft {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "the campaign is {}; only drafts can be launched",
                c.status().as_str()
            ),
        });
    }
    let channel = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    if channels.get(channel).is_none() {
        return Err(ApiError::field(
            "channel",
            "not_configured",
            format!(
                "no {} channel is configured{}",
                channel.as_str(),
                if channel == Channel::Email {
                    " (set smtp.url and smtp.from, or FAROL_SMTP_URL and FAROL_SMTP_FROM)"
                } else {
                    ""
                }
            ),
        ));
    }
    if c.cron.is_some() {
        // A recurrence: occurrences snapshot their audience at each cron time.
        let next = super::recurring::launch(&mut tx, &c, scheduled_at).await?;
        audit::record(
            &mut tx,
            actor,
            "campaign.launch",
            "campaign",
            id,
            audit::NONE,
            Some(&serde_json::json!({ "cron": c.cron, "time_zone": c.cron_time_zone, "next_run_at": next })),
        )
        .await?;
        let after = store::get(&mut tx, actor.account_id, id).await?;
        tx.commit().await?;
        return Ok(after.into());
    }
    let recipients = snapshot(db, &mut tx, &c).await?;
    store::mark_launched(&mut tx, id, scheduled_at).await?;
    let after = store::get(&mut tx, actor.account_id, id).await?;
    audit::record(
        &mut tx,
        actor,
        "campaign.launch",
        "campaign",
        id,
        audit::NONE,
        Some(&serde_json::json!({
            "recipients": recipients,
            "scheduled_at": scheduled_at,
            "occurrence_of": c.parent_id,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(after.into())
}

/// Pauses, resumes or cancels a campaign.
pub async fn change_status(
    db: &Db,
    actor: &Actor,
    id: i64,
    action: Action,
) -> ApiResult<CampaignOut> {
    let (from, to): (&[Status], Status) = match action {
        Action::Pause => (&[Status::Running, Status::Scheduled], Status::Paused),
        Action::Resume => (&[Status::Paused], Status::Running),
        Action::Cancel => (
            &[
                Status::Draft,
                Status::Scheduled,
                Status::Running,
                Status::Paused,
            ],
            Status::Cancelled,
        ),
    };
    let mut tx = db.begin().await?;
    let before = store::get(&mut tx, actor.account_id, id)
        .await
        .map_err(not_found)?;
    if !store::transition(&mut tx, id, from, to).await? {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "the campaign is {}; cannot {}",
                before.status().as_str(),
                action.as_str()
            ),
        });
    }
    if to == Status::Cancelled {
        store::skip_unsent(&mut tx, id, "cancelled").await?;
    }
    if to == Status::Running {
        // A campaign paused before its start time waits for it again.
        sqlx::query(
            "update campaigns set status = 'scheduled' where id = $1 and scheduled_at > $2",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        super::recurring::after_resume(&mut tx, &before).await?;
    }
    audit::record(
        &mut tx,
        actor,
        &format!("campaign.{}", action.as_str()),
        "campaign",
        id,
        Some(&serde_json::json!({ "status": before.status })),
        Some(&serde_json::json!({ "status": to.as_str() })),
    )
    .await?;
    let after = store::get(&mut tx, actor.account_id, id).await?;
    tx.commit().await?;
    Ok(after.into())
}

/// A lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop sending for now.
    Pause,
    /// Continue a paused campaign.
    Resume,
    /// Stop for good.
    Cancel,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// Recipient counts by status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Recipients in the snapshot.
    pub total: i64,
    /// Waiting for their (next) attempt.
    pub queued: i64,
    /// Being sent now.
    pub sending: i64,
    /// Accepted by the provider.
    pub sent: i64,
    /// Failed for good.
    pub failed: i64,
    /// Not sent on purpose (opted out, invalid contact, no address, cancelled).
    pub skipped: i64,
    /// Of the skipped, those whose contact opted out.
    pub opted_out: i64,
}

impl Counts {
    fn add(&mut self, status: &str, reason: Option<&str>, n: i64) {
        self.total += n;
        match status {
            "queued" => self.queued += n,
            "sending" => self.sending += n,
            "sent" => self.sent += n,
            "failed" => self.failed += n,
            _ => {
                self.skipped += n;
                if reason == Some("opted_out") {
                    self.opted_out += n;
                }
            }
        }
    }
}

/// Results of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Results {
    /// Campaign.
    pub campaign_id: i64,
    /// Its status.
    pub status: Status,
    /// Every recipient.
    #[serde(flatten)]
    pub counts: Counts,
    /// Skipped recipients by reason (`opted_out`, `contact_invalid`, `no_address`, `cancelled`).
    pub skipped_reasons: BTreeMap<String, i64>,
    /// Counts per channel.
    pub by_channel: BTreeMap<String, Counts>,
    /// Messages accepted by the provider per minute.
    pub over_time: Vec<MinuteCount>,
}

/// Sends in one minute.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MinuteCount {
    /// Start of the minute (RFC 3339, UTC).
    pub minute: String,
    /// Messages accepted by the provider in it.
    pub sent: i64,
}

/// Counts of a campaign (API and CLI).
pub async fn results(db: &Db, account_id: i64, id: i64) -> ApiResult<Results> {
    let mut conn = db.pool().acquire().await?;
    let c = store::get(&mut conn, account_id, id)
        .await
        .map_err(not_found)?;
    let mut out = Results {
        campaign_id: id,
        status: c.status(),
        counts: Counts::default(),
        skipped_reasons: BTreeMap::new(),
        by_channel: BTreeMap::new(),
        over_time: store::sent_per_minute(&mut conn, id)
            .await?
            .into_iter()
            .map(|(minute, sent)| MinuteCount {
                minute: format_ms(minute),
                sent,
            })
            .collect(),
    };
    for (channel, status, reason, n) in store::counts(&mut conn, id).await? {
        out.counts.add(&status, reason.as_deref(), n);
        out.by_channel
            .entry(channel)
            .or_default()
            .add(&status, reason.as_deref(), n);
        if let Some(r) = reason {
            *out.skipped_reasons.entry(r).or_default() += n;
        }
    }
    Ok(out)
}

/// Query of `GET /campaigns`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Campaigns with an id below this one (the previous page's last id).
    pub before: Option<i64>,
    /// Page size (1–100, default 20).
    pub limit: Option<i64>,
}

/// Lists campaigns, newest first.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = Vec<CampaignOut>)), security(("bearer" = [])))]
pub async fn list_campaigns(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<CampaignOut>>> {
    user.require(Permission::CampaignsRun)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            "out_of_range",
            "limit must be between 1 and 100",
        ));
    }
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::list(&mut conn, user.account_id, q.before, limit).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a draft campaign.
#[utoipa::path(post, path = "/campaigns", tag = "campaigns", request_body = CampaignInput,
    responses((status = 201, body = CampaignOut), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CampaignInput>,
) -> ApiResult<(StatusCode, Json<CampaignOut>)> {
    user.require(Permission::CampaignsRun)?;
    Ok((
        StatusCode::CREATED,
        Json(create(&state.db, &user.actor(), body).await?),
    ))
}

/// One campaign.
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<CampaignOut>> {
    user.require(Permission::CampaignsRun)?;
    Ok(Json(fetch(&state.db, user.account_id, id).await?))
}

/// Changes a campaign (name, template, audience in draft; throttle at any time).
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)), request_body = CampaignPatch,
    responses((status = 200, body = CampaignOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<CampaignPatch>,
) -> ApiResult<Json<CampaignOut>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let before = store::get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    drop(conn);
    let structural = patch.name.is_some()
        || patch.template_id.is_some()
        || patch.audience_id.is_some()
        || patch.cron.is_some()
        || patch.time_zone.is_some()
        || patch.skip_previous.is_some();
    if structural && before.status() != Status::Draft {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "the campaign is {}; only the throttle and frequency cap change after launch",
                before.status().as_str()
            ),
        });
    }
    let mut new = NewCampaign {
        name: patch.name.unwrap_or_else(|| before.name.clone()),
        channel: before.channel.clone(),
        template_id: patch.template_id.unwrap_or(before.template_id),
        audience_id: patch.audience_id.or(before.audience_id),
        throttle_per_sec: match patch.throttle_per_sec {
            Some(0.0) => None,
            Some(t) => Some(t),
            None => before.throttle_per_sec,
        },
        frequency_cap: patch.frequency_cap.or(before.frequency_cap),
        cron: patch.cron.or_else(|| before.cron.clone()),
        cron_time_zone: patch.time_zone.or_else(|| before.cron_time_zone.clone()),
        skip_previous: patch.skip_previous.unwrap_or(before.skip_previous != 0),
    };
    check(&state.db, user.account_id, &mut new).await?;
    let mut tx = state.db.begin().await?;
    store::update(&mut tx, id, &new).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "campaign.update",
        "campaign",
        id,
        Some(&CampaignOut::from(before)),
        Some(&new),
    )
    .await?;
    let after = store::get(&mut tx, user.account_id, id).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// Deletes a draft, completed or cancelled campaign with its recipients.
#[utoipa::path(delete, path = "/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CampaignsRun)?;
    let mut tx = state.db.begin().await?;
    let before = store::get(&mut tx, user.account_id, id)
        .await
        .map_err(not_found)?;
    if !matches!(
        before.status(),
        Status::Draft | Status::Completed | Status::Cancelled
    ) {
        return Err(ApiError::Conflict {
            field: "status".into(),
            message: format!(
                "the campaign is {}; cancel it first",
                before.status().as_str()
            ),
        });
    }
    sqlx::query("delete from campaign_recipients where campaign_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from campaigns where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "campaign.delete",
        "campaign",
        id,
        Some(&CampaignOut::from(before)),
        audit::NONE,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /campaigns/{id}/launch`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchInput {
    /// Start later: RFC 3339 (`2026-11-23T09:00:00-03:00`) or zoned
    /// (`2026-11-23T09:00[America/Sao_Paulo]`). Absent: now.
    pub scheduled_at: Option<String>,
}

/// Launches a draft: fixes its recipients (the audience now) and starts sending, now or at
/// `scheduled_at`.
#[utoipa::path(post, path = "/campaigns/{id}/launch", tag = "campaigns", params(("id" = i64, Path)), request_body = LaunchInput,
    responses((status = 200, body = CampaignOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn launch_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<CampaignOut>> {
    user.require(Permission::CampaignsRun)?;
    let input: LaunchInput = if body.trim_ascii().is_empty() {
        LaunchInput::default()
    } else {
        crate::api::extract::parse_json(&body)?
    };
    let at = match input.scheduled_at.as_deref() {
        None => None,
        Some(raw) => Some(parse_schedule(raw).ok_or_else(|| {
            ApiError::field(
                "scheduled_at",
                "invalid_time",
                "use RFC 3339 (2026-11-23T09:00:00-03:00) or a zoned time (2026-11-23T09:00[America/Sao_Paulo])",
            )
        })?),
    };
    let out = launch(&state.db, &state.channels, &user.actor(), id, at).await?;
    state.campaign_wake.notify_waiters();
    Ok(Json(out))
}

async fn act(
    state: AppState,
    user: AuthUser,
    id: i64,
    action: Action,
) -> ApiResult<Json<CampaignOut>> {
    user.require(Permission::CampaignsRun)?;
    let out = change_status(&state.db, &user.actor(), id, action).await?;
    state.campaign_wake.notify_waiters();
    Ok(Json(out))
}

/// Pauses a running or scheduled campaign: sends in flight finish, nothing new starts.
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignOut), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn pause_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<CampaignOut>> {
    act(state, user, id, Action::Pause).await
}

/// Resumes a paused campaign.
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignOut), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resume_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<CampaignOut>> {
    act(state, user, id, Action::Resume).await
}

/// Cancels a campaign: recipients not yet sent are skipped (`cancelled`).
#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignOut), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel_campaign(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<CampaignOut>> {
    act(state, user, id, Action::Cancel).await
}

/// Recipient counts by status (queued, sending, sent, failed, skipped, opted out), by channel
/// and sends per minute.
#[utoipa::path(get, path = "/campaigns/{id}/results", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = Results), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn campaign_results(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<Results>> {
    user.require(Permission::CampaignsRun)?;
    Ok(Json(results(&state.db, user.account_id, id).await?))
}
