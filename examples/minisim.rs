//! What `minisim.cache` does, with fleche: a small neuron-network simulation memoized by its
//! whole nested spec (enums, options, flags — every knob is part of the key, so a recording made
//! without snapshots never answers a request for them), stored as HDF5 float arrays under
//! `$MINISIM_CACHE` (else `~/.cache/minisim`). It runs a small sweep, then asks the cache which
//! specs are already computed.
//!
//! ```text
//! cargo run -p fleche-examples --example minisim        # misses, then hits on the next run
//! fleche --config <(printf '[m]\ntemplate = "hdf5"\nroot = "%s"\n' ~/.cache/minisim) --cache m ls
//! ```

use std::path::PathBuf;
use std::time::Instant;

use fleche::{Cache, Key, memoize};
use serde::{Deserialize, Serialize};

/// How the cells are connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Key)]
enum Network {
    /// Each cell drives its neighbour.
    Ring { cells: u32 },
    /// All to all, with a coupling strength.
    Dense { cells: u32, coupling: f64 },
}

/// The integrator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Key)]
enum Integrator {
    Euler,
    Rk2,
}

/// Injected noise, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Key)]
struct Noise {
    sigma: f64,
    seed: u64,
}

/// What the recording keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Key)]
struct Output {
    /// Keep every cell's trace, not only the mean.
    save_intermediates: bool,
}

/// A whole recording spec: the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Key)]
struct Spec {
    network: Network,
    integrator: Integrator,
    dt: f64,
    steps: u32,
    noise: Option<Noise>,
    output: Output,
}

/// A leaky integrate-and-fire network: the mean membrane potential per step (and every cell's,
/// with `save_intermediates`), flattened into one float array.
#[memoize(name = "minisim.simulate", version = 1)]
fn simulate(spec: &Spec) -> Vec<f64> {
    let (cells, coupling) = match spec.network {
        Network::Ring { cells } => (cells as usize, 0.3),
        Network::Dense { cells, coupling } => (cells as usize, coupling),
    };
    let mut v: Vec<f64> = (0..cells).map(|i| i as f64 / cells as f64).collect();
    let mut rng = spec.noise.as_ref().map_or(1, |n| n.seed | 1);
    let mut out = Vec::new();
    for _ in 0..spec.steps {
        let mean = v.iter().sum::<f64>() / cells as f64;
        let drive = |i: usize, v: &[f64]| match spec.network {
            Network::Ring { .. } => coupling * v[(i + cells - 1) % cells],
            Network::Dense { .. } => coupling * mean,
        };
        let dv = |x: f64, d: f64| -x + d + 1.1;
        let next: Vec<f64> = (0..cells)
            .map(|i| {
                let d = drive(i, &v);
                let step = match spec.integrator {
                    Integrator::Euler => spec.dt * dv(v[i], d),
                    Integrator::Rk2 => {
                        let half = v[i] + 0.5 * spec.dt * dv(v[i], d);
                        spec.dt * dv(half, d)
                    }
                };
                let noise = spec.noise.as_ref().map_or(0.0, |n| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    n.sigma * ((rng % 1000) as f64 / 1000.0 - 0.5)
                });
                let x = v[i] + step + noise;
                if x >= 1.0 { 0.0 } else { x }
            })
            .collect();
        v = next;
        out.push(v.iter().sum::<f64>() / cells as f64);
        if spec.output.save_intermediates {
            out.extend_from_slice(&v);
        }
    }
    out
}

/// `$MINISIM_CACHE`, else `~/.cache/minisim`.
fn cache_dir() -> PathBuf {
    match std::env::var_os("MINISIM_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".cache/minisim"),
    }
}

fn sweep() -> Vec<Spec> {
    let mut specs = Vec::new();
    for network in [
        Network::Ring { cells: 64 },
        Network::Dense {
            cells: 64,
            coupling: 0.05,
        },
    ] {
        for integrator in [Integrator::Euler, Integrator::Rk2] {
            for noise in [
                None,
                Some(Noise {
                    sigma: 0.02,
                    seed: 7,
                }),
            ] {
                specs.push(Spec {
                    network: network.clone(),
                    integrator,
                    dt: 0.01,
                    steps: 20_000,
                    noise,
                    output: Output {
                        save_intermediates: false,
                    },
                });
            }
        }
    }
    specs
}

fn main() -> Result<(), fleche::Error> {
    let root = cache_dir();
    let cache = Cache::hdf5(&root, 2)?;
    println!("cache: {} (HDF5)", root.display());
    let specs = sweep();
    fleche::with_cache(&cache, || {
        for spec in &specs {
            let hit = simulate::contains(spec);
            let started = Instant::now();
            let trace = simulate(spec);
            println!(
                "{} {:>9.1?}  {:?} {:?} noise={}  mean={:.4}",
                if hit { "hit " } else { "miss" },
                started.elapsed(),
                spec.network,
                spec.integrator,
                spec.noise.is_some(),
                trace.iter().sum::<f64>() / trace.len() as f64,
            );
        }
        // A spec that differs in one flag is a different recording.
        let mut wants_snapshots = specs[0].clone();
        wants_snapshots.output.save_intermediates = true;
        println!(
            "with snapshots, computed already: {}",
            simulate::contains(&wants_snapshots)
        );
    });

    // Which specs are computed: the cache answers from its records, with typed arguments.
    let computed = simulate::query().in_cache(&cache).records()?;
    println!("{} recordings stored; RK2 ones:", computed.len());
    for r in &computed {
        let spec: Spec = r.arg("spec")?;
        if spec.integrator == Integrator::Rk2 {
            println!(
                "  {}  {:?} noise={:?}",
                &r.key.to_string()[..12],
                spec.network,
                spec.noise
            );
        }
    }
    Ok(())
}
