//! The whole run: files → features → clusters → profiles → report.
//!
//! [`run`] is what the main crate calls from a job (off the async runtime);
//! [`segment`] starts from features already computed (e.g. from a table).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::clean::CleanReport;
use crate::cluster::{
    self, DbscanParams, HdbscanParams, KMeansParams, Quality, adjusted_rand_index,
};
use crate::etl::{self, EtlError, EtlParams, EtlProgress};
use crate::features::{FeatureParams, UserFeatures, compute_features, feature_matrix};
use crate::incremental::{IncrementalReport, StateFiles, aggregate_incremental};
use crate::model::Channel;
use crate::profile::{ClusterProfile, PreviousCluster, carry_names, profiles};

/// Which clustering, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Algorithm {
    /// KMeans; `k: None` picks k in `k_min..=k_max` by silhouette.
    Kmeans {
        /// Fixed k, or automatic.
        k: Option<usize>,
        /// Smallest k tried.
        k_min: usize,
        /// Largest k tried.
        k_max: usize,
        /// Restarts, iterations, seed, mini-batch.
        params: KMeansParams,
    },
    /// DBSCAN.
    Dbscan(DbscanParams),
    /// HDBSCAN.
    Hdbscan(HdbscanParams),
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Kmeans {
            k: None,
            k_min: 3,
            k_max: 12,
            params: KMeansParams::default(),
        }
    }
}

/// Everything that determines a run (stored with it as JSON).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunParams {
    /// Reading and cleaning.
    pub etl: EtlParams,
    /// Feature computation and weights.
    pub features: FeatureParams,
    /// Clustering.
    pub algorithm: Algorithm,
    /// Rows in the silhouette sample (0: 5,000).
    pub silhouette_sample: usize,
    /// Largest signature distance for a cluster to continue a previous one (0: 0.35).
    pub match_max_distance: f64,
    /// Refit KMeans with another seed and report the ARI between both.
    pub stability_check: bool,
    /// Read every transaction file even when a saved aggregation state covers some of them
    /// ([`run_incremental`]).
    pub full: bool,
}

/// What a run did (stored with it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The parameters.
    pub params: RunParams,
    /// Reading and cleaning counts (absent when features came from elsewhere).
    pub clean: Option<CleanReport>,
    /// Users clustered.
    pub users: usize,
    /// Columns of the clustering matrix.
    pub feature_names: Vec<String>,
    /// Cluster quality.
    pub quality: Quality,
    /// KMeans automatic k: (k, silhouette) for each k tried.
    pub k_scores: Vec<(usize, f64)>,
    /// DBSCAN: the eps used.
    pub eps: Option<f64>,
    /// KMeans: ARI between this fit and one with another seed.
    pub stability_ari: Option<f64>,
    /// Matches with the previous run: (cluster, previous cluster, distance).
    pub matched: Vec<(i32, i32, f64)>,
    /// Wall time per stage, milliseconds.
    pub timings_ms: BTreeMap<String, u64>,
    /// Data window: first and last transaction, epoch ms.
    pub window: (Option<i64>, Option<i64>),
    /// Incremental runs: files reused from the saved state, files read, why not incremental.
    #[serde(default)]
    pub incremental: Option<IncrementalReport>,
}

/// A run's result.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Features per user (sorted by user id).
    pub features: Vec<UserFeatures>,
    /// Cluster of each user (same order), −1 for noise.
    pub labels: Vec<i32>,
    /// One profile per cluster, then noise if any.
    pub profiles: Vec<ClusterProfile>,
    /// The report.
    pub report: RunReport,
}

/// A stage of a run, for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Reading transaction files.
    Reading(EtlProgress),
    /// Computing features.
    Features,
    /// Clustering; for automatic k, each k tried with its silhouette.
    Clustering {
        /// k tried (0 for density methods).
        k: usize,
        /// Its silhouette.
        silhouette: f64,
    },
    /// Profiling and naming.
    Profiling,
}

/// Reads transactions (and users, for the preferred channel), then
/// [`segment`]s. Uses `params.etl.threads` threads throughout.
pub fn run(
    transactions: &[PathBuf],
    users: &[PathBuf],
    params: &RunParams,
    previous: &[PreviousCluster],
    progress: &(dyn Fn(Stage) + Sync),
) -> Result<Segmentation, EtlError> {
    run_inner(transactions, users, params, previous, progress, None)
}

/// [`run`], reusing the aggregation state saved by an earlier run when it still describes
/// the transaction files (reading only the new ones), and saving the new state to
/// `state.save_to` ([`crate::incremental`]). `params.full` (or `state.full`) reads everything.
/// The report's `incremental` says what was reused and why not.
pub fn run_incremental(
    transactions: &[PathBuf],
    users: &[PathBuf],
    params: &RunParams,
    previous: &[PreviousCluster],
    progress: &(dyn Fn(Stage) + Sync),
    state: &StateFiles,
) -> Result<Segmentation, EtlError> {
    run_inner(transactions, users, params, previous, progress, Some(state))
}

