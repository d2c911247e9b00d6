//! Synthetic data with planted segments, and writers to CSV and Parquet.
//!
//! Backs `farol bench gen-transactions` and the benchmark: each user
//! belongs to one planted segment, whose behaviour (games, ticket, hours,
//! weekdays, promotions, channel) the clustering should find again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::model::{Channel, GameType, Transaction, TxKind, UserRow};

/// A planted segment's behaviour.
#[derive(Debug, Clone, Copy)]
struct Segment {
    name: &'static str,
    weight: f64,
    /// Probability of each game type for a bet.
    games: [f64; 6],
    /// Median ticket, BRL (log-normal, σ = 0.35).
    ticket: f64,
    /// Local hours of play (inclusive start, exclusive end, wrapping at 24).
    hours: (u32, u32),
    /// Probability that a bet falls on Saturday/Sunday.
    weekend: f64,
    /// Share of transactions that are cashback/bonus credits.
    promo: f64,
    /// Channel probabilities (sms, whatsapp, email, push).
    channels: [f64; 4],
    /// Multiplier of the mean transaction count.
    activity: f64,
}

const SEGMENTS: [Segment; 6] = [
    Segment {
        name: "crash_night_high_ticket",
        weight: 0.15,
        games: [0.85, 0.08, 0.0, 0.02, 0.0, 0.05],
        ticket: 150.0,
        hours: (22, 4),
        weekend: 0.3,
        promo: 0.01,
        channels: [0.1, 0.5, 0.05, 0.35],
        activity: 1.2,
    },
    Segment {
        name: "slots_casual",
        weight: 0.30,
        games: [0.05, 0.85, 0.02, 0.0, 0.03, 0.05],
        ticket: 2.5,
        hours: (12, 22),
        weekend: 0.3,
        promo: 0.01,
        channels: [0.4, 0.4, 0.1, 0.1],
        activity: 1.0,
    },
    Segment {
        name: "live_casino_vip",
        weight: 0.08,
        games: [0.0, 0.05, 0.85, 0.0, 0.08, 0.02],
        ticket: 600.0,
        hours: (19, 24),
        weekend: 0.3,
        promo: 0.01,
        channels: [0.05, 0.45, 0.45, 0.05],
        activity: 0.8,
    },
    Segment {
        name: "weekend_sports",
        weight: 0.20,
        games: [0.02, 0.03, 0.0, 0.9, 0.0, 0.05],
        ticket: 25.0,
        hours: (13, 21),
        weekend: 0.85,
        promo: 0.01,
        channels: [0.3, 0.5, 0.1, 0.1],
        activity: 0.9,
    },
    Segment {
        name: "cashback_hunters",
        weight: 0.15,
        games: [0.1, 0.5, 0.0, 0.1, 0.25, 0.05],
        ticket: 10.0,
        hours: (10, 23),
        weekend: 0.3,
        promo: 0.25,
        channels: [0.2, 0.3, 0.3, 0.2],
        activity: 1.0,
    },
    Segment {
        name: "table_daytime",
        weight: 0.12,
        games: [0.02, 0.08, 0.05, 0.0, 0.8, 0.05],
        ticket: 40.0,
        hours: (9, 17),
        weekend: 0.1,
        promo: 0.01,
        channels: [0.2, 0.2, 0.5, 0.1],
        activity: 0.9,
    },
];

/// Names of the planted segments, by planted label.
pub fn segment_names() -> Vec<&'static str> {
    SEGMENTS.iter().map(|s| s.name).collect()
}

/// End of the synthetic data window: 2026-11-01T00:00:00Z.
pub const WINDOW_END_MS: i64 = 1_793_491_200_000;
/// Length of the synthetic window, days.
pub const WINDOW_DAYS: i64 = 90;

const GAME_NAMES: [&[&str]; 6] = [
    &["Aviator", "Spaceman", "JetX", "Mines"],
    &[
        "Fortune Tiger",
        "Gates of Olympus",
        "Sweet Bonanza",
        "Fortune Rabbit",
    ],
    &[
        "Lightning Roulette",
        "Crazy Time",
        "Mega Ball",
        "Live Blackjack",
    ],
    &["Futebol", "Basquete", "Tênis", "MMA"],
    &["Roleta Europeia", "Blackjack", "Bacará"],
    &["Bingo", "Keno"],
];

