//! Density clustering: DBSCAN and HDBSCAN. Noise stays noise ([`NOISE`]).

use rand::{SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{NOISE, kdtree::KdTree, kmeans::sample_indices};
use crate::features::Matrix;

/// DBSCAN parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DbscanParams {
    /// Neighbourhood radius (`None`: from the knee of the k-distance curve).
    pub eps: Option<f64>,
    /// Neighbours (the point included) that make a point core.
    pub min_points: usize,
    /// Rows sampled for the k-distance curve.
    pub knee_sample: usize,
    /// Seed of the sample.
    pub seed: u64,
}

impl Default for DbscanParams {
    fn default() -> Self {
        DbscanParams {
            eps: None,
            min_points: 10,
            knee_sample: 5000,
            seed: 42,
        }
    }
}

/// The eps at the knee of the sorted distances to the `k`-th neighbour
/// (the point itself counted), over a sample of rows: the point of the
/// ascending curve farthest below the chord from its first to its last point.
pub fn eps_from_knee(x: &Matrix, k: usize, sample: usize, seed: u64) -> f64 {
    let tree = KdTree::new(x);
    let mut rng = StdRng::seed_from_u64(seed);
    let idx = sample_indices(&mut rng, x.rows, sample);
    let mut d: Vec<f64> = idx
        .par_iter()
        .map(|&i| tree.knn(x.row(i), k).last().map_or(0.0, |e| e.0.sqrt()))
        .collect();
    d.sort_unstable_by(f64::total_cmp);
    knee(&d)
}

/// Knee of an ascending curve (see [`eps_from_knee`]).
pub(crate) fn knee(d: &[f64]) -> f64 {
    let n = d.len();
    if n < 3 {
        return d.last().copied().unwrap_or(0.0);
    }
    let (lo, hi) = (d[0], d[n - 1]);
    let span = (hi - lo).max(1e-300);
    let mut best = (0.0, n - 1);
    for (i, v) in d.iter().enumerate() {
        let xn = i as f64 / (n - 1) as f64;
        let yn = (v - lo) / span;
        if xn - yn > best.0 {
            best = (xn - yn, i);
        }
    }
    d[best.1]
}

/// DBSCAN labels (clusters numbered by first discovery) and the eps used.
pub fn dbscan(x: &Matrix, p: &DbscanParams) -> (Vec<i32>, f64) {
    let eps = p
        .eps
        .unwrap_or_else(|| eps_from_knee(x, p.min_points, p.knee_sample, p.seed));
    let tree = KdTree::new(x);
    let r2 = eps * eps;
    // Neighbour lists are not kept (dense groups would make them O(n²)):
    // core flags first, in parallel, then a flood fill that re-queries
    // each core point once.
    let core: Vec<bool> = (0..x.rows)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            buf.clear();
            tree.within(x.row(i), r2, buf);
            buf.len() >= p.min_points
        })
        .collect();
    let mut labels = vec![NOISE; x.rows];
    let mut next = 0;
    let mut stack = Vec::new();
    let mut buf = Vec::new();
    for i in 0..x.rows {
        if labels[i] != NOISE || !core[i] {
            continue;
        }
        labels[i] = next;
        stack.push(i);
        while let Some(j) = stack.pop() {
            buf.clear();
            tree.within(x.row(j), r2, &mut buf);
            for &m in &buf {
                if labels[m] == NOISE {
                    labels[m] = next;
                    if core[m] {
                        stack.push(m);
                    }
                }
            }
        }
        next += 1;
    }
    (labels, eps)
}

/// HDBSCAN parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HdbscanParams {
    /// Smallest group that counts as a cluster.
    pub min_cluster_size: usize,
    /// Neighbours (the point included) defining the core distance
    /// (`None`: `min_cluster_size`).
    pub min_samples: Option<usize>,
}

impl Default for HdbscanParams {
    fn default() -> Self {
        HdbscanParams {
            min_cluster_size: 50,
            min_samples: Some(10),
        }
    }
}

/// HDBSCAN result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HdbscanResult {
    /// Cluster of each row (`0..k`, largest first) or [`NOISE`].
    pub labels: Vec<i32>,
    /// Stability (excess of mass) of each selected cluster, by label.
    pub stability: Vec<f64>,
}

