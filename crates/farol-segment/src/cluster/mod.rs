//! Clustering on dense matrices: KMeans, DBSCAN, HDBSCAN, and quality metrics.
//!
//! Labels are `i32`: `0..k` for clusters, [`NOISE`] (−1) for points that
//! belong to none (DBSCAN/HDBSCAN only; noise is never forced into a cluster).
//! Parallel loops run on the caller's rayon pool (wrap calls in
//! `ThreadPool::install` to bound threads).

mod boruvka;
pub mod density;
pub mod kdtree;
pub mod kmeans;
pub mod metrics;

pub use density::{DbscanParams, HdbscanParams, HdbscanResult, dbscan, eps_from_knee, hdbscan};
pub use kmeans::{AutoK, KMeansModel, KMeansParams, kmeans, kmeans_auto};
pub use metrics::{
    Quality, adjusted_rand_index, calinski_harabasz, davies_bouldin, quality, silhouette,
};

/// The label of noise points.
pub const NOISE: i32 = -1;

/// Squared Euclidean distance.
#[inline]
pub fn dist2(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// Number of clusters (labels ≥ 0) in `labels`.
pub fn cluster_count(labels: &[i32]) -> usize {
    labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| (m + 1).max(0) as usize)
}

/// Mean of each cluster's rows (clusters `0..k`; noise ignored).
pub fn centroids(x: &crate::features::Matrix, labels: &[i32], k: usize) -> crate::features::Matrix {
    let d = x.cols;
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            let l = l as usize;
            counts[l] += 1;
            for (s, v) in sums[l * d..(l + 1) * d].iter_mut().zip(x.row(i)) {
                *s += v;
            }
        }
    }
    for c in 0..k {
        if counts[c] > 0 {
            for s in &mut sums[c * d..(c + 1) * d] {
                *s /= counts[c] as f64;
            }
        }
    }
    crate::features::Matrix {
        rows: k,
        cols: d,
        data: sums,
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    use crate::features::Matrix;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// `per` points around each of `centers`, Gaussian-ish with spread `sd`,
    /// plus `noise` uniform points in the box [-20, 20]^d (label -1).
    pub fn blobs(
        centers: &[Vec<f64>],
        per: usize,
        sd: f64,
        noise: usize,
        seed: u64,
    ) -> (Matrix, Vec<i32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = centers[0].len();
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (c, center) in centers.iter().enumerate() {
            for _ in 0..per {
                // Sum of 4 uniforms ≈ normal.
                rows.push(
                    center
                        .iter()
                        .map(|m| {
                            let z: f64 =
                                (0..4).map(|_| rng.random::<f64>() - 0.5).sum::<f64>() * 1.7;
                            m + z * sd
                        })
                        .collect(),
                );
                labels.push(c as i32);
            }
        }
        for _ in 0..noise {
            rows.push((0..d).map(|_| rng.random_range(-20.0..20.0)).collect());
            labels.push(-1);
        }
        (Matrix::from_rows(&rows), labels)
    }
}