fn pick<const N: usize>(rng: &mut StdRng, p: &[f64; N]) -> usize {
    let total: f64 = p.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, w) in p.iter().enumerate() {
        r -= w;
        if r <= 0.0 {
            return i;
        }
    }
    N - 1
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Streams a synthetic population: calls `on_user` once per user (with its
/// planted segment) and `on_tx` for each of its transactions. Deterministic
/// for a given seed. Times are local São Paulo time (UTC−3) inside the
/// 90 days before [`WINDOW_END_MS`].
pub fn generate_with(
    users: usize,
    tx_per_user_mean: f64,
    seed: u64,
    mut on_user: impl FnMut(UserRow, usize),
    mut on_tx: impl FnMut(Transaction),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let weights: [f64; 6] = std::array::from_fn(|i| SEGMENTS[i].weight);
    let states = ["SP", "RJ", "MG", "BA", "RS", "PR", "PE", "CE", "GO", "DF"];
    let start_day = WINDOW_END_MS / 86_400_000 - WINDOW_DAYS;
    let mut tx_id: u64 = 0;
    for u in 0..users {
        let s = pick(&mut rng, &weights);
        let seg = SEGMENTS[s];
        let user_id = format!("u{u:07}");
        let channel = Channel::ALL[pick(&mut rng, &seg.channels)];
        on_user(
            UserRow {
                user_id: user_id.clone(),
                name: format!("Jogador {u}"),
                email: format!("jogador{u}@exemplo.com.br"),
                phone: format!("+55119{:08}", u % 100_000_000),
                preferred_channel: Some(channel),
                signup_date: format!("2025-{:02}-{:02}", 1 + u % 12, 1 + u % 28),
                state: states[u % states.len()].to_owned(),
            },
            s,
        );
        let user_ticket = seg.ticket * (0.25 * normal(&mut rng)).exp();
        let mean = tx_per_user_mean * seg.activity * rng.random_range(0.5..1.5);
        let count = (mean + mean.sqrt() * normal(&mut rng)).round().max(3.0) as usize;
        let mut balance_days: Vec<i64> = Vec::with_capacity(count);
        for _ in 0..count {
            // Days: weekend with the segment's probability.
            let weekend = rng.random::<f64>() < seg.weekend;
            let day = loop {
                let d = start_day + rng.random_range(0..WINDOW_DAYS);
                let wd = (d + 3).rem_euclid(7);
                if (wd >= 5) == weekend {
                    break d;
                }
            };
            balance_days.push(day);
        }
        for day in balance_days {
            let (h0, h1) = seg.hours;
            let span = if h1 > h0 { h1 - h0 } else { 24 - h0 + h1 };
            let hour = (h0 + rng.random_range(0..span)) % 24;
            let local_ms =
                day * 86_400_000 + i64::from(hour) * 3_600_000 + rng.random_range(0..3_600_000i64);
            // São Paulo is UTC−3 all year (no daylight saving since 2019).
            let created_at = local_ms + 3 * 3_600_000;
            let r: f64 = rng.random();
            let (kind, game, amount) = if r < seg.promo {
                let kind = if rng.random::<bool>() {
                    TxKind::Cashback
                } else {
                    TxKind::Bonus
                };
                (
                    kind,
                    GameType::Other,
                    (user_ticket * rng.random_range(0.5..3.0)).max(1.0),
                )
            } else if r < seg.promo + 0.06 {
                (
                    TxKind::Deposit,
                    GameType::Other,
                    (user_ticket * rng.random_range(5.0..20.0)).max(20.0),
                )
            } else if r < seg.promo + 0.08 {
                (
                    TxKind::Withdrawal,
                    GameType::Other,
                    (user_ticket * rng.random_range(5.0..30.0)).max(20.0),
                )
            } else {
                let game = GameType::ALL[pick(&mut rng, &seg.games)];
                let bet = (user_ticket * (0.35 * normal(&mut rng)).exp()).max(0.5);
                if rng.random::<f64>() < 0.25 {
                    (TxKind::Win, game, bet * rng.random_range(1.2..3.0))
                } else {
                    (TxKind::Bet, game, bet)
                }
            };
            let names = GAME_NAMES[game.index()];
            let game_name = if matches!(kind, TxKind::Bet | TxKind::Win) {
                names[rng.random_range(0..names.len())].to_owned()
            } else {
                String::new()
            };
            tx_id += 1;
            on_tx(Transaction {
                transaction_id: format!("t{tx_id:010}"),
                user_id: user_id.clone(),
                created_at,
                kind,
                game_type: game,
                game_name,
                amount: (amount * 100.0).round() / 100.0,
            });
        }
    }
}

/// A synthetic population in memory.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// Users.
    pub users: Vec<UserRow>,
    /// Their transactions.
    pub transactions: Vec<Transaction>,
    /// Planted segment of each user (same order as `users`).
    pub planted: Vec<i32>,
}

