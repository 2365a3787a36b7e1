//! Steady-state genetic algorithm: tournament selection, uniform crossover, per-gene
//! mutation, repair to a valid point. Steady state (one child replaces the worst member)
//! rather than generations, so any ask/tell batch size works and no result waits on a
//! generation boundary.

use std::sync::Arc;

use super::{fresh_random, Memory, Options, Strategy};
use crate::rng::Rng;
use crate::space::{Point, Space};

pub struct Genetic {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    population: Vec<(Point, f64)>,
    /// The child being bred (reused: no allocation per candidate).
    child: Point,
    size: usize,
    tournament: usize,
    crossover: f64,
    mutation: f64,
    /// keep[k] = (1 - mutation)^k, k = 0..=dims: P(the next k genes are not mutated).
    keep: Vec<f64>,
    /// Children bred for the next evaluation before a random immigrant is injected:
    /// `max_children` after a breed that found a fresh child, halved (down to 1) after one
    /// whose children were all known points. A converged population then costs about one
    /// child per evaluation instead of `max_children`, and is back to full effort as soon
    /// as breeding finds something new.
    attempts: usize,
    max_children: usize,
}

impl Genetic {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> Genetic {
        let dims = space.dims().max(1) as f64;
        let mutation = opts.get("mutation", 0.0);
        let mutation = if mutation > 0.0 {
            mutation.min(1.0)
        } else {
            1.0 / dims
        };
        let max_children = opts.get("max_children", 8.0).max(1.0) as usize;
        Genetic {
            keep: (0..=space.dims())
                .map(|k| ((1.0 - mutation).ln() * k as f64).exp())
                .collect(),
            attempts: max_children,
            max_children,
            rng,
            mem: Memory::new(&space),
            population: Vec::new(),
            child: Vec::new(),
            size: opts.get("population", 20.0).max(2.0) as usize,
            tournament: opts.get("tournament", 3.0).max(1.0) as usize,
            crossover: opts.get("crossover", 0.9).clamp(0.0, 1.0),
            // 0 = default: one gene in `dims` mutates on average.
            mutation,
            space,
        }
    }

    fn pick(&mut self) -> usize {
        let n = self.population.len();
        let mut best = self.rng.index(n);
        let mut best_t = self.population[best].1;
        for _ in 1..self.tournament {
            let c = self.rng.index(n);
            let t = self.population[c].1;
            // Select without a data-dependent branch (random outcomes mispredict).
            let better = t < best_t;
            best = if better { c } else { best };
            best_t = if better { t } else { best_t };
        }
        best
    }

    /// Breed one child of population members ia and ib into `self.child`: uniform
    /// crossover, per-gene mutation, then repair (re-draw single genes from a parent or at
    /// random; failing that, a valid neighbour of the first parent). The child's index, or
    /// None when no valid child came out.
    fn breed_child(&mut self, ia: usize, ib: usize) -> Option<u64> {
        let Genetic {
            space,
            rng,
            population,
            child,
            crossover,
            mutation,
            keep,
            ..
        } = self;
        let (a, b) = (&population[ia].0, &population[ib].0);
        child.clear();
        child.extend_from_slice(a);
        let dims = child.len();
        // Uniform crossover: one fair coin per gene, 64 coins per draw.
        if rng.chance(*crossover) {
            // Branch-free select (the coins are random, so a branch per gene would be
            // mispredicted half the time).
            let mut coins = 0u64;
            for (d, (g, &from_b)) in child.iter_mut().zip(b.iter()).enumerate() {
                if d % 64 == 0 {
                    coins = rng.next_u64();
                }
                let take_b = (coins >> (d % 64) & 1) as u32;
                *g ^= (*g ^ from_b) & take_b.wrapping_neg();
            }
        }
        // Per-gene mutation with probability `mutation`: the gaps between mutated genes are
        // geometric, so one draw per mutation instead of one per gene (same distribution).
        let mut d = 0usize;
        while d < dims {
            if *mutation < 1.0 {
                // gap = floor(ln(v) / ln(1 - mutation)), v uniform in (0, 1], i.e. the
                // largest k with v <= (1 - mutation)^k: a short scan of the table instead
                // of a logarithm.
                let v = 1.0 - rng.unit();
                let rest = dims - d;
                if v <= keep[rest] {
                    break;
                }
                let mut gap = 0;
                while v <= keep[gap + 1] {
                    gap += 1;
                }
                d += gap;
            }
            child[d] = rng.index(space.params()[d].values.len()) as u32;
            d += 1;
        }
        // Repair, keeping the index up to date (one stride per changed gene).
        let mut index = space.index_of(child);
        for _ in 0..2 * dims {
            if space.valid_at(child, index) {
                return Some(index);
            }
            let d = rng.index(dims);
            let to = match rng.index(3) {
                0 => a[d],
                1 => b[d],
                _ => rng.index(space.params()[d].values.len()) as u32,
            };
            index = index - u64::from(child[d]) * space.stride(d) + u64::from(to) * space.stride(d);
            child[d] = to;
        }
        if space.valid_at(child, index) {
            return Some(index);
        }
        child.clear();
        child.extend_from_slice(a);
        let (d, to, q) = space.neighbour_move(child, space.index_of(a), rng, 0.5, 16)?;
        child[d] = to;
        Some(q)
    }

    fn breed(&mut self) -> Option<u64> {
        if self.population.len() < self.size {
            return fresh_random(&self.space, &mut self.rng, &self.mem);
        }
        for _ in 0..self.attempts {
            let (ia, ib) = (self.pick(), self.pick());
            if let Some(c) = self.breed_child(ia, ib) {
                if !self.mem.known(c) {
                    self.attempts = self.max_children;
                    return Some(c);
                }
            }
        }
        // The population has converged onto known points: inject a fresh individual, and
        // breed fewer children next time while it stays converged.
        self.attempts = (self.attempts / 2).max(1);
        fresh_random(&self.space, &mut self.rng, &self.mem)
    }
}

impl Strategy for Genetic {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let Some(i) = self.breed() else { break };
            self.mem.propose(i);
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        let first = self.mem.record(index, time);
        let Some(t) = time.filter(|t| t.is_finite() && *t > 0.0) else {
            return;
        };
        if !first {
            return;
        }
        if self.population.len() < self.size {
            let mut p = Vec::new();
            self.space.point_into(index, &mut p);
            self.population.push((p, t));
            return;
        }
        let worst = (0..self.population.len())
            .max_by(|&i, &j| self.population[i].1.total_cmp(&self.population[j].1))
            .unwrap_or(0);
        if t < self.population[worst].1 {
            let slot = &mut self.population[worst];
            self.space.point_into(index, &mut slot.0);
            slot.1 = t;
        }
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn space(&self) -> &Space {
        &self.space
    }
}
