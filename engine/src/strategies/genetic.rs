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
    size: usize,
    tournament: usize,
    crossover: f64,
    mutation: f64,
}

impl Genetic {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> Genetic {
        let dims = space.dims().max(1) as f64;
        let mutation = opts.get("mutation", 0.0);
        Genetic {
            rng,
            mem: Memory::default(),
            population: Vec::new(),
            size: opts.get("population", 20.0).max(2.0) as usize,
            tournament: opts.get("tournament", 3.0).max(1.0) as usize,
            crossover: opts.get("crossover", 0.9).clamp(0.0, 1.0),
            // 0 = default: one gene in `dims` mutates on average.
            mutation: if mutation > 0.0 { mutation.min(1.0) } else { 1.0 / dims },
            space,
        }
    }

    fn pick(&mut self) -> usize {
        let mut best = self.rng.index(self.population.len());
        for _ in 1..self.tournament {
            let c = self.rng.index(self.population.len());
            if self.population[c].1 < self.population[best].1 {
                best = c;
            }
        }
        best
    }

    fn mutate(&mut self, child: &mut [u32]) {
        for (d, gene) in child.iter_mut().enumerate() {
            if self.rng.chance(self.mutation) {
                let n = self.space.params()[d].values.len();
                *gene = self.rng.index(n) as u32;
            }
        }
    }

    /// Make `child` valid: re-draw single genes from a parent or at random; failing that,
    /// take a valid neighbour of the first parent.
    fn repair(&mut self, mut child: Point, a: &[u32], b: &[u32]) -> Option<Point> {
        let dims = child.len();
        for _ in 0..2 * dims {
            if self.space.is_valid(&child) {
                return Some(child);
            }
            let d = self.rng.index(dims);
            child[d] = match self.rng.index(3) {
                0 => a[d],
                1 => b[d],
                _ => self.rng.index(self.space.params()[d].values.len()) as u32,
            };
        }
        if self.space.is_valid(&child) {
            return Some(child);
        }
        self.space.random_neighbour(a, &mut self.rng, 0.5, 16)
    }

    fn breed(&mut self) -> Option<Point> {
        if self.population.len() < self.size {
            return fresh_random(&self.space, &mut self.rng, &self.mem);
        }
        for _ in 0..8 {
            let (ia, ib) = (self.pick(), self.pick());
            let a = self.population[ia].0.clone();
            let b = self.population[ib].0.clone();
            let mut child = a.clone();
            if self.rng.chance(self.crossover) {
                for (d, g) in child.iter_mut().enumerate() {
                    if self.rng.chance(0.5) {
                        *g = b[d];
                    }
                }
            }
            self.mutate(&mut child);
            if let Some(c) = self.repair(child, &a, &b) {
                if !self.mem.known(self.space.index_of(&c)) {
                    return Some(c);
                }
            }
        }
        // The population has converged onto known points: inject a fresh individual.
        fresh_random(&self.space, &mut self.rng, &self.mem)
    }
}

impl Strategy for Genetic {
    fn ask(&mut self, n: usize) -> Vec<Point> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(p) = self.breed() else { break };
            self.mem.propose(self.space.index_of(&p));
            out.push(p);
        }
        out
    }

    fn tell(&mut self, point: &[u32], time: Option<f64>) {
        let first = self.mem.record(self.space.index_of(point), time);
        let Some(t) = time.filter(|t| t.is_finite() && *t > 0.0) else { return };
        if !first {
            return;
        }
        if self.population.len() < self.size {
            self.population.push((point.to_vec(), t));
            return;
        }
        let worst = (0..self.population.len())
            .max_by(|&i, &j| self.population[i].1.total_cmp(&self.population[j].1))
            .unwrap_or(0);
        if t < self.population[worst].1 {
            self.population[worst] = (point.to_vec(), t);
        }
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }
}
