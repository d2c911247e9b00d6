//! Per-user features, their encodings and robust scaling.
//!
//! Every feature is defined precisely in `docs/segmentation.md`.

use serde::{Deserialize, Serialize};

use crate::aggregate::UserAgg;
use crate::model::{Channel, GameType};

/// Ticket band of a user's average bet, relative to the other users of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketBand {
    /// Below the low quantile.
    Low,
    /// Between the quantiles.
    Medium,
    /// At or above the high quantile.
    High,
}

/// Parameters of feature computation (stored with each run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureParams {
    /// Quantiles of the average ticket that separate low/medium and medium/high.
    pub ticket_quantiles: (f64, f64),
    /// First local hour of "night" (inclusive).
    pub night_start_hour: u8,
    /// Last local hour of "night" (exclusive), after midnight.
    pub night_end_hour: u8,
    /// Reference time for recency and tenure, epoch ms (`None`: the latest transaction).
    pub as_of: Option<i64>,
    /// Weight of the game-type shares in the clustering matrix.
    pub share_weight: f64,
    /// Weight of the preferred-channel one-hot columns (0: not clustered on).
    pub channel_weight: f64,
    /// Weight of the promo share (cashback + bonus): small in absolute terms
    /// (a hunter's is ~0.3), yet the behaviour campaigns care most about.
    pub promo_weight: f64,
    /// Weight of the volume columns (bets per active day, frequency, average
    /// deposit) after robust scaling: they vary a lot inside any behaviour
    /// group, so at full weight they split groups into engagement tiers.
    pub volume_weight: f64,
}

impl Default for FeatureParams {
    fn default() -> Self {
        FeatureParams {
            ticket_quantiles: (0.4, 0.8),
            night_start_hour: 22,
            night_end_hour: 6,
            as_of: None,
            share_weight: 3.0,
            channel_weight: 0.0,
            volume_weight: 0.5,
            promo_weight: 3.5,
        }
    }
}

/// The features of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserFeatures {
    /// The user.
    pub user_id: String,
    /// Game type with the largest stake (`None`: no bets).
    pub favorite_game: Option<GameType>,
    /// Share of stake per game type, [`GameType::ALL`] order; sums to 1 (0 without bets).
    pub game_share: [f64; 6],
    /// Number of bets.
    pub bets: u32,
    /// Total stake, BRL.
    pub stake: f64,
    /// Stake ÷ bets, BRL (0 without bets).
    pub avg_ticket: f64,
    /// Band of `avg_ticket` among users with bets.
    pub ticket_band: Option<TicketBand>,
    /// Distinct local days with a bet.
    pub active_days: u32,
    /// Bets ÷ active days.
    pub bets_per_active_day: f64,
    /// Share of bets placed at night (local `night_start_hour`..24 and 0..`night_end_hour`).
    pub night_share: f64,
    /// Share of bets placed in local business hours (09:00–17:59).
    pub day_share: f64,
    /// Share of bets placed on Saturday or Sunday (local).
    pub weekend_share: f64,
    /// Local hour with the most bets (ties: earliest).
    pub peak_hour: Option<u8>,
    /// Local weekday with the most bets, 0 = Monday (ties: earliest).
    pub peak_weekday: Option<u8>,
    /// Preferred channel from the users file.
    pub channel: Option<Channel>,
    /// (cashback + bonus) ÷ (cashback + bonus + deposits), by amount.
    pub promo_share: f64,
    /// Cashback plus bonus credits received, BRL.
    pub promo_amount: f64,
    /// Number of deposits.
    pub deposits: u32,
    /// Average deposit, BRL.
    pub avg_deposit: f64,
    /// Number of withdrawals.
    pub withdrawals: u32,
    /// Average withdrawal, BRL.
    pub avg_withdrawal: f64,
    /// Deposits − withdrawals, BRL.
    pub net_deposit: f64,
    /// Days from the last transaction to `as_of` (RFM recency).
    pub recency_days: f64,
    /// Bets (RFM frequency).
    pub frequency: u32,
    /// Stake (RFM monetary).
    pub monetary: f64,
    /// Gross gaming revenue: stake − wins, BRL.
    pub ggr: f64,
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// Linear-interpolated quantile of sorted values (`q` in 0..=1).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Computes every user's features. `channel_of` gives the preferred channel
/// from the users file.
pub fn compute_features(
    users: &[(String, UserAgg)],
    params: &FeatureParams,
    channel_of: impl Fn(&str) -> Option<Channel>,
) -> Vec<UserFeatures> {
    let as_of = params
        .as_of
        .unwrap_or_else(|| users.iter().map(|(_, a)| a.last_at).max().unwrap_or(0));
    let mut out: Vec<UserFeatures> = users
        .iter()
        .map(|(id, a)| {
            let bets = f64::from(a.bets);
            let favorite_game = (a.bets > 0).then(|| GameType::ALL[argmax(&a.stake_by_game)]);
            let night: u32 = a
                .bets_by_hour
                .iter()
                .enumerate()
                .filter(|(h, _)| {
                    *h >= usize::from(params.night_start_hour)
                        || *h < usize::from(params.night_end_hour)
                })
                .map(|(_, n)| n)
                .sum();
            let promo = a.cashback_amount + a.bonus_amount;
            UserFeatures {
                user_id: id.clone(),
                favorite_game,
                game_share: std::array::from_fn(|g| share(a.stake_by_game[g], a.stake)),
                bets: a.bets,
                stake: a.stake,
                avg_ticket: share(a.stake, bets),
                ticket_band: None,
                active_days: a.bet_days.len() as u32,
                bets_per_active_day: share(bets, a.bet_days.len() as f64),
                night_share: share(f64::from(night), bets),
                day_share: share(f64::from(a.bets_by_hour[9..18].iter().sum::<u32>()), bets),
                weekend_share: share(f64::from(a.bets_by_weekday[5] + a.bets_by_weekday[6]), bets),
                peak_hour: (a.bets > 0).then(|| argmax(&a.bets_by_hour) as u8),
                peak_weekday: (a.bets > 0).then(|| argmax(&a.bets_by_weekday) as u8),
                channel: channel_of(id),
                promo_share: share(promo, promo + a.deposit_amount),
                promo_amount: promo,
                deposits: a.deposits,
                avg_deposit: share(a.deposit_amount, f64::from(a.deposits)),
                withdrawals: a.withdrawals,
                avg_withdrawal: share(a.withdrawal_amount, f64::from(a.withdrawals)),
                net_deposit: a.deposit_amount - a.withdrawal_amount,
                recency_days: ((as_of - a.last_at) as f64 / 86_400_000.0).max(0.0),
                frequency: a.bets,
                monetary: a.stake,
                ggr: a.stake - a.win_amount,
            }
        })
        .collect();
    let mut tickets: Vec<f64> = out
        .iter()
        .filter(|f| f.bets > 0)
        .map(|f| f.avg_ticket)
        .collect();
    tickets.sort_unstable_by(f64::total_cmp);
    let lo = quantile_sorted(&tickets, params.ticket_quantiles.0);
    let hi = quantile_sorted(&tickets, params.ticket_quantiles.1);
    for f in &mut out {
        if f.bets > 0 {
            f.ticket_band = Some(if f.avg_ticket >= hi {
                TicketBand::High
            } else if f.avg_ticket < lo {
                TicketBand::Low
            } else {
                TicketBand::Medium
            });
        }
    }
    out
}

