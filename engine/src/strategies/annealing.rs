//! Simulated annealing on log-time. The energy is ln(seconds), so the temperature is
//! scale-free: at T the walk accepts a move that is e^T times slower with probability 1/e.
//! T falls geometrically from `t0` to `t_end` over `budget` measurements.

use std::sync::Arc;

use super::{accept, fresh_random, geometric, Memory, Options, Strategy};
use crate::rng::Rng;
use crate::space::{Point, Space};

pub struct Annealing {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    current: Option<(Point, f64)>,
    t0: f64,
    t_end: f64,
    budget: f64,
    p_adjacent: f64,
}

impl Annealing {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> Annealing {
        Annealing {
            space,
            rng,
            mem: Memory::default(),
            current: None,
            t0: opts.get("t0", 0.5).max(1e-9),
            t_end: opts.get("t_end", 0.005).max(1e-12),
            budget: opts.get("budget", 500.0).max(1.0),
            p_adjacent: opts.get("p_adjacent", 0.7).clamp(0.0, 1.0),
        }
    }

    fn temperature(&self) -> f64 {
        geometric(self.t0, self.t_end, self.mem.told as f64 / self.budget)
    }

    fn step(&mut self, point: Point, time: Option<f64>) {
        let Some(t) = time else { return };
        let energy = t.ln();
        let take = match &self.current {
            None => true,
            Some((_, e)) => accept(energy - e, self.temperature(), &mut self.rng),
        };
        if take {
            self.current = Some((point, energy));
        }
    }

    fn propose(&mut self) -> Option<Point> {
        // Points already proposed but not yet told block the walk; a few of those (a batch
        // has used up this neighbourhood) and we jump instead of spinning.
        let mut blocked = 0;
        for _ in 0..64 {
            let Some((cur, _)) = &self.current else { break };
            let Some(q) = self.space.random_neighbour(cur, &mut self.rng, self.p_adjacent, 16)
            else {
                break;
            };
            let index = self.space.index_of(&q);
            match self.mem.seen.get(&index) {
                // Known result: walk on through it for free (a real tuner's cache hit).
                Some(&known) => self.step(q, known),
                None if self.mem.pending.contains(&index) => {
                    blocked += 1;
                    if blocked >= 8 {
                        break;
                    }
                }
                None => return Some(q),
            }
        }
        // No fresh neighbour (start, or a fully explored basin): jump somewhere new.
        fresh_random(&self.space, &mut self.rng, &self.mem)
    }
}

impl Strategy for Annealing {
    fn ask(&mut self, n: usize) -> Vec<Point> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(p) = self.propose() else { break };
            self.mem.propose(self.space.index_of(&p));
            out.push(p);
        }
        out
    }

    fn tell(&mut self, point: &[u32], time: Option<f64>) {
        self.mem.record(self.space.index_of(point), time);
        self.step(point.to_vec(), time.filter(|t| t.is_finite() && *t > 0.0));
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }
}
