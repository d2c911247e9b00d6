//! Cluster quality: silhouette, Davies–Bouldin, Calinski–Harabasz, sizes, ARI.

use std::collections::HashMap;

use rand::{SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{centroids, cluster_count, dist2, kmeans::sample_indices};
use crate::features::Matrix;

/// The quality report of one clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Clusters (noise excluded).
    pub clusters: usize,
    /// Rows per cluster, `0..clusters`.
    pub sizes: Vec<usize>,
    /// Noise rows.
    pub noise: usize,
    /// Mean silhouette over a sample of non-noise rows (−1..1, higher is better).
    pub silhouette: f64,
    /// Rows in the silhouette sample.
    pub silhouette_sample: usize,
    /// Davies–Bouldin index (≥ 0, lower is better).
    pub davies_bouldin: f64,
    /// Calinski–Harabasz index (higher is better).
    pub calinski_harabasz: f64,
}

/// Computes every metric; the silhouette on at most `sample` non-noise rows.
pub fn quality(x: &Matrix, labels: &[i32], sample: usize, seed: u64) -> Quality {
    let k = cluster_count(labels);
    let mut sizes = vec![0; k];
    let mut noise = 0;
    for &l in labels {
        if l >= 0 {
            sizes[l as usize] += 1
        } else {
            noise += 1
        }
    }
    let s = silhouette(x, labels, sample, seed);
    Quality {
        clusters: k,
        sizes,
        noise,
        silhouette: s.0,
        silhouette_sample: s.1,
        davies_bouldin: davies_bouldin(x, labels),
        calinski_harabasz: calinski_harabasz(x, labels),
    }
}

/// Mean silhouette of up to `sample` non-noise rows (drawn with `seed`),
/// against the other sampled rows. Returns (score, rows used).
pub fn silhouette(x: &Matrix, labels: &[i32], sample: usize, seed: u64) -> (f64, usize) {
    let members: Vec<usize> = (0..x.rows).filter(|&i| labels[i] >= 0).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let picked = sample_indices(&mut rng, members.len(), sample);
    let idx: Vec<usize> = picked.into_iter().map(|i| members[i]).collect();
    (silhouette_on(x, labels, &idx), idx.len())
}

/// Mean silhouette of the rows `idx` (noise rows skipped), computed among them.
pub(crate) fn silhouette_on(x: &Matrix, labels: &[i32], idx: &[usize]) -> f64 {
    let k = cluster_count(labels);
    let idx: Vec<usize> = idx.iter().copied().filter(|&i| labels[i] >= 0).collect();
    if k < 2 || idx.len() < 2 {
        return 0.0;
    }
    let mut count = vec![0usize; k];
    for &i in &idx {
        count[labels[i] as usize] += 1;
    }
    let total: f64 = idx
        .par_iter()
        .map(|&i| {
            let mut sum = vec![0.0; k];
            for &j in &idx {
                if i != j {
                    sum[labels[j] as usize] += dist2(x.row(i), x.row(j)).sqrt();
                }
            }
            let own = labels[i] as usize;
            if count[own] <= 1 {
                return 0.0;
            }
            let a = sum[own] / (count[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && count[c] > 0)
                .map(|c| sum[c] / count[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                0.0
            } else {
                (b - a) / a.max(b).max(1e-300)
            }
        })
        .sum();
    total / idx.len() as f64
}

/// Davies–Bouldin index over non-noise rows (0 with fewer than 2 clusters).
pub fn davies_bouldin(x: &Matrix, labels: &[i32]) -> f64 {
    let k = cluster_count(labels);
    if k < 2 {
        return 0.0;
    }
    let c = centroids(x, labels, k);
    let mut scatter = vec![0.0; k];
    let mut count = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            scatter[l as usize] += dist2(x.row(i), c.row(l as usize)).sqrt();
            count[l as usize] += 1;
        }
    }
    let live: Vec<usize> = (0..k).filter(|&j| count[j] > 0).collect();
    for &j in &live {
        scatter[j] /= count[j] as f64;
    }
    let mut total = 0.0;
    for &i in &live {
        let worst = live
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| (scatter[i] + scatter[j]) / dist2(c.row(i), c.row(j)).sqrt().max(1e-300))
            .fold(0.0, f64::max);
        total += worst;
    }
    total / live.len() as f64
}

