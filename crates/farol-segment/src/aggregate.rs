//! Per-user accumulators and the bounded duplicate detector.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::model::{GameType, Transaction, TxKind};

/// Everything kept about one user while transactions stream by: a fixed
/// ~340 bytes plus 2 bytes per distinct active day. Memory grows with users,
/// never with transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAgg {
    /// Number of bets.
    pub bets: u32,
    /// Total staked (sum of bet amounts), BRL.
    pub stake: f64,
    /// Stake per game type, in [`GameType::ALL`] order.
    pub stake_by_game: [f64; 6],
    /// Bets per game type.
    pub bets_by_game: [u32; 6],
    /// Number of wins.
    pub wins: u32,
    /// Total won, BRL.
    pub win_amount: f64,
    /// Number of deposits.
    pub deposits: u32,
    /// Total deposited, BRL.
    pub deposit_amount: f64,
    /// Number of withdrawals.
    pub withdrawals: u32,
    /// Total withdrawn, BRL.
    pub withdrawal_amount: f64,
    /// Number of cashback credits.
    pub cashbacks: u32,
    /// Total cashback, BRL.
    pub cashback_amount: f64,
    /// Number of bonus credits.
    pub bonuses: u32,
    /// Total bonus, BRL.
    pub bonus_amount: f64,
    /// Bets per local hour of day (0–23).
    pub bets_by_hour: [u32; 24],
    /// Bets per local weekday (0 = Monday … 6 = Sunday).
    pub bets_by_weekday: [u32; 7],
    /// First transaction of any kind, epoch ms.
    pub first_at: i64,
    /// Last transaction of any kind, epoch ms.
    pub last_at: i64,
    /// Distinct local days with at least one bet (days since 1970-01-01,
    /// clamped to 0..=65535, i.e. 1970–2149), sorted. 2 bytes per day.
    pub bet_days: Vec<u16>,
}

impl Default for UserAgg {
    fn default() -> Self {
        UserAgg {
            bets: 0,
            stake: 0.0,
            stake_by_game: [0.0; 6],
            bets_by_game: [0; 6],
            wins: 0,
            win_amount: 0.0,
            deposits: 0,
            deposit_amount: 0.0,
            withdrawals: 0,
            withdrawal_amount: 0.0,
            cashbacks: 0,
            cashback_amount: 0.0,
            bonuses: 0,
            bonus_amount: 0.0,
            bets_by_hour: [0; 24],
            bets_by_weekday: [0; 7],
            first_at: i64::MAX,
            last_at: i64::MIN,
            bet_days: Vec::new(),
        }
    }
}

impl UserAgg {
    /// Adds one transaction; `offset_seconds` is the configured zone's UTC
    /// offset at `created_at`.
    pub fn add(
        &mut self,
        kind: TxKind,
        game: GameType,
        amount: f64,
        created_at: i64,
        offset_seconds: i32,
    ) {
        self.first_at = self.first_at.min(created_at);
        self.last_at = self.last_at.max(created_at);
        match kind {
            TxKind::Bet => {
                self.bets += 1;
                self.stake += amount;
                self.stake_by_game[game.index()] += amount;
                self.bets_by_game[game.index()] += 1;
                let local = created_at + i64::from(offset_seconds) * 1000;
                let day = local.div_euclid(86_400_000);
                let hour = local.rem_euclid(86_400_000) / 3_600_000;
                // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
                let weekday = (day + 3).rem_euclid(7);
                self.bets_by_hour[hour as usize] += 1;
                self.bets_by_weekday[weekday as usize] += 1;
                let day = day.clamp(0, i64::from(u16::MAX)) as u16;
                if let Err(i) = self.bet_days.binary_search(&day) {
                    self.bet_days.insert(i, day);
                }
            }
            TxKind::Win => {
                self.wins += 1;
                self.win_amount += amount;
            }
            TxKind::Deposit => {
                self.deposits += 1;
                self.deposit_amount += amount;
            }
            TxKind::Withdrawal => {
                self.withdrawals += 1;
                self.withdrawal_amount += amount;
            }
            TxKind::Cashback => {
                self.cashbacks += 1;
                self.cashback_amount += amount;
            }
            TxKind::Bonus => {
                self.bonuses += 1;
                self.bonus_amount += amount;
            }
        }
    }

