//! Strategy tests on synthetic landscapes with a known optimum.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::*;
use crate::space::{Param, Space, DEFAULT_MAX_ENUMERATE};

/// 6 parameters of 6-8 values with two constraints; the landscape is a bowl around
/// `target` plus a deterministic ripple, and every 13th point fails.
fn landscape() -> (Arc<Space>, impl Fn(&[u32]) -> Option<f64>, u64) {
    let params: Vec<Param> = [8, 8, 6, 6, 7, 6]
        .iter()
        .enumerate()
        .map(|(i, &n)| Param {
            name: format!("p{i}"),
            values: (1..=n).collect(),
        })
        .collect();
    let mut limits = HashMap::new();
    limits.insert("lim".to_string(), 40);
    let rules = vec![
        "p0 * p1 <= lim".to_string(),
        "p2 + p3 != 7 or p4 > 2".to_string(),
    ];
    let space =
        Arc::new(Space::constrained(params, &limits, &rules, DEFAULT_MAX_ENUMERATE).unwrap());
    let target = [4u32, 5, 2, 3, 5, 1];
    let t_index = space.index_of(&target);
    assert!(space.is_valid(&target));
    let f = move |p: &[u32]| -> Option<f64> {
        let idx: u64 = p.iter().fold(0u64, |a, &x| a * 8 + u64::from(x));
        if p != target && idx % 13 == 5 {
            return None;
        }
        let bowl: f64 = p
            .iter()
            .zip(&target)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let ripple = 0.05 * ((idx % 7) as f64);
        Some(1.0 + 0.3 * bowl + if p == target { 0.0 } else { 0.05 + ripple })
    };
    (space, f, t_index)
}

fn run(name: &str, seed: u64, budget: usize, batch: usize) -> (Vec<u64>, Option<(u64, f64)>) {
    let (space, f, _) = landscape();
    let mut s = make(name, space.clone(), seed, HashMap::new()).unwrap();
    let mut order = Vec::new();
    while order.len() < budget {
        let asked = s.ask(batch);
        if asked.is_empty() {
            break;
        }
        for p in asked {
            assert!(space.is_valid(&p), "{name} proposed an invalid point {p:?}");
            order.push(space.index_of(&p));
            s.tell(&p, f(&p));
        }
    }
    (order, s.memory().best)
}

#[test]
fn proposals_are_valid_distinct_and_deterministic() {
    for name in STRATEGIES {
        for batch in [1, 5] {
            let (a, best_a) = run(name, 11, 300, batch);
            let (b, best_b) = run(name, 11, 300, batch);
            let (c, _) = run(name, 12, 300, batch);
            assert_eq!(a, b, "{name} is not deterministic per seed");
            assert_eq!(best_a, best_b);
            assert_ne!(a, c, "{name} ignores its seed");
            let unique: HashSet<&u64> = a.iter().collect();
            assert_eq!(unique.len(), a.len(), "{name} proposed a point twice");
        }
    }
}

#[test]
fn each_strategy_finds_the_known_optimum() {
    let (space, _, target) = landscape();
    let valid = space.valid_count().unwrap() as usize;
    // Smooth bowl: the guided strategies need a small fraction of the space.
    for name in ["annealing", "genetic", "sqa", "greedy", "forest"] {
        // forest refits a model per measurement: a smaller budget keeps the test quick.
        let budget = if name == "forest" {
            valid / 40
        } else {
            valid / 8
        };
        let mut hits = 0;
        for seed in 0..5 {
            let (order, best) = run(name, seed, budget, 1);
            if best.map(|b| b.0) == Some(target) {
                hits += 1;
            }
            assert!(order.len() == budget);
        }
        assert!(
            hits >= 4,
            "{name} found the optimum in only {hits}/5 runs (budget {budget})"
        );
    }
    // Random search is without replacement: with the whole space as budget it must measure
    // every valid point exactly once, the optimum included, and then stop.
    let (order, best) = run("random", 3, valid + 10, 7);
    assert_eq!(order.len(), valid);
    assert_eq!(best.map(|b| b.0), Some(target));
}

#[test]
fn the_first_proposals_do_not_depend_on_the_budget() {
    // No strategy takes a budget: asking for it is an error, not a silently longer schedule.
    let (space, _, _) = landscape();
    for name in STRATEGIES {
        let mut o = HashMap::new();
        o.insert("budget".to_string(), 50.0);
        let e = make(name, space.clone(), 0, o).err();
        assert!(
            e.is_some_and(|e| e.contains("budget")),
            "{name} took a budget"
        );
    }
    // And a run cut short is the prefix of a longer one (walkers' schedules included).
    for name in PRIOR_FREE {
        let (short, _) = run(name, 3, 60, 1);
        let (long, _) = run(name, 3, 400, 1);
        assert_eq!(short[..], long[..60], "{name}");
    }
}

