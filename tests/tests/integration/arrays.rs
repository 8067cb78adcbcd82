//! Large numeric results (value format 2): every backend returns what was stored, memory hits
//! are clones, and a damaged large entry — read as a stream, straight into the result's memory —
//! is a miss with a warning that the next store repairs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fleche::storage::{FileOptions, SigningKey};
use fleche::{Cache, memoize, with_cache};
use serde::{Deserialize, Serialize};

use crate::support::{Counter, capture_warnings};

const LEN: usize = 1 << 20;

fn floats(seed: u64) -> Vec<f64> {
    (0..LEN as u64)
        .map(|j| (j as f64).sqrt() + seed as f64 * 0.25)
        .collect()
}

/// One memoized function and run counter per test: tests run in parallel.
macro_rules! big {
    ($(#[$attr:meta])* $name:ident, $runs:ident) => {
        $(#[$attr])*
        static $runs: Counter = Counter::new();

        $(#[$attr])*
        #[memoize(name = "arrays.big")]
        fn $name(seed: u64) -> Vec<f64> {
            $runs.hit();
            floats(seed)
        }
    };
}

big!(big, RUNS_BIG);
big!(big_files, RUNS_FILES);
big!(
    #[cfg(feature = "hdf5")]
    big_hdf5,
    RUNS_HDF5
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    name: String,
    counts: Vec<i32>,
    flags: Vec<bool>,
    bytes: Vec<u8>,
    rows: Vec<Vec<f32>>,
    small: [u16; 4],
}

fn frame(seed: u32) -> Frame {
    Frame {
        name: format!("frame {seed}"),
        counts: (0..1000).map(|i| i * 3 - 1500 + seed as i32).collect(),
        flags: (0..77).map(|i| (i + seed).is_multiple_of(3)).collect(),
        bytes: (0..300).map(|i| (i * 7 + seed) as u8).collect(),
        rows: vec![vec![1.5, -2.0, seed as f32]; 4],
        small: [1, 2, 3, seed as u16],
    }
}

static RUNS_FRAME: Counter = Counter::new();

#[memoize(name = "arrays.frame")]
fn framed(seed: u32) -> Frame {
    RUNS_FRAME.hit();
    frame(seed)
}

#[memoize(name = "arrays.ints")]
fn ints(n: u32) -> Vec<i16> {
    (0..n).map(|i| (i as i16).wrapping_sub(100)).collect()
}

#[memoize(name = "arrays.generic")]
fn repeat<T: Clone + Serialize + serde::de::DeserializeOwned + fleche::Key>(
    x: T,
    n: usize,
) -> Vec<T> {
    vec![x; n]
}

struct Grid(u32);

impl fleche::Key for Grid {
    fn key(&self, h: &mut fleche::KeyHasher) {
        self.0.key(h);
    }
}

impl Grid {
    #[memoize(name = "arrays.method")]
    fn cells(&self) -> Vec<u64> {
        (0..u64::from(self.0)).collect()
    }
}

fn backends(dir: &Path) -> Vec<(&'static str, Cache)> {
    let ok = |r: Result<Cache, fleche::Error>| r.unwrap_or_else(|e| panic!("{e}"));
    let key = SigningKey::from_secret(b"arrays");
    #[allow(unused_mut)]
    let mut all = vec![
        ("memory", Cache::memory()),
        (
            "msgpack",
            ok(Cache::msgpack(dir.join("m"), FileOptions::new())),
        ),
        (
            "msgpack signed",
            ok(Cache::msgpack(
                dir.join("s"),
                FileOptions::new().keys(vec![key]),
            )),
        ),
        (
            "msgpack verify digest",
            ok(ok(Cache::msgpack(dir.join("v"), FileOptions::new())).verify_digest()),
        ),
        (
            "msgpack destructured",
            ok(ok(Cache::msgpack(dir.join("d"), FileOptions::new())).remaining_depth(1)),
        ),
    ];
    #[cfg(feature = "zstd")]
    all.push((
        "msgpack zstd",
        ok(Cache::msgpack(
            dir.join("z"),
            FileOptions::new().compress(1),
        )),
    ));
    #[cfg(feature = "sqlite")]
    all.push(("sqlite", ok(Cache::sqlite(dir.join("c.db")))));
    #[cfg(feature = "hdf5")]
    all.push(("hdf5", ok(Cache::hdf5(dir.join("h"), 2))));
    all
}

#[test]
fn numeric_results_round_trip_and_hit_on_every_backend() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (i, (name, cache)) in backends(dir.path()).into_iter().enumerate() {
        let seed = 1000 + i as u64;
        with_cache(&cache, || {
            let first = big(seed);
            let runs = RUNS_BIG.get();
            let again = big(seed);
            assert_eq!(RUNS_BIG.get(), runs, "{name}: the second call runs");
            assert!(again == first, "{name}: the hit differs");
            assert_eq!(again, floats(seed), "{name}");

            let f = framed(seed as u32);
            let runs = RUNS_FRAME.get();
            assert_eq!(framed(seed as u32), f, "{name}");
            assert_eq!(RUNS_FRAME.get(), runs, "{name}");
            assert_eq!(f, frame(seed as u32));

            for n in [0, 1, 2, 5, 40_000] {
                assert_eq!(ints(n), ints::uncached(n), "{name}: {n} i16");
                assert!(ints::contains(n), "{name}: {n} i16 stored");
            }
            assert_eq!(repeat(2.5f32, 3), vec![2.5; 3], "{name}");
            assert_eq!(repeat(2.5f32, 3), vec![2.5; 3], "{name}");
            assert!(repeat::contains(2.5f32, 3), "{name}");
            assert_eq!(Grid(5).cells(), vec![0, 1, 2, 3, 4], "{name}");
            assert!(Grid(5).cells_call().contains(), "{name}");
        });
    }
}

/// Counts how often a `Tally` is deserialized.
static DECODED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Tally(Vec<f64>);

impl<'de> Deserialize<'de> for Tally {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODED.fetch_add(1, Ordering::SeqCst);
        Vec::<f64>::deserialize(d).map(Tally)
    }
}

#[memoize(name = "arrays.tally")]
fn tally(n: u32) -> Tally {
    Tally(vec![f64::from(n); 10])
}

#[test]
fn memory_hits_are_clones_and_disk_hits_decode() {
    let memory = Cache::memory();
    with_cache(&memory, || tally(1));
    let before = DECODED.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(with_cache(&memory, || tally(1)), Tally(vec![1.0; 10]));
    }
    assert_eq!(
        DECODED.load(Ordering::SeqCst),
        before,
        "a memory hit decoded"
    );
    // The value's bytes are still there for whoever asks (a transfer, a typed load).
    let key = with_cache(&memory, || tally::digest(1));
    assert_eq!(
        memory.load::<Vec<f64>>(&key).ok().flatten(),
        Some(vec![1.0; 10])
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = Cache::msgpack(dir.path(), FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    with_cache(&files, || tally(2));
    let before = DECODED.load(Ordering::SeqCst);
    with_cache(&files, || tally(2));
    assert_eq!(DECODED.load(Ordering::SeqCst), before + 1);
}

/// Flips one byte at `at` (from the end when negative) of the file at `path`.
fn flip(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs() as usize
    } else {
        at as usize
    };
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
}

fn value_file(root: &Path, cache: &Cache, seed: u64) -> PathBuf {
    let key = with_cache(cache, || big_files::digest(seed));
    let record = cache
        .record(&key)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no record"));
    let hex = record.result.to_hex();
    root.join("values").join(&hex[..2]).join(hex)
}

/// The call misses with a warning once, is recomputed and stored again, then hits.
fn misses_once_then_hits(
    cache: &Cache,
    f: fn(u64) -> Vec<f64>,
    runs: &Counter,
    seed: u64,
    what: &str,
) {
    let before = runs.get();
    let (got, warnings) = capture_warnings(|| with_cache(cache, || f(seed)));
    assert_eq!(got, floats(seed), "{what}");
    assert_eq!(runs.get(), before + 1, "{what}: not recomputed");
    assert!(
        warnings.contains("corrupt") || warnings.contains("unreadable"),
        "{what}: no warning: {warnings}"
    );
    let (_, warnings) = capture_warnings(|| with_cache(cache, || f(seed)));
    assert_eq!(runs.get(), before + 1, "{what}: not repaired");
    assert!(warnings.is_empty(), "{what}: {warnings}");
}

#[test]
fn a_damaged_large_file_entry_is_a_miss_and_the_next_store_repairs_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = SigningKey::from_secret(b"damage");
    for (name, options) in [
        ("plain", FileOptions::new()),
        ("signed", FileOptions::new().keys(vec![key])),
    ] {
        let root = dir.path().join(name);
        let cache = Cache::msgpack(&root, options).unwrap_or_else(|e| panic!("{e}"));
        for (case, at) in [("middle", 4_000_000i64), ("last byte", -1), ("header", 30)] {
            let seed = 7 + at.unsigned_abs() % 1000;
            with_cache(&cache, || big_files(seed));
            flip(&value_file(&root, &cache, seed), at);
            let what = format!("{name}, {case}");
            misses_once_then_hits(&cache, big_files, &RUNS_FILES, seed, &what);
        }
        // Truncated by a byte, or grown by one.
        let seed = 2024;
        with_cache(&cache, || big_files(seed));
        let path = value_file(&root, &cache, seed);
        let bytes = std::fs::read(&path).unwrap_or_default();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap_or_else(|e| panic!("{e}"));
        let what = format!("{name}, truncated");
        misses_once_then_hits(&cache, big_files, &RUNS_FILES, seed, &what);
        let mut longer = std::fs::read(&path).unwrap_or_default();
        longer.push(0);
        std::fs::write(&path, longer).unwrap_or_else(|e| panic!("{e}"));
        let what = format!("{name}, grown");
        misses_once_then_hits(&cache, big_files, &RUNS_FILES, seed, &what);
    }
}

#[cfg(feature = "hdf5")]
#[test]
fn a_damaged_large_hdf5_dataset_is_a_miss_and_the_next_store_repairs_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = Cache::hdf5(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
    let seed = 99;
    with_cache(&cache, || big_hdf5(seed));
    let record_key = with_cache(&cache, || big_hdf5::digest(seed));
    let result = cache
        .record(&record_key)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no record"))
        .result;
    let file = dir
        .path()
        .join("values")
        .join(format!("{}.h5", &result.to_hex()[..1]));
    // Find element 500 000 of the stored vector in the file and change it.
    let bytes = std::fs::read(&file).unwrap_or_default();
    let needle: Vec<u8> = floats(seed)[500_000..500_002]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let found: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter_map(|(i, w)| (w == needle.as_slice()).then_some(i))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the dataset's elements are in the file once: {found:?}"
    );
    flip(&file, found[0] as i64 + 3);
    misses_once_then_hits(&cache, big_hdf5, &RUNS_HDF5, seed, "hdf5 dataset");
}
