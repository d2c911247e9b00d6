//! KMeans: k-means++ seeding, Lloyd iterations (parallel assignment),
//! restarts, mini-batch for large inputs, and automatic k by silhouette.

use rand::{Rng, SeedableRng, rngs::StdRng, seq::index::sample};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{dist2, metrics::silhouette_on};
use crate::features::Matrix;

/// KMeans parameters (stored with each run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KMeansParams {
    /// Number of clusters (ignored by [`kmeans_auto`]).
    pub k: usize,
    /// Independent k-means++ starts; the lowest inertia wins.
    pub restarts: usize,
    /// Lloyd iterations at most (mini-batch: batches).
    pub max_iter: usize,
    /// Stop when no centroid moves more than this (squared, relative to data scale).
    pub tol: f64,
    /// Random seed.
    pub seed: u64,
    /// Rows above which mini-batch KMeans is used.
    pub mini_batch_above: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Automatic k fits each candidate on this many random rows (0: all),
    /// then refits the chosen k on all rows.
    pub sweep_sample: usize,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            k: 8,
            restarts: 4,
            max_iter: 100,
            tol: 1e-6,
            seed: 42,
            mini_batch_above: 1_000_000,
            batch_size: 4096,
            sweep_sample: 30_000,
        }
    }
}

/// A fitted KMeans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansModel {
    /// `k × d` centroids.
    pub centroids: Matrix,
    /// Cluster of each row, `0..k`.
    pub labels: Vec<i32>,
    /// Sum of squared distances to the assigned centroid.
    pub inertia: f64,
    /// Iterations of the winning start.
    pub iterations: usize,
}

/// Automatic k: the fitted model and the silhouette of each k tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoK {
    /// The model with the best silhouette.
    pub model: KMeansModel,
    /// (k, silhouette on the sample) for each k tried.
    pub scores: Vec<(usize, f64)>,
}

fn plus_plus(x: &Matrix, k: usize, rng: &mut StdRng) -> Matrix {
    let d = x.cols;
    let n = x.rows;
    let mut c = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    c.extend_from_slice(x.row(first));
    let mut best: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| dist2(x.row(i), x.row(first)))
        .collect();
    for j in 1..k {
        let total: f64 = best.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, b) in best.iter().enumerate() {
                r -= b;
                if r <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        c.extend_from_slice(x.row(pick));
        let new = &c[j * d..(j + 1) * d];
        best.par_iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = b.min(dist2(x.row(i), new)));
    }
    Matrix {
        rows: k,
        cols: d,
        data: c,
    }
}

