//! A parameter sweep on all cores with rayon, run twice: the second pass is served from the
//! cache. Shows how to carry the active cache into worker threads.
//!
//! ```text
//! cargo run -p fleche-examples --example sweep
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use fleche::memoize;
use rayon::prelude::*;

static COMPUTED: AtomicUsize = AtomicUsize::new(0);

/// Integrates `sin(k x)` on `[0, pi]` with `n` midpoint steps: deliberately expensive.
#[memoize]
fn integral(k: u32, n: u64) -> f64 {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    let h = std::f64::consts::PI / n as f64;
    (0..n)
        .map(|i| (f64::from(k) * (i as f64 + 0.5) * h).sin() * h)
        .sum()
}

fn sweep(ks: &[u32], ns: &[u64]) -> Vec<(u32, u64, f64)> {
    // A scope belongs to its thread: take the current cache and re-enter it in each task.
    let cache = fleche::current_cache();
    ks.iter()
        .flat_map(|&k| ns.iter().map(move |&n| (k, n)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(k, n)| (k, n, fleche::with_cache(&cache, || integral(k, n))))
        .collect()
}

fn main() {
    let cache = fleche::Cache::memory();
    let ks: Vec<u32> = (1..=8).collect();
    let ns = [200_000u64, 400_000, 800_000];
    fleche::with_cache(&cache, || {
        for pass in 1..=2 {
            let before = COMPUTED.load(Ordering::Relaxed);
            let started = Instant::now();
            let results = sweep(&ks, &ns);
            let computed = COMPUTED.load(Ordering::Relaxed) - before;
            println!(
                "pass {pass}: {} points, {computed} computed, {} from cache, {:?}",
                results.len(),
                results.len() - computed,
                started.elapsed()
            );
            if pass == 2 {
                for (k, n, v) in results.iter().filter(|(_, n, _)| *n == ns[2]) {
                    println!("  k = {k}, n = {n}: {v:+.6}");
                }
            }
        }
    });
    let stored = cache.records().map(|r| r.len()).unwrap_or_default();
    println!("{stored} calls stored");
}
