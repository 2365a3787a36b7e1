//! Model-guided search without a prior: an online surrogate fitted only on the points this
//! search has measured (and been charged for).
//!
//! The surrogate is a random forest of regression trees on the parameters' positions in
//! their domains, predicting ln(seconds): each tree is grown on a bootstrap sample of the
//! measurements, each split the best threshold of `mtry` (a share, default all) of the
//! parameters drawn at random. A failed point is learnt as the slowest time seen, so the
//! model steers away from regions that fail. The ensemble's mean and spread give each
//! candidate an expected improvement over the best measured time; the candidate with the
//! largest one is measured next.
//!
//! Candidates each round (`local`, the default): the unmeasured neighbours one parameter one
//! step from the current point, tried in the model's order, the search moving to any
//! faster point it measures (a local search whose order the model sets). When none is left
//! the neighbourhood widens to any other value of one parameter (a parameter such as a
//! method number has no meaningful order: its best value may lie beyond a slow one). At a
//! local optimum of that too, or with `local=0` always: every unmeasured point one
//! parameter away (any value) from the few best measured points plus a fresh uniform sample
//! of the space, so it can jump to a region the model believes in. Before `init` successes,
//! and with probability `epsilon` after, it measures a random point. Nothing depends on a
//! budget.

use std::sync::Arc;

use super::{fresh_random, Memory, Options, Strategy};
use crate::rng::{FastSet, Rng};
use crate::space::{Point, Space};

const LEAF: u32 = u32::MAX;

/// One tree node: an internal node sends `x[feature] <= threshold` left; a leaf holds its
/// mean in `value` and `feature == LEAF`.
#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    threshold: u32,
    left: u32,
    right: u32,
    value: f64,
}

#[derive(Debug, Default, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn predict(&self, x: &[u32]) -> f64 {
        let mut k = 0usize;
        loop {
            let n = &self.nodes[k];
            if n.feature == LEAF {
                return n.value;
            }
            k = if x[n.feature as usize] <= n.threshold {
                n.left
            } else {
                n.right
            } as usize;
        }
    }
}

/// Training data and settings shared by the trees of one fit.
struct Fit<'a> {
    x: &'a [u32],
    y: &'a [f64],
    dims: usize,
    min_leaf: usize,
    max_depth: usize,
    /// Parameters tried per split (drawn at random) and each one's domain size.
    mtry: usize,
    card: &'a [u32],
}

impl Fit<'_> {
    fn leaf(tree: &mut Tree, rows: &[u32], y: &[f64]) -> u32 {
        let mean = rows.iter().map(|&r| y[r as usize]).sum::<f64>() / rows.len() as f64;
        tree.nodes.push(Node {
            feature: LEAF,
            threshold: 0,
            left: 0,
            right: 0,
            value: mean,
        });
        (tree.nodes.len() - 1) as u32
    }

    /// Grow the subtree over `rows` (reordered in place); returns its node id.
    fn grow(&self, tree: &mut Tree, rows: &mut [u32], depth: usize, rng: &mut Rng) -> u32 {
        if rows.len() < 2 * self.min_leaf || depth >= self.max_depth {
            return Self::leaf(tree, rows, self.y);
        }
        let total: f64 = rows.iter().map(|&r| self.y[r as usize]).sum();
        let n = rows.len() as f64;
        // The best threshold of `mtry` random parameters, by the reduction of squared error
        // (sum_l^2/n_l + sum_r^2/n_r is all that varies between splits), from each value's
        // count and sum in the node.
        let mut best: Option<(f64, usize, u32)> = None;
        let mut dims: Vec<usize> = (0..self.dims).filter(|&d| self.card[d] > 1).collect();
        let take = self.mtry.min(dims.len());
        for k in 0..take {
            let j = k + rng.index(dims.len() - k);
            dims.swap(k, j);
        }
        let (mut cnt, mut sum) = (Vec::new(), Vec::new());
        for &d in &dims[..take] {
            let c = self.card[d] as usize;
            cnt.clear();
            cnt.resize(c, 0usize);
            sum.clear();
            sum.resize(c, 0.0f64);
            for &r in rows.iter() {
                let v = self.x[r as usize * self.dims + d] as usize;
                cnt[v] += 1;
                sum[v] += self.y[r as usize];
            }
            let (mut nl, mut sl) = (0usize, 0.0);
            for th in 0..c - 1 {
                nl += cnt[th];
                sl += sum[th];
                let nr = rows.len() - nl;
                if cnt[th] == 0 || nl < self.min_leaf || nr < self.min_leaf {
                    continue; // no new split, or a leaf too small
                }
                let sr = total - sl;
                let gain = sl * sl / nl as f64 + sr * sr / nr as f64 - total * total / n;
                if best.is_none_or(|(g, _, _)| gain > g + 1e-12) {
                    best = Some((gain, d, th as u32));
                }
            }
        }
        let Some((gain, d, th)) = best else {
            return Self::leaf(tree, rows, self.y);
        };
        if gain <= 1e-12 {
            return Self::leaf(tree, rows, self.y);
        }
        // Partition: rows with x[d] <= th first.
        let mut split = 0;
        for k in 0..rows.len() {
            if self.x[rows[k] as usize * self.dims + d] <= th {
                rows.swap(k, split);
                split += 1;
            }
        }
        let id = tree.nodes.len();
        tree.nodes.push(Node {
            feature: d as u32,
            threshold: th,
            left: 0,
            right: 0,
            value: 0.0,
        });
        let (l, r) = rows.split_at_mut(split);
        let left = self.grow(tree, l, depth + 1, rng);
        let right = self.grow(tree, r, depth + 1, rng);
        tree.nodes[id].left = left;
        tree.nodes[id].right = right;
        id as u32
    }
}

