//! Evaluations to 95% of the best for one strategy on many recorded spaces (no Python):
//! `cargo run --release --example evalset -- STRATEGY SEEDS BUDGET SPACE.json...`, options in
//! OPTS="name=value,...", THREADS (default 1), SEED0 (first seed, default 0). One JSON line per space on stdout: its name,
//! record count and each seed's evaluations to 95% (budget + 1 when it never got there).
use std::collections::HashMap;
use std::path::Path;

use _engine::recorded::Recorded;
use _engine::simulator::{simulate, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let strategy = args[1].clone();
    let seeds: u64 = args[2].parse().unwrap();
    let cap: usize = args[3].parse().unwrap();
    let options: HashMap<String, f64> = std::env::var("OPTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect();
    let threads = std::env::var("THREADS").map_or(1, |s| s.parse().unwrap());
    let seed0: u64 = std::env::var("SEED0").map_or(0, |s| s.parse().unwrap());
    for path in &args[4..] {
        let rec = Recorded::load(path).expect("load");
        let n = rec.time.len();
        let budget = cap.min(n);
        let cfg = SimConfig {
            strategy: strategy.clone(),
            options: options.clone(),
            seeds: (seed0..seed0 + seeds).collect(),
            budget,
            threads,
            scores: None,
            oracle_noise: None,
            stop_at: Some(0.95),
            batch: 1,
        };
        let t0 = std::time::Instant::now();
        let out = simulate(&rec, &cfg).unwrap();
        let evals: Vec<usize> = out
            .runs
            .iter()
            .map(|r| r.evals_to_95.unwrap_or(budget + 1))
            .collect();
        let name = Path::new(path).file_stem().unwrap().to_string_lossy();
        println!(
            "{{\"space\": \"{name}\", \"records\": {n}, \"wall_s\": {:.2}, \"evals\": {evals:?}}}",
            t0.elapsed().as_secs_f64()
        );
    }
}
