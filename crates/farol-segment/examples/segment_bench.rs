//! Segmentation benchmark: synthetic users with planted segments → Parquet →
//! read + ETL + features + KMeans auto-k, then HDBSCAN, with timings, peak
//! RSS and ARI against the planted segments.
//!
//! ```text
//! cargo run --release -p farol-segment --example segment_bench -- --users 100000
//! ```
//!
//! Options: `--users N` (100000), `--tx N` mean transactions per user (50),
//! `--dir PATH` (/tmp/farol-segment-bench), `--seed N` (1), `--threads N`
//! (0 = all cores), `--reuse` (keep existing data), `--no-hdbscan`,
//! `--min-cluster-size N` (HDBSCAN, 2000), `--min-samples N` (HDBSCAN, 10),
//! `--dump-matrix PATH` (write the feature matrix: rows, cols as u64 LE, then f64 LE).
//! The last line is `RESULT {json}` for scripts/bench-segment.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use farol_segment::cluster::{self, HdbscanParams, KMeansParams, adjusted_rand_index};
use farol_segment::synth::{TxParquetWriter, generate_with, segment_names};
use farol_segment::{EtlParams, FeatureParams, aggregate_files, compute_features, feature_matrix};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_s() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.split_whitespace().collect::<Vec<_>>();
            let u: f64 = rest.get(11)?.parse().ok()?;
            let k: f64 = rest.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut users = 100_000usize;
    let mut tx = 50.0f64;
    let mut dir = PathBuf::from("/tmp/farol-segment-bench");
    let mut seed = 1u64;
    let mut threads = 0usize;
    let mut reuse = false;
    let mut run_hdbscan = true;
    let mut mcs = 2000usize;
    let mut min_samples = 10usize;
    let mut dump: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--users" => users = val()?.parse()?,
            "--tx" => tx = val()?.parse()?,
            "--dir" => dir = PathBuf::from(val()?),
            "--seed" => seed = val()?.parse()?,
            "--threads" => threads = val()?.parse()?,
            "--min-cluster-size" => mcs = val()?.parse()?,
            "--min-samples" => min_samples = val()?.parse()?,
            "--dump-matrix" => dump = Some(PathBuf::from(val()?)),
            "--reuse" => reuse = true,
            "--no-hdbscan" => run_hdbscan = false,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let lake = dir.join("transactions");
    let planted_path = dir.join("planted.csv");
    if !(reuse && planted_path.exists()) {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&lake)?;
        let mut writer = TxParquetWriter::create(&lake.join("part-0.parquet"), false)?;
        let mut planted = std::io::BufWriter::new(std::fs::File::create(&planted_path)?);
        writeln!(planted, "user_id,segment")?;
        let mut rows = 0u64;
        let mut err = None;
        generate_with(
            users,
            tx,
            seed,
            |u, s| {
                let _ = writeln!(planted, "{},{s}", u.user_id);
            },
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
        planted.flush()?;
        println!(
            "generated {users} users, {rows} transactions in {:.1} s → {}",
            t.elapsed().as_secs_f64(),
            lake.display()
        );
    }
    let truth: Vec<i32> = std::fs::read_to_string(&planted_path)?
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap_or("0").parse().unwrap_or(-1))
        .collect();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    println!("threads: {}", pool.current_num_threads());
    let total = Instant::now();
    let t = Instant::now();
    let cpu0 = cpu_s();
    let params = EtlParams {
        threads,
        ..EtlParams::default()
    };
    let agg = aggregate_files(std::slice::from_ref(&lake), &params, &|_| {})?;
    let read_s = t.elapsed().as_secs_f64();
    let read_cpu = cpu_s() - cpu0;
    println!(
        "read+ETL: {read_s:.2} s, {read_cpu:.2} CPU-s ({:.2} cores busy) ({} rows, {} users, {} duplicates, {} rejected)",
        read_cpu / read_s,
        agg.report.rows_read,
        agg.users.len(),
        agg.report.duplicates_dropped,
        agg.report.rejected_total()
    );
    let t = Instant::now();
    let fp = FeatureParams::default();
    let (features, fm) = pool.install(|| {
        let f = compute_features(&agg.users, &fp, |_| None);
        let m = feature_matrix(&f, &fp);
        (f, m)
    });
    drop(agg);
    let features_s = t.elapsed().as_secs_f64();
    if let Some(path) = &dump {
        // rows, cols (u64 LE), then f64 LE values row by row: for comparing
        // other clustering implementations on the very same matrix.
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        w.write_all(&(fm.matrix.rows as u64).to_le_bytes())?;
        w.write_all(&(fm.matrix.cols as u64).to_le_bytes())?;
        for v in &fm.matrix.data {
            w.write_all(&v.to_le_bytes())?;
        }
        w.flush()?;
    }
    println!(
        "features: {features_s:.2} s ({} × {})",
        fm.matrix.rows, fm.matrix.cols
    );
    let t = Instant::now();
    let kp = KMeansParams::default();
    let auto = pool.install(|| {
        cluster::kmeans_auto(&fm.matrix, 3, 10, &kp, 5000, &|k, s| {
            println!("  k={k} silhouette={s:.3}")
        })
    });
    let kmeans_s = t.elapsed().as_secs_f64();
    let k = auto.model.centroids.rows;
    let kmeans_ari = adjusted_rand_index(&auto.model.labels, &truth);
    let pipeline_s = total.elapsed().as_secs_f64();
    println!("KMeans auto-k: {kmeans_s:.2} s, k = {k}, ARI vs planted = {kmeans_ari:.4}");
    println!(
        "ETL + features + KMeans auto-k: {pipeline_s:.2} s; peak RSS {:.0} MB",
        peak_rss_mb()
    );
    let profiles = farol_segment::profiles(&features, &auto.model.labels);
    for p in &profiles {
        println!(
            "  {:>3} {:>6} users  {}  /  {}",
            p.cluster, p.size, p.name_pt, p.name_en
        );
    }
    println!("planted: {:?}", segment_names());

    let (mut hdb_s, mut hdb_ari, mut hdb_noise, mut hdb_k) = (0.0, 0.0, 0.0, 0);
    if run_hdbscan {
        let t = Instant::now();
        let hp = HdbscanParams {
            min_cluster_size: mcs,
            min_samples: Some(min_samples),
        };
        let r = pool.install(|| cluster::hdbscan(&fm.matrix, &hp));
        hdb_s = t.elapsed().as_secs_f64();
        let keep: Vec<usize> = (0..r.labels.len()).filter(|&i| r.labels[i] >= 0).collect();
        let a: Vec<i32> = keep.iter().map(|&i| r.labels[i]).collect();
        let b: Vec<i32> = keep.iter().map(|&i| truth[i]).collect();
        hdb_ari = adjusted_rand_index(&a, &b);
        hdb_noise = 1.0 - keep.len() as f64 / r.labels.len() as f64;
        hdb_k = r.stability.len();
        println!(
            "HDBSCAN (min_cluster_size {mcs}, min_samples {min_samples}): {hdb_s:.2} s, {hdb_k} clusters, noise {:.1}%, ARI on non-noise = {hdb_ari:.4}",
            hdb_noise * 100.0
        );
    }
    println!("peak RSS: {:.0} MB", peak_rss_mb());
    println!(
        "RESULT {{\"users\":{users},\"read_s\":{read_s:.3},\"features_s\":{features_s:.3},\"kmeans_s\":{kmeans_s:.3},\"pipeline_s\":{pipeline_s:.3},\"k\":{k},\"kmeans_ari\":{kmeans_ari:.4},\"hdbscan_s\":{hdb_s:.3},\"hdbscan_k\":{hdb_k},\"hdbscan_ari\":{hdb_ari:.4},\"hdbscan_noise\":{hdb_noise:.4},\"peak_rss_mb\":{:.0}}}",
        peak_rss_mb()
    );
    Ok(())
}