/// HDBSCAN (Campello, Moulavi, Sander 2013), with excess-of-mass selection.
///
/// Core distances come from KD-tree k-NN queries; the exact minimum spanning
/// tree of mutual-reachability distances from Borůvka rounds over a KD-tree
/// with bounding boxes (see the `boruvka` module). The MST becomes a
/// single-linkage hierarchy, condensed with `min_cluster_size`; clusters
/// are chosen by stability, never the root (so noise is reported, not
/// absorbed).
pub fn hdbscan(x: &Matrix, p: &HdbscanParams) -> HdbscanResult {
    let n = x.rows;
    let mcs = p.min_cluster_size.max(2);
    if n < mcs {
        return HdbscanResult {
            labels: vec![NOISE; n],
            stability: Vec::new(),
        };
    }
    let k = p.min_samples.unwrap_or(mcs).clamp(1, n);
    let tree = KdTree::new(x);
    let core: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| tree.knn(x.row(i), k).last().map_or(0.0, |e| e.0.sqrt()))
        .collect();
    let edges = super::boruvka::mst(x, &core);
    let (parents, condensed) = condense(n, &edges, mcs);
    select(n, &parents, &condensed)
}

#[cfg(test)]
/// Rows as f32, padded with zeros to a multiple of 8 columns, so the
/// distance loop below compiles to packed SIMD.
struct Packed {
    stride: usize,
    data: Vec<f32>,
}

#[cfg(test)]
impl Packed {
    fn new(x: &Matrix) -> Self {
        let stride = x.cols.div_ceil(8).max(1) * 8;
        let mut data = vec![0.0f32; x.rows * stride];
        for i in 0..x.rows {
            for (j, v) in x.row(i).iter().enumerate() {
                data[i * stride + j] = *v as f32;
            }
        }
        Packed { stride, data }
    }

    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.stride..(i + 1) * self.stride]
    }
}

#[cfg(test)]
#[inline]
fn dist2_packed(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            let d = ca[l] - cb[l];
            acc[l] += d * d;
        }
    }
    acc.iter().sum()
}

/// MST edges (a, b, mutual-reachability distance), by Prim's algorithm on
/// squared distances in f32: O(n²), kept as the reference the Borůvka
/// tree is tested against (it took 62 s on 100k × 13 here, Borůvka 11 s).
#[cfg(test)]
pub(crate) fn prim_mst(x: &Matrix, core: &[f64]) -> Vec<(usize, usize, f64)> {
    const CHUNK: usize = 4096;
    let n = x.rows;
    let packed = Packed::new(x);
    let core2: Vec<f32> = core.iter().map(|c| (c * c) as f32).collect();
    let mut best = vec![f32::INFINITY; n];
    let mut from = vec![0u32; n];
    let mut done = vec![false; n];
    let mut edges = Vec::with_capacity(n - 1);
    let mut current = 0;
    done[0] = true;
    for _ in 1..n {
        let cur_row = packed.row(current);
        let cur_core = core2[current];
        let (dmin, imin) = best
            .par_chunks_mut(CHUNK)
            .zip(from.par_chunks_mut(CHUNK))
            .zip(done.par_chunks(CHUNK))
            .enumerate()
            .map(|(c, ((best, from), done))| {
                let mut local = (f32::INFINITY, usize::MAX);
                let base = c * CHUNK;
                for o in 0..best.len() {
                    if done[o] {
                        continue;
                    }
                    let j = base + o;
                    // A mutual-reachability distance is never below either
                    // core distance: skip the pair when that floor cannot win.
                    let floor = cur_core.max(core2[j]);
                    if floor < best[o] {
                        let mr = dist2_packed(cur_row, packed.row(j)).max(floor);
                        if mr < best[o] {
                            best[o] = mr;
                            from[o] = current as u32;
                        }
                    }
                    if best[o] < local.0 {
                        local = (best[o], j);
                    }
                }
                local
            })
            .reduce(
                || (f32::INFINITY, usize::MAX),
                |a, b| {
                    if b.0 < a.0 || (b.0 == a.0 && b.1 < a.1) {
                        b
                    } else {
                        a
                    }
                },
            );
        debug_assert!(imin != usize::MAX);
        done[imin] = true;
        edges.push((from[imin] as usize, imin, f64::from(dmin).sqrt()));
        current = imin;
    }
    edges
}

/// A record of the condensed tree: `child` (a point `< n`, or a cluster id
/// `≥ n`) leaves `parent` (a cluster id `≥ n`) at density `lambda`.
#[derive(Debug, Clone, Copy)]
struct Condensed {
    parent: usize,
    child: usize,
    lambda: f64,
    size: usize,
}