#[inline]
fn nearest(p: &[f64], c: &Matrix) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for j in 0..c.rows {
        let d = dist2(p, c.row(j));
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Assigns every row; returns labels and inertia.
pub(crate) fn assign(x: &Matrix, c: &Matrix) -> (Vec<i32>, f64) {
    let res: Vec<(i32, f64)> = (0..x.rows)
        .into_par_iter()
        .with_min_len(1024)
        .map(|i| {
            let (j, d) = nearest(x.row(i), c);
            (j as i32, d)
        })
        .collect();
    let inertia = res.iter().map(|r| r.1).sum();
    (res.into_iter().map(|r| r.0).collect(), inertia)
}

fn lloyd(x: &Matrix, mut c: Matrix, p: &KMeansParams, rng: &mut StdRng) -> KMeansModel {
    let (k, d) = (c.rows, x.cols);
    let mut iterations = 0;
    for it in 0..p.max_iter {
        iterations = it + 1;
        let (sums, counts) = (0..x.rows)
            .into_par_iter()
            .with_min_len(4096)
            .fold(
                || (vec![0.0; k * d], vec![0usize; k]),
                |(mut s, mut n), i| {
                    let row = x.row(i);
                    let (j, _) = nearest(row, &c);
                    n[j] += 1;
                    for (a, v) in s[j * d..(j + 1) * d].iter_mut().zip(row) {
                        *a += v;
                    }
                    (s, n)
                },
            )
            .reduce(
                || (vec![0.0; k * d], vec![0usize; k]),
                |(mut s1, mut n1), (s2, n2)| {
                    s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                    n1.iter_mut().zip(&n2).for_each(|(a, b)| *a += b);
                    (s1, n1)
                },
            );
        let mut shift: f64 = 0.0;
        for j in 0..k {
            let new: Vec<f64> = if counts[j] == 0 {
                // An empty cluster restarts at a random row.
                x.row(rng.random_range(0..x.rows)).to_vec()
            } else {
                sums[j * d..(j + 1) * d]
                    .iter()
                    .map(|s| s / counts[j] as f64)
                    .collect()
            };
            shift = shift.max(dist2(&new, c.row(j)));
            c.data[j * d..(j + 1) * d].copy_from_slice(&new);
        }
        if shift <= p.tol {
            break;
        }
    }
    let (labels, inertia) = assign(x, &c);
    KMeansModel {
        centroids: c,
        labels,
        inertia,
        iterations,
    }
}

fn mini_batch(x: &Matrix, mut c: Matrix, p: &KMeansParams, rng: &mut StdRng) -> KMeansModel {
    let d = x.cols;
    let mut seen = vec![0usize; c.rows];
    let b = p.batch_size.min(x.rows);
    for _ in 0..p.max_iter {
        let batch: Vec<usize> = (0..b).map(|_| rng.random_range(0..x.rows)).collect();
        let nearest_of: Vec<usize> = batch.par_iter().map(|&i| nearest(x.row(i), &c).0).collect();
        for (&i, &j) in batch.iter().zip(&nearest_of) {
            seen[j] += 1;
            let eta = 1.0 / seen[j] as f64;
            for (cv, xv) in c.data[j * d..(j + 1) * d].iter_mut().zip(x.row(i)) {
                *cv += eta * (xv - *cv);
            }
        }
    }
    // Two full Lloyd passes polish the mini-batch centroids.
    let polish = KMeansParams {
        max_iter: 2,
        ..p.clone()
    };
    let mut m = lloyd(x, c, &polish, rng);
    m.iterations += p.max_iter;
    m
}

/// Fits KMeans with `p.k` clusters: the best (lowest inertia) of `p.restarts`
/// k-means++ starts; mini-batch above `p.mini_batch_above` rows.
pub fn kmeans(x: &Matrix, p: &KMeansParams) -> KMeansModel {
    assert!(x.rows > 0 && p.k > 0, "kmeans needs rows and k ≥ 1");
    let k = p.k.min(x.rows);
    let mut best: Option<KMeansModel> = None;
    for r in 0..p.restarts.max(1) {
        let mut rng = StdRng::seed_from_u64(p.seed.wrapping_add(r as u64 * 0x9E37_79B9));
        let init = plus_plus(x, k, &mut rng);
        let m = if x.rows > p.mini_batch_above {
            mini_batch(x, init, p, &mut rng)
        } else {
            lloyd(x, init, p, &mut rng)
        };
        if best.as_ref().is_none_or(|b| m.inertia < b.inertia) {
            best = Some(m);
        }
    }
    best.expect("at least one start")
}

/// Tries every k in `k_min..=k_max` and keeps the one with the best
/// silhouette, computed on `sample` rows drawn once (the same rows for every k).
///
/// With more than `p.sweep_sample` rows, the candidates are fitted on that
/// many random rows and the chosen k is refitted on all rows.
pub fn kmeans_auto(
    x: &Matrix,
    k_min: usize,
    k_max: usize,
    p: &KMeansParams,
    sample: usize,
    progress: &(dyn Fn(usize, f64) + Sync),
) -> AutoK {
    let mut rng = StdRng::seed_from_u64(p.seed ^ 0x5151);
    if p.sweep_sample > 0 && x.rows > p.sweep_sample {
        let rows = sample_indices(&mut rng, x.rows, p.sweep_sample);
        let mut data = Vec::with_capacity(rows.len() * x.cols);
        for &i in &rows {
            data.extend_from_slice(x.row(i));
        }
        let sub = Matrix {
            rows: rows.len(),
            cols: x.cols,
            data,
        };
        let sweep = kmeans_auto(
            &sub,
            k_min,
            k_max,
            &KMeansParams {
                sweep_sample: 0,
                ..p.clone()
            },
            sample,
            progress,
        );
        let model = kmeans(
            x,
            &KMeansParams {
                k: sweep.model.centroids.rows,
                ..p.clone()
            },
        );
        return AutoK {
            model,
            scores: sweep.scores,
        };
    }
    let s = sample.min(x.rows);
    let idx: Vec<usize> = sample_indices(&mut rng, x.rows, s);
    let mut scores = Vec::new();
    let mut best: Option<(f64, KMeansModel)> = None;
    for k in k_min.max(2)..=k_max.max(k_min.max(2)) {
        if k >= x.rows {
            break;
        }
        let m = kmeans(x, &KMeansParams { k, ..p.clone() });
        let score = silhouette_on(x, &m.labels, &idx);
        progress(k, score);
        scores.push((k, score));
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, m));
        }
    }
    let model = match best {
        Some((_, m)) => m,
        None => kmeans(x, &KMeansParams { k: 1, ..p.clone() }),
    };
    AutoK { model, scores }
}

