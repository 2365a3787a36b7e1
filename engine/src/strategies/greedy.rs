//! Greedy iterated local search, the common baseline next to random search: from a random
//! start, try the unmeasured neighbours one parameter one step away (an adjacent value of
//! one parameter) in random order and move to the first that is faster; when every such
//! neighbour of the current point is measured and none is faster, restart from a fresh
//! random point. No temperature, no model, no budget.

use std::sync::Arc;

use super::{fresh_random, Memory, Strategy};
use crate::rng::Rng;
use crate::space::Space;

pub struct Greedy {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    /// The current point: full-space index, ln seconds.
    current: Option<(u64, f64)>,
    /// Unmeasured adjacent neighbours of `current`, in the order they will be tried.
    queue: Vec<u64>,
}

impl Greedy {
    pub fn new(space: Arc<Space>, rng: Rng) -> Greedy {
        Greedy {
            mem: Memory::new(&space),
            space,
            rng,
            current: None,
            queue: Vec::new(),
        }
    }

    /// Move to `index` (energy `e`), following measured neighbours downhill for free (a
    /// real tuner's cache hit), then queue the unmeasured adjacent neighbours, shuffled.
    fn move_to(&mut self, mut index: u64, mut e: f64) {
        let mut adjacent = Vec::new();
        loop {
            let mut better = None;
            self.queue.clear();
            self.space.adjacent(index, &mut adjacent);
            for &q in &adjacent {
                match self.mem.energy(q) {
                    Some(eq) if eq < e && better.is_none_or(|(_, b)| eq < b) => {
                        better = Some((q, eq));
                    }
                    Some(_) => {}
                    None if !self.mem.is_pending(q) => self.queue.push(q),
                    None => {}
                }
            }
            match better {
                Some((q, eq)) => {
                    self.mem.revisits += 1;
                    index = q;
                    e = eq;
                }
                None => break,
            }
        }
        for k in (1..self.queue.len()).rev() {
            let j = self.rng.index(k + 1);
            self.queue.swap(k, j);
        }
        self.current = Some((index, e));
    }

    fn propose(&mut self) -> Option<u64> {
        while let Some(q) = self.queue.pop() {
            if !self.mem.known(q) {
                return Some(q);
            }
        }
        // A local optimum (or the start): restart somewhere new.
        self.current = None;
        fresh_random(&self.space, &mut self.rng, &self.mem)
    }
}

impl Strategy for Greedy {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let Some(i) = self.propose() else { break };
            self.mem.propose(i);
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        self.mem.record(index, time);
        let Some(t) = time.filter(|t| t.is_finite() && *t > 0.0) else {
            return;
        };
        let e = t.ln();
        if self.current.is_none_or(|(_, c)| e < c) {
            self.move_to(index, e);
        }
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn space(&self) -> &Space {
        &self.space
    }
}