/// Generates a population in memory (see [`generate_with`] to stream).
pub fn generate(users: usize, tx_per_user_mean: f64, seed: u64) -> Synthetic {
    let mut out = Synthetic {
        users: Vec::new(),
        transactions: Vec::new(),
        planted: Vec::new(),
    };
    let (mut u, mut p) = (Vec::new(), Vec::new());
    generate_with(
        users,
        tx_per_user_mean,
        seed,
        |user, s| {
            u.push(user);
            p.push(s as i32);
        },
        |t| out.transactions.push(t),
    );
    out.users = u;
    out.planted = p;
    out
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Writes transactions as CSV (comma, UTF-8, ISO 8601 UTC timestamps).
pub fn write_transactions_csv(path: &Path, txs: &[Transaction]) -> std::io::Result<()> {
    let mut w = TxCsvWriter::create(path)?;
    for t in txs {
        w.write(t)?;
    }
    w.finish()
}

/// Streaming CSV writer of transactions.
pub struct TxCsvWriter(BufWriter<File>);

impl TxCsvWriter {
    /// Creates the file and writes the header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
        writeln!(
            w,
            "transaction_id,user_id,created_at,type,game_type,game_name,amount"
        )?;
        Ok(TxCsvWriter(w))
    }

    /// Writes one row.
    pub fn write(&mut self, t: &Transaction) -> std::io::Result<()> {
        writeln!(
            self.0,
            "{},{},{},{},{},{},{:.2}",
            t.transaction_id,
            t.user_id,
            iso(t.created_at),
            t.kind.as_str(),
            t.game_type.as_str(),
            t.game_name,
            t.amount
        )
    }

    /// Flushes.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes users as CSV.
pub fn write_users_csv(path: &Path, users: &[UserRow]) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(
        w,
        "user_id,name,email,phone,preferred_channel,signup_date,state"
    )?;
    for u in users {
        writeln!(
            w,
            "{},{},{},{},{},{},{}",
            u.user_id,
            u.name,
            u.email,
            u.phone,
            u.preferred_channel.map_or("", |c| c.as_str()),
            u.signup_date,
            u.state
        )?;
    }
    w.flush()
}

const TX_SCHEMA: &str = "message transactions {
  required binary transaction_id (STRING);
  required binary user_id (STRING);
  required int64 created_at (TIMESTAMP(MILLIS,true));
  required binary type (STRING);
  required binary game_type (STRING);
  required binary game_name (STRING);
  required double amount;
}";

/// Rows per Parquet row group (the unit of parallel reading).
pub const ROW_GROUP_ROWS: usize = 262_144;

struct PartWriter {
    writer: SerializedFileWriter<File>,
    buf: Vec<Transaction>,
}

impl PartWriter {
    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut rg = self.writer.next_row_group()?;
        let bytes = |f: &dyn Fn(&Transaction) -> &str| -> Vec<ByteArray> {
            self.buf.iter().map(|t| ByteArray::from(f(t))).collect()
        };
        let columns: [Vec<ByteArray>; 5] = [
            bytes(&|t| &t.transaction_id),
            bytes(&|t| &t.user_id),
            bytes(&|t| t.kind.as_str()),
            bytes(&|t| t.game_type.as_str()),
            bytes(&|t| &t.game_name),
        ];
        let times: Vec<i64> = self.buf.iter().map(|t| t.created_at).collect();
        let amounts: Vec<f64> = self.buf.iter().map(|t| t.amount).collect();
        let mut col = 0;
        while let Some(mut c) = rg.next_column()? {
            match col {
                0 | 1 => c
                    .typed::<ByteArrayType>()
                    .write_batch(&columns[col], None, None)?,
                2 => c.typed::<Int64Type>().write_batch(&times, None, None)?,
                3..=5 => c
                    .typed::<ByteArrayType>()
                    .write_batch(&columns[col - 1], None, None)?,
                _ => c.typed::<DoubleType>().write_batch(&amounts, None, None)?,
            };
            c.close()?;
            col += 1;
        }
        rg.close()?;
        self.buf.clear();
        Ok(())
    }
}