/// Builds the single-linkage hierarchy and condenses it. Returns, per
/// condensed cluster id − n, its parent cluster id (root: itself), and the records.
fn condense(n: usize, edges: &[(usize, usize, f64)], mcs: usize) -> (Vec<usize>, Vec<Condensed>) {
    let mut sorted = edges.to_vec();
    sorted.sort_by(|a, b| a.2.total_cmp(&b.2));
    // Single linkage: node n + i merges two nodes at distance d.
    let mut uf: Vec<usize> = (0..2 * n).collect();
    fn find(uf: &mut [usize], mut a: usize) -> usize {
        while uf[a] != a {
            uf[a] = uf[uf[a]];
            a = uf[a];
        }
        a
    }
    let mut left = vec![0usize; n - 1];
    let mut right = vec![0usize; n - 1];
    let mut dist = vec![0.0; n - 1];
    let mut size = vec![1usize; 2 * n - 1];
    for (i, &(a, b, d)) in sorted.iter().enumerate() {
        let (ra, rb) = (find(&mut uf, a), find(&mut uf, b));
        let node = n + i;
        left[i] = ra;
        right[i] = rb;
        dist[i] = d;
        size[node] = size[ra] + size[rb];
        uf[ra] = node;
        uf[rb] = node;
    }
    let root = 2 * n - 2;
    let lambda_of = |d: f64| 1.0 / d.max(1e-12);
    let mut records = Vec::new();
    let mut cluster_of = vec![usize::MAX; 2 * n - 1];
    let mut parents = vec![n];
    cluster_of[root] = n;
    let mut next_cluster = n + 1;
    // Collect the points under a hierarchy node.
    let leaves = |node: usize, out: &mut Vec<usize>| {
        let mut stack = vec![node];
        while let Some(x) = stack.pop() {
            if x < n {
                out.push(x);
            } else {
                stack.push(left[x - n]);
                stack.push(right[x - n]);
            }
        }
    };
    let mut queue = std::collections::VecDeque::from([root]);
    let mut buf = Vec::new();
    while let Some(node) = queue.pop_front() {
        if node < n {
            continue;
        }
        let c = cluster_of[node];
        let (l, r) = (left[node - n], right[node - n]);
        let lambda = lambda_of(dist[node - n]);
        let (ls, rs) = (size[l], size[r]);
        if ls >= mcs && rs >= mcs {
            for child in [l, r] {
                cluster_of[child] = next_cluster;
                parents.push(c);
                records.push(Condensed {
                    parent: c,
                    child: next_cluster,
                    lambda,
                    size: size[child],
                });
                next_cluster += 1;
                queue.push_back(child);
            }
        } else {
            for (child, big) in [(l, ls >= mcs), (r, rs >= mcs)] {
                if big {
                    cluster_of[child] = c;
                    queue.push_back(child);
                } else {
                    buf.clear();
                    leaves(child, &mut buf);
                    for &p in &buf {
                        records.push(Condensed {
                            parent: c,
                            child: p,
                            lambda,
                            size: 1,
                        });
                    }
                }
            }
        }
    }
    (parents, records)
}

