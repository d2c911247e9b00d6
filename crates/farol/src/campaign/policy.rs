//! Send-time policies besides suppression lists: the frequency cap per client across
//! campaigns and channels, and per-account campaign settings (business hours, time zone,
//! frequency cap) with the configuration as default. API: `GET/PUT /settings/campaigns`.
//!
//! **Frequency cap.** At most `cap` campaign messages per client in a rolling window
//! (`campaign.frequency_window_hours`), across every campaign and channel of the account. The
//! campaign's `frequency_cap` wins, then the account's setting, then `campaign.frequency_cap`;
//! 0 turns it off. Right before a send the worker *reserves* the send in `frequency_sends`
//! inside one transaction that first locks the client (PostgreSQL: `select … for update` on
//! the client row; SQLite: the transaction is `BEGIN IMMEDIATE`, so every writer is
//! serialized), counts the client's reservations in the window, and inserts its own only
//! below the cap. Two workers sending to the same client therefore cannot both pass the cap.
//! A reservation is removed when the send does not happen (failed for good, put back in the
//! queue); a retry keeps its reservation. Sends of campaigns without a cap are recorded in
//! the same table when they are accepted, so they count towards the other campaigns' caps. A client at the cap is **skipped** with reason
//! `frequency_cap` rather than deferred: the campaign completes, the results count the
//! skipped clients, and no message arrives days later out of context.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hours::BusinessHours;
use crate::api::{ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::config::CampaignConfig;
use crate::db::bulk::{json_ints, json_objects};
use crate::db::{Backend, Db, DbResult, format_ms, now_ms};
use crate::state::AppState;

/// Outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The send counts towards the cap now.
    Reserved,
    /// The client already received `cap` messages in the window.
    CapReached,
}

/// Reserves a send of `recipient_id` to `client_id` under `cap` messages per `window_ms`
/// (see the module docs for why two workers cannot both pass).
pub async fn reserve(
    db: &Db,
    account_id: i64,
    client_id: i64,
    recipient_id: i64,
    cap: i64,
    window_ms: i64,
    now: i64,
) -> DbResult<Reservation> {
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("select id from clients where id = $1 for update")
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
    }
    let mine: Option<i64> =
        sqlx::query_scalar("select recipient_id from frequency_sends where recipient_id = $1")
            .bind(recipient_id)
            .fetch_optional(&mut *tx)
            .await?;
    if mine.is_some() {
        // A retry of a send already counted.
        tx.commit().await?;
        return Ok(Reservation::Reserved);
    }
    let count: i64 = sqlx::query_scalar(
        "select count(*) from frequency_sends where account_id = $1 and client_id = $2 and at > $3",
    )
    .bind(account_id)
    .bind(client_id)
    .bind(now - window_ms)
    .fetch_one(&mut *tx)
    .await?;
    if count >= cap {
        tx.commit().await?;
        return Ok(Reservation::CapReached);
    }
    sqlx::query(
        "insert into frequency_sends (recipient_id, account_id, client_id, at) values ($1, $2, $3, $4)",
    )
    .bind(recipient_id)
    .bind(account_id)
    .bind(client_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation::Reserved)
}

