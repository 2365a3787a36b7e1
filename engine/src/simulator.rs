//! Replays a strategy over a recorded space for many seeds at once (rayon, one run per
//! task). Each evaluation looks the proposed point up in the records: its time (or failure)
//! is told back and its cost (compile + run seconds) is added to the clock.
//!
//! Per run: the best-so-far curve (one entry per evaluation; NaN until the first success),
//! and the evaluations and seconds needed to reach 95% and 99% of the best recorded
//! schedule's speed, i.e. the first time best-so-far <= best_known / 0.95 (resp. 0.99).

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::recorded::Recorded;
use crate::strategies::{self, OracleBands, SharedOrder};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub strategy: String,
    pub options: HashMap<String, f64>,
    pub seeds: Vec<u64>,
    pub budget: usize,
    /// 0 = rayon's default (all cores).
    pub threads: usize,
    /// Model-guided only: predicted times, one per valid point (row order) or absent.
    pub scores: Option<Vec<f64>>,
    /// Model-guided only: when no scores are given, a synthetic model = recorded time times
    /// exp(noise * N(0,1)), drawn per seed (failures predicted as the median time),
    /// generated lazily in ranked order (see `strategies::OracleBands`).
    pub oracle_noise: Option<f64>,
    /// Candidates per ask (1 = fully sequential tuning).
    pub batch: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub seed: u64,
    pub curve: Vec<f64>,
    /// Measurements: distinct recorded points proposed and told (each costs its compile +
    /// run seconds). Free steps through already measured points are not evaluations.
    pub evaluations: usize,
    /// Free steps of the walkers through already measured points (cache hits).
    pub revisits: usize,
    pub failures: usize,
    pub seconds: f64,
    pub best_time: Option<f64>,
    pub best_row: Option<usize>,
    pub evals_to_95: Option<usize>,
    pub evals_to_99: Option<usize>,
    pub seconds_to_95: Option<f64>,
    pub seconds_to_99: Option<f64>,
}

pub struct SimResult {
    pub best_known: f64,
    pub runs: Vec<RunResult>,
}

pub fn simulate(rec: &Recorded, cfg: &SimConfig) -> Result<SimResult, String> {
    let (_, best_known) = rec
        .best()
        .ok_or("every record in this space failed: there is no best schedule to reach")?;
    if cfg.seeds.is_empty() {
        return Err("give at least one seed".into());
    }
    if let Some(s) = &cfg.scores {
        if s.len() != rec.time.len() {
            return Err(format!(
                "scores has {} entries, the space {} records",
                s.len(),
                rec.time.len()
            ));
        }
    }
    // Annealing schedules run over the simulated budget unless told otherwise.
    let mut cfg = cfg.clone();
    cfg.options
        .entry("budget".into())
        .or_insert(cfg.budget as f64);
    let cfg = &cfg;
    // Fail fast on a bad name or option, before spawning threads.
    strategies::make(&cfg.strategy, rec.space.clone(), 0, cfg.options.clone())?;
    let model = model_input(rec, cfg)?;
    let run = |&seed: &u64| replay(rec, cfg, &model, seed, best_known);
    let runs: Result<Vec<RunResult>, String> = if cfg.threads == 1 {
        cfg.seeds.iter().map(run).collect()
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .build()
            .map_err(|e| format!("cannot start {} simulator threads: {e}", cfg.threads))?;
        pool.install(|| cfg.seeds.par_iter().map(run).collect())
    };
    Ok(SimResult {
        best_known,
        runs: runs?,
    })
}

/// The model-guided strategy's input, prepared once per simulation and shared by seeds.
enum ModelInput {
    None,
    Order(Arc<Vec<u64>>),
    Oracle(Arc<OracleBands>),
}

fn model_input(rec: &Recorded, cfg: &SimConfig) -> Result<ModelInput, String> {
    let valid = rec
        .space
        .valid_indices()
        .ok_or("a recorded space lists its points")?;
    Ok(match (&cfg.scores, cfg.oracle_noise) {
        (Some(s), _) => ModelInput::Order(SharedOrder::sort(valid, s)),
        (None, Some(noise)) => {
            ModelInput::Oracle(Arc::new(OracleBands::new(valid, &rec.time, noise)))
        }
        (None, None) => ModelInput::None,
    })
}

