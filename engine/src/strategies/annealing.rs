//! Simulated annealing on log-time. The energy is ln(seconds), so the temperature is
//! scale-free: at T the walk accepts a move that is e^T times slower with probability 1/e.
//! T falls geometrically from `t0` to `t_end` over `tau` measurements and starts hot again
//! after `patience` measurements without a new best (`Reheat`): no budget in the schedule.

use std::sync::Arc;

use super::{accept, fresh_random, geometric, Memory, Options, Reheat, Strategy, MAX_FREE_STEPS};
use crate::rng::{FastMap, Rng};
use crate::space::{Point, Space};

pub struct Annealing {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    /// The walker: point, its full-space index, its energy (ln seconds).
    current: Option<(Point, u64, f64)>,
    /// Proposed points awaiting their result, and spare buffers (no allocation per step).
    outstanding: FastMap<u64, Point>,
    spare: Vec<Point>,
    t0: f64,
    t_end: f64,
    clock: Reheat,
    p_adjacent: f64,
    max_free_steps: usize,
}

impl Annealing {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> Annealing {
        Annealing {
            mem: Memory::new(&space),
            space,
            rng,
            current: None,
            outstanding: FastMap::default(),
            spare: Vec::new(),
            t0: opts.get("t0", 0.5).max(1e-9),
            t_end: opts.get("t_end", 0.005).max(1e-12),
            clock: Reheat::new(opts),
            p_adjacent: opts.get("p_adjacent", 0.7).clamp(0.0, 1.0),
            max_free_steps: opts.get("max_free_steps", MAX_FREE_STEPS).max(1.0) as usize,
        }
    }

    fn temperature(&self) -> f64 {
        geometric(self.t0, self.t_end, self.clock.progress(self.mem.told))
    }

    fn propose(&mut self) -> Option<(u64, Point)> {
        // The temperature depends on the number of measurements only: fixed while we walk.
        let temp = self.temperature();
        let Annealing {
            space,
            rng,
            mem,
            current,
            spare,
            p_adjacent,
            max_free_steps,
            ..
        } = self;
        // Points already proposed but not yet told block the walk; a few of those (a batch
        // has used up this neighbourhood) and we jump instead of spinning.
        let mut blocked = 0;
        for _ in 0..*max_free_steps {
            let Some((cur, ci, ce)) = current.as_mut() else {
                break;
            };
            let Some((d, to, q)) = space.neighbour_move(cur, *ci, rng, *p_adjacent, 16) else {
                break;
            };
            if !mem.known(q) {
                let mut p = spare.pop().unwrap_or_default();
                p.clear();
                p.extend_from_slice(cur);
                p[d] = to;
                return Some((q, p));
            }
            if mem.is_pending(q) {
                blocked += 1;
                if blocked >= 8 {
                    break;
                }
                continue;
            }
            // Known result: walk on through it for free (a real tuner's cache hit).
            mem.revisits += 1;
            if let Some(&e) = mem.seen.get(&q).filter(|e| !e.is_nan()) {
                if accept(e - *ce, temp, rng) {
                    cur[d] = to;
                    *ci = q;
                    *ce = e;
                }
            }
        }
        // No fresh neighbour (start, or a fully explored basin): jump somewhere new.
        let i = fresh_random(space, rng, mem)?;
        let mut p = spare.pop().unwrap_or_default();
        space.point_into(i, &mut p);
        Some((i, p))
    }
}

impl Strategy for Annealing {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let Some((i, p)) = self.propose() else { break };
            self.mem.propose(i);
            if let Some(old) = self.outstanding.insert(i, p) {
                self.spare.push(old);
            }
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        self.mem.record(index, time);
        self.clock
            .observe(self.mem.told, self.mem.best.map(|(_, t)| t));
        let p = self.outstanding.remove(&index);
        let Some(t) = time.filter(|t| t.is_finite() && *t > 0.0) else {
            self.spare.extend(p);
            return;
        };
        let energy = t.ln();
        let take = match &self.current {
            None => true,
            Some((_, _, e)) => {
                let temp = self.temperature();
                accept(energy - e, temp, &mut self.rng)
            }
        };
        if !take {
            self.spare.extend(p);
            return;
        }
        let p = match p {
            Some(p) => p,
            None => {
                let mut p = self.spare.pop().unwrap_or_default();
                self.space.point_into(index, &mut p);
                p
            }
        };
        if let Some((old, _, _)) = self.current.replace((p, index, energy)) {
            self.spare.push(old);
        }
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn space(&self) -> &Space {
        &self.space
    }
}
