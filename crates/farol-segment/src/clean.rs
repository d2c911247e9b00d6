//! Cleaning: turning raw cells into typed values, and the counts of what was
//! dropped and why.

use std::collections::BTreeMap;

use jiff::{Timestamp, civil, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::model::{GameType, TxKind};

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The transaction id is empty.
    MissingTransactionId,
    /// The user id is empty.
    MissingUserId,
    /// The timestamp is empty or not a date-time.
    BadTimestamp,
    /// The type is not one of bet/win/deposit/withdrawal/cashback/bonus.
    UnknownType,
    /// The game type is not one of crash/slots/live_casino/sports/table/other.
    UnknownGameType,
    /// The amount is empty, not a number, or not finite.
    BadAmount,
    /// The amount is negative.
    NegativeAmount,
    /// The row could not be decoded at all (wrong column type, broken file).
    Unreadable,
}

/// One rejected cell, kept as an example for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectSample {
    /// The file it came from.
    pub file: String,
    /// Row number (CSV: header is row 1; Parquet: 1-based data row in the file).
    pub row: u64,
    /// The source column's name.
    pub column: String,
    /// The raw value, as text.
    pub raw: String,
    /// Why it was rejected.
    pub reason: RejectReason,
}

/// What cleaning did: counts per outcome and a few samples per reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CleanReport {
    /// Files read.
    pub files: u64,
    /// Data rows read (all outcomes).
    pub rows_read: u64,
    /// Rows kept and aggregated.
    pub rows_accepted: u64,
    /// Rows dropped because their transaction id was already seen.
    pub duplicates_dropped: u64,
    /// Rejected rows per reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Up to `max_samples` examples per reason.
    pub samples: Vec<RejectSample>,
    /// The duplicate detector reached its memory budget: ids seen after that
    /// were checked against the stored ones but not stored themselves.
    pub dedup_saturated: bool,
    /// Ids that were not stored because the budget was reached.
    pub dedup_unstored: u64,
    /// Earliest accepted transaction, epoch ms.
    pub min_created_at: Option<i64>,
    /// Latest accepted transaction, epoch ms.
    pub max_created_at: Option<i64>,
    /// Distinct users with at least one accepted transaction.
    pub users: u64,
}

impl CleanReport {
    /// Total rejected rows (all reasons).
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub(crate) fn reject(
        &mut self,
        reason: RejectReason,
        max_samples: usize,
        sample: impl FnOnce() -> RejectSample,
    ) {
        let n = self.rejected.entry(reason).or_insert(0);
        *n += 1;
        if (*n as usize) <= max_samples {
            self.samples.push(sample());
        }
    }

    pub(crate) fn merge(&mut self, other: CleanReport, max_samples: usize) {
        self.files += other.files;
        self.rows_read += other.rows_read;
        self.rows_accepted += other.rows_accepted;
        self.duplicates_dropped += other.duplicates_dropped;
        for (reason, n) in other.rejected {
            *self.rejected.entry(reason).or_insert(0) += n;
        }
        for s in other.samples {
            if self.samples.iter().filter(|x| x.reason == s.reason).count() < max_samples {
                self.samples.push(s);
            }
        }
        self.dedup_saturated |= other.dedup_saturated;
        self.dedup_unstored += other.dedup_unstored;
        self.min_created_at = opt_min(self.min_created_at, other.min_created_at);
        self.max_created_at = opt_max(self.max_created_at, other.max_created_at);
    }
}

fn opt_min(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn opt_max(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A cell as decoded from CSV (text) or Parquet (typed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// Text (CSV, or a Parquet string column).
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A timestamp already converted to epoch milliseconds.
    Millis(i64),
    /// Missing.
    Null,
}

impl Cell<'_> {
    /// The cell as text, for reports.
    pub fn to_text(&self) -> String {
        match self {
            Cell::Text(s) => (*s).to_owned(),
            Cell::Int(i) | Cell::Millis(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Null => String::new(),
        }
    }
}

/// Parses an amount: `12.5`, `12,50`, `1.234,56`, `R$ 10,00`, `1,234.56`.
pub fn parse_amount(s: &str) -> Option<f64> {
    let s = s.trim();
    let s = s.strip_prefix("R$").unwrap_or(s).trim();
    if s.is_empty() {
        return None;
    }
    let v = if let Ok(v) = s.parse::<f64>() {
        v
    } else {
        let comma = s.rfind(',');
        let dot = s.rfind('.');
        let normalized: String = match (comma, dot) {
            // The last separator is the decimal one; the other groups thousands.
            (Some(c), Some(d)) if c > d => s.replace('.', "").replace(',', "."),
            (Some(_), Some(_)) => s.replace(',', ""),
            (Some(_), None) => s.replace(',', "."),
            _ => return None,
        };
        normalized.parse::<f64>().ok()?
    };
    v.is_finite().then_some(v)
}

/// Parses a timestamp to epoch milliseconds.
///
/// Accepts RFC 3339 / ISO 8601 with `Z` or an offset; naive ISO date-times
/// (`2026-03-01 21:15:00`, `2026-03-01T21:15`), dates, and Brazilian
/// `01/03/2026 21:15[:00]`, all read in `tz`; and epoch numbers (seconds below
/// 10^11, milliseconds above).
pub fn parse_timestamp(s: &str, tz: &TimeZone) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !s[1..].contains('-') {
        let n: i64 = s.parse().ok()?;
        return Some(epoch_number_to_ms(n));
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let dt = if let Ok(dt) = s.parse::<civil::DateTime>() {
        dt
    } else if let Ok(d) = s.parse::<civil::Date>() {
        d.to_datetime(civil::Time::midnight())
    } else {
        parse_br_datetime(s)?
    };
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .ok()
        .map(|t| t.as_millisecond())
}

pub(crate) fn epoch_number_to_ms(n: i64) -> i64 {
    if n.abs() < 100_000_000_000 {
        n * 1000
    } else {
        n
    }
}

fn parse_br_datetime(s: &str) -> Option<civil::DateTime> {
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, t.trim()),
        None => (s, ""),
    };
    let mut parts = date.split('/');
    let day: i8 = parts.next()?.parse().ok()?;
    let month: i8 = parts.next()?.parse().ok()?;
    let year: i16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let mut t = time.split(':');
    let (h, m, sec) = if time.is_empty() {
        (0, 0, 0)
    } else {
        let h: i8 = t.next()?.parse().ok()?;
        let m: i8 = t.next()?.parse().ok()?;
        let sec: i8 = match t.next() {
            Some(x) => x.split('.').next()?.parse().ok()?,
            None => 0,
        };
        (h, m, sec)
    };
    civil::DateTime::new(year, month, day, h, m, sec, 0).ok()
}

