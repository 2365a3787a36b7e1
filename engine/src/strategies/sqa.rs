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
//! Gamma falls geometrically over the budget: early on J is ~0 and the replicas are P
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

use super::{accept, fresh_random, geometric, Memory, Options, Strategy};
use crate::rng::{FastMap, Rng};
use crate::space::{Point, Space};

pub struct QuantumAnnealing {
    space: Arc<Space>,
    rng: Rng,
    mem: Memory,
    replicas: Vec<Option<(Point, f64)>>,
    /// Which replica proposed each pending point.
    owner: FastMap<u64, usize>,
    next: usize,
    pt: f64,
    gamma0: f64,
    gamma_end: f64,
    budget: f64,
    p_adjacent: f64,
}

impl QuantumAnnealing {
    pub fn new(space: Arc<Space>, rng: Rng, opts: &mut Options) -> QuantumAnnealing {
        let p = opts.get("replicas", 6.0).clamp(1.0, 256.0) as usize;
        // PT = 0.1 in ln-time units: a 10% slower move is accepted with probability ~0.4. SQA
        // anneals Gamma, not T, so T must already be low (0.3 kept replicas too hot to settle).
        let pt = opts.get("temperature", 0.1).max(1e-9);
        QuantumAnnealing {
            space,
            rng,
            mem: Memory::default(),
            replicas: vec![None; p],
            owner: FastMap::default(),
            next: 0,
            pt,
            // Relative to PT: Gamma/PT = 3 leaves J ~ 0.0025 PT; 0.01 gives J ~ 2.3 PT.
            gamma0: opts.get("gamma0", 3.0).max(1e-9) * pt,
            gamma_end: opts.get("gamma_end", 0.01).max(1e-12) * pt,
            budget: opts.get("budget", 500.0).max(1.0),
            p_adjacent: opts.get("p_adjacent", 0.7).clamp(0.0, 1.0),
        }
    }

    fn coupling_strength(&self) -> f64 {
        let gamma = geometric(self.gamma0, self.gamma_end, self.mem.told as f64 / self.budget);
        let x = gamma / self.pt;
        // ln coth x = -ln tanh x, computed stably for small and large x.
        0.5 * self.pt * (-(x.tanh()).ln()).max(0.0)
    }

    /// Coupling energy of replica k sitting at `point` (constant offsets dropped).
    fn coupling(&self, k: usize, point: &[u32], j: f64) -> f64 {
        let p = self.replicas.len();
        if p < 2 {
            return 0.0;
        }
        let mut agree = 0usize;
        for n in [(k + p - 1) % p, (k + 1) % p] {
            if let Some((q, _)) = &self.replicas[n] {
                agree += point.iter().zip(q).filter(|(a, b)| a == b).count();
            }
        }
        -4.0 * j * agree as f64
    }

    fn step(&mut self, k: usize, point: Point, time: Option<f64>) {
        let Some(t) = time else { return };
        let energy = t.ln();
        let take = match &self.replicas[k] {
            None => true,
            Some((cur, e)) => {
                let j = self.coupling_strength();
                let delta = (energy - e) + self.coupling(k, &point, j) - self.coupling(k, cur, j);
                accept(delta, self.pt, &mut self.rng)
            }
        };
        if take {
            self.replicas[k] = Some((point, energy));
        }
    }

    fn propose(&mut self, k: usize) -> Option<Point> {
        // Points already proposed but not yet told block the walk; a few of those (a batch
        // has used up this neighbourhood) and we jump instead of spinning.
        let mut blocked = 0;
        for _ in 0..64 {
            let Some((cur, _)) = &self.replicas[k] else { break };
            let Some(q) = self.space.random_neighbour(cur, &mut self.rng, self.p_adjacent, 16)
            else {
                break;
            };
            let index = self.space.index_of(&q);
            match self.mem.seen.get(&index) {
                Some(&known) => self.step(k, q, known),
                None if self.mem.pending.contains(&index) => {
                    blocked += 1;
                    if blocked >= 8 {
                        break;
                    }
                }
                None => return Some(q),
            }
        }
        fresh_random(&self.space, &mut self.rng, &self.mem)
    }
}

impl Strategy for QuantumAnnealing {
    fn ask(&mut self, n: usize) -> Vec<Point> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let k = self.next;
            self.next = (self.next + 1) % self.replicas.len();
            let Some(p) = self.propose(k) else { break };
            let index = self.space.index_of(&p);
            self.mem.propose(index);
            self.owner.insert(index, k);
            out.push(p);
        }
        out
    }

    fn tell(&mut self, point: &[u32], time: Option<f64>) {
        let index = self.space.index_of(point);
        self.mem.record(index, time);
        // A point told without being asked goes to the replica that would take it best: the
        // emptiest slot, else the current replica in turn.
        let k = self.owner.remove(&index).unwrap_or_else(|| {
            self.replicas.iter().position(Option::is_none).unwrap_or(self.next)
        });
        self.step(k, point.to_vec(), time.filter(|t| t.is_finite() && *t > 0.0));
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }
}
