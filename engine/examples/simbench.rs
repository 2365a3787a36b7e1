//! Timing harness for the simulator (no Python): `cargo run --release --example simbench --
//! SPACE.json [seeds] [budget] [strategies...]`. Prints evaluations/s on one thread and the
//! median evaluations to 99% of the best, so a speed change that alters search behaviour shows.
use std::collections::HashMap;
use std::time::Instant;

use _engine::recorded::Recorded;
use _engine::simulator::{simulate, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rec = Recorded::load(&args[1]).expect("load");
    let seeds: u64 = args.get(2).map_or(30, |s| s.parse().unwrap());
    let budget: usize = args.get(3).map_or(2000, |s| s.parse().unwrap());
    let names: Vec<String> = if args.len() > 4 {
        args[4..].to_vec()
    } else {
        _engine::strategies::PRIOR_FREE
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    for name in names {
        let cfg = SimConfig {
            strategy: name.clone(),
            // OPTS="name=value,...": strategy options.
            options: std::env::var("OPTS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
                .collect::<HashMap<String, f64>>(),
            seeds: (0..seeds).collect(),
            budget,
            threads: 1,
            scores: None,
            oracle_noise: None,
            stop_at: std::env::var("STOP").ok().map(|s| s.parse().unwrap()),
            batch: 1,
        };
        let mut best = f64::INFINITY;
        let mut out = None;
        for _ in 0..std::env::var("REPS").map_or(3, |s| s.parse().unwrap()) {
            let t0 = Instant::now();
            let r = simulate(&rec, &cfg).unwrap();
            best = best.min(t0.elapsed().as_secs_f64());
            if std::env::var("VERBOSE").is_ok() {
                eprintln!("  rep {:.4}s", t0.elapsed().as_secs_f64());
            }
            out = Some(r);
        }
        let out = out.unwrap();
        let evals: usize = out.runs.iter().map(|r| r.evaluations).sum();
        let mut e99: Vec<f64> = out
            .runs
            .iter()
            .map(|r| r.evals_to_99.map_or(f64::INFINITY, |e| e as f64))
            .collect();
        e99.sort_by(f64::total_cmp);
        let mut e95: Vec<f64> = out
            .runs
            .iter()
            .map(|r| r.evals_to_95.map_or(f64::INFINITY, |e| e as f64))
            .collect();
        e95.sort_by(f64::total_cmp);
        let mean99: f64 = out
            .runs
            .iter()
            .map(|r| r.evals_to_99.map_or(cfg.budget as f64 + 1.0, |e| e as f64))
            .sum::<f64>()
            / out.runs.len() as f64;
        let revisits: usize = out.runs.iter().map(|r| r.revisits).sum();
        eprintln!(
            "  revisits per evaluation {:.1}",
            revisits as f64 / evals as f64
        );
        let reached = out.runs.iter().filter(|r| r.evals_to_99.is_some()).count();
        let within = (rec.time.len() as f64 * 0.01).floor() as usize;
        let in1 = out
            .runs
            .iter()
            .filter(|r| r.evals_to_95.is_some_and(|e| e <= within))
            .count();
        println!(
            "{name:10} {:>12.0} evals/s  ({:.1} ns/eval)  median evals to 95%: {} 99%: {} (mean {:.0})  reached {reached}/{}  95% within 1% ({within}): {in1}",
            evals as f64 / best,
            best / evals as f64 * 1e9,
            e95[e95.len() / 2],
            e99[e99.len() / 2],
            mean99,
            out.runs.len()
        );
    }
}
