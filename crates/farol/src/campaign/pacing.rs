//! Limits of a sender (channel) account, whatever campaign sends through it: the account's
//! `settings.rate` `{per_second, per_minute, per_day}` (a provider's tier, e.g. WhatsApp's
//! messages per day). See docs/campaigns.md, "Pacing per sender account".
//!
//! - `per_second` / `per_minute` pace every send of the account through the process's
//!   [`Throttle`](super::throttle::Throttle) under [`ThrottleKey::Account`](super::throttle::ThrottleKey)
//!   at the stricter of the two rates: the same virtual schedule as a campaign's throttle, in
//!   Redis when `[redis]` is configured (shared by every process), else per process. A send
//!   waits for its campaign's slot and then for its account's.
//! - `per_day` is a count in the database (`channel_account_day_sends`, one row per account and
//!   day of the tenant's time zone), reserved atomically right before each send, so it holds
//!   across workers, processes and restarts. A send over the cap is **held**: the recipient
//!   goes back to `queued` until the next day starts, with the reason `held:account_daily_limit`
//!   (shown in the campaign's results), instead of failing.

use serde_json::{Map, Value};

use crate::api::Problems;
use crate::db::{Db, DbResult, now_ms};

/// The reason recorded on a recipient held by its account's daily cap.
pub const HELD_DAILY_LIMIT: &str = "held:account_daily_limit";

/// Highest `per_second` accepted (the campaign throttle's bound).
const MAX_PER_SECOND: f64 = 100_000.0;

/// A channel account's limits (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountRate {
    /// Sends per second.
    pub per_second: Option<f64>,
    /// Sends per minute.
    pub per_minute: Option<u64>,
    /// Sends per day (the tenant's calendar day).
    pub per_day: Option<u64>,
}

impl AccountRate {
    /// The limits in an account's settings (`None`: no `rate`). Settings are validated when
    /// saved ([`check`]); values that do not parse are ignored here.
    pub fn from_settings(settings: &Map<String, Value>) -> Option<AccountRate> {
        let rate = settings.get("rate")?.as_object()?;
        let r = AccountRate {
            per_second: rate
                .get("per_second")
                .and_then(Value::as_f64)
                .filter(|v| *v > 0.0),
            per_minute: rate
                .get("per_minute")
                .and_then(Value::as_u64)
                .filter(|v| *v > 0),
            per_day: rate
                .get("per_day")
                .and_then(Value::as_u64)
                .filter(|v| *v > 0),
        };
        (r != AccountRate::default()).then_some(r)
    }