/// Robust scaler of one column: `(x − median) ÷ IQR` (IQR 0 → 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    /// The median.
    pub center: f64,
    /// The interquartile range (1 when it is 0).
    pub scale: f64,
}

impl RobustScaler {
    /// Fits on a column.
    pub fn fit(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        let center = quantile_sorted(&v, 0.5);
        let iqr = quantile_sorted(&v, 0.75) - quantile_sorted(&v, 0.25);
        RobustScaler {
            center,
            scale: if iqr > 1e-12 { iqr } else { 1.0 },
        }
    }

    /// Scales one value.
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.center) / self.scale
    }
}

/// A dense row-major matrix of f64.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows × cols` values, row after row.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Builds from rows of equal length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * cols);
        for r in rows {
            assert_eq!(r.len(), cols, "rows of equal length");
            data.extend_from_slice(r);
        }
        Matrix {
            rows: rows.len(),
            cols,
            data,
        }
    }

    /// Builds from f32 values, row-major.
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Self {
        assert_eq!(data.len(), rows * cols);
        Matrix {
            rows,
            cols,
            data: data.iter().map(|&x| f64::from(x)).collect(),
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// The clustering matrix and how each column was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMatrix {
    /// Column names.
    pub names: Vec<String>,
    /// Per column: the scaler for robust-scaled columns, `None` for shares.
    pub scalers: Vec<Option<RobustScaler>>,
    /// One row per user, in the order of the features given.
    pub matrix: Matrix,
}

/// The raw (unscaled) value of each clustering column for one user.
pub fn raw_columns(
    f: &UserFeatures,
    params: &FeatureParams,
) -> Vec<(&'static str, f64, Option<f64>)> {
    // (name, value, weight after robust scaling, or None: used as it is)
    let mut v = Vec::with_capacity(18);
    const SHARE_NAMES: [&str; 6] = [
        "share_crash",
        "share_slots",
        "share_live_casino",
        "share_sports",
        "share_table",
        "share_other",
    ];
    for (g, name) in SHARE_NAMES.iter().enumerate() {
        v.push((*name, f.game_share[g] * params.share_weight, None));
    }
    let vw = Some(params.volume_weight);
    let sw = params.share_weight;
    v.push(("log_avg_ticket", f.avg_ticket.ln_1p(), Some(1.0)));
    v.push(("log_bets_per_active_day", f.bets_per_active_day.ln_1p(), vw));
    v.push(("night_share", f.night_share * sw, None));
    v.push(("weekend_share", f.weekend_share * sw, None));
    v.push(("promo_share", f.promo_share * params.promo_weight, None));
    v.push(("log_avg_deposit", f.avg_deposit.ln_1p(), vw));
    v.push(("log_frequency", f64::from(f.frequency).ln_1p(), vw));
    if params.channel_weight > 0.0 {
        const CHANNEL_NAMES: [&str; 4] = [
            "channel_sms",
            "channel_whatsapp",
            "channel_email",
            "channel_push",
        ];
        for (c, name) in CHANNEL_NAMES.iter().enumerate() {
            let on = f.channel.is_some_and(|ch| ch.index() == c);
            v.push((*name, if on { params.channel_weight } else { 0.0 }, None));
        }
    }
    v
}

/// Builds the clustering matrix: shares as they are (times their weight),
/// heavy-tailed amounts as `ln(1 + x)` then robust-scaled (times their weight).
pub fn feature_matrix(features: &[UserFeatures], params: &FeatureParams) -> FeatureMatrix {
    let raws: Vec<Vec<(&'static str, f64, Option<f64>)>> =
        features.iter().map(|f| raw_columns(f, params)).collect();
    let template = raw_columns(
        features
            .first()
            .cloned()
            .as_ref()
            .unwrap_or(&empty_features()),
        params,
    );
    let cols = template.len();
    let mut scalers = Vec::with_capacity(cols);
    for (c, (_, _, weight)) in template.iter().enumerate() {
        scalers.push(weight.map(|w| {
            let col: Vec<f64> = raws.iter().map(|r| r[c].1).collect();
            let s = RobustScaler::fit(&col);
            // The weight folds into the scale: (x − median) ÷ (IQR ÷ w).
            RobustScaler {
                center: s.center,
                scale: s.scale / w,
            }
        }));
    }
    let mut data = Vec::with_capacity(features.len() * cols);
    for r in &raws {
        for (c, (_, x, _)) in r.iter().enumerate() {
            data.push(scalers[c].map_or(*x, |s| s.apply(*x)));
        }
    }
    FeatureMatrix {
        names: template.iter().map(|(n, _, _)| (*n).to_owned()).collect(),
        scalers,
        matrix: Matrix {
            rows: features.len(),
            cols,
            data,
        },
    }
}

fn empty_features() -> UserFeatures {
    compute_features(
        &[(String::new(), UserAgg::default())],
        &FeatureParams::default(),
        |_| None,
    )
    .remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{aggregate_transactions, offset_seconds};
    use crate::model::{Transaction, TxKind};
    use jiff::tz::TimeZone;

    fn tx(
        id: &str,
        user: &str,
        at: &str,
        kind: TxKind,
        game: GameType,
        amount: f64,
    ) -> Transaction {
        let ts: jiff::Timestamp = at.parse().unwrap();
        Transaction {
            transaction_id: id.into(),
            user_id: user.into(),
            created_at: ts.as_millisecond(),
            kind,
            game_type: game,
            game_name: String::new(),
            amount,
        }
    }

    /// Hand-made history (UTC timestamps; São Paulo is UTC−3):
    /// user a: 3 crash bets (10, 20, 30) at 23:30/23:45 local on Saturday
    /// 2026-02-28 and 14:00 Monday 2026-03-02; 1 slots bet of 40; a win of 25;
    /// deposits 100 and 50; a withdrawal of 30; cashback 10, bonus 15.
    fn history() -> Vec<Transaction> {
        use GameType::*;
        use TxKind::*;
        vec![
            tx("1", "a", "2026-03-01T02:30:00Z", Bet, Crash, 10.0),
            tx("2", "a", "2026-03-01T02:45:00Z", Bet, Crash, 20.0),
            tx("3", "a", "2026-03-02T17:00:00Z", Bet, Crash, 30.0),
            tx("4", "a", "2026-03-02T17:10:00Z", Bet, Slots, 40.0),
            tx("5", "a", "2026-03-02T17:11:00Z", Win, Slots, 25.0),
            tx("6", "a", "2026-02-28T12:00:00Z", Deposit, Other, 100.0),
            tx("7", "a", "2026-03-02T12:00:00Z", Deposit, Other, 50.0),
            tx("8", "a", "2026-03-03T12:00:00Z", Withdrawal, Other, 30.0),
            tx("9", "a", "2026-03-01T12:00:00Z", Cashback, Other, 10.0),
            tx("10", "a", "2026-03-01T13:00:00Z", Bonus, Other, 15.0),
            tx("11", "b", "2026-03-04T15:00:00Z", Bet, Sports, 5.0),
            tx("12", "c", "2026-03-04T15:00:00Z", Bet, Sports, 500.0),
        ]
    }

    fn features() -> Vec<UserFeatures> {
        let sp = TimeZone::get("America/Sao_Paulo").unwrap();
        let aggs = aggregate_transactions(&history(), &sp);
        assert_eq!(offset_seconds(&sp, 0), -3 * 3600);
        compute_features(&aggs, &FeatureParams::default(), |id| {
            (id == "a").then_some(Channel::Whatsapp)
        })
    }

    #[test]
    fn game_ticket_and_activity_features() {
        let f = features();
        let a = &f[0];
        assert_eq!(a.user_id, "a");
        assert_eq!(a.favorite_game, Some(GameType::Crash));
        assert_eq!(a.game_share[GameType::Crash.index()], 0.6);
        assert_eq!(a.game_share[GameType::Slots.index()], 0.4);
        assert_eq!(a.bets, 4);
        assert_eq!(a.avg_ticket, 25.0);
        // Bets on local 2026-02-28 (two) and 2026-03-02 (two).
        assert_eq!(a.active_days, 2);
        assert_eq!(a.bets_per_active_day, 2.0);
        // 23:30 and 23:45 local are night; 14:00 and 14:10 are not.
        assert_eq!(a.night_share, 0.5);
        assert_eq!(a.day_share, 0.5);
        assert_eq!(a.weekend_share, 0.5);
        assert_eq!(a.peak_hour, Some(14));
        // Saturday (5) and Monday (0) tie at 2: earliest wins.
        assert_eq!(a.peak_weekday, Some(0));
        assert_eq!(a.channel, Some(Channel::Whatsapp));
        assert_eq!(f[1].channel, None);
    }

    #[test]
    fn money_rfm_and_bands() {
        let f = features();
        let a = &f[0];
        assert_eq!(a.promo_amount, 25.0);
        assert_eq!(a.promo_share, 25.0 / 175.0);
        assert_eq!(a.deposits, 2);
        assert_eq!(a.avg_deposit, 75.0);
        assert_eq!(a.withdrawals, 1);
        assert_eq!(a.avg_withdrawal, 30.0);
        assert_eq!(a.net_deposit, 120.0);
        assert_eq!(a.ggr, 100.0 - 25.0);
        assert_eq!(a.frequency, 4);
        assert_eq!(a.monetary, 100.0);
        // Last transaction of a: 2026-03-03T12:00Z; as_of is the latest
        // transaction overall, 2026-03-04T15:00Z: 1 day 3 hours.
        assert!((a.recency_days - 27.0 / 24.0).abs() < 1e-12);
        assert_eq!(f[1].recency_days, 0.0);
        // Tickets 5 (b), 25 (a), 500 (c): quantiles 0.4 → 21, 0.8 → 310.
        assert_eq!(f[1].ticket_band, Some(TicketBand::Low));
        assert_eq!(a.ticket_band, Some(TicketBand::Medium));
        assert_eq!(f[2].ticket_band, Some(TicketBand::High));
    }

    #[test]
    fn robust_scaling_and_matrix() {
        let s = RobustScaler::fit(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!(s.center, 3.0);
        assert_eq!(s.scale, 2.0);
        assert_eq!(s.apply(7.0), 2.0);
        assert_eq!(RobustScaler::fit(&[5.0, 5.0]).scale, 1.0);
        let f = features();
        let m = feature_matrix(&f, &FeatureParams::default());
        assert_eq!(m.matrix.rows, 3);
        assert_eq!(m.names.len(), m.matrix.cols);
        assert_eq!(m.names[0], "share_crash");
        // Shares are weighted (3×), not scaled.
        assert!((m.matrix.row(0)[0] - 1.8).abs() < 1e-12);
        assert!(m.scalers[0].is_none());
        // ln(1+ticket) robust-scaled: a is the median ticket → 0.
        let t = m.names.iter().position(|n| n == "log_avg_ticket").unwrap();
        assert_eq!(m.matrix.row(0)[t], 0.0);
        let with_channel = FeatureParams {
            channel_weight: 1.0,
            ..FeatureParams::default()
        };
        let m = feature_matrix(&f, &with_channel);
        let w = m
            .names
            .iter()
            .position(|n| n == "channel_whatsapp")
            .unwrap();
        assert_eq!(m.matrix.row(0)[w], 1.0);
        assert_eq!(m.matrix.row(1)[w], 0.0);
    }
}
