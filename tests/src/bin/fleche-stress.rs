//! A helper process for the multi-process tests (S03, S07): it memoizes functions into a file
//! cache whose root is given on the command line.
//!
//! ```text
//! fleche-stress sweep ROOT N SEED     call square(i) for i in 0..N, in an order set by SEED
//! fleche-stress sweep-sql DB N SEED   the same on the SQLite database DB
//! fleche-stress write-forever ROOT    store one entry, print "ready", then store large ones until killed
//! ```

use std::io::Write;
use std::process::ExitCode;

use fleche::storage::FileOptions;
use fleche::{Cache, with_cache};
use fleche_tests::stress::{block, square};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleche-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| {
        args.get(i)
            .ok_or_else(|| format!("missing argument {i}: see the usage"))
    };
    let command = arg(1)?.as_str();
    let cache = if command == "sweep-sql" {
        #[cfg(feature = "sqlite")]
        {
            Cache::sqlite(arg(2)?)
        }
        #[cfg(not(feature = "sqlite"))]
        {
            return Err("sweep-sql needs fleche-tests built with the `sqlite` feature".to_owned());
        }
    } else {
        Cache::msgpack(arg(2)?, FileOptions::new())
    }
    .map_err(|e| e.to_string())?;
    match command {
        "sweep" | "sweep-sql" => {
            let n: u64 = arg(3)?.parse().map_err(|e| format!("N: {e}"))?;
            let seed: u64 = arg(4)?.parse().map_err(|e| format!("SEED: {e}"))?;
            // A permutation of 0..n: multiplication by an odd number modulo a power of two.
            let span = n.next_power_of_two();
            let order = (0..span)
                .map(|i| (i.wrapping_mul(2 * seed + 1).wrapping_add(seed)) % span)
                .filter(|&i| i < n);
            with_cache(&cache, || {
                for i in order {
                    if square(i) != i * i {
                        return Err(format!("wrong result for {i}"));
                    }
                }
                Ok(())
            })
        }
        "write-forever" => with_cache(&cache, || {
            block(0);
            let mut out = std::io::stdout();
            writeln!(out, "ready").map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            for i in 1.. {
                block(i);
            }
            Ok(())
        }),
        other => Err(format!("unknown command `{other}`")),
    }
}
