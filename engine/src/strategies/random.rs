//! Random search without replacement: a lazily materialised Fisher-Yates shuffle of the
//! valid list (a sparse swap map), so each draw is O(1) whatever the space size.

use std::sync::Arc;

use super::{fresh_random, Memory, Strategy};
use crate::rng::{FastMap, Rng};
use crate::space::{Point, Space};

pub struct RandomSearch {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    swaps: FastMap<usize, usize>,
    drawn: usize,
}

impl RandomSearch {
    pub fn new(space: Arc<Space>, rng: Rng) -> RandomSearch {
        RandomSearch { space, rng, mem: Memory::default(), swaps: FastMap::default(), drawn: 0 }
    }

    fn draw(&mut self) -> Option<Point> {
        let Some(valid) = self.space.valid_indices() else {
            return fresh_random(&self.space, &mut self.rng, &self.mem);
        };
        while self.drawn < valid.len() {
            let j = self.drawn + self.rng.index(valid.len() - self.drawn);
            let at_j = *self.swaps.get(&j).unwrap_or(&j);
            let at_d = *self.swaps.get(&self.drawn).unwrap_or(&self.drawn);
            self.swaps.insert(j, at_d);
            self.swaps.remove(&self.drawn);
            self.drawn += 1;
            let index = valid[at_j];
            if !self.mem.known(index) {
                return self.space.point_of(index).ok();
            }
        }
        None
    }
}

impl Strategy for RandomSearch {
    fn ask(&mut self, n: usize) -> Vec<Point> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(p) = self.draw() else { break };
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
}