pub(crate) fn sample_indices(rng: &mut StdRng, n: usize, s: usize) -> Vec<usize> {
    let mut v = sample(rng, n, s.min(n)).into_vec();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{adjusted_rand_index, testdata::blobs};

    fn planted() -> (Matrix, Vec<i32>) {
        let centers = vec![
            vec![0.0, 0.0, 0.0, 0.0],
            vec![6.0, 0.0, 0.0, 0.0],
            vec![0.0, 6.0, 0.0, 0.0],
            vec![0.0, 0.0, 6.0, 6.0],
            vec![6.0, 6.0, 6.0, 6.0],
        ];
        blobs(&centers, 300, 1.0, 0, 1)
    }

    #[test]
    fn kmeans_recovers_planted_groups() {
        let (x, truth) = planted();
        let m = kmeans(
            &x,
            &KMeansParams {
                k: 5,
                ..KMeansParams::default()
            },
        );
        assert!(adjusted_rand_index(&m.labels, &truth) > 0.9);
        assert_eq!(m.centroids.rows, 5);
    }

    #[test]
    fn mini_batch_recovers_planted_groups() {
        let (x, truth) = planted();
        let p = KMeansParams {
            k: 5,
            mini_batch_above: 100,
            batch_size: 256,
            max_iter: 50,
            ..KMeansParams::default()
        };
        let m = kmeans(&x, &p);
        assert!(adjusted_rand_index(&m.labels, &truth) > 0.9);
    }

    #[test]
    fn auto_k_finds_the_planted_count() {
        let (x, truth) = planted();
        let auto = kmeans_auto(&x, 2, 9, &KMeansParams::default(), 800, &|_, _| {});
        assert_eq!(auto.model.centroids.rows, 5, "scores: {:?}", auto.scores);
        assert_eq!(auto.scores.len(), 8);
        assert!(adjusted_rand_index(&auto.model.labels, &truth) > 0.9);
        // Candidates fitted on a sample, the chosen k on all rows.
        let p = KMeansParams {
            sweep_sample: 600,
            ..KMeansParams::default()
        };
        let auto = kmeans_auto(&x, 2, 9, &p, 400, &|_, _| {});
        assert_eq!(auto.model.centroids.rows, 5, "scores: {:?}", auto.scores);
        assert_eq!(auto.model.labels.len(), x.rows);
        assert!(adjusted_rand_index(&auto.model.labels, &truth) > 0.9);
    }

    #[test]
    fn same_seed_same_result() {
        let (x, _) = planted();
        let p = KMeansParams {
            k: 4,
            ..KMeansParams::default()
        };
        assert_eq!(kmeans(&x, &p).labels, kmeans(&x, &p).labels);
    }
}
