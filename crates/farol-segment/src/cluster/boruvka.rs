//! Exact minimum spanning tree of mutual-reachability distances by Borůvka's
//! algorithm over a KD-tree with bounding boxes.
//!
//! Each round finds, for every component, its shortest edge to another
//! component: one nearest-other-component query per point, in parallel,
//! pruned three ways: (1) subtrees whose points all belong to the query's
//! component are skipped; (2) a subtree's lower bound is
//! max(box distance, query core, smallest core in the subtree);
//! (3) every query starts from the best edge its component has found so far
//! (shared through an atomic), and a point whose own core distance is
//! already no better is not queried at all. Rounds halve the number of
//! components at least, so there are at most log₂ n of them.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use crate::features::Matrix;

const LEAF: usize = 16;

struct Node {
    start: usize,
    end: usize,
    left: usize,
    right: usize,
}

struct Tree {
    idx: Vec<usize>,
    nodes: Vec<Node>,
    /// Per node: lower corner then upper corner (2 × cols).
    bounds: Vec<f64>,
    cols: usize,
}

impl Tree {
    fn new(x: &Matrix) -> Self {
        let mut t = Tree {
            idx: (0..x.rows).collect(),
            nodes: Vec::new(),
            bounds: Vec::new(),
            cols: x.cols,
        };
        t.build(x, 0, x.rows);
        t
    }

    fn build(&mut self, x: &Matrix, start: usize, end: usize) -> usize {
        let d = self.cols;
        let id = self.nodes.len();
        self.nodes.push(Node {
            start,
            end,
            left: 0,
            right: 0,
        });
        let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
        for &i in &self.idx[start..end] {
            for (j, v) in x.row(i).iter().enumerate() {
                lo[j] = lo[j].min(*v);
                hi[j] = hi[j].max(*v);
            }
        }
        self.bounds.extend_from_slice(&lo);
        self.bounds.extend_from_slice(&hi);
        if end - start <= LEAF {
            return id;
        }
        let dim = (0..d)
            .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
            .unwrap_or(0);
        if hi[dim] - lo[dim] <= 0.0 {
            return id;
        }
        let mid = (start + end) / 2;
        self.idx[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            x.row(a)[dim].total_cmp(&x.row(b)[dim])
        });
        let left = self.build(x, start, mid);
        let right = self.build(x, mid, end);
        self.nodes[id].left = left;
        self.nodes[id].right = right;
        id
    }

    fn box_dist2(&self, node: usize, q: &[f64]) -> f64 {
        let d = self.cols;
        let b = &self.bounds[node * 2 * d..(node + 1) * 2 * d];
        let mut s = 0.0;
        for j in 0..d {
            let v = q[j];
            let g = if v < b[j] {
                b[j] - v
            } else if v > b[d + j] {
                v - b[d + j]
            } else {
                0.0
            };
            s += g * g;
        }
        s
    }
}

const NONE: u32 = u32::MAX;

struct Round<'a> {
    x: &'a Matrix,
    tree: &'a Tree,
    core2: &'a [f64],
    comp: &'a [u32],
    /// Per node: the component of all its points, or NONE when mixed.
    node_comp: Vec<u32>,
    /// Per node: smallest squared core distance inside.
    node_core: &'a [f64],
}

impl Round<'_> {
    fn search(&self, node: usize, q: usize, best: &mut (f64, usize)) {
        let cq = self.comp[q];
        if self.node_comp[node] == cq {
            return;
        }
        let qrow = self.x.row(q);
        let lb = self
            .tree
            .box_dist2(node, qrow)
            .max(self.core2[q])
            .max(self.node_core[node]);
        if lb >= best.0 {
            return;
        }
        let n = &self.tree.nodes[node];
        if n.left == 0 {
            for &p in &self.tree.idx[n.start..n.end] {
                if self.comp[p] == cq {
                    continue;
                }
                let floor = self.core2[q].max(self.core2[p]);
                if floor >= best.0 {
                    continue;
                }
                let mr = super::dist2(qrow, self.x.row(p)).max(floor);
                if mr < best.0 || (mr == best.0 && p < best.1) {
                    *best = (mr, p);
                }
            }
            return;
        }
        let (l, r) = (n.left, n.right);
        let (dl, dr) = (self.tree.box_dist2(l, qrow), self.tree.box_dist2(r, qrow));
        let (first, second) = if dl <= dr { (l, r) } else { (r, l) };
        self.search(first, q, best);
        self.search(second, q, best);
    }
}

fn find(uf: &mut [u32], mut a: u32) -> u32 {
    while uf[a as usize] != a {
        let up = uf[uf[a as usize] as usize];
        uf[a as usize] = up;
        a = up;
    }
    a
}

