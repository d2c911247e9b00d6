//! Business hours: when campaigns may send (`campaign.business_hours`, e.g.
//! `mon-fri 08:00-20:00` in `campaign.time_zone`). Outside the window recipients stay queued
//! and wait for it.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

/// A weekly sending window in a time zone.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    /// Allowed days, Monday first.
    days: [bool; 7],
    start: Time,
    end: Time,
    tz: TimeZone,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Result<usize, String> {
    DAYS.iter()
        .position(|d| *d == s)
        .ok_or_else(|| format!("unknown day `{s}`; use mon, tue, wed, thu, fri, sat, sun"))
}

fn index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

impl BusinessHours {
    /// Parses `mon-fri 08:00-20:00` (days: a range `mon-fri`, a list `mon,wed,fri`, or both
    /// `mon-wed,sat`; the end time is exclusive) in the IANA zone `tz`. Empty: no window
    /// (`None`, any time).
    pub fn parse(spec: &str, tz: &str) -> Result<Option<BusinessHours>, String> {
        let spec = spec.trim().to_ascii_lowercase();
        if spec.is_empty() {
            return Ok(None);
        }
        let tz = TimeZone::get(tz).map_err(|e| format!("unknown time zone `{tz}`: {e}"))?;
        let (days_part, times) = spec.split_once(' ').ok_or_else(|| {
            "expected `<days> <HH:MM>-<HH:MM>`, e.g. `mon-fri 08:00-20:00`".to_string()
        })?;
        let mut days = [false; 7];
        for item in days_part.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut i = a;
                    loop {
                        days[i] = true;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => days[day(item)?] = true,
            }
        }
        let (start, end) = times
            .trim()
            .split_once('-')
            .ok_or_else(|| "expected a time range like 08:00-20:00".to_string())?;
        let time = |t: &str| {
            t.trim()
                .parse::<Time>()
                .map_err(|_| format!("bad time `{t}`; use HH:MM"))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start >= end {
            return Err("the window must end after it starts (same day)".into());
        }
        Ok(Some(BusinessHours {
            days,
            start,
            end,
            tz,
        }))
    }

    /// Whether sending is allowed at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let local = at.to_zoned(self.tz.clone());
        let t = local.time();
        self.days[index(local.weekday())] && self.start <= t && t < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_window_is_read_in_its_time_zone() {
        let h = BusinessHours::parse("mon-fri 08:00-20:00", "America/Sao_Paulo")
            .unwrap()
            .unwrap();
        // Monday 2026-11-23 in São Paulo (UTC-3).
        assert!(!h.is_open(at("2026-11-23T10:59:59Z"))); // 07:59:59 local
        assert!(h.is_open(at("2026-11-23T11:00:00Z"))); // 08:00
        assert!(h.is_open(at("2026-11-23T22:59:59Z"))); // 19:59:59
        assert!(!h.is_open(at("2026-11-23T23:00:00Z"))); // 20:00, end exclusive
        // Saturday.
        assert!(!h.is_open(at("2026-11-28T15:00:00Z")));
    }

    #[test]
    fn day_lists_ranges_and_errors() {
        let h = BusinessHours::parse("sat-mon,wed 00:00-23:59", "UTC")
            .unwrap()
            .unwrap();
        assert_eq!(h.days, [true, false, true, false, false, true, true]);
        assert!(BusinessHours::parse("", "UTC").unwrap().is_none());
        assert!(BusinessHours::parse("mon-fri", "UTC").is_err());
        assert!(BusinessHours::parse("mon-fry 08:00-20:00", "UTC").is_err());
        assert!(BusinessHours::parse("mon 20:00-08:00", "UTC").is_err());
        assert!(BusinessHours::parse("mon 08:00-20:00", "Mars/Olympus").is_err());
    }
}
