//! Search strategies behind one ask/tell interface.
//!
//! `ask(n)` proposes up to n valid points never proposed or measured before (fewer when the
//! space is exhausted); `tell(point, Some(seconds))` reports a measurement and
//! `tell(point, None)` a failure (compile error, wrong result). Re-measuring is never
//! proposed: a real tuner would read its cache, so when a strategy's walk lands on a point
//! it already knows it uses the known result at once and walks on, at no budget cost.

use std::collections::HashMap;
use std::sync::Arc;

use crate::rng::{FastMap, FastSet, Rng};
use crate::space::{Point, Space};

mod annealing;
mod genetic;
mod model;
mod random;
mod sqa;

pub use annealing::Annealing;
pub use genetic::Genetic;
pub use model::ModelGuided;
pub use random::RandomSearch;
pub use sqa::QuantumAnnealing;

pub trait Strategy: Send + Sync {
    fn ask(&mut self, n: usize) -> Vec<Point>;
    fn tell(&mut self, point: &[u32], time: Option<f64>);
    fn memory(&self) -> &Memory;
    /// Predicted times from a cost model, keyed by full-space index (model-guided only).
    fn set_scores(&mut self, _scores: Vec<(u64, f64)>) -> Result<(), String> {
        Err("only the 'model' strategy takes scores; create Strategy('model', ...) to use a cost model".into())
    }
}

/// What every strategy remembers: measured points (None = failed), points proposed but not
/// yet told, and the best measurement.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    pub seen: FastMap<u64, Option<f64>>,
    pub pending: FastSet<u64>,
    pub best: Option<(u64, f64)>,
    pub told: usize,
    pub failures: usize,
}

impl Memory {
    #[inline]
    pub fn known(&self, index: u64) -> bool {
        self.seen.contains_key(&index) || self.pending.contains(&index)
    }

    pub fn propose(&mut self, index: u64) {
        self.pending.insert(index);
    }

    /// Record a result; false when the point had been told before (the later result is kept).
    pub fn record(&mut self, index: u64, time: Option<f64>) -> bool {
        self.pending.remove(&index);
        let time = time.filter(|t| t.is_finite() && *t > 0.0);
        let first = self.seen.insert(index, time).is_none();
        if first {
            self.told += 1;
        }
        match time {
            Some(t) => {
                if self.best.is_none_or(|(_, b)| t < b) {
                    self.best = Some((index, t));
                }
            }
            None => self.failures += 1,
        }
        first
    }
}

/// Options as a name -> number map, so every strategy takes `**options` from Python and an
/// unknown name is an error instead of being silently ignored.
pub struct Options {
    map: HashMap<String, f64>,
    used: Vec<&'static str>,
}

impl Options {
    pub fn new(map: HashMap<String, f64>) -> Options {
        Options { map, used: Vec::new() }
    }

    pub fn get(&mut self, name: &'static str, default: f64) -> f64 {
        self.used.push(name);
        self.map.get(name).copied().unwrap_or(default)
    }

    /// Accept a name without reading it (`budget` is meaningful to every strategy's caller,
    /// even those whose behaviour does not depend on it).
    fn allow(&mut self, name: &'static str) {
        self.used.push(name);
    }

    fn finish(self, strategy: &str) -> Result<(), String> {
        let mut unknown: Vec<&String> =
            self.map.keys().filter(|k| !self.used.contains(&k.as_str())).collect();
        unknown.sort();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(format!(
            "strategy {strategy:?} has no option(s) {unknown:?}; its options are {:?}",
            self.used
        ))
    }
}

pub const STRATEGIES: [&str; 5] = ["random", "genetic", "annealing", "sqa", "model"];

/// Build a strategy by name (aliases: evolutionary = genetic, sa = annealing, quantum = sqa).
pub fn make(
    name: &str,
    space: Arc<Space>,
    seed: u64,
    options: HashMap<String, f64>,
) -> Result<Box<dyn Strategy>, String> {
    let mut opts = Options::new(options);
    let rng = Rng::new(seed);
    let canonical = match name {
        "evolutionary" | "ga" => "genetic",
        "sa" | "simulated_annealing" => "annealing",
        "quantum" | "simulated_quantum_annealing" => "sqa",
        "model_guided" | "model-guided" => "model",
        other => other,
    };
    opts.allow("budget");
    let strategy: Box<dyn Strategy> = match canonical {
        "random" => Box::new(RandomSearch::new(space, rng)),
        "genetic" => Box::new(Genetic::new(space, rng, &mut opts)),
        "annealing" => Box::new(Annealing::new(space, rng, &mut opts)),
        "sqa" => Box::new(QuantumAnnealing::new(space, rng, &mut opts)),
        "model" => Box::new(ModelGuided::new(space, rng, &mut opts)),
        other => {
            return Err(format!("unknown strategy {other:?}; choose one of {STRATEGIES:?}"));
        }
    };
    opts.finish(canonical)?;
    Ok(strategy)
}

/// A random valid point not yet known to `mem`. Tries random draws first; near exhaustion of
/// an enumerated space it scans the valid list from a random offset, so it returns None only
/// when every valid point is known.
pub fn fresh_random(space: &Space, rng: &mut Rng, mem: &Memory) -> Option<Point> {
    for _ in 0..64 {
        let p = space.random_valid(rng)?;
        if !mem.known(space.index_of(&p)) {
            return Some(p);
        }
    }
    let valid = space.valid_indices()?;
    let start = rng.index(valid.len());
    (0..valid.len())
        .map(|k| valid[(start + k) % valid.len()])
        .find(|&i| !mem.known(i))
        .and_then(|i| space.point_of(i).ok())
}

/// Metropolis acceptance of an energy change at temperature `t`.
#[inline]
pub fn accept(delta: f64, t: f64, rng: &mut Rng) -> bool {
    delta <= 0.0 || (t > 0.0 && rng.unit() < (-delta / t).exp())
}

/// Exponential interpolation from `start` to `end` as `frac` goes 0 -> 1.
#[inline]
pub fn geometric(start: f64, end: f64, frac: f64) -> f64 {
    start * (end / start).powf(frac.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests;
