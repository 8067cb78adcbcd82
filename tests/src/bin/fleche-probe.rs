//! Prints how this process's configuration resolves, for the configuration tests (F01–F10),
//! which run it with their own `HOME`, working directory and environment.
//!
//! ```text
//! fleche-probe NAME...
//! ```
//!
//! Output: a line `files: ...`, a line `metadata: ...`, a line `problem: ...` per configuration
//! problem, then per argument:
//!
//! - `NAME`: `NAME => <the cache, Debug-formatted>` or `NAME !! <the error>`;
//! - `with:NAME`: `with:NAME try => ok` or `with:NAME try !! <error>`, then
//!   `with:NAME panic => ok` or `with:NAME panic !! <the panic message>`;
//! - `call`: calls a memoized function twice outside any scope and prints
//!   `call => runs: N, metadata: [names]`.

use std::sync::atomic::{AtomicUsize, Ordering};

use fleche::Cache;
use fleche::config::{Config, Env};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[fleche::memoize(name = "probe.twice")]
fn twice(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    2 * x
}

fn with(name: &str) {
    match fleche::try_with_cache(name, || ()) {
        Ok(()) => println!("with:{name} try => ok"),
        Err(e) => println!("with:{name} try !! {e}"),
    }
    let panicked = std::panic::catch_unwind(|| fleche::with_cache(name, || ()));
    match panicked {
        Ok(()) => println!("with:{name} panic => ok"),
        Err(p) => {
            let message = p
                .downcast::<String>()
                .map(|s| *s)
                .unwrap_or_else(|_| "(no message)".to_owned());
            println!("with:{name} panic !! {message}");
        }
    }
}

fn call() {
    twice(21);
    twice(21);
    let metadata = twice::query()
        .records()
        .ok()
        .and_then(|r| r.into_iter().next())
        .map(|r| r.metadata.keys().cloned().collect::<Vec<_>>());
    println!(
        "call => runs: {}, metadata: {metadata:?}",
        RUNS.load(Ordering::SeqCst)
    );
}

fn main() {
    let config = Config::discover(&Env::from_process());
    let files: Vec<String> = config
        .files()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    println!("files: {}", files.join(", "));
    match config.metadata() {
        Ok(m) => println!("metadata: {}", m.join(", ")),
        Err(e) => println!("metadata !! {e}"),
    }
    for p in config.problems() {
        println!("problem: {p}");
    }
    std::panic::set_hook(Box::new(|_| {}));
    for name in std::env::args().skip(1) {
        if let Some(name) = name.strip_prefix("with:") {
            with(name);
            continue;
        }
        if name == "call" {
            call();
            continue;
        }
        match Cache::named(&name) {
            Ok(c) => println!("{name} => {c:?}"),
            Err(e) => println!("{name} !! {e}"),
        }
    }
}
