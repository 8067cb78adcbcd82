//! Quick start: memoize an expensive function, call it twice, then look at what was stored.
//!
//! ```text
//! cd examples && cargo run --example quickstart
//! ```
//!
//! Run from `examples/`, the default cache is the one `examples/fleche.toml` defines: files under
//! `examples/.fleche-cache`. The first run's first round computes (misses) and its second round is
//! served from the cache (hits); every later run is all hits, from disk. Delete the directory to
//! start over. Run from anywhere else, the default cache is the in-memory one.

use std::time::{Duration, Instant};

use fleche::{Key, Runtime, memoize};
use serde::{Deserialize, Serialize};

/// The full specification of a simulation: every field is part of the cache key.
#[derive(Key, Serialize, Deserialize, Debug, Clone)]
struct Spec {
    steps: u32,
    dt: f64,
    seed: u64,
}

/// A deliberately slow "simulation": a damped random walk.
#[memoize(version = 1)]
fn simulate(spec: &Spec) -> Vec<f64> {
    std::thread::sleep(Duration::from_millis(150));
    let mut state = spec.seed | 1;
    let mut x = 0.0;
    (0..spec.steps)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 1000) as f64 / 1000.0 - 0.5;
            x = x * (1.0 - spec.dt) + noise * spec.dt.sqrt();
            x
        })
        .collect()
}

fn main() {
    let specs = [
        Spec {
            steps: 1000,
            dt: 0.01,
            seed: 1,
        },
        Spec {
            steps: 1000,
            dt: 0.01,
            seed: 2,
        },
        Spec {
            steps: 5000,
            dt: 0.001,
            seed: 1,
        },
    ];
    let cache = fleche::current_cache();
    println!("cache: {}", cache.name());
    for round in 1..=2 {
        println!("round {round}");
        for spec in &specs {
            let stored = simulate::contains(spec);
            let started = Instant::now();
            let path = simulate(spec);
            println!(
                "  {:<4} {spec:?} -> last = {:+.4} in {:?}",
                if stored { "hit" } else { "miss" },
                path.last().copied().unwrap_or_default(),
                started.elapsed(),
            );
        }
    }

    println!("stored calls of simulate:");
    match simulate::query().records() {
        Ok(records) => {
            for r in records {
                let args: Vec<String> = r
                    .arguments
                    .iter()
                    .map(|(n, v)| format!("{n} = {v}"))
                    .collect();
                let took = Runtime::from_record(&r)
                    .map(|rt| rt.wall_time)
                    .unwrap_or_default();
                println!(
                    "  {} ({}) computed in {took:?}",
                    r.function,
                    args.join(", ")
                );
            }
        }
        Err(e) => eprintln!("cannot list the stored calls: {e}"),
    }
}