/// Cleans one cell of a known field into a typed value, or says why not.
pub(crate) fn cell_timestamp(c: Cell<'_>, tz: &TimeZone) -> Option<i64> {
    match c {
        Cell::Millis(ms) => Some(ms),
        Cell::Int(n) => Some(epoch_number_to_ms(n)),
        Cell::Text(s) => parse_timestamp(s, tz),
        Cell::Float(_) | Cell::Null => None,
    }
}

pub(crate) fn cell_amount(c: Cell<'_>) -> Result<f64, RejectReason> {
    let v = match c {
        Cell::Float(f) if f.is_finite() => f,
        Cell::Int(i) => i as f64,
        Cell::Text(s) => parse_amount(s).ok_or(RejectReason::BadAmount)?,
        _ => return Err(RejectReason::BadAmount),
    };
    if v < 0.0 {
        Err(RejectReason::NegativeAmount)
    } else {
        Ok(v)
    }
}

pub(crate) fn cell_kind(c: Cell<'_>) -> Option<TxKind> {
    match c {
        Cell::Text(s) => TxKind::parse(s),
        _ => None,
    }
}

pub(crate) fn cell_game(c: Cell<'_>) -> Option<GameType> {
    match c {
        Cell::Text(s) => GameType::parse(s),
        Cell::Null => Some(GameType::Other),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_brazilian_and_english_formats() {
        assert_eq!(parse_amount("12.5"), Some(12.5));
        assert_eq!(parse_amount("12,50"), Some(12.5));
        assert_eq!(parse_amount("1.234,56"), Some(1234.56));
        assert_eq!(parse_amount("1,234.56"), Some(1234.56));
        assert_eq!(parse_amount("R$ 10,00"), Some(10.0));
        assert_eq!(parse_amount("-3"), Some(-3.0));
        assert_eq!(parse_amount("abc"), None);
        assert_eq!(parse_amount("NaN"), None);
        assert_eq!(parse_amount(""), None);
        assert_eq!(
            cell_amount(Cell::Text("-3")),
            Err(RejectReason::NegativeAmount)
        );
        assert_eq!(cell_amount(Cell::Text("x")), Err(RejectReason::BadAmount));
        assert_eq!(cell_amount(Cell::Int(7)), Ok(7.0));
    }

    #[test]
    fn timestamps_with_and_without_zone() {
        let sp = TimeZone::get("America/Sao_Paulo").unwrap();
        // 2026-03-01 00:00 UTC = 1772323200000 ms.
        let utc = 1_772_323_200_000;
        assert_eq!(parse_timestamp("2026-03-01T00:00:00Z", &sp), Some(utc));
        assert_eq!(parse_timestamp("2026-03-01T00:00:00+00:00", &sp), Some(utc));
        // Naive times are São Paulo local time (UTC-3).
        assert_eq!(parse_timestamp("2026-02-28 21:00:00", &sp), Some(utc));
        assert_eq!(parse_timestamp("2026-02-28T21:00", &sp), Some(utc));
        assert_eq!(parse_timestamp("28/02/2026 21:00", &sp), Some(utc));
        assert_eq!(parse_timestamp("28/02/2026 21:00:00", &sp), Some(utc));
        assert_eq!(
            parse_timestamp("2026-03-01", &sp),
            Some(utc + 3 * 3_600_000)
        );
        assert_eq!(parse_timestamp("1772323200", &sp), Some(utc));
        assert_eq!(parse_timestamp("1772323200000", &sp), Some(utc));
        let utc_zone = TimeZone::UTC;
        assert_eq!(parse_timestamp("2026-03-01 00:00:00", &utc_zone), Some(utc));
        assert_eq!(parse_timestamp("ontem", &sp), None);
        assert_eq!(parse_timestamp("31/02/2026", &sp), None);
    }
}
