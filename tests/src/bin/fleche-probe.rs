//! Prints how this process's configuration resolves, for the configuration tests (F01–F10),
//! which run it with their own `HOME`, working directory and environment.
//!
//! ```text
//! fleche-probe NAME...
//! ```
//!
//! Output: a line `files: ...`, a line `metadata: ...`, then per name either
//! `NAME => <the cache, Debug-formatted>` or `NAME !! <the error>`.

use fleche::Cache;
use fleche::config::{Config, Env};

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
    for name in std::env::args().skip(1) {
        match Cache::named(&name) {
            Ok(c) => println!("{name} => {c:?}"),
            Err(e) => println!("{name} !! {e}"),
        }
    }
}
