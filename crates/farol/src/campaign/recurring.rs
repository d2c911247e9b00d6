//! Recurring campaigns: a campaign with a `cron` (and its `time_zone`) is a recurrence. Once
//! launched it stays `scheduled` with `next_run_at`; at each cron time a worker creates an
//! **occurrence** — a child campaign (`parent_id`) with the same template, audience, channel,
//! throttle and frequency cap — and launches it with a fresh audience snapshot, so each
//! occurrence has its own recipients, results and audit entries. With `skip_previous`, clients
//! the previous occurrence sent to are skipped (reason `previous_occurrence`). Pausing or
//! cancelling the recurrence stops future occurrences (occurrences already running are
//! separate campaigns: pause or cancel them on their own).
//!
//! Several workers may tick at once: the occurrence is created in the transaction that moves
//! `next_run_at` forward by compare-and-set, so each cron time yields one occurrence. A crash
//! after that commit leaves the occurrence in draft; the next tick launches it.

use std::collections::HashSet;

use croner::Cron;

use super::campaigns;
use super::channels::Channels;
use super::store::CampaignRow;
use super::templates::Channel;
use crate::api::Problems;
use crate::audit::Actor;
use crate::db::{Db, DbResult, Tx, now_ms};

/// How far ahead the next occurrence is looked for.
const HORIZON_MINUTES: i64 = 366 * 24 * 60;