pub struct Forest {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    /// Measured points (positions, `dims` per row) and their ln seconds (NaN = failed).
    x: Vec<u32>,
    y: Vec<f64>,
    trees: Vec<Tree>,
    /// Share of the parameters each split tries, and the domain sizes.
    mtry: f64,
    card: Vec<u32>,
    /// Measurements the ensemble was last fitted on. It is refitted after every new one
    /// while they are few, then after every 2% more (a fit costs O(n log n) per tree).
    fitted_at: Option<usize>,
    n_trees: usize,
    init: usize,
    epsilon: f64,
    pool: usize,
    top: usize,
    min_leaf: usize,
    /// Model-guided local search: the current point (full-space index, ln seconds), whose
    /// unmeasured adjacent neighbours are tried first, in the model's order.
    local: bool,
    /// Share of rounds that take the local step while one is available.
    p_local: f64,
    current: Option<(u64, f64)>,
    /// Scratch buffers (no allocation per round).
    rows: Vec<u32>,
    targets: Vec<f64>,
    point: Point,
    candidates: Vec<u64>,
    scored: Vec<(f64, u64)>,
}

impl Forest {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> Forest {
        let card = space
            .params()
            .iter()
            .map(|p| p.values.len() as u32)
            .collect();
        Forest {
            mem: Memory::new(&space),
            space,
            rng,
            x: Vec::new(),
            y: Vec::new(),
            trees: Vec::new(),
            mtry: opts.get("mtry", 1.0).clamp(0.0, 1.0),
            card,
            fitted_at: None,
            n_trees: opts.get("trees", 24.0).clamp(1.0, 512.0) as usize,
            init: opts.get("init", 10.0).max(1.0) as usize,
            epsilon: opts.get("epsilon", 0.05).clamp(0.0, 1.0),
            pool: opts.get("pool", 256.0).max(0.0) as usize,
            top: opts.get("top", 4.0).max(1.0) as usize,
            min_leaf: opts.get("min_leaf", 1.0).max(1.0) as usize,
            local: opts.get("local", 1.0) != 0.0,
            p_local: opts.get("p_local", 0.8).clamp(0.0, 1.0),
            current: None,
            rows: Vec::new(),
            targets: Vec::new(),
            point: Vec::new(),
            candidates: Vec::new(),
            scored: Vec::new(),
        }
    }

    fn successes(&self) -> usize {
        self.mem.told - self.mem.failures
    }

    fn fit(&mut self) {
        let n = self.y.len();
        if self.fitted_at.is_some_and(|at| n < at + (at / 50).max(1)) {
            return;
        }
        let finite = || self.y.iter().copied().filter(|v| !v.is_nan());
        let worst = finite().fold(f64::NEG_INFINITY, f64::max);
        self.targets.clear();
        self.targets
            .extend(self.y.iter().map(|&v| if v.is_nan() { worst } else { v }));
        let used = self.card.iter().filter(|&&c| c > 1).count();
        let fit = Fit {
            x: &self.x,
            y: &self.targets,
            dims: self.card.len(),
            min_leaf: self.min_leaf,
            max_depth: 24,
            mtry: ((used as f64 * self.mtry).ceil() as usize).max(1),
            card: &self.card,
        };
        self.trees.resize_with(self.n_trees, Tree::default);
        for tree in &mut self.trees {
            tree.nodes.clear();
            self.rows.clear();
            // A bootstrap sample: the trees differ, and their spread is the uncertainty.
            self.rows.extend((0..n).map(|_| self.rng.index(n) as u32));
            fit.grow(tree, &mut self.rows, 0, &mut self.rng);
        }
        self.fitted_at = Some(n);
    }

