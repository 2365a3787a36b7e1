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
    /// Strategy "oracle" only (never a search strategy: it reads the recorded times): the
    /// model-guided strategy ranked by recorded time times exp(noise * N(0,1)), drawn per
    /// seed (failures predicted as the median time), generated lazily in ranked order (see
    /// `strategies::OracleBands`). Default 0.3.
    pub oracle_noise: Option<f64>,
    /// Stop a run once its best reaches this fraction of the best recorded speed (e.g. 0.95):
    /// comparisons that only need the evaluations to a goal then cost no more than that.
    pub stop_at: Option<f64>,
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
    // Fail fast on a bad name or option, before spawning threads.
    strategies::make(engine_name(cfg), rec.space.clone(), 0, cfg.options.clone())?;
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

/// The oracle is the model-guided strategy fed the recorded times; every other name is the
/// engine's own.
fn engine_name(cfg: &SimConfig) -> &str {
    if cfg.strategy == ORACLE {
        "model"
    } else {
        &cfg.strategy
    }
}

/// Name of the simulator's oracle: an upper reference, never a strategy to compare.
pub const ORACLE: &str = "oracle";

fn model_input(rec: &Recorded, cfg: &SimConfig) -> Result<ModelInput, String> {
    let valid = rec
        .space
        .valid_indices()
        .ok_or("a recorded space lists its points")?;
    let oracle = cfg.strategy == ORACLE;
    let model = engine_name(cfg) == "model";
    if cfg.oracle_noise.is_some() && !oracle {
        return Err(format!(
            "oracle_noise reads the recorded times: it belongs to strategy {ORACLE:?} only, not {:?}",
            cfg.strategy
        ));
    }
    if cfg.scores.is_some() && (!model || oracle) {
        return Err(format!(
            "scores are a cost model's predictions for strategy \"model\", not {:?}",
            cfg.strategy
        ));
    }
    Ok(match &cfg.scores {
        Some(s) => ModelInput::Order(SharedOrder::sort(valid, s)),
        None if oracle => ModelInput::Oracle(Arc::new(OracleBands::new(
            valid,
            &rec.time,
            cfg.oracle_noise.unwrap_or(0.3),
        ))),
        None if model => {
            return Err("strategy \"model\" needs a cost model's scores (a prior, e.g. the tuner's transfer fit); without one use a prior-free strategy such as \"forest\" (the recorded-time reference is \"oracle\")".into())
        }
        None => ModelInput::None,
    })
}