fn parse(expr: &str) -> Result<Cron, String> {
    use std::str::FromStr;
    Cron::from_str(expr.trim()).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// The first cron minute strictly after `after_ms` (epoch ms), read in `tz`; `None` when it
/// never fires within a year.
pub fn next_after(cron: &Cron, tz: &jiff::tz::TimeZone, after_ms: i64) -> Option<i64> {
    let first = after_ms.div_euclid(60_000) + 1;
    (first..first + HORIZON_MINUTES).find_map(|minute| {
        let at = jiff::Timestamp::from_second(minute * 60).ok()?;
        crate::segment::schedule::due(cron, tz, at).then_some(minute * 60_000)
    })
}

/// Checks a cron and its time zone, naming the bad field; the normalized pair.
pub fn check(
    problems: &mut Problems,
    cron: Option<&str>,
    tz: Option<&str>,
    default_tz: &str,
) -> Option<(String, String)> {
    let cron = cron.map(str::trim).filter(|c| !c.is_empty());
    let Some(expr) = cron else {
        if tz.is_some_and(|t| !t.trim().is_empty()) {
            problems.add(
                "time_zone",
                "requires_cron",
                "time_zone applies to recurring campaigns (give cron)",
            );
        }
        return None;
    };
    let tz_name = tz
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(default_tz);
    let zone = match jiff::tz::TimeZone::get(tz_name) {
        Ok(z) => z,
        Err(_) => {
            problems.add(
                "time_zone",
                "invalid_time_zone",
                format!("`{tz_name}` is not an IANA time zone (e.g. America/Sao_Paulo)"),
            );
            return None;
        }
    };
    match parse(expr) {
        Err(e) => problems.add("cron", "invalid_cron", e),
        Ok(c) => {
            if next_after(&c, &zone, now_ms()).is_none() {
                problems.add(
                    "cron",
                    "never_fires",
                    format!("`{expr}` does not fire within a year"),
                );
            } else {
                return Some((expr.to_owned(), tz_name.to_owned()));
            }
        }
    }
    None
}

fn next_of(c: &CampaignRow, after_ms: i64) -> Option<i64> {
    let cron = parse(c.cron.as_deref()?).ok()?;
    let tz = jiff::tz::TimeZone::get(c.cron_time_zone.as_deref().unwrap_or("UTC")).ok()?;
    next_after(&cron, &tz, after_ms)
}

/// Launches a recurrence: it waits, `scheduled`, for its first cron time at or after
/// `not_before` (epoch ms; now when absent). No recipients are fixed yet.
pub async fn launch(
    tx: &mut Tx,
    c: &CampaignRow,
    not_before: Option<i64>,
) -> DbResult<Option<i64>> {
    let now = now_ms();
    let from = not_before.unwrap_or(now).max(now) - 60_000;
    let next = next_of(c, from);
    sqlx::query(
        "update campaigns set status = 'scheduled', scheduled_at = null, next_run_at = $1, launched_at = $2, updated_at = $2 where id = $3",
    )
    .bind(next)
    .bind(now)
    .bind(c.id)
    .execute(&mut **tx)
    .await?;
    Ok(next)
}

/// After a resume: a recurrence waits for its next cron time again (not the ones missed while
/// paused).
pub async fn after_resume(tx: &mut Tx, c: &CampaignRow) -> DbResult<()> {
    if c.cron.is_none() {
        return Ok(());
    }
    let now = now_ms();
    sqlx::query("update campaigns set status = 'scheduled', scheduled_at = null, next_run_at = $1 where id = $2")
        .bind(next_of(c, now))
        .bind(c.id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Clients an occurrence must skip because the previous occurrence of its recurrence sent to
/// them (when the recurrence says so).
pub async fn previously_sent(tx: &mut Tx, c: &CampaignRow) -> DbResult<HashSet<i64>> {
    let Some(parent) = c.parent_id else {
        return Ok(HashSet::new());
    };
    if c.skip_previous == 0 {
        return Ok(HashSet::new());
    }
    let previous: Option<i64> = sqlx::query_scalar(
        "select id from campaigns where parent_id = $1 and id < $2 order by id desc limit 1",
    )
    .bind(parent)
    .bind(c.id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(previous) = previous else {
        return Ok(HashSet::new());
    };
    let ids: Vec<i64> = sqlx::query_scalar(
        "select client_id from campaign_recipients where campaign_id = $1 and status = 'sent'",
    )
    .bind(previous)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Creates and launches the occurrences that are due (and launches occurrences a crash left in
/// draft). Recurrences whose channel this process lacks are left to processes that have it.
pub async fn tick(db: &Db, channels: &Channels) -> anyhow::Result<usize> {
    let now = now_ms();
    // Read first: idle workers poll this (see store::start_due).
    let due: Vec<i64> = sqlx::query_scalar(
        "select id from campaigns where status = 'scheduled' and cron is not null and next_run_at <= $1 order by id limit 20",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut launched = 0;
    for id in due {
        let mut tx = db.begin().await?;
        let c = super::store::get_any(&mut tx, id).await?;
        let Some(at) = c.next_run_at else { continue };
        let channel = Channel::parse(&c.channel).unwrap_or(Channel::Email);
        if channels.get(channel).is_none() && channels.registry().is_none() {
            continue;
        }
        let next = next_of(&c, now);
        let moved = sqlx::query(
            "update campaigns set next_run_at = $1, updated_at = $2 where id = $3 and next_run_at = $4 and status = 'scheduled'",
        )
        .bind(next)
        .bind(now)
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            continue;
        }
        let tz = jiff::tz::TimeZone::get(c.cron_time_zone.as_deref().unwrap_or("UTC"))
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let local = jiff::Timestamp::from_millisecond(at)
            .map(|t| t.to_zoned(tz).strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let name: String = format!("{} — {local}", c.name).chars().take(200).collect();
        sqlx::query(
            "insert into campaigns (account_id, name, channel, template_id, audience_id, status, throttle_per_sec, \
             created_by, created_at, updated_at, frequency_cap, skip_previous, parent_id, channel_account_id, channel_templates) \
             values ($1, $2, $3, $4, $5, 'draft', $6, $7, $8, $8, $9, $10, $11, $12, $13)",
        )
        .bind(c.account_id)
        .bind(name)
        .bind(c.channel.clone())
        .bind(c.template_id)
        .bind(c.audience_id)
        .bind(c.throttle_per_sec)
        .bind(c.created_by)
        .bind(now)
        .bind(c.frequency_cap)
        .bind(c.skip_previous)
        .bind(id)
        .bind(c.channel_account_id)
        .bind(c.channel_templates.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    // Occurrences in draft: just created above, or left by a crash.
    let drafts: Vec<(i64, i64, String)> = sqlx::query_as(
        "select o.id, o.account_id, o.channel from campaigns o join campaigns p on p.id = o.parent_id \
         where o.status = 'draft' and o.parent_id is not null order by o.id limit 20",
    )
    .fetch_all(db.pool())
    .await?;
    for (id, account_id, channel) in drafts {
        let channel = Channel::parse(&channel).unwrap_or(Channel::Email);
        if channels.get(channel).is_none() && channels.registry().is_none() {
            continue;
        }
        let actor = Actor::system(account_id, "recurring");
        match campaigns::launch(db, channels, &actor, id, None).await {
            Ok(_) => {
                launched += 1;
                tracing::info!(occurrence = id, "recurring campaign occurrence launched");
            }
            Err(crate::api::ApiError::Conflict { .. }) => {} // another worker launched it
            Err(e) => tracing::warn!(occurrence = id, error = %e, "cannot launch occurrence"),
        }
    }
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn the_next_occurrence_is_read_in_the_campaign_time_zone() {
        let cron = parse("0 9 * * 1-5").unwrap();
        let sp = jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap();
        // Friday 2026-11-20 10:00 in São Paulo → Monday 09:00 (12:00 UTC).
        assert_eq!(
            next_after(&cron, &sp, ms("2026-11-20T13:00:00Z")),
            Some(ms("2026-11-23T12:00:00Z"))
        );
        // Monday 08:59:30 local → the same day 09:00.
        assert_eq!(
            next_after(&cron, &sp, ms("2026-11-23T11:59:30Z")),
            Some(ms("2026-11-23T12:00:00Z"))
        );
        // Strictly after: at 09:00 itself the next one is Tuesday.
        assert_eq!(
            next_after(&cron, &sp, ms("2026-11-23T12:00:00Z")),
            Some(ms("2026-11-24T12:00:00Z"))
        );
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(
            next_after(&cron, &utc, ms("2026-11-23T08:00:00Z")),
            Some(ms("2026-11-23T09:00:00Z"))
        );
    }

    #[test]
    fn bad_crons_and_zones_are_named() {
        let mut p = Problems::default();
        assert!(check(&mut p, Some("0 9 * *"), None, "UTC").is_none());
        assert!(check(&mut p, Some("0 9 * * *"), Some("Mars/Olympus"), "UTC").is_none());
        assert!(check(&mut p, Some("0 0 30 2 *"), None, "UTC").is_none());
        assert!(check(&mut p, None, Some("UTC"), "UTC").is_none());
        let err = p.into_result().unwrap_err();
        let crate::api::ApiError::Validation(fields) = err else {
            panic!()
        };
        let codes: Vec<_> = fields
            .iter()
            .map(|f| (f.field.as_str(), f.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("cron", "invalid_cron"),
                ("time_zone", "invalid_time_zone"),
                ("cron", "never_fires"),
                ("time_zone", "requires_cron")
            ]
        );
        let mut p = Problems::default();
        assert_eq!(
            check(
                &mut p,
                Some(" 0 9 * * 1-5 "),
                Some("America/Sao_Paulo"),
                "UTC"
            ),
            Some(("0 9 * * 1-5".into(), "America/Sao_Paulo".into()))
        );
    }
}