    /// Adds another accumulator of the same user (from another thread).
    pub fn merge(&mut self, o: &UserAgg) {
        self.bets += o.bets;
        self.stake += o.stake;
        for i in 0..6 {
            self.stake_by_game[i] += o.stake_by_game[i];
            self.bets_by_game[i] += o.bets_by_game[i];
        }
        self.wins += o.wins;
        self.win_amount += o.win_amount;
        self.deposits += o.deposits;
        self.deposit_amount += o.deposit_amount;
        self.withdrawals += o.withdrawals;
        self.withdrawal_amount += o.withdrawal_amount;
        self.cashbacks += o.cashbacks;
        self.cashback_amount += o.cashback_amount;
        self.bonuses += o.bonuses;
        self.bonus_amount += o.bonus_amount;
        for i in 0..24 {
            self.bets_by_hour[i] += o.bets_by_hour[i];
        }
        for i in 0..7 {
            self.bets_by_weekday[i] += o.bets_by_weekday[i];
        }
        self.first_at = self.first_at.min(o.first_at);
        self.last_at = self.last_at.max(o.last_at);
        if !o.bet_days.is_empty() {
            let mut days = Vec::with_capacity(self.bet_days.len() + o.bet_days.len());
            days.extend_from_slice(&self.bet_days);
            days.extend_from_slice(&o.bet_days);
            days.sort_unstable();
            days.dedup();
            self.bet_days = days;
        }
    }
}

/// 64-bit hashes are already uniformly spread: the set uses them as they are.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const DEDUP_SHARDS: usize = 64;

/// Outcome of [`DedupSet::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    New,
    Duplicate,
}

/// Duplicate transaction-id detector with a memory budget.
///
/// Stores a 64-bit hash of each id (8 bytes, ~16 with the table's slack),
/// in 64 mutex-guarded shards so both threads insert with little contention.
/// Two distinct ids share a hash with probability about n²/2⁶⁵ over the
/// whole run (1 in 3,700 at 100M ids): then one real transaction is dropped
/// as a duplicate. Up to `max_ids` ids are stored; past that the detector
/// still catches repeats of stored ids but stores no new ones, and the
/// report says so (`dedup_saturated`, `dedup_unstored`).
/// One shard on its own cache lines, so threads locking neighbouring
/// shards do not bounce a shared line between cores.
#[repr(align(128))]
struct Shard(Mutex<HashSet<u64, BuildHasherDefault<IdentityHasher>>>);

pub(crate) struct DedupSet {
    shards: Vec<Shard>,
    per_shard: usize,
    saturated: AtomicBool,
    unstored: AtomicU64,
}

impl DedupSet {
    pub(crate) fn new(max_ids: u64) -> Self {
        DedupSet {
            shards: (0..DEDUP_SHARDS)
                .map(|_| Shard(Mutex::new(HashSet::default())))
                .collect(),
            per_shard: (max_ids as usize).div_ceil(DEDUP_SHARDS),
            saturated: AtomicBool::new(false),
            unstored: AtomicU64::new(0),
        }
    }

    pub(crate) fn hash(id: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        id.hash(&mut h);
        h.finish()
    }

    pub(crate) fn check(&self, id: &str) -> Seen {
        let h = Self::hash(id);
        // The table indexes buckets with the low bits and tags them with the
        // top 7: pick the shard from bits neither uses, or every id of a
        // shard shares its tag and lookups degrade to long probe scans.
        let mut shard = self.shards[(h >> 32) as usize % DEDUP_SHARDS]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard.contains(&h) {
            return Seen::Duplicate;
        }
        if shard.len() < self.per_shard {
            shard.insert(h);
        } else {
            self.saturated.store(true, Ordering::Relaxed);
            self.unstored.fetch_add(1, Ordering::Relaxed);
        }
        Seen::New
    }