fn replay(
    rec: &Recorded,
    cfg: &SimConfig,
    model: &ModelInput,
    seed: u64,
    best_known: f64,
) -> Result<RunResult, String> {
    let mut strat = strategies::make(
        engine_name(cfg),
        rec.space.clone(),
        seed,
        cfg.options.clone(),
    )?;
    match model {
        ModelInput::None => {}
        ModelInput::Order(order) => strat.set_ranking(Box::new(SharedOrder::new(order.clone())))?,
        // A separate stream from the strategy's, so the model does not shift its draws.
        ModelInput::Oracle(bands) => {
            strat.set_ranking(Box::new(bands.ranking(seed ^ 0x5EED_0F0D_E1A5_0000)))?
        }
    }
    let (goal95, goal99) = (best_known / 0.95, best_known / 0.99);
    let stop = cfg.stop_at.map_or(0.0, |f| best_known / f.clamp(1e-9, 1.0));
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
    while r.evaluations < cfg.budget && r.best_time.is_none_or(|b| b > stop) {
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
            stop_at: None,
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

    /// A recorded space of 4 x 5 x 6 points, a smooth bowl with a few failures.
    fn bowl(poison: &[usize], poisoned: f64) -> Recorded {
        let params = ["a", "b", "c"]
            .iter()
            .zip([4, 5, 6])
            .map(|(n, k)| Param {
                name: n.to_string(),
                values: (0..k).collect(),
            })
            .collect();
        let mut rows = Vec::new();
        for a in 0..4i64 {
            for b in 0..5i64 {
                for c in 0..6i64 {
                    let row = rows.len();
                    let t = 1.0 + ((a - 2).pow(2) + (b - 1).pow(2) + (c - 4).pow(2)) as f64 * 0.1;
                    let time = if poison.contains(&row) {
                        Some(poisoned)
                    } else if row % 11 == 3 {
                        None
                    } else {
                        Some(t)
                    };
                    rows.push(Row {
                        values: vec![a, b, c],
                        time,
                        cost: 1.0,
                    });
                }
            }
        }
        Recorded::from_rows(params, vec![], rows, "t".into(), vec![], "test", vec![]).unwrap()
    }

    #[test]
    fn no_strategy_reads_a_time_it_was_not_charged_for() {
        // Run each strategy, then change the time of every record it did NOT measure (make
        // them all far faster) and run it again: a strategy that sees only what it is told
        // must propose exactly the same points. The oracle reads the recorded times, and the
        // same check catches it.
        let base = bowl(&[], 0.0);
        for name in strategies::PRIOR_FREE.iter().chain([&ORACLE]) {
            for seed in 0..4 {
                let mut c = cfg(name, vec![seed], 25);
                c.threads = 1;
                let first = &simulate(&base, &c).unwrap().runs[0];
                let rows: Vec<usize> = (0..base.time.len()).collect();
                let measured = order_of(&base, name, seed, 25);
                let unmeasured: Vec<usize> =
                    rows.into_iter().filter(|r| !measured.contains(r)).collect();
                let poisoned = bowl(&unmeasured, 1e-3);
                let again = &simulate(&poisoned, &c).unwrap().runs[0];
                let same = order_of(&poisoned, name, seed, 25) == measured;
                if *name == ORACLE {
                    assert!(!same, "the oracle should have seen the poisoned times");
                } else {
                    assert!(
                        same,
                        "{name} (seed {seed}) read a time it was not charged for"
                    );
                    assert_eq!(format!("{:?}", first.curve), format!("{:?}", again.curve));
                }
            }
        }
    }

    /// The rows a run measured, in order (replays the run through the public interface).
    fn order_of(rec: &Recorded, name: &str, seed: u64, budget: usize) -> Vec<usize> {
        let c = cfg(name, vec![seed], budget);
        let model = model_input(rec, &c).unwrap();
        let mut s =
            strategies::make(engine_name(&c), rec.space.clone(), seed, HashMap::new()).unwrap();
        if let ModelInput::Oracle(b) = &model {
            s.set_ranking(Box::new(b.ranking(seed ^ 0x5EED_0F0D_E1A5_0000)))
                .unwrap();
        }
        let mut out = Vec::new();
        let mut asked = Vec::new();
        while out.len() < budget {
            asked.clear();
            s.ask_indices(1, &mut asked);
            let Some(&i) = asked.first() else { break };
            let row = rec.space.valid_rank(i).unwrap();
            let t = rec.time[row];
            s.tell_index(i, t.is_finite().then_some(t));
            out.push(row);
        }
        out
    }

    #[test]
    fn stop_at_ends_a_run_at_its_goal() {
        let rec = bowl(&[], 0.0);
        let mut c = cfg("random", (0..6).collect(), 120);
        c.stop_at = Some(0.95);
        for r in simulate(&rec, &c).unwrap().runs {
            assert_eq!(Some(r.evaluations), r.evals_to_95, "seed {}", r.seed);
        }
    }

    #[test]
    fn the_oracle_is_named_and_model_needs_scores() {
        let rec = tiny();
        let e = simulate(&rec, &cfg("model", vec![1], 3)).err().unwrap();
        assert!(e.contains("forest") && e.contains("oracle"), "{e}");
        let mut c = cfg("forest", vec![1], 3);
        c.oracle_noise = Some(0.3);
        assert!(simulate(&rec, &c).is_err());
        assert!(simulate(&rec, &cfg(ORACLE, vec![1], 3)).is_ok());
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