/// MST edges (a, b, mutual-reachability distance); `core` are core distances.
pub(crate) fn mst(x: &Matrix, core: &[f64]) -> Vec<(usize, usize, f64)> {
    let n = x.rows;
    let tree = Tree::new(x);
    let core2: Vec<f64> = core.iter().map(|c| c * c).collect();
    // Smallest core per node: children come after parents, so walk backwards.
    let mut node_core = vec![f64::INFINITY; tree.nodes.len()];
    for id in (0..tree.nodes.len()).rev() {
        let nd = &tree.nodes[id];
        node_core[id] = if nd.left == 0 {
            tree.idx[nd.start..nd.end]
                .iter()
                .map(|&i| core2[i])
                .fold(f64::INFINITY, f64::min)
        } else {
            node_core[nd.left].min(node_core[nd.right])
        };
    }
    let mut uf: Vec<u32> = (0..n as u32).collect();
    let mut edges = Vec::with_capacity(n.saturating_sub(1));
    let mut comp: Vec<u32> = (0..n as u32).collect();
    while edges.len() + 1 < n {
        for (i, c) in comp.iter_mut().enumerate() {
            *c = find(&mut uf, i as u32);
        }
        let mut node_comp = vec![NONE; tree.nodes.len()];
        for id in (0..tree.nodes.len()).rev() {
            let nd = &tree.nodes[id];
            node_comp[id] = if nd.left == 0 {
                let c = comp[tree.idx[nd.start]];
                if tree.idx[nd.start..nd.end].iter().all(|&i| comp[i] == c) {
                    c
                } else {
                    NONE
                }
            } else if node_comp[nd.left] == node_comp[nd.right] {
                node_comp[nd.left]
            } else {
                NONE
            };
        }
        let round = Round {
            x,
            tree: &tree,
            core2: &core2,
            comp: &comp,
            node_comp,
            node_core: &node_core,
        };
        // Best squared distance found so far per component (f32 bits order
        // like the values for non-negative floats; rounded up so the bound
        // never prunes an edge at least as good).
        let bound: Vec<AtomicU32> = (0..n)
            .map(|_| AtomicU32::new(f32::INFINITY.to_bits()))
            .collect();
        let found: Vec<(f64, usize)> = (0..n)
            .into_par_iter()
            .with_min_len(64)
            .map(|q| {
                let c = comp[q] as usize;
                let b = f64::from(f32::from_bits(bound[c].load(Ordering::Relaxed)));
                let mut best = (b.next_up_approx(), usize::MAX);
                if core2[q] >= best.0 {
                    return (f64::INFINITY, usize::MAX);
                }
                round.search(0, q, &mut best);
                if best.1 != usize::MAX {
                    let up = (best.0 as f32).next_up_f32();
                    bound[c].fetch_min(up.to_bits(), Ordering::Relaxed);
                }
                best
            })
            .collect();
        // Shortest edge per component (ties: smallest endpoints).
        let mut pick: Vec<(f64, usize, usize)> = vec![(f64::INFINITY, usize::MAX, usize::MAX); n];
        for (q, &(d, p)) in found.iter().enumerate() {
            if p == usize::MAX {
                continue;
            }
            let c = comp[q] as usize;
            let key = (d, q.min(p), q.max(p));
            if key.0 < pick[c].0 || (key.0 == pick[c].0 && (key.1, key.2) < (pick[c].1, pick[c].2))
            {
                pick[c] = key;
            }
        }
        let before = edges.len();
        for (d, a, b) in pick.into_iter().filter(|e| e.1 != usize::MAX) {
            let (ra, rb) = (find(&mut uf, a as u32), find(&mut uf, b as u32));
            if ra != rb {
                uf[ra as usize] = rb;
                edges.push((a, b, d.sqrt()));
            }
        }
        assert!(edges.len() > before, "Borůvka round made no progress");
    }
    edges
}

trait NextUp {
    fn next_up_approx(self) -> f64;
}

impl NextUp for f64 {
    /// Slightly above `self` (the bound came through f32).
    fn next_up_approx(self) -> f64 {
        if self.is_finite() {
            self * (1.0 + 1e-6) + 1e-30
        } else {
            self
        }
    }
}

trait NextUpF32 {
    fn next_up_f32(self) -> f32;
}

impl NextUpF32 for f32 {
    fn next_up_f32(self) -> f32 {
        if self.is_finite() {
            self * (1.0 + 1e-6) + 1e-30
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testdata::blobs;

    fn total(edges: &[(usize, usize, f64)]) -> f64 {
        edges.iter().map(|e| e.2).sum()
    }

    #[test]
    fn boruvka_matches_prim_total_weight() {
        let (x, _) = blobs(&[vec![0.0, 0.0, 0.0], vec![5.0, 5.0, 0.0]], 300, 1.0, 50, 9);
        let tree = super::super::kdtree::KdTree::new(&x);
        let core: Vec<f64> = (0..x.rows)
            .map(|i| tree.knn(x.row(i), 5).last().unwrap().0.sqrt())
            .collect();
        let b = mst(&x, &core);
        let p = super::super::density::prim_mst(&x, &core);
        assert_eq!(b.len(), x.rows - 1);
        assert!(
            (total(&b) - total(&p)).abs() < 1e-3 * total(&p),
            "{} vs {}",
            total(&b),
            total(&p)
        );
    }
}