    /// Stores a hash saved by an earlier run (within the budget, like [`DedupSet::check`]).
    pub(crate) fn preload(&self, h: u64) {
        let mut shard = self.shards[(h >> 32) as usize % DEDUP_SHARDS]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard.len() < self.per_shard {
            shard.insert(h);
        } else {
            self.saturated.store(true, Ordering::Relaxed);
        }
    }

    /// Ids stored.
    pub(crate) fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
            .sum()
    }

    /// Calls `f` with every stored hash (shard by shard, in no particular order).
    pub(crate) fn try_for_each<E>(&self, mut f: impl FnMut(u64) -> Result<(), E>) -> Result<(), E> {
        for s in &self.shards {
            let shard = s.0.lock().unwrap_or_else(|e| e.into_inner());
            for &h in shard.iter() {
                f(h)?;
            }
        }
        Ok(())
    }

    pub(crate) fn saturation(&self) -> (bool, u64) {
        (
            self.saturated.load(Ordering::Relaxed),
            self.unstored.load(Ordering::Relaxed),
        )
    }
}

/// A fast non-cryptographic hasher for user ids (FxHash's
/// rotate-xor-multiply): ids come from the operator's own data, and SipHash
/// was a visible share of the per-row cost.
#[derive(Default)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // Final avalanche so the table's top bits (its control bytes) vary.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// Per-user accumulators of one thread.
pub(crate) type UserMap = HashMap<Box<str>, UserAgg, BuildHasherDefault<FastHasher>>;

/// UTC offsets per UTC day, for zones whose offset does not change inside
/// the day (checked at both ends); other days are looked up per timestamp.
pub(crate) struct OffsetCache {
    base: i64,
    days: Vec<Option<i32>>,
}

const UNKNOWN: Option<i32> = Some(i32::MIN);

impl Default for OffsetCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OffsetCache {
    pub(crate) fn new() -> Self {
        OffsetCache {
            base: 0,
            days: Vec::new(),
        }
    }

    pub(crate) fn offset(&mut self, tz: &TimeZone, ms: i64) -> i32 {
        let day = ms.div_euclid(86_400_000);
        if self.days.is_empty() {
            self.base = day - 400;
        }
        let i = day - self.base;
        if !(0..20_000).contains(&i) {
            return offset_seconds(tz, ms);
        }
        let i = i as usize;
        if i >= self.days.len() {
            self.days.resize(i + 1, UNKNOWN);
        }
        if self.days[i] == UNKNOWN {
            let start = offset_seconds(tz, day * 86_400_000);
            let end = offset_seconds(tz, day * 86_400_000 + 86_399_999);
            self.days[i] = (start == end).then_some(start);
        }
        match self.days[i] {
            Some(o) => o,
            None => offset_seconds(tz, ms),
        }
    }
}

/// The users' accumulators shared by all ETL threads: 64 mutex-guarded
/// maps chosen by a hash of the user id, so each user is kept once
/// whatever thread reads its rows (per-thread maps would hold a user once
/// per thread when files are split by date).
pub(crate) struct UserShards {
    shards: Vec<UserShard>,
}

#[repr(align(128))]
struct UserShard(Mutex<UserMap>);

impl UserShards {
    pub(crate) fn new() -> Self {
        UserShards {
            shards: (0..64)
                .map(|_| UserShard(Mutex::new(UserMap::default())))
                .collect(),
        }
    }

    /// Runs `f` on `user_id`'s accumulator (created empty if new).
    pub(crate) fn with(&self, user_id: &str, f: impl FnOnce(&mut UserAgg)) {
        let mut h = FastHasher::default();
        user_id.hash(&mut h);
        let shard = (h.finish() >> 32) as usize % self.shards.len();
        let mut map = self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match map.get_mut(user_id) {
            Some(a) => f(a),
            None => f(map.entry(user_id.into()).or_default()),
        }
    }

    /// Puts a whole accumulator in (a user loaded from a saved state); merges if present.
    pub(crate) fn insert(&self, user_id: &str, agg: UserAgg) {
        let mut h = FastHasher::default();
        user_id.hash(&mut h);
        let shard = (h.finish() >> 32) as usize % self.shards.len();
        let mut map = self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match map.get_mut(user_id) {
            Some(a) => a.merge(&agg),
            None => {
                map.insert(user_id.into(), agg);
            }
        }
    }

