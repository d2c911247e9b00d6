//! Incremental aggregation: a saved state plus the new files gives what reading everything
//! gives; any change to what the state covers falls back to a full pass, saying why.

use std::path::{Path, PathBuf};

use farol_segment::incremental::{AggState, IncrementalReport, StateFiles, aggregate_incremental};
use farol_segment::synth::{TxParquetWriter, generate, write_users_csv};
use farol_segment::{
    Aggregation, EtlParams, FeatureParams, RunParams, UserAgg, aggregate_files, compute_features,
    run, run_incremental,
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
    let dir = std::env::temp_dir().join(format!("farol-incr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tx")).unwrap();
    Scratch(dir)
}

const HEADER: &str = "transaction_id,user_id,created_at,type,game_type,game_name,amount\n";

/// Day one: u1 and u2; one bad amount.
const A: &str = "t1,u1,2026-03-01 22:30:00,bet,crash,Aviator,10.5\n\
    t2,u1,2026-03-01 23:00:00,win,crash,Aviator,20\n\
    t3,u2,2026-03-01 10:00:00,deposit,,,100\n\
    t4,u2,2026-03-01 10:05:00,bet,slots,Tiger,2.25\n\
    t5,u2,2026-03-01 10:06:00,bet,slots,Tiger,abc\n";

/// Day two: u1 again (another day, another game), u3 new; t4 repeats day one's id; an
/// unknown type.
const B: &str = "t6,u1,2026-03-02 01:00:00,bet,sports,Futebol,4\n\
    t4,u2,2026-03-01 10:05:00,bet,slots,Tiger,2.25\n\
    t7,u3,2026-03-02 12:00:00,bet,table,Roleta,50\n\
    t8,u3,2026-03-02 12:30:00,cashback,,,5\n\
    t9,u1,2026-03-02 13:00:00,refund,crash,Aviator,1\n";

fn write(path: &Path, rows: &str) {
    std::fs::write(path, format!("{HEADER}{rows}")).unwrap();
}

fn params() -> EtlParams {
    EtlParams {
        threads: 2,
        ..EtlParams::default()
    }
}

fn incremental(
    dir: &Scratch,
    params: &EtlParams,
    previous: Option<&str>,
    save_to: &str,
) -> (Aggregation, IncrementalReport) {
    aggregate_incremental(
        &[dir.join("tx")],
        params,
        &StateFiles {
            previous: previous.map(|p| dir.join(p)),
            save_to: Some(dir.join(save_to)),
            full: false,
        },
        &|_| {},
    )
    .unwrap()
}

fn full(dir: &Scratch, params: &EtlParams) -> Aggregation {
    aggregate_files(&[dir.join("tx")], params, &|_| {}).unwrap()
}

/// Equal accumulators, counts and samples (samples compared as sets: threads finish files in
/// any order).
fn assert_same(a: &Aggregation, b: &Aggregation) {
    assert_eq!(a.users, b.users);
    let mut ra = a.report.clone();
    let mut rb = b.report.clone();
    ra.samples
        .sort_by(|x, y| (&x.file, x.row).cmp(&(&y.file, y.row)));
    rb.samples
        .sort_by(|x, y| (&x.file, x.row).cmp(&(&y.file, y.row)));
    assert_eq!(ra, rb);
    let fa = compute_features(&a.users, &FeatureParams::default(), |_| None);
    let fb = compute_features(&b.users, &FeatureParams::default(), |_| None);
    assert_eq!(fa, fb);
}

#[test]
fn a_then_b_from_a_saved_state_equals_a_and_b_at_once() {
    let dir = temp_dir("ab");
    write(&dir.join("tx/dt=2026-03-01.csv"), A);
    let (first, inc) = incremental(&dir, &params(), None, "state1");
    assert_eq!(inc.reused_files, 0);
    assert_eq!(inc.new_files, 1);
    assert_eq!(inc.full_reason.as_deref(), Some("no saved state"));
    assert_eq!(inc.save_error, None);
    assert_eq!(first.users.len(), 2);

    write(&dir.join("tx/dt=2026-03-02.csv"), B);
    let (second, inc) = incremental(&dir, &params(), Some("state1"), "state2");
    assert_eq!(
        inc,
        IncrementalReport {
            reused_files: 1,
            new_files: 1,
            full_reason: None,
            load_ms: inc.load_ms,
            save_ms: inc.save_ms,
            save_error: None,
        }
    );
    let all = full(&dir, &params());
    assert_same(&second, &all);

    // Known answers, field by field.
    let u1 = &second.users.iter().find(|(id, _)| id == "u1").unwrap().1;
    assert_eq!(u1.bets, 2);
    assert_eq!(u1.stake, 14.5);
    assert_eq!(u1.wins, 1);
    assert_eq!(u1.win_amount, 20.0);
    assert_eq!(u1.bet_days.len(), 2);
    assert_eq!(u1.bets_by_hour[22], 1);
    assert_eq!(u1.bets_by_hour[1], 1);
    let u2 = &second.users.iter().find(|(id, _)| id == "u2").unwrap().1;
    assert_eq!(u2.bets, 1, "t4 repeated in the second file is a duplicate");
    assert_eq!(u2.deposit_amount, 100.0);
    let r = &second.report;
    assert_eq!(
        (r.files, r.rows_read, r.rows_accepted, r.duplicates_dropped),
        (2, 10, 7, 1)
    );
    assert_eq!(r.rejected_total(), 2);
    assert_eq!(r.users, 3);

    // The saved state is exactly what was aggregated.
    let state = AggState::load(&dir.join("state2")).unwrap();
    assert_eq!(state.users, all.users);
    assert_eq!(state.header.files.len(), 2);
    assert_eq!(state.header.files[1].path, "dt=2026-03-02.csv");
    assert_eq!(
        state.dedup.len(),
        7,
        "t1…t9 but t5 and t9 (rejected before the check)"
    );

    // Nothing new: nothing read, same answer.
    let (third, inc) = incremental(&dir, &params(), Some("state2"), "state3");
    assert_eq!((inc.reused_files, inc.new_files), (2, 0));
    assert_eq!(inc.full_reason, None);
    assert_same(&third, &all);
    assert!(
        !dir.join("state3").exists(),
        "the previous state is still exact: nothing written"
    );

    // A round trip through save/load of a whole state keeps every field.
    state.save(&dir.join("copy")).unwrap();
    assert_eq!(AggState::load(&dir.join("copy")).unwrap(), state);
}

