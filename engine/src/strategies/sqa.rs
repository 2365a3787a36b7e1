//! Simulated quantum annealing (track T6's quantum-inspired optimizer), path-integral
//! Monte Carlo over a one-hot encoding of the parameters.
//!
//! Each parameter with domain size D is D spins of which exactly one is up (the chosen
//! value). The Suzuki-Trotter mapping of a transverse-field Ising model gives P classical
//! replicas (Trotter slices) in a ring, each coupled to its two ring neighbours with
//!     J(Gamma) = (PT / 2) * ln coth(Gamma / PT)
//! per pair of equal spins (Martonak, Santoro & Tosatti 2002). Moves keep one-hot form: one
//! parameter of one replica changes value, flipping two spins. For a neighbour replica with
//! value c the spin overlap sum_v s_v s'_v is D if the values agree and D - 4 otherwise, so
//! moving from a to b changes the coupling energy by -4 J ([c == b] - [c == a]).
//! Gamma falls geometrically over `tau` measurements and starts high again after
//! `patience` measurements without a new best (`Reheat`; no budget): early on J is ~0 and the replicas are P
//! independent annealers at temperature PT; late, J is large and they must agree, which
//! pulls them onto the best region any of them found.
//!
//! Why SQA rather than parallel tempering: each measurement is expensive, and PT spends
//! most of its budget on hot replicas that never approach the optimum. SQA's replicas all
//! run at the same low temperature and share information through the coupling, and since
//! coupled replicas often land on points already measured (free, see `Memory`), the
//! budget cost of P walkers is far below P times that of one.
//! The problem energy is ln(seconds), as in `annealing`.

use std::sync::Arc;

use super::{accept, fresh_random, geometric, Memory, Options, Reheat, Strategy, MAX_FREE_STEPS};
use crate::rng::{FastMap, Rng};
use crate::space::{Point, Space};

pub struct QuantumAnnealing {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    /// Per replica: point, full-space index, energy (ln seconds).
    replicas: Vec<Option<(Point, u64, f64)>>,
    /// Which replica proposed each pending point, and the point (buffers are recycled).
    outstanding: FastMap<u64, (usize, Point)>,
    spare: Vec<Point>,
    next: usize,
    pt: f64,
    gamma0: f64,
    gamma_end: f64,
    clock: Reheat,
    p_adjacent: f64,
    max_free_steps: usize,
    /// J for a number of measurements (J changes only when a result is told): computed once
    /// per measurement instead of at every proposal and every result.
    coupling_at: (usize, f64),
}

/// Number of coordinates where `point` agrees with replica k's two ring neighbours.
fn agreement(replicas: &[Option<(Point, u64, f64)>], k: usize, point: &[u32]) -> usize {
    let p = replicas.len();
    let mut agree = 0usize;
    for n in [(k + p - 1) % p, (k + 1) % p] {
        if let Some((q, _, _)) = &replicas[n] {
            agree += point.iter().zip(q).filter(|(a, b)| a == b).count();
        }
    }
    agree
}

impl QuantumAnnealing {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> QuantumAnnealing {
        let p = opts.get("replicas", 6.0).clamp(1.0, 256.0) as usize;
        // PT = 0.1 in ln-time units: a 10% slower move is accepted with probability ~0.4. SQA
        // anneals Gamma, not T, so T must already be low (0.3 kept replicas too hot to settle).
        let pt = opts.get("temperature", 0.1).max(1e-9);
        QuantumAnnealing {
            mem: Memory::new(&space),
            space,
            rng,
            replicas: vec![None; p],
            outstanding: FastMap::default(),
            spare: Vec::new(),
            next: 0,
            pt,
            // Relative to PT: Gamma/PT = 3 leaves J ~ 0.0025 PT; 0.01 gives J ~ 2.3 PT.
            gamma0: opts.get("gamma0", 3.0).max(1e-9) * pt,
            gamma_end: opts.get("gamma_end", 0.01).max(1e-12) * pt,
            clock: Reheat::new(opts),
            p_adjacent: opts.get("p_adjacent", 0.7).clamp(0.0, 1.0),
            max_free_steps: opts.get("max_free_steps", MAX_FREE_STEPS).max(1.0) as usize,
            coupling_at: (usize::MAX, 0.0),
        }
    }

    fn coupling_strength(&mut self) -> f64 {
        if self.coupling_at.0 != self.mem.told {
            self.coupling_at = (self.mem.told, self.coupling_uncached());
        }
        self.coupling_at.1
    }