    /// The pace of the account's sends, per second: the stricter of `per_second` and
    /// `per_minute / 60` (spacing sends evenly keeps both). `None`: not paced.
    pub fn pace(&self) -> Option<f64> {
        let per_minute = self.per_minute.map(|m| m as f64 / 60.0);
        match (self.per_second, per_minute) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Checks `settings.rate`, naming each bad key (`settings.rate.per_second`).
pub fn check(rate: &Value, problems: &mut Problems) {
    let Some(map) = rate.as_object() else {
        problems.add(
            "settings.rate",
            "invalid",
            "rate is an object: {\"per_second\": 10, \"per_minute\": 500, \"per_day\": 1000} (any of them)",
        );
        return;
    };
    if map.is_empty() {
        problems.add(
            "settings.rate",
            "invalid",
            "give at least one of per_second, per_minute, per_day (or remove rate)",
        );
    }
    for (k, v) in map {
        let field = format!("settings.rate.{k}");
        match k.as_str() {
            "per_second" => match v.as_f64() {
                Some(x) if x > 0.0 && x <= MAX_PER_SECOND => {}
                _ => problems.add(
                    field,
                    "out_of_range",
                    format!("per_second is a number above 0 and at most {MAX_PER_SECOND}"),
                ),
            },
            "per_minute" | "per_day" => match v.as_u64() {
                Some(n) if n > 0 && n <= 1_000_000_000 => {}
                _ => problems.add(
                    field,
                    "out_of_range",
                    format!("{k} is a whole number from 1 to 1000000000"),
                ),
            },
            _ => problems.add(
                field,
                "unknown_field",
                format!("rate has no `{k}`; use per_second, per_minute, per_day"),
            ),
        }
    }
}

/// The tenant's time zone by name (UTC when it does not resolve; settings are validated when
/// saved).
fn zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The tenant's calendar day of `at` (`2026-11-23`) and when the next one starts (epoch ms).
pub fn day_of(at: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> (String, i64) {
    let local = at.to_zoned(zone.clone());
    let date = local.date();
    let next = date
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(zone.clone()).ok())
        .map_or(at.as_millisecond() + 86_400_000, |z| {
            z.timestamp().as_millisecond()
        });
    (date.to_string(), next)
}

/// Counts one send of channel account `id` on `day` if fewer than `cap` were counted; false
/// when the cap is reached. One statement, so concurrent workers never pass the cap together.
pub async fn reserve_day(db: &Db, id: i64, day: &str, cap: u64) -> DbResult<bool> {
    let counted: Option<i64> = sqlx::query_scalar(
        "insert into channel_account_day_sends (channel_account_id, day, sends) values ($1, $2, 1) \
         on conflict (channel_account_id, day) do update set sends = channel_account_day_sends.sends + 1 \
         where channel_account_day_sends.sends < $3 returning sends",
    )
    .bind(id)
    .bind(day.to_owned())
    .bind(i64::try_from(cap).unwrap_or(i64::MAX))
    .fetch_optional(db.pool())
    .await?;
    Ok(counted.is_some())
}

/// What the daily cap said about a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayCap {
    /// The account has no daily cap.
    Unlimited,
    /// The send is counted on (account, day).
    Counted(i64, String),
    /// The cap is reached: the recipient was held until the next day.
    Held,
}

/// Before waiting for throttle slots: holds the recipient (true) when its account (`limits`:
/// the account id and its rate) already reached its daily cap.
pub async fn hold_if_full(
    db: &Db,
    limits: Option<(i64, AccountRate)>,
    time_zone: &str,
    recipient: i64,
    owner: &str,
) -> DbResult<bool> {
    let Some((
        account,
        AccountRate {
            per_day: Some(cap), ..
        },
    )) = limits
    else {
        return Ok(false);
    };
    let (day, next) = day_of(jiff::Timestamp::now(), &zone(time_zone));
    if day_count(db, account, &day).await? < cap {
        return Ok(false);
    }
    hold(db, recipient, owner, next, HELD_DAILY_LIMIT).await?;
    Ok(true)
}

/// Right before the send: counts it against its account's daily cap, or holds the recipient
/// until the next day when the cap is reached.
pub async fn reserve_or_hold(
    db: &Db,
    limits: Option<(i64, AccountRate)>,
    time_zone: &str,
    recipient: i64,
    owner: &str,
) -> DbResult<DayCap> {
    let Some((
        account,
        AccountRate {
            per_day: Some(cap), ..
        },
    )) = limits
    else {
        return Ok(DayCap::Unlimited);
    };
    let (day, next) = day_of(jiff::Timestamp::now(), &zone(time_zone));
    if reserve_day(db, account, &day, cap).await? {
        return Ok(DayCap::Counted(account, day));
    }
    hold(db, recipient, owner, next, HELD_DAILY_LIMIT).await?;
    Ok(DayCap::Held)
}

/// Sends of channel account `id` counted on `day` (a cheap check before waiting for throttle
/// slots; [`reserve_day`] decides).
pub async fn day_count(db: &Db, id: i64, day: &str) -> DbResult<u64> {
    let n: Option<i64> = sqlx::query_scalar(
        "select sends from channel_account_day_sends where channel_account_id = $1 and day = $2",
    )
    .bind(id)
    .bind(day.to_owned())
    .fetch_optional(db.pool())
    .await?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Gives back a send counted by [`reserve_day`] that did not happen (the breaker held it).
pub async fn release_day(db: &Db, id: i64, day: &str) -> DbResult<()> {
    sqlx::query(
        "update channel_account_day_sends set sends = sends - 1 \
         where channel_account_id = $1 and day = $2 and sends > 0",
    )
    .bind(id)
    .bind(day.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Puts a claimed recipient back in the queue until `at` with the reason `reason` (the
/// attempt is not counted): held, not failed.
pub async fn hold(db: &Db, recipient: i64, owner: &str, at: i64, reason: &str) -> DbResult<()> {
    sqlx::query(
        "update campaign_recipients set status = 'queued', next_attempt_at = $1, error = $2, \
         lease_owner = null, lease_until = null, attempts = attempts - 1, dispatched_at = null, \
         updated_at = $3 where id = $4 and lease_owner = $5 and status = 'sending'",
    )
    .bind(at)
    .bind(reason.to_owned())
    .bind(now_ms())
    .bind(recipient)
    .bind(owner.to_owned())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Recipients of a campaign waiting, queued, because of a limit (reason → count).
pub async fn held(
    conn: &mut sqlx::AnyConnection,
    campaign_id: i64,
) -> DbResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select error, count(*) from campaign_recipients where campaign_id = $1 \
         and status = 'queued' and error like 'held:%' group by error",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pace_is_the_stricter_of_the_second_and_minute_limits() {
        let r = |v: Value| AccountRate::from_settings(v.as_object().unwrap());
        assert_eq!(r(json!({})), None);
        assert_eq!(r(json!({"rate": {}})), None);
        assert_eq!(
            r(json!({"rate": {"per_second": 10}})).unwrap().pace(),
            Some(10.0)
        );
        assert_eq!(
            r(json!({"rate": {"per_minute": 120}})).unwrap().pace(),
            Some(2.0)
        );
        assert_eq!(
            r(json!({"rate": {"per_second": 5, "per_minute": 600}}))
                .unwrap()
                .pace(),
            Some(5.0)
        );
        let day_only = r(json!({"rate": {"per_day": 1000}})).unwrap();
        assert_eq!((day_only.pace(), day_only.per_day), (None, Some(1000)));
    }

    #[test]
    fn bad_rates_are_named_by_key() {
        let fields = |v: Value| {
            let mut p = Problems::default();
            check(&v, &mut p);
            match p.into_result() {
                Ok(()) => Vec::new(),
                Err(crate::api::ApiError::Validation(errors)) => {
                    let mut f: Vec<String> = errors.into_iter().map(|e| e.field).collect();
                    f.sort();
                    f
                }
                Err(other) => panic!("{other:?}"),
            }
        };
        assert!(fields(json!({"per_second": 2.5, "per_minute": 100, "per_day": 1000})).is_empty());
        assert_eq!(fields(json!(5)), vec!["settings.rate"]);
        assert_eq!(fields(json!({})), vec!["settings.rate"]);
        assert_eq!(
            fields(json!({"per_second": 0, "per_minute": 1.5, "per_day": -1, "per_hour": 3})),
            vec![
                "settings.rate.per_day",
                "settings.rate.per_hour",
                "settings.rate.per_minute",
                "settings.rate.per_second"
            ]
        );
    }

    #[test]
    fn days_follow_the_tenant_time_zone() {
        let zone = jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap();
        // 02:30 UTC is still the previous evening in São Paulo (UTC-3).
        let at: jiff::Timestamp = "2026-11-23T02:30:00Z".parse().unwrap();
        let (day, next) = day_of(at, &zone);
        assert_eq!(day, "2026-11-22");
        let next_start: jiff::Timestamp = "2026-11-23T03:00:00Z".parse().unwrap();
        assert_eq!(next, next_start.as_millisecond());
    }
}
