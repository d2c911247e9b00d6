//! Campaigns: create, edit, launch (snapshot of the audience into recipients), pause, resume,
//! cancel, results. The operations are plain functions shared by the API and the CLI.

use std::collections::BTreeMap;

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
use crate::db::{Db, DbError, format_ms, now_ms};
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
    /// Channel account (`null`: the channel's default account).
    pub channel_account_id: Option<i64>,
    /// Template per channel (`auto` campaigns: one per channel they may use).
    pub templates: BTreeMap<Channel, i64>,
}

impl From<CampaignRow> for CampaignOut {
    fn from(r: CampaignRow) -> Self {
        CampaignOut {
            templates: crate::channels::routing::campaign_templates(&r),
            channel_account_id: r.channel_account_id,
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
    /// Channel (`email`, `whatsapp`, `sms`, `webhook`, or `auto`); the template must be of
    /// this channel.
    pub channel: Channel,
    /// Template (required unless the channel is `auto`).
    #[serde(default)]
    pub template_id: Option<i64>,
    /// `auto`: one template per channel the campaign may use (`{"whatsapp": 3, "email": 5}`).
    #[serde(default)]
    pub templates: Option<BTreeMap<Channel, i64>>,
    /// Channel account to send through; absent: the tenant's default account of the channel
    /// (for e-mail, else the configured SMTP). Not for `auto`.
    #[serde(default)]
    pub channel_account_id: Option<i64>,
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
    /// New channel account.
    pub channel_account_id: Option<i64>,
    /// `auto`: new templates per channel.
    pub templates: Option<BTreeMap<Channel, i64>>,
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
    let by_channel: Vec<(String, String, i64)> = if c.channel == "auto" {
        let map: BTreeMap<Channel, i64> = c
            .channel_templates
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        if map.is_empty() {
            problems.add(
                "templates",
                "required",
                "an auto campaign needs one template per channel it may use, e.g. {\"whatsapp\": 3, \"email\": 5}",
            );
        }
        if c.channel_account_id.is_some() {
            problems.add(
                "channel_account_id",
                "not_allowed",
                "auto campaigns use the default account of each channel",
            );
        }
        if map.contains_key(&Channel::Smartico) {
            problems.add(
                "templates.smartico",
                "not_allowed",
                "auto picks a channel to the client's own contact; Smartico events are a campaign of their own (channel smartico)",
            );
        }
        map.into_iter()
            .map(|(ch, id)| {
                (
                    format!("templates.{}", ch.as_str()),
                    ch.as_str().to_owned(),
                    id,
                )
            })
            .collect()
    } else {
        vec![("template_id".to_owned(), c.channel.clone(), c.template_id)]
    };
    for (field, channel, id) in by_channel {
        match templates::get(&mut conn, account_id, id).await {
            Ok(t) if t.channel != channel => problems.add(
                field,
                "wrong_channel",
                format!(
                    "template {} is a {} template; the campaign sends it by {}",
                    t.id, t.channel, channel
                ),
            ),
            Ok(_) => {}
            Err(DbError::NotFound) => problems.add(field, "not_found", "no such template"),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(a) = c.channel_account_id
        && c.channel != "auto"
    {
        match crate::channels::accounts::get(&mut conn, account_id, a).await {
            Ok(r) if r.channel != c.channel => problems.add(
                "channel_account_id",
                "wrong_channel",
                format!("channel account {a} sends by {}", r.channel),
            ),
            Ok(_) => {}
            Err(DbError::NotFound) => {
                problems.add("channel_account_id", "not_found", "no such channel account")
            }
            Err(e) => return Err(e.into()),
        }
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
    let templates = input.templates.unwrap_or_default();
    let template_id = match (input.template_id, input.channel) {
        (Some(t), _) => t,
        (None, Channel::Auto) => templates.values().next().copied().unwrap_or(0),
        (None, _) => {
            return Err(ApiError::field(
                "template_id",
                "required",
                "a campaign needs a template",
            ));
        }
    };
    let mut new = NewCampaign {
        name: input.name,
        channel: input.channel.as_str().to_owned(),
        template_id,
        audience_id: input.audience_id,
        throttle_per_sec: input.throttle_per_sec,
        frequency_cap: input.frequency_cap,
        cron: input.cron,
        cron_time_zone: input.time_zone,
        skip_previous: input.skip_previous.unwrap_or(false),
        channel_account_id: input.channel_account_id,
        channel_templates: (input.channel == Channel::Auto)
            .then(|| serde_json::to_string(&templates).expect("map serializes")),
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
    let recipients =
        crate::channels::routing::snapshot(db, &mut tx, channels, &c, channels.auto_order())
            .await?;
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
    /// What the providers' webhooks reported after the send.
    pub engagement: crate::channels::events::Engagement,
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
    /// Queued recipients waiting for a limit, by reason (`account_daily_limit`: their channel
    /// account's `rate.per_day` was reached; they are sent when the next day starts).
    pub held: BTreeMap<String, i64>,
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
    /// Delivered, read, bounced, replied and opted out (by reply) in it.
    #[serde(flatten)]
    pub engagement: crate::channels::events::Engagement,
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
        held: super::pacing::held(&mut conn, id)
            .await?
            .into_iter()
            .map(|(reason, n)| (reason.trim_start_matches("held:").to_owned(), n))
            .collect(),
        by_channel: BTreeMap::new(),
        over_time: store::sent_per_minute(&mut conn, id)
            .await?
            .into_iter()
            .map(|(minute, sent)| MinuteCount {
                minute: format_ms(minute),
                sent,
                engagement: Default::default(),
            })
            .collect(),
    };
    crate::channels::events::add_engagement(&mut conn, id, &mut out).await?;
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
        || patch.skip_previous.is_some()
        || patch.channel_account_id.is_some()
        || patch.templates.is_some();
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
        channel_account_id: patch.channel_account_id.or(before.channel_account_id),
        channel_templates: match &patch.templates {
            Some(t) if before.channel == Channel::Auto.as_str() => {
                Some(serde_json::to_string(t).expect("map serializes"))
            }
            Some(_) => {
                return Err(ApiError::field(
                    "templates",
                    "not_allowed",
                    "only auto campaigns have templates per channel; change template_id",
                ));
            }
            None => before.channel_templates.clone(),
        },
    };
    if patch.template_id.is_none()
        && let Some(first) = patch.templates.as_ref().and_then(|t| t.values().next())
    {
        new.template_id = *first;
    }
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
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "campaigns",
        "campaign",
        id,
        &CampaignOut::from(before),
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