    fn coupling_uncached(&self) -> f64 {
        let gamma = geometric(
            self.gamma0,
            self.gamma_end,
            self.clock.progress(self.mem.told),
        );
        let x = gamma / self.pt;
        // ln coth x = -ln tanh x, computed stably for small and large x.
        0.5 * self.pt * (-(x.tanh()).ln()).max(0.0)
    }

    fn propose(&mut self, k: usize) -> Option<(u64, Point)> {
        // J depends on the number of measurements only: fixed while replica k walks.
        let j = self.coupling_strength();
        let QuantumAnnealing {
            space,
            rng,
            mem,
            replicas,
            spare,
            p_adjacent,
            pt,
            max_free_steps,
            ..
        } = self;
        let p = replicas.len();
        let ring = [(k + p - 1) % p, (k + 1) % p];
        // Points already proposed but not yet told block the walk; a few of those (a batch
        // has used up this neighbourhood) and we jump instead of spinning.
        let mut blocked = 0;
        for _ in 0..*max_free_steps {
            let Some((mut cur, ci, ce)) = replicas[k].take() else {
                break;
            };
            let Some((d, to, q)) = space.neighbour_move(&mut cur, ci, rng, *p_adjacent, 16) else {
                replicas[k] = Some((cur, ci, ce));
                break;
            };
            if !mem.known(q) {
                let mut np = spare.pop().unwrap_or_default();
                np.clear();
                np.extend_from_slice(&cur);
                np[d] = to;
                replicas[k] = Some((cur, ci, ce));
                return Some((q, np));
            }
            if mem.is_pending(q) {
                replicas[k] = Some((cur, ci, ce));
                blocked += 1;
                if blocked >= 8 {
                    break;
                }
                continue;
            }
            // Known result: walk on through it for free. A one-parameter move changes the
            // coupling only through that parameter's agreement with the ring neighbours.
            mem.revisits += 1;
            let (mut ci, mut ce) = (ci, ce);
            if let Some(&e) = mem.seen.get(&q).filter(|e| !e.is_nan()) {
                let mut change = 0i64;
                if p >= 2 {
                    for &n in &ring {
                        if let Some((nb, _, _)) = &replicas[n] {
                            change += i64::from(nb[d] == to) - i64::from(nb[d] == cur[d]);
                        }
                    }
                }
                let delta = (e - ce) - 4.0 * j * change as f64;
                if accept(delta, *pt, rng) {
                    cur[d] = to;
                    ci = q;
                    ce = e;
                }
            }
            replicas[k] = Some((cur, ci, ce));
        }
        let i = fresh_random(space, rng, mem)?;
        let mut np = spare.pop().unwrap_or_default();
        space.point_into(i, &mut np);
        Some((i, np))
    }
}

impl Strategy for QuantumAnnealing {
    fn ask_indices(&mut self, n: usize, out: &mut Vec<u64>) {
        for _ in 0..n {
            let k = self.next;
            self.next = if self.next + 1 == self.replicas.len() {
                0
            } else {
                self.next + 1
            };
            let Some((i, p)) = self.propose(k) else { break };
            self.mem.propose(i);
            if let Some((_, old)) = self.outstanding.insert(i, (k, p)) {
                self.spare.push(old);
            }
            out.push(i);
        }
    }

    fn tell_index(&mut self, index: u64, time: Option<f64>) {
        self.mem.record(index, time);
        if self
            .clock
            .observe(self.mem.told, self.mem.best.map(|(_, t)| t))
        {
            self.coupling_at = (usize::MAX, 0.0); // the field restarted: recompute J
        }
        // A point told without being asked goes to the replica that would take it best: the
        // emptiest slot, else the current replica in turn.
        let (k, point) = match self.outstanding.remove(&index) {
            Some((k, p)) => (k, p),
            None => {
                let k = self
                    .replicas
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.next);
                let mut p = self.spare.pop().unwrap_or_default();
                self.space.point_into(index, &mut p);
                (k, p)
            }
        };
        let Some(t) = time.filter(|t| t.is_finite() && *t > 0.0) else {
            self.spare.push(point);
            return;
        };
        let energy = t.ln();
        let j = self.coupling_strength();
        let take = match &self.replicas[k] {
            None => true,
            Some((cur, _, e)) => {
                let coupling = if self.replicas.len() < 2 {
                    0.0
                } else {
                    -4.0 * j
                        * (agreement(&self.replicas, k, &point) as f64
                            - agreement(&self.replicas, k, cur) as f64)
                };
                accept((energy - e) + coupling, self.pt, &mut self.rng)
            }
        };
        if !take {
            self.spare.push(point);
            return;
        }
        if let Some((old, _, _)) = self.replicas[k].replace((point, index, energy)) {
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
