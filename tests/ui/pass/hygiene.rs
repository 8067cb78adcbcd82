//! The expansion works whatever the calling module shadows or imports, and adds no warnings.
#![deny(warnings)]

use serde::{Deserialize, Serialize};

/// Shadows the prelude's `Result`, `Option`, `Vec`, `String` and `Box` for this module.
#[allow(dead_code)]
enum Shadow {
    Ok,
    Err,
    Some,
    None,
}
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Box;

/// A module named `std` shadows the standard library for relative paths.
#[allow(dead_code)]
mod std {}

#[derive(fleche::Key, Serialize, Deserialize, PartialEq, Debug)]
enum Mode {
    Fast,
    Exact { tolerance: u32 },
}

#[fleche::memoize]
fn pick(mode: &Mode, n: u64) -> ::std::result::Result<u64, ::std::string::String> {
    use Shadow::*;
    let _unused_variant = Ok;
    match mode {
        Mode::Fast => ::std::result::Result::Ok(n),
        Mode::Exact { tolerance } => ::std::result::Result::Ok(n * u64::from(*tolerance)),
    }
}

#[fleche::memoize(version = 3, name = "hygiene.plain", hash_code)]
fn plain(xs: &[f64], #[ignore] verbose: bool) -> ::std::vec::Vec<f64> {
    if verbose {
        ::std::println!("computing");
    }
    xs.iter().map(|x| x * 2.0).collect()
}

#[derive(fleche::Key)]
struct Unit;

impl Unit {
    #[fleche::memoize]
    fn constant(&self) -> u8 {
        7
    }
}


fn main() {
    let cache = fleche::Cache::memory();
    fleche::with_cache(&cache, || {
        ::std::assert_eq!(pick(&Mode::Exact { tolerance: 2 }, 3), ::std::result::Result::Ok(6));
        ::std::assert!(pick::contains(&Mode::Exact { tolerance: 2 }, 3));
        ::std::assert_eq!(plain(&[1.0], false), ::std::vec![2.0]);
        ::std::assert!(plain::load(&[1.0], true).is_some());
        ::std::assert_eq!(Unit.constant(), 7);
        ::std::assert!(Unit.constant_call().contains());
    });
}
