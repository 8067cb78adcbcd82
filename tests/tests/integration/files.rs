//! The msgpack file backend seen through memoized functions: persistence across cache handles
//! (as across processes), S01 (tamper, key rotation), S02 (corruption), S04 (compression).

use std::fs;

use fleche::storage::{FileOptions, SigningKey};
use fleche::{Cache, memoize, with_cache};

use crate::support::{Counter, capture_warnings};

/// One memoized function and run counter per test: tests run in parallel.
macro_rules! spectrum {
    ($name:ident, $runs:ident) => {
        static $runs: Counter = Counter::new();

        #[memoize(name = "files.spectrum")]
        fn $name(n: u32) -> Vec<f64> {
            $runs.hit();
            (0..n).map(|i| f64::from(i).sqrt()).collect()
        }
    };
}

fn open(dir: &std::path::Path, options: FileOptions) -> Cache {
    match Cache::msgpack(dir, options) {
        Ok(c) => c,
        Err(e) => panic!("cannot open the cache: {e}"),
    }
}

spectrum!(spectrum_a, RUNS_A);

#[test]
fn results_persist_across_handles() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let before = RUNS_A.get();
    let a = open(dir.path(), FileOptions::new());
    assert_eq!(
        with_cache(&a, || spectrum_a(4)),
        vec![0.0, 1.0, 2f64.sqrt(), 3f64.sqrt()]
    );
    let b = open(dir.path(), FileOptions::new());
    assert_eq!(with_cache(&b, || spectrum_a(4))[1], 1.0);
    assert_eq!(
        RUNS_A.get() - before,
        1,
        "the second handle hit the stored result"
    );
    let records = b.records().unwrap_or_default();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].function, "files.spectrum");
    assert_eq!(records[0].argument("n"), Some(&fleche::Value::Int(4)));
    assert!(fleche::Runtime::from_record(&records[0]).is_some());
}

spectrum!(spectrum_b, RUNS_B);

#[test]
fn s02_corrupt_entries_are_misses_with_a_warning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let c = open(dir.path(), FileOptions::new());
    with_cache(&c, || spectrum_b(5));
    for sub in ["values", "calls"] {
        for entry in walk(&dir.path().join(sub)) {
            fs::write(&entry, b"\x00garbage").unwrap_or_else(|e| panic!("{e}"));
        }
        let before = RUNS_B.get();
        let (r, warnings) = capture_warnings(|| with_cache(&c, || spectrum_b(5)));
        assert_eq!(r.len(), 5);
        assert_eq!(RUNS_B.get() - before, 1, "a corrupt {sub} entry is a miss");
        assert!(warnings.contains("corrupt entry"), "{warnings}");
        // The recomputed result replaced the corrupt entry.
        let before = RUNS_B.get();
        with_cache(&c, || spectrum_b(5));
        assert_eq!(RUNS_B.get(), before);
    }
}

spectrum!(spectrum_c, RUNS_C);

#[test]
fn s01_tampered_and_foreign_entries_are_misses() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let old = SigningKey::from_secret(b"old");
    let new = SigningKey::from_secret(b"new");
    let signed_old = open(dir.path(), FileOptions::new().keys(vec![old.clone()]));
    with_cache(&signed_old, || spectrum_c(6));
    // A reader holding the new and the old key reads it, and writes with the new one.
    let rotated = open(dir.path(), FileOptions::new().keys(vec![new.clone(), old]));
    let before = RUNS_C.get();
    with_cache(&rotated, || spectrum_c(6));
    assert_eq!(RUNS_C.get(), before);
    with_cache(&rotated, || spectrum_c(7));
    let only_new = open(dir.path(), FileOptions::new().keys(vec![new]));
    let before = RUNS_C.get();
    with_cache(&only_new, || spectrum_c(7));
    assert_eq!(RUNS_C.get(), before, "written with the first key");
    let (_, warnings) = capture_warnings(|| with_cache(&only_new, || spectrum_c(6)));
    assert_eq!(
        RUNS_C.get(),
        before + 1,
        "signed with an unknown key: a miss"
    );
    assert!(warnings.contains("signature"), "{warnings}");
    // Unsigned entries are refused while keys are configured.
    let unsigned = open(dir.path(), FileOptions::new());
    with_cache(&unsigned, || spectrum_c(8));
    let (_, warnings) = capture_warnings(|| with_cache(&only_new, || spectrum_c(8)));
    assert!(warnings.contains("not signed"), "{warnings}");
    // A signed entry modified on disk.
    let hex = spectrum_c::digest(7).to_hex();
    let entry = dir.path().join("calls").join(&hex[..2]).join(&hex);
    let mut bytes = fs::read(&entry).unwrap_or_default();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&entry, bytes).unwrap_or_else(|e| panic!("{e}"));
    let (r, warnings) = capture_warnings(|| with_cache(&only_new, || spectrum_c(7)));
    assert_eq!(r.len(), 7);
    assert!(warnings.contains("signature"), "{warnings}");
}