/// Excess-of-mass selection and labelling.
fn select(n: usize, parents: &[usize], records: &[Condensed]) -> HdbscanResult {
    let m = parents.len();
    let mut birth = vec![0.0; m];
    for r in records {
        if r.child >= n {
            birth[r.child - n] = r.lambda;
        }
    }
    let mut stability = vec![0.0; m];
    for r in records {
        stability[r.parent - n] += (r.lambda - birth[r.parent - n]) * r.size as f64;
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); m];
    for c in 1..m {
        children[parents[c] - n].push(c);
    }
    let mut selected = vec![false; m];
    let mut subtree = stability.clone();
    // Children have larger ids than their parents: walk ids downwards.
    for c in (1..m).rev() {
        if children[c].is_empty() {
            selected[c] = true;
            continue;
        }
        let below: f64 = children[c].iter().map(|&ch| subtree[ch]).sum();
        if stability[c] >= below {
            selected[c] = true;
            let mut stack = children[c].clone();
            while let Some(d) = stack.pop() {
                selected[d] = false;
                stack.extend_from_slice(&children[d]);
            }
        } else {
            subtree[c] = below;
        }
    }
    // The selected cluster among each cluster's ancestors (parents come first).
    let mut owner = vec![usize::MAX; m];
    for c in 1..m {
        let up = owner[parents[c] - n];
        owner[c] = if up != usize::MAX {
            up
        } else if selected[c] {
            c
        } else {
            usize::MAX
        };
    }
    let mut raw = vec![usize::MAX; n];
    for r in records {
        if r.child < n {
            raw[r.child] = owner[r.parent - n];
        }
    }
    // Number clusters by size, largest first.
    let mut sizes: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for &o in &raw {
        if o != usize::MAX {
            *sizes.entry(o).or_default() += 1;
        }
    }
    let mut order: Vec<(usize, usize)> = sizes.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut label_of = vec![NOISE; m];
    let mut stab = Vec::with_capacity(order.len());
    for (label, (c, _)) in order.iter().enumerate() {
        label_of[*c] = label as i32;
        stab.push(stability[*c]);
    }
    let labels = raw
        .iter()
        .map(|&o| if o == usize::MAX { NOISE } else { label_of[o] })
        .collect();
    HdbscanResult {
        labels,
        stability: stab,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{adjusted_rand_index, testdata::blobs};

    fn centers() -> Vec<Vec<f64>> {
        vec![
            vec![0.0, 0.0, 0.0],
            vec![8.0, 0.0, 0.0],
            vec![0.0, 8.0, 0.0],
            vec![0.0, 0.0, 8.0],
        ]
    }

    fn non_noise_ari(labels: &[i32], truth: &[i32]) -> f64 {
        let keep: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] >= 0 && truth[i] >= 0)
            .collect();
        let a: Vec<i32> = keep.iter().map(|&i| labels[i]).collect();
        let b: Vec<i32> = keep.iter().map(|&i| truth[i]).collect();
        adjusted_rand_index(&a, &b)
    }

    #[test]
    fn hdbscan_recovers_planted_groups_and_reports_noise() {
        let (x, truth) = blobs(&centers(), 250, 0.8, 60, 3);
        let r = hdbscan(
            &x,
            &HdbscanParams {
                min_cluster_size: 30,
                min_samples: Some(8),
            },
        );
        assert_eq!(r.stability.len(), 4);
        assert!(non_noise_ari(&r.labels, &truth) > 0.9);
        // Most scattered points are noise, and few planted points are.
        let noise_found = (0..x.rows)
            .filter(|&i| truth[i] < 0 && r.labels[i] == NOISE)
            .count();
        let planted_lost = (0..x.rows)
            .filter(|&i| truth[i] >= 0 && r.labels[i] == NOISE)
            .count();
        assert!(noise_found >= 45, "{noise_found}");
        assert!(planted_lost < 100, "{planted_lost}");
        // Sizes, largest first.
        let count = |l| r.labels.iter().filter(|&&x| x == l).count();
        assert!(count(0) >= count(3));
    }

    #[test]
    fn hdbscan_on_uniform_noise_finds_no_forced_clusters() {
        let (x, _) = blobs(&[vec![0.0, 0.0]], 0, 1.0, 300, 5);
        let r = hdbscan(
            &x,
            &HdbscanParams {
                min_cluster_size: 100,
                min_samples: Some(10),
            },
        );
        // No dense group: whatever is found, nothing is forced into a cluster
        // covering everything.
        assert!(r.labels.iter().filter(|&&l| l >= 0).count() < 300);
    }

    #[test]
    fn dbscan_recovers_groups_and_noise_with_auto_eps() {
        let (x, truth) = blobs(&centers(), 250, 0.8, 60, 4);
        let (labels, eps) = dbscan(&x, &DbscanParams::default());
        assert!(eps > 0.0);
        assert_eq!(super::super::cluster_count(&labels), 4, "eps {eps}");
        assert!(non_noise_ari(&labels, &truth) > 0.9);
        let noise_found = (0..x.rows)
            .filter(|&i| truth[i] < 0 && labels[i] == NOISE)
            .count();
        assert!(noise_found >= 45, "{noise_found}");
    }

    #[test]
    fn knee_of_a_hockey_stick() {
        let mut d: Vec<f64> = (0..90).map(|i| 1.0 + i as f64 * 0.001).collect();
        d.extend((1..=10).map(|i| 1.09 + i as f64));
        assert!((knee(&d) - 1.089).abs() < 1e-9);
    }
}
