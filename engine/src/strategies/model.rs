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
    ranked: Vec<u64>,
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
            cursor: 0,
            epsilon: opts.get("epsilon", 0.1).clamp(0.0, 1.0),
        }
    }

    fn next_ranked(&mut self) -> Option<Point> {
        while self.cursor < self.ranked.len() {
            let index = self.ranked[self.cursor];
            self.cursor += 1;
            if !self.mem.known(index) {
                return self.space.point_of(index).ok();
            }
        }
        None
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
    fn set_scores(&mut self, scores: Vec<(Point, f64)>) -> Result<(), String> {
        let mut scored: Vec<(f64, u64)> = scores
            .into_iter()
            .filter(|(p, s)| s.is_finite() && self.space.is_valid(p))
            .map(|(p, s)| (s, self.space.index_of(&p)))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        self.ranked = scored.into_iter().map(|(_, i)| i).collect();
        self.cursor = 0;
        Ok(())
    }
}