#[test]
fn walkers_reheat_after_stagnation() {
    // A flat landscape never improves after the first success: the clock restarts every
    // `patience` measurements, so the temperature is hot again instead of frozen.
    let mut o = Options::new(HashMap::from([
        ("tau".to_string(), 10.0),
        ("patience".to_string(), 5.0),
    ]));
    let mut clock = Reheat::new(&mut o);
    assert_eq!(clock.progress(0), 0.0);
    assert!(!clock.observe(1, Some(1.0)));
    for told in 2..6 {
        assert!(!clock.observe(told, Some(1.0)));
    }
    assert!(
        clock.observe(6, Some(1.0)),
        "no restart after 5 stale measurements"
    );
    assert_eq!(clock.progress(6), 0.0);
    assert_eq!(clock.progress(11), 0.5);
    assert!(
        !clock.observe(7, Some(0.5)),
        "an improvement is not stagnation"
    );
    assert_eq!(clock.reheats, 1);
}

#[test]
fn model_guided_follows_scores_and_explores() {
    let (space, f, target) = landscape();
    let valid: Vec<u64> = space.valid_indices().unwrap().to_vec();
    // A perfect model: the first proposal is the optimum.
    let scores: Vec<(u64, f64)> = valid
        .iter()
        .map(|&i| (i, f(&space.point_of(i).unwrap()).unwrap_or(1e9)))
        .collect();
    let mut opts = HashMap::new();
    opts.insert("epsilon".to_string(), 0.0);
    let mut s = make("model", space.clone(), 1, opts).unwrap();
    s.set_scores(scores.clone()).unwrap();
    let first = s.ask(1);
    assert_eq!(space.index_of(&first[0]), target);
    // epsilon = 1: pure exploration, not the ranking.
    let mut opts = HashMap::new();
    opts.insert("epsilon".to_string(), 1.0);
    let mut s = make("model", space.clone(), 1, opts).unwrap();
    s.set_scores(scores).unwrap();
    let asked: Vec<u64> = s.ask(5).iter().map(|p| space.index_of(p)).collect();
    assert!(!asked.contains(&target) || asked[0] != target);
    // Other strategies refuse scores.
    let mut r = make("random", space, 1, HashMap::new()).unwrap();
    assert!(r.set_scores(vec![]).is_err());
}

#[test]
fn failures_are_never_the_best_and_never_reproposed() {
    let (space, _, _) = landscape();
    for name in STRATEGIES {
        let mut s = make(name, space.clone(), 5, HashMap::new()).unwrap();
        let mut failed = HashSet::new();
        for round in 0..60 {
            for p in s.ask(2) {
                let i = space.index_of(&p);
                assert!(!failed.contains(&i), "{name} re-proposed a failed point");
                if round % 2 == 0 {
                    failed.insert(i);
                    s.tell(&p, None);
                } else {
                    s.tell(&p, Some(1.0 + (i % 97) as f64));
                }
            }
        }
        let best = s.memory().best.unwrap();
        assert!(!failed.contains(&best.0), "{name} kept a failure as best");
        assert!(s.memory().failures >= 50);
    }
}

#[test]
fn unknown_names_and_options_are_refused() {
    let (space, _, _) = landscape();
    let e = make("tabu", space.clone(), 0, HashMap::new())
        .err()
        .unwrap();
    assert!(e.contains("random"), "{e}");
    let mut o = HashMap::new();
    o.insert("temprature".to_string(), 1.0);
    let e = make("annealing", space.clone(), 0, o).err().unwrap();
    assert!(e.contains("temprature") && e.contains("t0"), "{e}");
    assert!(make("evolutionary", space, 0, HashMap::new()).is_ok());
}

#[test]
fn model_ranking_is_exact_across_sorted_chunks() {
    let (space, _, _) = landscape();
    let valid: Vec<u64> = space.valid_indices().unwrap().to_vec();
    let mut rng = crate::rng::Rng::new(9);
    let scores: Vec<(u64, f64)> = valid.iter().map(|&i| (i, rng.unit())).collect();
    let mut expected = scores.clone();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut opts = HashMap::new();
    opts.insert("epsilon".to_string(), 0.0);
    let mut s = make("model", space.clone(), 1, opts).unwrap();
    s.set_scores(scores).unwrap();
    let got: Vec<u64> = s.ask(3000).iter().map(|p| space.index_of(p)).collect();
    let want: Vec<u64> = expected.iter().take(3000).map(|x| x.0).collect();
    assert!(valid.len() > 3000);
    assert_eq!(got, want);
}

#[test]
fn accept_bounds_match_the_exact_metropolis_test() {
    // The bounds short-cut must decide exactly as u < exp(-delta/t) on the same draw.
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    for i in 0..200_000 {
        let delta = [1e-12, 1e-6, 0.01, 0.3, 1.0, 5.0, 50.0][i % 7] * (1.0 + (i % 13) as f64 / 7.0);
        let t = [0.001, 0.1, 0.5, 2.0][i % 4];
        let exact = b.unit() < (-delta / t).exp();
        assert_eq!(
            super::accept(delta, t, &mut a),
            exact,
            "delta {delta} t {t}"
        );
    }
    assert!(super::accept(-1.0, 0.1, &mut a) && !super::accept(1.0, 0.0, &mut a));
}