fn replay(
    rec: &Recorded,
    cfg: &SimConfig,
    model: &ModelInput,
    seed: u64,
    best_known: f64,
) -> Result<RunResult, String> {
    let mut strat = strategies::make(&cfg.strategy, rec.space.clone(), seed, cfg.options.clone())?;
    match model {
        ModelInput::None => {}
        ModelInput::Order(order) => strat.set_ranking(Box::new(SharedOrder::new(order.clone())))?,
        // A separate stream from the strategy's, so the model does not shift its draws.
        ModelInput::Oracle(bands) => {
            strat.set_ranking(Box::new(bands.ranking(seed ^ 0x5EED_0F0D_E1A5_0000)))?
        }
    }
    let (goal95, goal99) = (best_known / 0.95, best_known / 0.99);
    let mut r = RunResult {
        seed,
        curve: Vec::with_capacity(cfg.budget),
        evaluations: 0,
        revisits: 0,
        failures: 0,
        seconds: 0.0,
        best_time: None,
        best_row: None,
        evals_to_95: None,
        evals_to_99: None,
        seconds_to_95: None,
        seconds_to_99: None,
    };
    let batch = cfg.batch.max(1);
    let mut asked = Vec::with_capacity(batch);
    while r.evaluations < cfg.budget {
        asked.clear();
        strat.ask_indices(batch.min(cfg.budget - r.evaluations), &mut asked);
        if asked.is_empty() {
            break; // every recorded point measured
        }
        for &index in &asked {
            let row = rec
                .space
                .valid_rank(index)
                .ok_or("a strategy proposed an unrecorded point (engine bug)")?;
            let t = rec.time[row];
            let time = t.is_finite().then_some(t);
            strat.tell_index(index, time);
            r.evaluations += 1;
            r.seconds += rec.cost[row];
            match time {
                Some(t) if r.best_time.is_none_or(|b| t < b) => {
                    r.best_time = Some(t);
                    r.best_row = Some(row);
                }
                None => r.failures += 1,
                _ => {}
            }
            let best = r.best_time.unwrap_or(f64::NAN);
            r.curve.push(best);
            if r.evals_to_95.is_none() && best <= goal95 {
                r.evals_to_95 = Some(r.evaluations);
                r.seconds_to_95 = Some(r.seconds);
            }
            if r.evals_to_99.is_none() && best <= goal99 {
                r.evals_to_99 = Some(r.evaluations);
                r.seconds_to_99 = Some(r.seconds);
            }
        }
    }
    r.revisits = strat.memory().revisits;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorded::Row;
    use crate::space::Param;

    /// 4 points: a in {0,1,2,3}; times 4, fail, 2, 1.9 (best 1.9 -> 95% goal 2.0).
    fn tiny() -> Recorded {
        let params = vec![Param {
            name: "a".into(),
            values: vec![0, 1, 2, 3],
        }];
        let times = [Some(4.0), None, Some(2.0), Some(1.9)];
        let rows = times
            .iter()
            .enumerate()
            .map(|(i, &t)| Row {
                values: vec![i as i64],
                time: t,
                cost: 10.0 + i as f64,
            })
            .collect();
        Recorded::from_rows(params, vec![], rows, "t".into(), vec![], "test", vec![]).unwrap()
    }

    fn cfg(strategy: &str, seeds: Vec<u64>, budget: usize) -> SimConfig {
        SimConfig {
            strategy: strategy.into(),
            options: HashMap::new(),
            seeds,
            budget,
            threads: 2,
            scores: None,
            oracle_noise: None,
            batch: 1,
        }
    }

    #[test]
    fn hand_computed_model_run() {
        // Model ranks rows as 0, 1, 2, 3 with epsilon 0: the order is fixed.
        let rec = tiny();
        let mut c = cfg("model", vec![1], 10);
        c.options.insert("epsilon".into(), 0.0);
        c.scores = Some(vec![1.0, 2.0, 3.0, 4.0]);
        let out = simulate(&rec, &c).unwrap();
        assert_eq!(out.best_known, 1.9);
        let r = &out.runs[0];
        assert_eq!(r.evaluations, 4); // space exhausted before the budget
        assert_eq!(r.failures, 1);
        assert_eq!(r.curve, vec![4.0, 4.0, 2.0, 1.9]);
        // 2.0 <= 1.9/0.95 = 2.0 -> reached at evaluation 3; 99% (1.919) at 4.
        assert_eq!(r.evals_to_95, Some(3));
        assert_eq!(r.evals_to_99, Some(4));
        assert_eq!(r.seconds_to_95, Some(10.0 + 11.0 + 12.0));
        assert_eq!(r.seconds_to_99, Some(46.0));
        assert_eq!(r.best_row, Some(3));
    }

    #[test]
    fn parallel_equals_serial_and_is_deterministic() {
        let rec = tiny();
        let a = simulate(&rec, &cfg("annealing", (0..8).collect(), 3)).unwrap();
        let mut serial = cfg("annealing", (0..8).collect(), 3);
        serial.threads = 1;
        let b = simulate(&rec, &serial).unwrap();
        // Debug text, since NaN (before the first success) != NaN.
        assert_eq!(format!("{:?}", a.runs), format!("{:?}", b.runs));
        assert!(a
            .runs
            .iter()
            .all(|r| r.evaluations == 3 && r.curve.len() == 3));
    }

    #[test]
    fn bad_requests_are_errors() {
        let rec = tiny();
        assert!(simulate(&rec, &cfg("nope", vec![1], 3)).is_err());
        assert!(simulate(&rec, &cfg("random", vec![], 3)).is_err());
        let mut c = cfg("model", vec![1], 3);
        c.scores = Some(vec![1.0]);
        assert!(simulate(&rec, &c).is_err());
    }
}