#[test]
fn a_changed_or_removed_file_triggers_a_full_pass() {
    let dir = temp_dir("changed");
    write(&dir.join("tx/a.csv"), A);
    write(&dir.join("tx/b.csv"), B);
    incremental(&dir, &params(), None, "state1");
    // a.csv gets one more row: its size changes.
    write(
        &dir.join("tx/a.csv"),
        &format!("{A}t10,u4,2026-03-01 09:00:00,bet,slots,Tiger,1\n"),
    );
    let (agg, inc) = incremental(&dir, &params(), Some("state1"), "state2");
    let reason = inc.full_reason.unwrap();
    assert!(
        reason.contains("file changed") && reason.contains("a.csv"),
        "{reason}"
    );
    assert_eq!((inc.reused_files, inc.new_files), (0, 2));
    assert_same(&agg, &full(&dir, &params()));
    assert_eq!(agg.users.len(), 4);

    std::fs::remove_file(dir.join("tx/b.csv")).unwrap();
    let (agg, inc) = incremental(&dir, &params(), Some("state2"), "state3");
    let reason = inc.full_reason.unwrap();
    assert!(
        reason.contains("file removed") && reason.contains("b.csv"),
        "{reason}"
    );
    assert_same(&agg, &full(&dir, &params()));
}

#[test]
fn changed_etl_parameters_trigger_a_full_pass() {
    let dir = temp_dir("params");
    write(&dir.join("tx/a.csv"), A);
    incremental(&dir, &params(), None, "state1");
    write(&dir.join("tx/b.csv"), B);
    let utc = EtlParams {
        time_zone: "UTC".into(),
        ..params()
    };
    let (agg, inc) = incremental(&dir, &utc, Some("state1"), "state2");
    let reason = inc.full_reason.unwrap();
    assert!(
        reason.contains("time_zone \"America/Sao_Paulo\" → \"UTC\""),
        "{reason}"
    );
    assert_eq!(inc.new_files, 2);
    assert_same(&agg, &full(&dir, &utc));
    // Local hours are UTC's now: 22:30 naive is 22:30 UTC.
    let u1 = &agg.users.iter().find(|(id, _)| id == "u1").unwrap().1;
    assert_eq!(u1.bets_by_hour[22], 1);

    let mapped = EtlParams {
        tx_mapping: "amount=amount".into(),
        ..utc.clone()
    };
    let (_, inc) = incremental(&dir, &mapped, Some("state2"), "state3");
    assert!(inc.full_reason.unwrap().contains("tx_mapping"));

    // Other sources: the state was for another set of roots.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let (_, inc) = aggregate_incremental(
        &[dir.join("tx"), dir.join("other")],
        &mapped,
        &StateFiles {
            previous: Some(dir.join("state3")),
            save_to: None,
            full: false,
        },
        &|_| {},
    )
    .unwrap();
    assert!(inc.full_reason.unwrap().starts_with("sources changed"));
}