#[cfg(feature = "zstd")]
spectrum!(spectrum_d, RUNS_D);

#[cfg(feature = "zstd")]
#[test]
fn s04_compression_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let compressed = open(dir.path(), FileOptions::new().compress(9));
    with_cache(&compressed, || spectrum_d(1000));
    let plain = open(dir.path(), FileOptions::new());
    let before = RUNS_D.get();
    assert_eq!(with_cache(&plain, || spectrum_d(1000)).len(), 1000);
    with_cache(&plain, || spectrum_d(1001));
    assert_eq!(with_cache(&compressed, || spectrum_d(1001)).len(), 1001);
    assert_eq!(RUNS_D.get() - before, 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(feature = "sqlite")]
spectrum!(spectrum_e, RUNS_E);

#[cfg(feature = "sqlite")]
#[test]
fn s02_corrupt_sqlite_rows_are_misses_with_a_warning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cache.db");
    let c = Cache::sqlite(&path).unwrap_or_else(|e| panic!("{e}"));
    with_cache(&c, || spectrum_e(3));
    let records = c.records().unwrap_or_default();
    assert_eq!(records.len(), 1);
    let before = RUNS_E.get();
    // Replace the stored value with garbage, through another connection: a decode failure is a
    // miss. (Damaged record rows are covered by the storage's own tests.)
    let values = fleche::storage::SqlDatabase::open(&fleche::storage::SqlTarget::File(path))
        .unwrap_or_else(|e| panic!("{e}"))
        .values();
    fleche::storage::ValueStorage::evict(&values, &records[0].result)
        .unwrap_or_else(|e| panic!("{e}"));
    fleche::storage::ValueStorage::save(&values, &records[0].result, b"\xc1garbage")
        .unwrap_or_else(|e| panic!("{e}"));
    let (r, warnings) = capture_warnings(|| with_cache(&c, || spectrum_e(3)));
    assert_eq!(r.len(), 3);
    assert_eq!(RUNS_E.get() - before, 1);
    assert!(warnings.contains("unreadable"), "{warnings}");
}

spectrum!(spectrum_v, RUNS_V);

/// Swapped entries are refused by every cache; a value re-sealed by someone who can write the
/// directory (a valid checksum over other bytes) is refused with `verify = "digest"` or signing.
#[test]
fn s01_swapped_and_resealed_values_are_misses() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = open(dir.path(), FileOptions::new());
    let before = RUNS_V.get();
    with_cache(&cache, || {
        spectrum_v(3);
        spectrum_v(4);
    });
    let value_of = |n: u32| {
        let key = with_cache(&cache, || spectrum_v::digest(n));
        let record = cache
            .record(&key)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("record"));
        let hex = record.result.to_hex();
        (
            record.result,
            dir.path().join("values").join(&hex[..2]).join(hex),
        )
    };
    let (_, three) = value_of(3);
    let (four_digest, four) = value_of(4);
    // A copied file is refused: it carries the other address.
    fs::copy(&three, &four).unwrap_or_else(|e| panic!("{e}"));
    let (r, warnings) = capture_warnings(|| with_cache(&cache, || spectrum_v(4)));
    assert_eq!(r.len(), 4, "the right result, recomputed");
    assert_eq!(RUNS_V.get(), before + 3);
    assert!(warnings.contains("the entry of"), "{warnings}");
    // Re-sealed for the right address with other bytes: only a digest check (or a signature)
    // can tell.
    let forged = fleche::storage::file::envelope::seal(
        &rmp_serde_bytes(&[9.0f64; 4]),
        &four_digest,
        None,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    fs::write(&four, forged).unwrap_or_else(|e| panic!("{e}"));
    let verifying = cache.verify_digest().unwrap_or_else(|e| panic!("{e}"));
    let (r, warnings) = capture_warnings(|| with_cache(&verifying, || spectrum_v(4)));
    assert_eq!(r, vec![0.0, 1.0, 2f64.sqrt(), 3f64.sqrt()]);
    assert!(warnings.contains("do not hash to its digest"), "{warnings}");
    assert_eq!(RUNS_V.get(), before + 4);
}

/// The MessagePack bytes of four floats, as fleche stores a `Vec<f64>` of four.
fn rmp_serde_bytes(v: &[f64]) -> Vec<u8> {
    assert_eq!(v.len(), 4);
    let mut out = vec![0x94];
    for x in v {
        out.push(0xcb);
        out.extend_from_slice(&x.to_be_bytes());
    }
    out
}