/// Calinski–Harabasz index over non-noise rows (0 with fewer than 2 clusters).
pub fn calinski_harabasz(x: &Matrix, labels: &[i32]) -> f64 {
    let k = cluster_count(labels);
    let n = labels.iter().filter(|&&l| l >= 0).count();
    if k < 2 || n <= k {
        return 0.0;
    }
    let c = centroids(x, labels, k);
    let mut mean = vec![0.0; x.cols];
    let mut count = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            count[l as usize] += 1;
            for (m, v) in mean.iter_mut().zip(x.row(i)) {
                *m += v / n as f64;
            }
        }
    }
    let between: f64 = (0..k)
        .map(|j| count[j] as f64 * dist2(c.row(j), &mean))
        .sum();
    let within: f64 = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| **l >= 0)
        .map(|(i, &l)| dist2(x.row(i), c.row(l as usize)))
        .sum();
    if within <= 0.0 {
        return f64::INFINITY;
    }
    (between / (k - 1) as f64) / (within / (n - k) as f64)
}

/// Adjusted Rand index between two labelings of the same rows (noise is one
/// more label here; filter rows first to compare non-noise points only).
pub fn adjusted_rand_index(a: &[i32], b: &[i32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let mut table: HashMap<(i32, i32), u64> = HashMap::new();
    let mut ra: HashMap<i32, u64> = HashMap::new();
    let mut rb: HashMap<i32, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *ra.entry(x).or_default() += 1;
        *rb.entry(y).or_default() += 1;
    }
    let c2 = |m: u64| (m as f64) * (m as f64 - 1.0) / 2.0;
    let index: f64 = table.values().map(|&m| c2(m)).sum();
    let sa: f64 = ra.values().map(|&m| c2(m)).sum();
    let sb: f64 = rb.values().map(|&m| c2(m)).sum();
    let expected = sa * sb / c2(n as u64).max(1.0);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_known_values() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_4).abs() < 1e-9);
        // Index 2, expected 36/15, max 6: (2 − 2.4) / (6 − 2.4) = −1/9.
        let v = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 1, 0, 1, 0, 1]);
        assert!((v - (-1.0 / 9.0)).abs() < 1e-12, "{v}");
    }

    #[test]
    fn metrics_on_two_tight_groups() {
        // Two groups of two points: {0, 1} at x = 0, 1 and {10, 11}.
        let x = Matrix::from_rows(&[vec![0.0], vec![1.0], vec![10.0], vec![11.0]]);
        let labels = [0, 0, 1, 1];
        // Point 0: a = 1, b = (10 + 11) / 2 = 10.5 → s = 1 − 1/10.5.
        let s0 = 1.0 - 1.0 / 10.5;
        let s1 = 1.0 - 1.0 / 9.5;
        let (s, used) = silhouette(&x, &labels, 100, 1);
        assert_eq!(used, 4);
        assert!((s - (s0 + s1) / 2.0).abs() < 1e-12);
        // Scatter 0.5 each, centroids 10 apart: DB = 1/10.
        assert!((davies_bouldin(&x, &labels) - 0.1).abs() < 1e-12);
        // B = 2·25 + 2·25 = 100, W = 4·0.25 = 1; CH = (100/1)/(1/2) = 200.
        assert!((calinski_harabasz(&x, &labels) - 200.0).abs() < 1e-9);
        let q = quality(&x, &[0, 0, 1, -1], 100, 1);
        assert_eq!(q.sizes, vec![2, 1]);
        assert_eq!(q.noise, 1);
    }
}
