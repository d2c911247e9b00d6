//! Scheduled segmentation: `segment.schedule` (a cron expression, evaluated in
//! `segment.time_zone`) re-runs ETL + clustering for the default account from the configured
//! lake. `farol serve` checks once a minute; a run already in progress is not started twice.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{FixedOffset, TimeZone as _};
use croner::Cron;

use crate::config::Config;
use crate::db::Db;

/// Parses a schedule, naming the key in the error.
pub fn parse(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr.trim())
        .map_err(|e| format!("key `segment.schedule`: invalid cron expression {expr:?}: {e}"))
}

/// Whether `cron` fires in the minute of `now`, read in zone `tz`.
pub fn due(cron: &Cron, tz: &jiff::tz::TimeZone, now: jiff::Timestamp) -> bool {
    let zoned = now.to_zoned(tz.clone());
    let offset = zoned.offset().seconds();
    let Some(fixed) = FixedOffset::east_opt(offset) else {
        return false;
    };
    let dt = zoned.datetime();
    let Some(local) = fixed
        .with_ymd_and_hms(
            i32::from(dt.year()),
            dt.month() as u32,
            dt.day() as u32,
            dt.hour() as u32,
            dt.minute() as u32,
            0,
        )
        .single()
    else {
        return false;
    };
    cron.is_time_matching(&local).unwrap_or(false)
}

/// Runs the schedule until `stop` is set (checked each minute).
pub fn spawn(
    db: Db,
    config: Arc<Config>,
    stop: Arc<AtomicBool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let expr = config.segment.schedule.trim().to_owned();
    if expr.is_empty() {
        return None;
    }
    let cron = match parse(&expr) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}; scheduled segmentation disabled");
            return None;
        }
    };
    let tz = match jiff::tz::TimeZone::get(&config.segment.time_zone) {
        Ok(tz) => tz,
        Err(e) => {
            tracing::error!(error = %e, "segment.time_zone is not a known zone; scheduled segmentation disabled");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let mut last_minute = i64::MIN;
        while !stop.load(Ordering::Relaxed) {
            let now = jiff::Timestamp::now();
            let minute = now.as_second().div_euclid(60);
            if minute != last_minute && due(&cron, &tz, now) {
                last_minute = minute;
                if let Err(e) = run_once(&db, &config).await {
                    tracing::warn!(error = %format!("{e:#}"), "scheduled segmentation failed");
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }))
}

async fn run_once(db: &Db, config: &Config) -> anyhow::Result<()> {
    let account_id = crate::accounts::find(db, crate::accounts::DEFAULT_ACCOUNT)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the default account does not exist"))?;
    let running: i64 = sqlx::query_scalar(
        "select count(*) from segment_runs where account_id = $1 and status = 'running'",
    )
    .bind(account_id)
    .fetch_one(db.pool())
    .await?;
    if running > 0 || config.segment.transactions.is_empty() {
        return Ok(());
    }
    let params =
        super::routes::run_params(&config.segment, None, None, None).map_err(anyhow::Error::msg)?;
    let sources = super::service::Sources::from_config(&config.segment);
    let id = super::service::create(db, account_id, None, &sources, &params).await?;
    tracing::info!(run = id, "scheduled segmentation queued");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_fire_in_the_configured_zone() {
        let sp = jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap();
        // Every day at 03:00 in São Paulo (UTC−3): 06:00 UTC.
        let cron = parse("0 3 * * *").unwrap();
        assert!(due(&cron, &sp, at("2026-11-23T06:00:30Z")));
        assert!(!due(&cron, &sp, at("2026-11-23T03:00:00Z")));
        assert!(!due(&cron, &sp, at("2026-11-23T06:01:00Z")));
        // Mondays at 08:15.
        let cron = parse("15 8 * * MON").unwrap();
        assert!(
            due(&cron, &sp, at("2026-11-23T11:15:00Z")),
            "2026-11-23 is a Monday"
        );
        assert!(!due(&cron, &sp, at("2026-11-24T11:15:00Z")));
    }

    #[test]
    fn a_bad_expression_names_the_key() {
        let e = parse("every day").unwrap_err();
        assert!(
            e.contains("segment.schedule") && e.contains("every day"),
            "{e}"
        );
    }
}