    /// All accumulators, sorted by user id.
    pub(crate) fn into_sorted(self) -> Vec<(String, UserAgg)> {
        let mut all = UserMap::default();
        for s in self.shards {
            all.extend(s.0.into_inner().unwrap_or_else(|e| e.into_inner()));
        }
        sorted(all)
    }
}

/// Aggregates already-typed transactions (rows from a database table, tests),
/// without duplicate detection; returns accumulators sorted by user id.
pub fn aggregate_transactions<'a>(
    txs: impl IntoIterator<Item = &'a Transaction>,
    tz: &TimeZone,
) -> Vec<(String, UserAgg)> {
    let mut map: UserMap = HashMap::default();
    for t in txs {
        let offset = offset_seconds(tz, t.created_at);
        map.entry(t.user_id.as_str().into()).or_default().add(
            t.kind,
            t.game_type,
            t.amount,
            t.created_at,
            offset,
        );
    }
    sorted(map)
}

pub(crate) fn sorted(map: UserMap) -> Vec<(String, UserAgg)> {
    let mut v: Vec<(String, UserAgg)> =
        map.into_iter().map(|(k, a)| (k.into_string(), a)).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

pub(crate) fn offset_seconds(tz: &TimeZone, ms: i64) -> i32 {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => tz.to_offset(ts).seconds(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hour_weekday_and_days_use_the_zone() {
        let sp = TimeZone::get("America/Sao_Paulo").unwrap();
        let mut a = UserAgg::default();
        // 2026-03-01 01:30 UTC = Saturday 2026-02-28 22:30 in São Paulo.
        let t = 1_772_328_600_000;
        a.add(
            TxKind::Bet,
            GameType::Crash,
            10.0,
            t,
            offset_seconds(&sp, t),
        );
        a.add(
            TxKind::Bet,
            GameType::Crash,
            30.0,
            t + 60_000,
            offset_seconds(&sp, t),
        );
        a.add(
            TxKind::Deposit,
            GameType::Other,
            100.0,
            t - 1000,
            offset_seconds(&sp, t),
        );
        assert_eq!(a.bets, 2);
        assert_eq!(a.stake, 40.0);
        assert_eq!(a.bets_by_hour[22], 2);
        assert_eq!(a.bets_by_weekday[5], 2);
        assert_eq!(a.bet_days.len(), 1);
        assert_eq!(a.first_at, t - 1000);
        assert_eq!(a.deposits, 1);
        let mut b = UserAgg::default();
        b.add(TxKind::Bet, GameType::Slots, 5.0, t + 86_400_000, 0);
        a.merge(&b);
        assert_eq!(a.bets, 3);
        assert_eq!(a.bet_days.len(), 2);
        assert_eq!(a.stake_by_game[GameType::Slots.index()], 5.0);
    }

    #[test]
    fn offset_cache_agrees_with_the_zone_around_a_transition() {
        // New York switched to daylight time on 2026-03-08 at 07:00 UTC.
        let ny = TimeZone::get("America/New_York").unwrap();
        let mut cache = OffsetCache::new();
        let start = 1_772_928_000_000; // 2026-03-08T00:00:00Z
        for step in 0..48 {
            let ms = start - 86_400_000 + step * 3_600_000 + 1_234;
            assert_eq!(cache.offset(&ny, ms), offset_seconds(&ny, ms), "at {ms}");
        }
    }

    #[test]
    fn dedup_catches_repeats_and_reports_saturation() {
        let d = DedupSet::new(64);
        assert_eq!(d.check("a"), Seen::New);
        assert_eq!(d.check("a"), Seen::Duplicate);
        assert_eq!(d.check("b"), Seen::New);
        assert_eq!(d.saturation(), (false, 0));
        let small = DedupSet::new(1);
        // One id per shard: fill enough ids that some shard overflows.
        let mut new = 0;
        for i in 0..1000 {
            if small.check(&i.to_string()) == Seen::New {
                new += 1;
            }
        }
        assert_eq!(new, 1000);
        let (saturated, unstored) = small.saturation();
        assert!(saturated);
        assert_eq!(unstored, 1000 - 64);
    }
}