/// Streaming Parquet writer of transactions: one file, or one file per
/// UTC day under `dt=YYYY-MM-DD/part-0.parquet` when partitioned.
pub struct TxParquetWriter {
    root: PathBuf,
    partitioned: bool,
    parts: HashMap<i64, PartWriter>,
    rows_per_group: usize,
}

fn new_part(path: &Path) -> parquet::errors::Result<PartWriter> {
    let schema = Arc::new(parse_message_type(TX_SCHEMA)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file =
        File::create(path).map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    Ok(PartWriter {
        writer: SerializedFileWriter::new(file, schema, props)?,
        buf: Vec::new(),
    })
}

impl TxParquetWriter {
    /// `path` is the file (not partitioned) or the root directory (partitioned).
    pub fn create(path: &Path, partitioned: bool) -> parquet::errors::Result<Self> {
        let mut w = TxParquetWriter {
            root: path.to_owned(),
            partitioned,
            parts: HashMap::new(),
            rows_per_group: ROW_GROUP_ROWS,
        };
        if !partitioned {
            w.parts.insert(0, new_part(path)?);
        }
        Ok(w)
    }

    /// Writes one transaction.
    pub fn write(&mut self, t: Transaction) -> parquet::errors::Result<()> {
        let key = if self.partitioned {
            t.created_at.div_euclid(86_400_000)
        } else {
            0
        };
        if !self.parts.contains_key(&key) {
            let date = jiff::Timestamp::from_millisecond(key * 86_400_000)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?
                .strftime("%Y-%m-%d")
                .to_string();
            let dir = self.root.join(format!("dt={date}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            self.parts
                .insert(key, new_part(&dir.join("part-0.parquet"))?);
        }
        let part = self.parts.get_mut(&key).expect("just inserted");
        part.buf.push(t);
        // Partitions share the row budget so memory stays bounded.
        let limit = if self.partitioned {
            self.rows_per_group / 4
        } else {
            self.rows_per_group
        };
        if part.buf.len() >= limit {
            part.flush()?;
        }
        Ok(())
    }

    /// Flushes and closes every file.
    pub fn finish(self) -> parquet::errors::Result<()> {
        for (_, mut p) in self.parts {
            p.flush()?;
            p.writer.close()?;
        }
        Ok(())
    }
}

/// Writes transactions to one Parquet file, or partitioned by day under a directory.
pub fn write_transactions_parquet(
    path: &Path,
    txs: &[Transaction],
    partitioned: bool,
) -> parquet::errors::Result<()> {
    let mut w = TxParquetWriter::create(path, partitioned)?;
    for t in txs {
        w.write(t.clone())?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_planted() {
        let a = generate(200, 20.0, 9);
        let b = generate(200, 20.0, 9);
        assert_eq!(a.transactions, b.transactions);
        assert_eq!(a.users.len(), 200);
        assert_eq!(a.planted.len(), 200);
        for s in 0..6 {
            assert!(a.planted.contains(&s), "segment {s} missing");
        }
        let start = WINDOW_END_MS - WINDOW_DAYS * 86_400_000;
        assert!(
            a.transactions
                .iter()
                .all(|t| t.created_at >= start && t.created_at < WINDOW_END_MS + 86_400_000)
        );
        assert!(a.transactions.iter().all(|t| t.amount >= 0.0));
        // Crash night users bet on crash mostly.
        let crash_user = &a.users[a.planted.iter().position(|&p| p == 0).unwrap()].user_id;
        let bets: Vec<&Transaction> = a
            .transactions
            .iter()
            .filter(|t| &t.user_id == crash_user && t.kind == TxKind::Bet)
            .collect();
        let crash = bets
            .iter()
            .filter(|t| t.game_type == GameType::Crash)
            .count();
        assert!(crash * 2 > bets.len());
    }
}
