//! Incremental-run benchmark: a lake of synthetic players partitioned by day (`dt=…`); a
//! first run over all days but the last whole one saves its aggregation state; the last day arrives;
//! then the same run is timed incrementally (load the state, read one partition, save) and in
//! full (read every partition), back to back, with the application's parameters (KMeans with
//! automatic k and the stability check). Also times saving and loading the state on its own.
//!
//! ```text
//! cargo run --release -p farol-segment --example incremental_bench -- --users 100000
//! ```
//!
//! Options: `--users N` (100000), `--tx N` mean transactions per user (50), `--dir PATH`
//! (/tmp/farol-incremental-bench), `--seed N` (1), `--threads N` (0 = all cores), `--reuse`
//! (keep the generated lake). The last line is `RESULT {json}`.

use std::path::PathBuf;
use std::time::Instant;

use farol_segment::incremental::{AggState, StateFiles};
use farol_segment::synth::{TxParquetWriter, generate_with};
use farol_segment::{RunParams, Segmentation, run_incremental};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut users = 100_000usize;
    let mut tx = 50.0f64;
    let mut dir = PathBuf::from("/tmp/farol-incremental-bench");
    let mut seed = 1u64;
    let mut threads = 0usize;
    let mut reuse = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--users" => users = val()?.parse()?,
            "--tx" => tx = val()?.parse()?,
            "--dir" => dir = PathBuf::from(val()?),
            "--seed" => seed = val()?.parse()?,
            "--threads" => threads = val()?.parse()?,
            "--reuse" => reuse = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let lake = dir.join("transactions");
    let held = dir.join("held");
    if held.exists() {
        return Err(format!("{} exists: a previous run stopped midway", held.display()).into());
    }
    if !(reuse && lake.exists()) {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut writer = TxParquetWriter::create(&lake, true)?;
        let mut rows = 0u64;
        let mut err = None;
        generate_with(
            users,
            tx,
            seed,
            |_, _| {},
            |t| {
                rows += 1;
                if let Err(e) = writer.write(t) {
                    err.get_or_insert(e);
                }
            },
        );
        if let Some(e) = err {
            return Err(e.into());
        }
        writer.finish()?;
        println!(
            "generated {users} users, {rows} transactions in {:.1} s → {}",
            t.elapsed().as_secs_f64(),
            lake.display()
        );
    }
    let mut days: Vec<PathBuf> = std::fs::read_dir(&lake)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    days.sort();
    // The last UTC partition holds only the first hours of the data's last day: the day that
    // arrives late is the last whole one.
    if days.len() < 3 {
        return Err("too few partitions".into());
    }
    let last = days[days.len() - 2].clone();
    let last_bytes: u64 = std::fs::read_dir(&last)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    // The application's parameters (crates/farol/src/segment/routes.rs `run_params`).
    let mut params = RunParams::default();
    params.etl.threads = threads;
    params.stability_check = true;
    let inputs = [lake.clone()];
    let state = dir.join("state");
    let next = dir.join("state.next");
    let run = |full: bool,
               save_to: &PathBuf|
     -> Result<(Segmentation, f64), Box<dyn std::error::Error>> {
        let t = Instant::now();
        let seg = run_incremental(
            &inputs,
            &[],
            &params,
            &[],
            &|_| {},
            &StateFiles {
                previous: Some(state.clone()),
                save_to: Some(save_to.clone()),
                full,
            },
        )?;
        Ok((seg, t.elapsed().as_secs_f64()))
    };

    std::fs::rename(&last, &held)?;
    let (first, first_s) = run(true, &state)?;
    std::fs::rename(&held, &last)?;
    let rows_before = first.report.clean.as_ref().map_or(0, |c| c.rows_read);
    println!(
        "first run, {} days: {first_s:.2} s ({} rows)",
        days.len() - 1,
        rows_before
    );

    // Saving and loading the state on its own.
    let t = Instant::now();
    let loaded = AggState::load(&state)?;
    let load_s = t.elapsed().as_secs_f64();
    let copy = dir.join("state.copy");
    let t = Instant::now();
    loaded.save(&copy)?;
    let save_s = t.elapsed().as_secs_f64();
    let state_bytes = std::fs::metadata(&state)?.len();
    let hashes_bytes = loaded.header.dedup_ids * 8;
    println!(
        "state: {} users, {} duplicate-detector ids, {:.1} MB ({:.1} MB of ids); save {save_s:.3} s, load {load_s:.3} s",
        loaded.users.len(),
        loaded.header.dedup_ids,
        state_bytes as f64 / 1e6,
        hashes_bytes as f64 / 1e6
    );
    // The same players as JSON, for comparison.
    let t = Instant::now();
    let json = serde_json::to_vec(&loaded.users)?;
    let json_save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back: Vec<(String, farol_segment::UserAgg)> = serde_json::from_slice(&json)?;
    let json_load_s = t.elapsed().as_secs_f64();
    println!(
        "the players alone as JSON: {:.1} MB (binary: {:.1} MB); encode {json_save_s:.3} s, decode {json_load_s:.3} s",
        json.len() as f64 / 1e6,
        (state_bytes - hashes_bytes) as f64 / 1e6
    );
    drop((json, back));
    drop(loaded);
    let _ = std::fs::remove_file(&copy);

    let (inc, inc_s) = run(false, &next)?;
    let i = inc
        .report
        .incremental
        .clone()
        .ok_or("no incremental report")?;
    if i.full_reason.is_some() || i.new_files != 1 {
        return Err(format!("expected one new file: {i:?}").into());
    }
    let (full, full_s) = run(true, &next)?;
    if inc.report.clean != full.report.clean {
        return Err("incremental and full runs disagree".into());
    }
    let read =
        |s: &Segmentation| s.report.timings_ms.get("read").copied().unwrap_or(0) as f64 / 1e3;
    let rows_new = full.report.clean.as_ref().map_or(0, |c| c.rows_read) - rows_before;
    println!(
        "new day {}: {rows_new} rows, {:.1} MB; incremental run {inc_s:.2} s (read {:.2} s: load {:.3} s, save {:.3} s), full run {full_s:.2} s (read {:.2} s)",
        last.file_name().unwrap_or_default().to_string_lossy(),
        last_bytes as f64 / 1e6,
        read(&inc),
        i.load_ms as f64 / 1e3,
        i.save_ms as f64 / 1e3,
        read(&full)
    );
    println!(
        "ratio full / incremental: {:.1}× for reading, {:.1}× for the whole run",
        read(&full) / read(&inc).max(1e-3),
        full_s / inc_s
    );
    println!(
        "RESULT {{\"users\":{},\"rows\":{},\"rows_new\":{rows_new},\"files\":{},\"state_mb\":{:.1},\"state_save_s\":{save_s:.3},\"state_load_s\":{load_s:.3},\"inc_read_s\":{:.3},\"full_read_s\":{:.3},\"inc_run_s\":{inc_s:.3},\"full_run_s\":{full_s:.3}}}",
        full.report.users,
        full.report.clean.as_ref().map_or(0, |c| c.rows_read),
        days.len(),
        state_bytes as f64 / 1e6,
        read(&inc),
        read(&full)
    );
    let _ = std::fs::remove_file(&next);
    Ok(())
}
