//! The whole run on synthetic data with planted segments.

use std::path::PathBuf;

use farol_segment::cluster::{HdbscanParams, adjusted_rand_index};
use farol_segment::synth::{generate, write_transactions_parquet, write_users_csv};
use farol_segment::{Algorithm, PreviousCluster, RunParams, RunReport, run};

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

fn data(name: &str, users: usize) -> (Scratch, PathBuf, PathBuf, Vec<i32>) {
    let dir =
        std::env::temp_dir().join(format!("farol-segment-pipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = Scratch(dir);
    let d = generate(users, 40.0, 5);
    let tx = dir.join("lake");
    write_transactions_parquet(&tx, &d.transactions, true).unwrap();
    let u = dir.join("users.csv");
    write_users_csv(&u, &d.users).unwrap();
    (dir, tx, u, d.planted)
}

fn non_noise_ari(labels: &[i32], truth: &[i32]) -> f64 {
    let keep: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 0).collect();
    let a: Vec<i32> = keep.iter().map(|&i| labels[i]).collect();
    let b: Vec<i32> = keep.iter().map(|&i| truth[i]).collect();
    adjusted_rand_index(&a, &b)
}

#[test]
fn kmeans_auto_finds_the_planted_segments_and_names_them() {
    let (_dir, tx, users, planted) = data("kmeans", 2000);
    let params = RunParams {
        algorithm: Algorithm::Kmeans {
            k: None,
            k_min: 3,
            k_max: 9,
            params: Default::default(),
        },
        stability_check: true,
        ..RunParams::default()
    };
    let seg = run(&[tx], &[users], &params, &[], &|_| {}).unwrap();
    assert_eq!(seg.features.len(), 2000);
    let ari = adjusted_rand_index(&seg.labels, &planted);
    assert!(ari > 0.9, "ARI {ari}, k scores {:?}", seg.report.k_scores);
    assert_eq!(seg.report.quality.clusters, 6);
    assert!(seg.report.stability_ari.unwrap() > 0.9);
    let names: Vec<&str> = seg.profiles.iter().map(|p| p.name_pt.as_str()).collect();
    for expected in [
        "Cassino ao vivo VIP",
        "Esportes no fim de semana",
        "Slots · ticket baixo",
    ] {
        assert!(names.iter().any(|n| n.starts_with(expected)), "{names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("Crash · ticket alto · noturno")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("Caçador de cashback")),
        "{names:?}"
    );
    // The report round-trips through JSON (the main crate stores it so).
    let clean = seg.report.clean.as_ref().unwrap();
    assert_eq!(clean.users, 2000);
    assert!(seg.report.window.0.is_some());
    let json = serde_json::to_string(&seg.report).unwrap();
    let back: RunReport = serde_json::from_str(&json).unwrap();
    // (serde_json may change the last digit of a float: compare the exact parts.)
    assert_eq!(back.params, seg.report.params);
    assert_eq!(back.clean, seg.report.clean);
    assert_eq!(back.quality.sizes, seg.report.quality.sizes);
    assert_eq!(back.feature_names, seg.report.feature_names);
    let json = serde_json::to_string(&seg.profiles).unwrap();
    assert!(json.contains("\"name_en\""));

    // A second run keeps a name a person gave.
    let mut previous: Vec<PreviousCluster> =
        seg.profiles.iter().map(PreviousCluster::from).collect();
    let vip = previous
        .iter()
        .position(|p| p.name_pt == "Cassino ao vivo VIP")
        .unwrap();
    previous[vip].name_pt = "Mesa VIP da Ana".into();
    previous[vip].user_named = true;
    let params2 = RunParams {
        algorithm: match params.algorithm.clone() {
            Algorithm::Kmeans {
                k,
                k_min,
                k_max,
                mut params,
            } => {
                params.seed = 99;
                Algorithm::Kmeans {
                    k,
                    k_min,
                    k_max,
                    params,
                }
            }
            other => other,
        },
        ..params
    };
    let (_dir2, tx, users, _) = data("kmeans2", 2000);
    let seg2 = run(&[tx], &[users], &params2, &previous, &|_| {}).unwrap();
    assert_eq!(seg2.report.matched.len(), 6);
    let renamed = seg2
        .profiles
        .iter()
        .find(|p| p.name_pt == "Mesa VIP da Ana")
        .unwrap();
    assert!(renamed.user_named);
    assert!(
        renamed.signature[2] > 0.7,
        "live casino share {}",
        renamed.signature[2]
    );
}

#[test]
fn hdbscan_finds_the_planted_segments_and_keeps_noise_apart() {
    let (_dir, tx, users, planted) = data("hdbscan", 2000);
    let params = RunParams {
        algorithm: Algorithm::Hdbscan(HdbscanParams {
            min_cluster_size: 60,
            min_samples: Some(10),
        }),
        ..RunParams::default()
    };
    let seg = run(&[tx], &[users], &params, &[], &|_| {}).unwrap();
    let ari = non_noise_ari(&seg.labels, &planted);
    let noise = seg.labels.iter().filter(|&&l| l < 0).count();
    assert!(
        ari > 0.9,
        "ARI {ari}, sizes {:?}, noise {noise}",
        seg.report.quality.sizes
    );
    assert!(noise < 400, "noise {noise}");
    if noise > 0 {
        assert_eq!(seg.profiles.last().unwrap().cluster, -1);
    }
}