fn run_inner(
    transactions: &[PathBuf],
    users: &[PathBuf],
    params: &RunParams,
    previous: &[PreviousCluster],
    progress: &(dyn Fn(Stage) + Sync),
    state: Option<&StateFiles>,
) -> Result<Segmentation, EtlError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.etl.threads)
        .build()
        .map_err(|e| EtlError::Threads(e.to_string()))?;
    let t0 = Instant::now();
    let reading = |p| progress(Stage::Reading(p));
    let (agg, incremental) = match state {
        None => (
            etl::aggregate_files(transactions, &params.etl, &reading)?,
            None,
        ),
        Some(state) => {
            let state = StateFiles {
                full: state.full || params.full,
                ..state.clone()
            };
            let (agg, inc) = aggregate_incremental(transactions, &params.etl, &state, &reading)?;
            (agg, Some(inc))
        }
    };
    let read_ms = t0.elapsed().as_millis() as u64;
    let mut channels: HashMap<String, Channel> = HashMap::new();
    etl::read_users(users, &params.etl, |u| {
        if let Some(c) = u.preferred_channel {
            channels.insert(u.user_id, c);
        }
    })?;
    progress(Stage::Features);
    let t1 = Instant::now();
    let features = pool
        .install(|| compute_features(&agg.users, &params.features, |id| channels.get(id).copied()));
    drop(agg.users);
    let features_ms = t1.elapsed().as_millis() as u64;
    let mut seg = pool.install(|| segment(features, params, previous, progress));
    seg.report.window = (agg.report.min_created_at, agg.report.max_created_at);
    seg.report.clean = Some(agg.report);
    seg.report.incremental = incremental;
    seg.report.timings_ms.insert("read".into(), read_ms);
    seg.report.timings_ms.insert("features".into(), features_ms);
    Ok(seg)
}

/// Clusters users from their features, profiles and names the clusters,
/// carries names over from `previous`. Runs on the caller's rayon pool.
pub fn segment(
    features: Vec<UserFeatures>,
    params: &RunParams,
    previous: &[PreviousCluster],
    progress: &(dyn Fn(Stage) + Sync),
) -> Segmentation {
    let mut timings = BTreeMap::new();
    let sample = if params.silhouette_sample == 0 {
        5000
    } else {
        params.silhouette_sample
    };
    let t = Instant::now();
    let fm = feature_matrix(&features, &params.features);
    timings.insert("matrix".to_owned(), t.elapsed().as_millis() as u64);
    let t = Instant::now();
    let x = &fm.matrix;
    let (mut k_scores, mut eps, mut stability_ari) = (Vec::new(), None, None);
    let labels = if x.rows < 2 {
        vec![0; x.rows]
    } else {
        match &params.algorithm {
            Algorithm::Kmeans {
                k,
                k_min,
                k_max,
                params: kp,
            } => {
                let model = match k {
                    Some(k) => cluster::kmeans(
                        x,
                        &KMeansParams {
                            k: *k,
                            ..kp.clone()
                        },
                    ),
                    None => {
                        let auto = cluster::kmeans_auto(x, *k_min, *k_max, kp, sample, &|k, s| {
                            progress(Stage::Clustering { k, silhouette: s })
                        });
                        k_scores = auto.scores;
                        auto.model
                    }
                };
                if params.stability_check {
                    let other = cluster::kmeans(
                        x,
                        &KMeansParams {
                            k: model.centroids.rows,
                            seed: kp.seed.wrapping_add(1),
                            ..kp.clone()
                        },
                    );
                    stability_ari = Some(adjusted_rand_index(&model.labels, &other.labels));
                }
                model.labels
            }
            Algorithm::Dbscan(p) => {
                let (labels, e) = cluster::dbscan(x, p);
                eps = Some(e);
                labels
            }
            Algorithm::Hdbscan(p) => cluster::hdbscan(x, p).labels,
        }
    };
    timings.insert("cluster".to_owned(), t.elapsed().as_millis() as u64);
    let t = Instant::now();
    let quality = cluster::quality(x, &labels, sample, 7);
    timings.insert("quality".to_owned(), t.elapsed().as_millis() as u64);
    progress(Stage::Profiling);
    let t = Instant::now();
    let mut profiles = profiles(&features, &labels);
    let max_d = if params.match_max_distance > 0.0 {
        params.match_max_distance
    } else {
        0.35
    };
    let matched = carry_names(&mut profiles, previous, max_d);
    timings.insert("profiles".to_owned(), t.elapsed().as_millis() as u64);
    let report = RunReport {
        params: params.clone(),
        clean: None,
        users: features.len(),
        feature_names: fm.names,
        quality,
        k_scores,
        eps,
        stability_ari,
        matched,
        timings_ms: timings,
        window: (None, None),
        incremental: None,
    };
    Segmentation {
        features,
        labels,
        profiles,
        report,
    }
}
