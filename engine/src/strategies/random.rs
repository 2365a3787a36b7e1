//! Random search without replacement, uniform over the valid points not yet known. While
//! fewer than half of the valid points are known, a uniform draw over the valid list is
//! retried until it lands on an unknown one (expected < 2 draws; one bitset load each);
//! after that, a lazily materialised Fisher-Yates shuffle of the valid list (a sparse swap
//! map) skips known points. Both give each unknown point the same probability, so the mix
//! is still uniform without replacement, and each draw is O(1) whatever the space size.

use std::sync::Arc;

use super::{fresh_random, Memory, Strategy};
use crate::rng::{FastMap, Rng};
use crate::space::Space;

pub struct RandomSearch {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    swaps: FastMap<usize, usize>,
    drawn: usize,
}

impl RandomSearch {
    pub fn new(space: Arc<Space>, rng: Rng) -> RandomSearch {
        let mem = Memory::new(&space);
        RandomSearch {
            space,
            rng,
            mem,
            swaps: FastMap::default(),
            drawn: 0,
        }
    }

    fn draw(&mut self) -> Option<u64> {
        let Some(valid) = self.space.valid_indices() else {
            return fresh_random(&self.space, &mut self.rng, &self.mem);
        };
        let known = self.mem.told + self.mem.pending_count;
        if 2 * known < valid.len() {
            loop {
                let i = valid[self.rng.index(valid.len())];
                if !self.mem.known(i) {
                    return Some(i);
                }
            }
        }
        while self.drawn < valid.len() {
            let j = self.drawn + self.rng.index(valid.len() - self.drawn);
            let at_j = *self.swaps.get(&j).unwrap_or(&j);
            let at_d = *self.swaps.get(&self.drawn).unwrap_or(&self.drawn);
            self.swaps.insert(j, at_d);
            self.swaps.remove(&self.drawn);
            self.drawn += 1;
            let index = valid[at_j];
            if !self.mem.known(index) {
                return Some(index);
            }
        }
        None
    }
}

impl Strategy for RandomSearch {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let Some(i) = self.draw() else { break };
            self.mem.propose(i);
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        self.mem.record(index, time);
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn space(&self) -> &Space {
        &self.space
    }
}