    /// Expected improvement (in ln seconds) of the point in `self.point` over `best`.
    fn expected_improvement(&self, best: f64) -> f64 {
        let (mut s1, mut s2) = (0.0, 0.0);
        for t in &self.trees {
            let v = t.predict(&self.point);
            s1 += v;
            s2 += v * v;
        }
        let n = self.trees.len() as f64;
        let mean = s1 / n;
        let sd = (s2 / n - mean * mean).max(0.0).sqrt();
        let gap = best - mean;
        if sd < 1e-12 {
            return gap.max(0.0);
        }
        let z = gap / sd;
        gap * normal_cdf(z) + sd * normal_pdf(z)
    }

    /// Candidates and the energy they must beat. Local mode: the unmeasured adjacent
    /// neighbours of the current point, while it has any. Otherwise (and when they run out:
    /// a local optimum) every valid point one parameter from the `top` best measured points
    /// plus `pool` fresh random ones, against the best time.
    fn gather(&mut self) -> f64 {
        self.candidates.clear();
        if self.local && self.rng.chance(self.p_local) {
            if let Some((index, e)) = self.current {
                self.space.adjacent(index, &mut self.candidates);
                let mem = &self.mem;
                self.candidates.retain(|&q| !mem.known(q));
                if self.candidates.is_empty() {
                    let mut point = Vec::new();
                    self.space.point_into(index, &mut point);
                    hamming(&self.space, index, &point, &mut self.candidates);
                    let mem = &self.mem;
                    self.candidates.retain(|&q| !mem.known(q));
                }
                if !self.candidates.is_empty() {
                    return e;
                }
                self.current = None;
            }
        }
        let mut order: Vec<(f64, u64)> = self
            .mem
            .seen
            .iter()
            .filter(|(_, e)| !e.is_nan())
            .map(|(&i, &e)| (e, i))
            .collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut point = Vec::new();
        for &(_, index) in order.iter().take(self.top) {
            self.space.point_into(index, &mut point);
            hamming(&self.space, index, &point, &mut self.candidates);
        }
        let mem = &self.mem;
        self.candidates.retain(|&q| !mem.known(q));
        let mut drawn = FastSet::default();
        for _ in 0..self.pool {
            match fresh_random(&self.space, &mut self.rng, &self.mem) {
                Some(i) if drawn.insert(i) => self.candidates.push(i),
                Some(_) => {}
                None => break,
            }
        }
        self.candidates.sort_unstable();
        self.candidates.dedup();
        self.mem.best.map_or(f64::INFINITY, |(_, t)| t.ln())
    }

    /// The `n` candidates of largest expected improvement, best first, into `self.scored`.
    fn rank(&mut self, n: usize) {
        self.fit();
        let best = self.gather();
        self.scored.clear();
        let candidates = std::mem::take(&mut self.candidates);
        for &i in &candidates {
            let mut point = std::mem::take(&mut self.point);
            self.space.point_into(i, &mut point);
            self.point = point;
            let ei = self.expected_improvement(best);
            // Ties (e.g. zero improvement everywhere) break at random, not by index.
            let key = -ei - 1e-15 * self.rng.unit();
            self.scored.push((key, i));
        }
        self.candidates = candidates;
        let k = n.min(self.scored.len());
        if k > 0 && k < self.scored.len() {
            self.scored
                .select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        }
        self.scored.truncate(k);
        self.scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }
}

impl Strategy for Forest {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        let model = self.successes() >= self.init;
        if model {
            self.rank(n);
        }
        let mut ranked = std::mem::take(&mut self.scored).into_iter().map(|(_, i)| i);
        for _ in 0..n {
            let explore = !model || self.rng.chance(self.epsilon);
            let next = if explore { None } else { ranked.next() };
            let pick = next
                .filter(|&i| !self.mem.known(i))
                .or_else(|| fresh_random(&self.space, &mut self.rng, &self.mem));
            let Some(i) = pick else { break };
            self.mem.propose(i);
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        if !self.mem.record(index, time) {
            return; // told twice: the first result stays in the training data
        }
        self.space.point_into(index, &mut self.point);
        self.x.extend_from_slice(&self.point);
        let e = self.mem.energy(index).unwrap_or(f64::NAN);
        self.y.push(e);
        // Local search: move to a faster point (a failure never moves it).
        if !e.is_nan() && self.current.is_none_or(|(_, c)| e < c) {
            self.current = Some((index, e));
        }
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn space(&self) -> &Space {
        &self.space
    }
}

/// Append every valid point that differs from `point` (full-space `index`) in one parameter.
fn hamming(space: &Space, index: u64, point: &[u32], out: &mut Vec<u64>) {
    for (d, &here) in point.iter().enumerate() {
        let stride = space.stride(d);
        for to in 0..space.params()[d].values.len() as u32 {
            if to != here {
                let q = index - u64::from(here) * stride + u64::from(to) * stride;
                if space.is_valid_index(q) {
                    out.push(q);
                }
            }
        }
    }
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF through erfc (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_matches_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.959964, 0.975),
            (-1.0, 0.158655),
            (3.0, 0.998650),
        ] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "{z}: {}", normal_cdf(z));
        }
    }
}