#[test]
fn a_corrupt_state_or_a_requested_full_pass_reads_everything() {
    let dir = temp_dir("corrupt");
    write(&dir.join("tx/a.csv"), A);
    incremental(&dir, &params(), None, "state1");
    write(&dir.join("tx/b.csv"), B);
    let all = full(&dir, &params());

    let mut bytes = std::fs::read(dir.join("state1")).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0x40;
    std::fs::write(dir.join("bad"), &bytes).unwrap();
    let (agg, inc) = incremental(&dir, &params(), Some("bad"), "state2");
    let reason = inc.full_reason.unwrap();
    assert!(reason.contains("saved state unreadable"), "{reason}");
    assert_eq!(inc.new_files, 2);
    assert_same(&agg, &all);

    std::fs::write(dir.join("short"), &bytes[..bytes.len() / 2]).unwrap();
    let (agg, inc) = incremental(&dir, &params(), Some("short"), "state3");
    assert!(inc.full_reason.unwrap().contains("saved state unreadable"));
    assert_same(&agg, &all);

    let (agg, inc) = aggregate_incremental(
        &[dir.join("tx")],
        &params(),
        &StateFiles {
            previous: Some(dir.join("state1")),
            save_to: None,
            full: true,
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(inc.full_reason.as_deref(), Some("full pass requested"));
    assert_same(&agg, &all);
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Accumulators equal up to the order of floating-point additions.
fn assert_close(a: &[(String, UserAgg)], b: &[(String, UserAgg)]) {
    assert_eq!(a.len(), b.len());
    for ((ia, x), (ib, y)) in a.iter().zip(b) {
        assert_eq!(ia, ib);
        let mut x = x.clone();
        assert!(close(x.stake, y.stake), "{ia}: {} vs {}", x.stake, y.stake);
        for g in 0..6 {
            assert!(close(x.stake_by_game[g], y.stake_by_game[g]), "{ia}");
        }
        for (p, q) in [
            (x.win_amount, y.win_amount),
            (x.deposit_amount, y.deposit_amount),
            (x.withdrawal_amount, y.withdrawal_amount),
            (x.cashback_amount, y.cashback_amount),
            (x.bonus_amount, y.bonus_amount),
        ] {
            assert!(close(p, q), "{ia}: {p} vs {q}");
        }
        x.stake = y.stake;
        x.stake_by_game = y.stake_by_game;
        x.win_amount = y.win_amount;
        x.deposit_amount = y.deposit_amount;
        x.withdrawal_amount = y.withdrawal_amount;
        x.cashback_amount = y.cashback_amount;
        x.bonus_amount = y.bonus_amount;
        assert_eq!(&x, y, "{ia}");
    }
}

#[test]
fn a_new_parquet_partition_is_the_only_file_read_and_the_clusters_match_a_full_run() {
    let dir = temp_dir("parquet");
    let synth = generate(400, 25.0, 11);
    let mut w = TxParquetWriter::create(&dir.join("tx"), true).unwrap();
    for t in synth.transactions {
        w.write(t).unwrap();
    }
    w.finish().unwrap();
    write_users_csv(&dir.join("users.csv"), &synth.users).unwrap();
    let mut partitions: Vec<PathBuf> = std::fs::read_dir(dir.join("tx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    partitions.sort();
    let last = partitions.pop().unwrap();
    let held = dir.join("held");
    std::fs::rename(&last, &held).unwrap();

    let params = RunParams {
        etl: self::params(),
        ..RunParams::default()
    };
    let state = |previous: Option<&str>, save_to: &str| StateFiles {
        previous: previous.map(|p| dir.join(p)),
        save_to: Some(dir.join(save_to)),
        full: false,
    };
    let users = [dir.join("users.csv")];
    let first = run_incremental(
        &[dir.join("tx")],
        &users,
        &params,
        &[],
        &|_| {},
        &state(None, "s1"),
    )
    .unwrap();
    let inc = first.report.incremental.unwrap();
    assert_eq!(inc.new_files as usize, partitions.len());

    std::fs::rename(&held, &last).unwrap();
    let second = run_incremental(
        &[dir.join("tx")],
        &users,
        &params,
        &[],
        &|_| {},
        &state(Some("s1"), "s2"),
    )
    .unwrap();
    let inc = second.report.incremental.clone().unwrap();
    assert_eq!(inc.full_reason, None);
    assert_eq!(inc.new_files, 1);
    assert_eq!(inc.reused_files as usize, partitions.len());

    let reference = run(&[dir.join("tx")], &users, &params, &[], &|_| {}).unwrap();
    assert_eq!(second.report.clean, reference.report.clean);
    assert_eq!(second.report.window, reference.report.window);
    let everything = aggregate_files(&[dir.join("tx")], &params.etl, &|_| {}).unwrap();
    assert_close(
        &AggState::load(&dir.join("s2")).unwrap().users,
        &everything.users,
    );
    // Same players, same features (up to float addition order), same clusters.
    assert_eq!(second.features.len(), reference.features.len());
    for (a, b) in second.features.iter().zip(&reference.features) {
        assert_eq!(a.user_id, b.user_id);
        assert_eq!(a.bets, b.bets);
        assert_eq!(a.active_days, b.active_days);
        assert!(close(a.stake, b.stake) && close(a.night_share, b.night_share));
    }
    let sizes = |s: &farol_segment::Segmentation| {
        let mut v: Vec<usize> = s.profiles.iter().map(|p| p.size).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(sizes(&second), sizes(&reference));
    assert_eq!(second.labels, reference.labels);
}
