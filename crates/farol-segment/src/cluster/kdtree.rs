//! A KD-tree for exact nearest-neighbour and radius queries.

use super::dist2;
use crate::features::Matrix;

const LEAF: usize = 24;

#[derive(Debug, Clone)]
struct Node {
    start: usize,
    end: usize,
    /// Split dimension and value; children at `left`, `right` (0: leaf).
    dim: usize,
    value: f64,
    left: usize,
    right: usize,
}

/// KD-tree over the rows of a matrix (median split on the widest dimension).
#[derive(Debug, Clone)]
pub struct KdTree<'a> {
    x: &'a Matrix,
    idx: Vec<usize>,
    nodes: Vec<Node>,
}

impl<'a> KdTree<'a> {
    /// Builds the tree.
    pub fn new(x: &'a Matrix) -> Self {
        let mut t = KdTree {
            x,
            idx: (0..x.rows).collect(),
            nodes: Vec::new(),
        };
        if x.rows > 0 {
            t.build(0, x.rows);
        }
        t
    }

    fn build(&mut self, start: usize, end: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            start,
            end,
            dim: 0,
            value: 0.0,
            left: 0,
            right: 0,
        });
        if end - start <= LEAF {
            return id;
        }
        let d = self.x.cols;
        let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
        for &i in &self.idx[start..end] {
            for (j, v) in self.x.row(i).iter().enumerate() {
                lo[j] = lo[j].min(*v);
                hi[j] = hi[j].max(*v);
            }
        }
        let dim = (0..d)
            .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
            .unwrap_or(0);
        if hi[dim] - lo[dim] <= 0.0 {
            return id;
        }
        let mid = (start + end) / 2;
        let x = self.x;
        self.idx[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            x.row(a)[dim].total_cmp(&x.row(b)[dim])
        });
        let value = x.row(self.idx[mid])[dim];
        let left = self.build(start, mid);
        let right = self.build(mid, end);
        let n = &mut self.nodes[id];
        n.dim = dim;
        n.value = value;
        n.left = left;
        n.right = right;
        id
    }

    /// The `k` nearest rows to `q` (including a row equal to `q` itself), as
    /// (squared distance, row) sorted by distance.
    pub fn knn(&self, q: &[f64], k: usize) -> Vec<(f64, usize)> {
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        if !self.nodes.is_empty() && k > 0 {
            self.knn_rec(0, q, k, &mut best);
        }
        best
    }

    fn knn_rec(&self, node: usize, q: &[f64], k: usize, best: &mut Vec<(f64, usize)>) {
        let n = &self.nodes[node];
        if n.left == 0 {
            for &i in &self.idx[n.start..n.end] {
                let d = dist2(q, self.x.row(i));
                if best.len() < k || d < best[best.len() - 1].0 {
                    let pos = best.partition_point(|e| e.0 <= d);
                    best.insert(pos, (d, i));
                    if best.len() > k {
                        best.pop();
                    }
                }
            }
            return;
        }
        let diff = q[n.dim] - n.value;
        let (near, far) = if diff < 0.0 {
            (n.left, n.right)
        } else {
            (n.right, n.left)
        };
        self.knn_rec(near, q, k, best);
        if best.len() < k || diff * diff < best[best.len() - 1].0 {
            self.knn_rec(far, q, k, best);
        }
    }

    /// Rows within squared radius `r2` of `q`, appended to `out`.
    pub fn within(&self, q: &[f64], r2: f64, out: &mut Vec<usize>) {
        if !self.nodes.is_empty() {
            self.within_rec(0, q, r2, out);
        }
    }

    fn within_rec(&self, node: usize, q: &[f64], r2: f64, out: &mut Vec<usize>) {
        let n = &self.nodes[node];
        if n.left == 0 {
            for &i in &self.idx[n.start..n.end] {
                if dist2(q, self.x.row(i)) <= r2 {
                    out.push(i);
                }
            }
            return;
        }
        let diff = q[n.dim] - n.value;
        let (near, far) = if diff < 0.0 {
            (n.left, n.right)
        } else {
            (n.right, n.left)
        };
        self.within_rec(near, q, r2, out);
        if diff * diff <= r2 {
            self.within_rec(far, q, r2, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn knn_and_radius_match_brute_force() {
        let mut rng = StdRng::seed_from_u64(7);
        let rows: Vec<Vec<f64>> = (0..2000)
            .map(|_| (0..5).map(|_| rng.random::<f64>()).collect())
            .collect();
        let x = Matrix::from_rows(&rows);
        let t = KdTree::new(&x);
        for qi in [0, 17, 999, 1999] {
            let q = x.row(qi);
            let mut all: Vec<(f64, usize)> = (0..x.rows).map(|i| (dist2(q, x.row(i)), i)).collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let got = t.knn(q, 7);
            assert_eq!(
                got.iter().map(|e| e.0).collect::<Vec<_>>(),
                all[..7].iter().map(|e| e.0).collect::<Vec<_>>()
            );
            assert_eq!(got[0].1, qi);
            let mut within = Vec::new();
            t.within(q, 0.05, &mut within);
            within.sort_unstable();
            let mut expected: Vec<usize> =
                all.iter().filter(|e| e.0 <= 0.05).map(|e| e.1).collect();
            expected.sort_unstable();
            assert_eq!(within, expected);
        }
    }
}
