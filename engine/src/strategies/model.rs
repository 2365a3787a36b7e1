//! Model-guided search: a cost model in Python predicts times (`set_scores`); the strategy
//! proposes the best-predicted points not yet measured, and with probability `epsilon` a
//! random one instead, so a wrong model cannot trap the search forever. Without scores (or
//! once they are used up) it falls back to random points.

use std::sync::Arc;

use super::{fresh_random, Memory, Options, Strategy};
use crate::rng::Rng;
use crate::space::{Point, Space};

pub struct ModelGuided {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    /// (predicted, index); sorted only up to `sorted`: a tuning run reads the first few
    /// hundred of a ranking that may hold millions, so it is sorted in doubling chunks.
    ranked: Vec<(f64, u64)>,
    sorted: usize,
    cursor: usize,
    epsilon: f64,
}

impl ModelGuided {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> ModelGuided {
        ModelGuided {
            space,
            rng,
            mem: Memory::default(),
            ranked: Vec::new(),
            sorted: 0,
            cursor: 0,
            epsilon: opts.get("epsilon", 0.1).clamp(0.0, 1.0),
        }
    }

    fn next_ranked(&mut self) -> Option<Point> {
        while self.cursor < self.ranked.len() {
            if self.cursor == self.sorted {
                self.sort_next_chunk();
            }
            let index = self.ranked[self.cursor].1;
            self.cursor += 1;
            if !self.mem.known(index) {
                return self.space.point_of(index).ok();
            }
        }
        None
    }

    fn sort_next_chunk(&mut self) {
        let by = |a: &(f64, u64), b: &(f64, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let end = (self.sorted + self.sorted.max(256)).min(self.ranked.len());
        let rest = &mut self.ranked[self.sorted..];
        let k = end - self.sorted;
        if k < rest.len() {
            rest.select_nth_unstable_by(k - 1, by);
        }
        rest[..k].sort_unstable_by(by);
        self.sorted = end;
    }
}

impl Strategy for ModelGuided {
    fn ask(&mut self, n: usize) -> Vec<Point> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let explore = self.rng.chance(self.epsilon);
            let p = if explore { None } else { self.next_ranked() };
            let Some(p) = p.or_else(|| fresh_random(&self.space, &mut self.rng, &self.mem))
            else {
                break;
            };
            self.mem.propose(self.space.index_of(&p));
            out.push(p);
        }
        out
    }

    fn tell(&mut self, point: &[u32], time: Option<f64>) {
        self.mem.record(self.space.index_of(point), time);
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    /// Replace the ranking. Invalid points and non-finite predictions are dropped (a model
    /// may score the whole product space); ties break by index, for determinism.
    fn set_scores(&mut self, scores: Vec<(u64, f64)>) -> Result<(), String> {
        self.ranked = scores
            .into_iter()
            .filter(|&(i, s)| s.is_finite() && self.space.is_valid_index(i))
            .map(|(i, s)| (s, i))
            .collect();
        self.sorted = 0;
        self.cursor = 0;
        Ok(())
    }
}