/// Counts sends — (account, client, recipient) — towards every cap, in the transaction
/// recording them, with one statement (campaigns without a cap reserve nothing beforehand,
/// but their messages count for the others).
pub async fn count_sent_many(
    tx: &mut crate::db::Tx,
    backend: Backend,
    sends: &[(i64, i64, i64)],
    now: i64,
) -> DbResult<()> {
    if sends.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = sends
        .iter()
        .map(|(account, client, recipient)| serde_json::json!({"a": account, "c": client, "r": recipient}))
        .collect();
    // `where true`: SQLite needs it to tell the upsert's `on conflict` from a join's `on`.
    let sql = format!(
        "insert into frequency_sends (recipient_id, account_id, client_id, at) \
         select cast(j.value ->> 'r' as bigint), cast(j.value ->> 'a' as bigint), \
         cast(j.value ->> 'c' as bigint), $2 from {} where true on conflict do nothing",
        json_objects(backend, 1)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes send records older than the window (they no longer count); returns how many.
pub async fn prune(db: &Db, window_ms: i64, now: i64) -> DbResult<u64> {
    Ok(sqlx::query("delete from frequency_sends where at < $1")
        .bind(now - window_ms)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Drops the reservation of a send that did not happen.
pub async fn release(conn: &mut sqlx::AnyConnection, recipient_id: i64) -> DbResult<()> {
    sqlx::query("delete from frequency_sends where recipient_id = $1")
        .bind(recipient_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`release`] for many sends that did not happen, with one statement.
pub async fn release_many(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    recipient_ids: &[i64],
) -> DbResult<()> {
    if recipient_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "delete from frequency_sends where recipient_id in (select j.value from {})",
        json_ints(backend, 1)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(recipient_ids).expect("ids serialize"))
        .execute(conn)
        .await?;
    Ok(())
}

/// What a worker needs of a campaign's policies, read once per batch.
#[derive(Debug, Clone)]
pub struct Effective {
    /// Messages per client per window (0: no cap).
    pub frequency_cap: i64,
    /// The window, milliseconds.
    pub window_ms: i64,
    /// When the campaign may send (`None`: any time).
    pub hours: Option<BusinessHours>,
    /// The account's time zone name (its days bound channel accounts' `rate.per_day`; read
    /// only by sends through an account with a daily cap).
    pub time_zone: String,
}

/// Campaign cap, account cap, account hours, account time zone.
type PolicyRow = (Option<i64>, Option<i64>, Option<String>, Option<String>);

/// The campaign's frequency cap and business hours: campaign, then account settings, then
/// `config`. Settings that no longer parse fall back to the configuration (they are checked
/// when saved).
pub async fn effective(db: &Db, campaign_id: i64, config: &CampaignConfig) -> DbResult<Effective> {
    let row: Option<PolicyRow> = sqlx::query_as(
        "select c.frequency_cap, s.frequency_cap, s.business_hours, s.time_zone from campaigns c \
         left join campaign_settings s on s.account_id = c.account_id where c.id = $1",
    )
    .bind(campaign_id)
    .fetch_optional(db.pool())
    .await?;
    let (campaign_cap, account_cap, hours, tz) = row.unwrap_or_default();
    let spec = hours.unwrap_or_else(|| config.business_hours.clone());
    let tz = tz.unwrap_or_else(|| config.time_zone.clone());
    Ok(Effective {
        frequency_cap: campaign_cap
            .or(account_cap)
            .unwrap_or(config.frequency_cap as i64)
            .max(0),
        window_ms: (config.frequency_window_hours.max(1) * 3_600_000) as i64,
        hours: BusinessHours::parse(&spec, &tz)
            .or_else(|_| BusinessHours::parse(&config.business_hours, &config.time_zone))
            .ok()
            .flatten(),
        time_zone: tz,
    })
}

/// The account's campaign settings: what is stored (`null`: the configuration's) and what
/// applies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CampaignSettings {
    /// Sending window, e.g. `mon-fri 08:00-20:00` (`""`: any time); `null`: the configuration's.
    pub business_hours: Option<String>,
    /// IANA time zone of the window; `null`: the configuration's.
    pub time_zone: Option<String>,
    /// Campaign messages per client per window (0: no cap); `null`: the configuration's.
    pub frequency_cap: Option<i64>,
    /// The values in effect (stored or configured).
    pub effective: EffectiveSettings,
    /// Last change (`null`: never changed).
    pub updated_at: Option<String>,
}

/// Settings in effect for an account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EffectiveSettings {
    /// Sending window (`""`: any time).
    pub business_hours: String,
    /// Its time zone.
    pub time_zone: String,
    /// Messages per client per window (0: no cap).
    pub frequency_cap: i64,
    /// The window of the cap, hours.
    pub frequency_window_hours: u64,
}

/// Body of `PUT /settings/campaigns`: every key is replaced (`null` or absent: back to the
/// configuration's value).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// Sending window, e.g. `mon-fri 08:00-20:00`; `""`: any time.
    pub business_hours: Option<String>,
    /// IANA time zone, e.g. `America/Sao_Paulo`.
    pub time_zone: Option<String>,
    /// Messages per client per window (0: no cap; at most 1000).
    pub frequency_cap: Option<i64>,
}

type SettingsRow = (Option<String>, Option<String>, Option<i64>, i64);

async fn read(db: &Db, account_id: i64, config: &CampaignConfig) -> DbResult<CampaignSettings> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "select business_hours, time_zone, frequency_cap, updated_at from campaign_settings where account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?;
    let (hours, tz, cap, updated) = match row {
        Some((h, t, c, u)) => (h, t, c, Some(u)),
        None => (None, None, None, None),
    };
    Ok(CampaignSettings {
        effective: EffectiveSettings {
            business_hours: hours
                .clone()
                .unwrap_or_else(|| config.business_hours.clone()),
            time_zone: tz.clone().unwrap_or_else(|| config.time_zone.clone()),
            frequency_cap: cap.unwrap_or(config.frequency_cap as i64),
            frequency_window_hours: config.frequency_window_hours.max(1),
        },
        business_hours: hours,
        time_zone: tz,
        frequency_cap: cap,
        updated_at: updated.map(format_ms),
    })
}

