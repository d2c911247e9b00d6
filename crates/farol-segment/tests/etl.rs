//! The ETL over real files: dirty CSV, Parquet (single and partitioned),
//! duplicates across files, and agreement with in-memory aggregation.

use std::path::PathBuf;

use farol_segment::clean::RejectReason;
use farol_segment::synth::{
    generate, write_transactions_csv, write_transactions_parquet, write_users_csv,
};
use farol_segment::{
    Channel, EtlParams, GameType, aggregate_files, aggregate_transactions, read_users,
};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("farol-segment-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[test]
fn dirty_csv_is_cleaned_with_counts_and_samples() {
    let dir = temp_dir("dirty");
    let path = dir.join("transacoes.csv");
    // Semicolons, Portuguese headers, a custom column needing an override,
    // naive São Paulo times, decimal commas.
    let csv = "id_tx;uid;Data/Hora;Tipo;Categoria;Jogo;Valor\n\
        t1;u1;2026-03-01 22:30:00;aposta;crash;Aviator;10,50\n\
        t2;u1;2026-03-01T23:00:00-03:00;bet;crash;Aviator;20\n\
        t2;u1;2026-03-01T23:00:00-03:00;bet;crash;Aviator;20\n\
        t3;u1;01/03/2026 23:10;win;crash;Aviator;50\n\
        t4;u2;2026-03-02 10:00:00;bet;slots;Tiger;-5\n\
        t5;u2;2026-03-02 10:00:00;bet;slots;Tiger;abc\n\
        t6;u2;2026-03-02 10:00:00;refund;slots;Tiger;5\n\
        t7;u2;ontem;bet;slots;Tiger;5\n\
        t8;u2;2026-03-02 10:00:00;bet;bingo;Bingo;5\n\
        t9;;2026-03-02 10:00:00;bet;slots;Tiger;5\n\
        t10;u2;2026-03-02 10:00:00;deposito;;;100\n";
    std::fs::write(&path, csv).unwrap();
    let params = EtlParams {
        tx_mapping: "id_tx=transaction_id".into(),
        max_samples: 1,
        ..EtlParams::default()
    };
    let agg = aggregate_files(std::slice::from_ref(&path), &params, &|_| {}).unwrap();
    let r = &agg.report;
    assert_eq!(r.rows_read, 11);
    assert_eq!(r.rows_accepted, 4);
    assert_eq!(r.duplicates_dropped, 1);
    assert_eq!(r.rejected[&RejectReason::NegativeAmount], 1);
    assert_eq!(r.rejected[&RejectReason::BadAmount], 1);
    assert_eq!(r.rejected[&RejectReason::UnknownType], 1);
    assert_eq!(r.rejected[&RejectReason::BadTimestamp], 1);
    assert_eq!(r.rejected[&RejectReason::UnknownGameType], 1);
    assert_eq!(r.rejected[&RejectReason::MissingUserId], 1);
    assert_eq!(r.rejected_total(), 6);
    let neg = r
        .samples
        .iter()
        .find(|s| s.reason == RejectReason::NegativeAmount)
        .unwrap();
    assert_eq!(
        (neg.row, neg.column.as_str(), neg.raw.as_str()),
        (6, "Valor", "-5")
    );
    assert!(neg.file.ends_with("transacoes.csv"));
    assert_eq!(agg.users.len(), 2);
    let (id, u1) = &agg.users[0];
    assert_eq!(id, "u1");
    assert_eq!(u1.bets, 2);
    assert_eq!(u1.stake, 30.5);
    assert_eq!(u1.win_amount, 50.0);
    assert_eq!(u1.bets_by_hour[22] + u1.bets_by_hour[23], 2);
    assert_eq!(u1.bets_by_hour[22], 1);
    assert_eq!(agg.users[1].1.deposit_amount, 100.0);
    // 2026-03-01 22:30 local = 2026-03-02 01:30 UTC.
    assert_eq!(r.min_created_at, Some(1_772_415_000_000));
}

#[test]
fn missing_required_column_names_the_field() {
    let dir = temp_dir("missing");
    let path = dir.join("t.csv");
    std::fs::write(
        &path,
        "transaction_id,user_id,created_at,type\nt1,u1,2026-01-01,bet\n",
    )
    .unwrap();
    let err = aggregate_files(&[path], &EtlParams::default(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("\"amount\""), "{err}");
}

#[test]
fn parquet_csv_and_memory_agree_and_duplicates_across_files_are_dropped() {
    let data = generate(300, 30.0, 11);
    let dir = temp_dir("formats");
    let sp = jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap();
    let expected = aggregate_transactions(&data.transactions, &sp);

    let single = dir.join("tx.parquet");
    write_transactions_parquet(&single, &data.transactions, false).unwrap();
    let parted = dir.join("lake");
    write_transactions_parquet(&parted, &data.transactions, true).unwrap();
    assert!(parted.join("dt=2026-10-01/part-0.parquet").exists());
    let csv = dir.join("tx.csv");
    write_transactions_csv(&csv, &data.transactions).unwrap();

    let close = |a: &[(String, farol_segment::UserAgg)], b: &[(String, farol_segment::UserAgg)]| {
        assert_eq!(a.len(), b.len());
        for ((ia, x), (ib, y)) in a.iter().zip(b) {
            assert_eq!(ia, ib);
            assert_eq!(x.bets, y.bets);
            assert_eq!(x.bets_by_hour, y.bets_by_hour);
            assert_eq!(x.bet_days, y.bet_days);
            assert!((x.stake - y.stake).abs() < 1e-6 * x.stake.max(1.0));
            assert!(
                (x.stake_by_game[GameType::Crash.index()]
                    - y.stake_by_game[GameType::Crash.index()])
                .abs()
                    < 1e-6 * x.stake.max(1.0)
            );
            assert_eq!(x.last_at, y.last_at);
        }
    };
    let params = EtlParams {
        threads: 2,
        ..EtlParams::default()
    };
    for input in [&single, &parted, &csv] {
        let seen = std::sync::Mutex::new((0u64, 0u64, 0u64));
        let agg = aggregate_files(std::slice::from_ref(input), &params, &|p| {
            let mut s = seen.lock().unwrap();
            *s = (s.0.max(p.units_done), p.units_total, s.2.max(p.rows_read));
        })
        .unwrap();
        // Progress reaches every unit done and every row counted (calls
        // from two threads may arrive out of order: compare maxima).
        let (done, total, rows) = seen.into_inner().unwrap();
        assert_eq!(done, total);
        assert!(total >= 1);
        assert_eq!(rows as usize, data.transactions.len());
        assert_eq!(
            agg.report.rows_accepted as usize,
            data.transactions.len(),
            "{input:?}"
        );
        assert_eq!(agg.report.rejected_total(), 0);
        close(&agg.users, &expected);
    }
    // The same rows twice (Parquet and CSV): every second copy is a duplicate.
    let agg = aggregate_files(&[single.clone(), csv.clone()], &params, &|_| {}).unwrap();
    assert_eq!(
        agg.report.duplicates_dropped as usize,
        data.transactions.len()
    );
    close(&agg.users, &expected);

    let users = dir.join("users.csv");
    write_users_csv(&users, &data.users).unwrap();
    let mut seen = Vec::new();
    let (read, skipped) = read_users(&[users], &params, |u| seen.push(u)).unwrap();
    assert_eq!((read, skipped), (300, 0));
    assert_eq!(seen, data.users);
    assert!(seen.iter().all(|u| u.preferred_channel.is_some()));
    let _ = Channel::Sms;
}