/// The account's campaign settings.
#[utoipa::path(get, path = "/settings/campaigns", tag = "campaigns",
    responses((status = 200, body = CampaignSettings)), security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<CampaignSettings>> {
    user.require(Permission::CampaignsRun)?;
    Ok(Json(
        read(&state.db, user.account_id, &state.config.campaign).await?,
    ))
}

/// Replaces the account's campaign settings (business hours, time zone, frequency cap).
/// Workers apply them from their next batch.
#[utoipa::path(put, path = "/settings/campaigns", tag = "campaigns", request_body = SettingsInput,
    responses((status = 200, body = CampaignSettings), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<SettingsInput>,
) -> ApiResult<Json<CampaignSettings>> {
    user.require(Permission::CampaignsRun)?;
    let config = &state.config.campaign;
    let mut problems = Problems::default();
    let hours = body.business_hours.map(|h| h.trim().to_owned());
    let tz = body
        .time_zone
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(t) = &tz
        && jiff::tz::TimeZone::get(t).is_err()
    {
        problems.add(
            "time_zone",
            "invalid_time_zone",
            format!("`{t}` is not an IANA time zone (e.g. America/Sao_Paulo)"),
        );
    } else if let Err(e) = BusinessHours::parse(
        hours.as_deref().unwrap_or(&config.business_hours),
        tz.as_deref().unwrap_or(&config.time_zone),
    ) {
        problems.add("business_hours", "invalid_business_hours", e);
    }
    if let Some(c) = body.frequency_cap
        && !(0..=1000).contains(&c)
    {
        problems.add(
            "frequency_cap",
            "out_of_range",
            "frequency_cap must be from 0 (no cap) to 1000",
        );
    }
    problems.into_result()?;
    let before = read(&state.db, user.account_id, config).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("delete from campaign_settings where account_id = $1")
        .bind(user.account_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "insert into campaign_settings (account_id, business_hours, time_zone, frequency_cap, updated_at) \
         values ($1, $2, $3, $4, $5)",
    )
    .bind(user.account_id)
    .bind(hours.clone())
    .bind(tz.clone())
    .bind(body.frequency_cap)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "settings.campaigns.update",
        "settings",
        "campaigns",
        Some(&before),
        Some(&serde_json::json!({
            "business_hours": hours,
            "time_zone": tz,
            "frequency_cap": body.frequency_cap,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(read(&state.db, user.account_id, config).await?))
}
