//! Queries over 100 000 stored calls of one function with three arguments (`seed`, `steps`,
//! `label`): count and fetch by one argument on SQLite (pushed down to SQL on the indexed
//! `arguments` table) and on msgpack call files (read and filtered while scanning, on every
//! core), with a raw listing of the call files' directory as the scan's floor.
//!
//! Run with `cargo bench -p fleche --bench query`. Building the two caches takes a while before
//! the first row.

// A benchmark whose setup fails has nothing to measure: it stops.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::LazyLock;

use fleche::storage::{
    CallRecord, CallStorage, Digest, FileCalls, FileOptions, SqlDatabase, SqlTarget, Value,
};
use fleche::{Cache, Query};

fn main() {
    divan::main();
}

const CALLS: u64 = 100_000;

/// The seed every "by one argument" row looks for: one record.
const SEED: u64 = 42_424;

struct Caches {
    _dir: tempfile::TempDir,
    sqlite: Cache,
    msgpack: Cache,
    msgpack_calls: PathBuf,
}

fn record(i: u64) -> CallRecord {
    let key = Digest::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes());
    let result = Digest::from_bytes(*blake3::hash(&(i % 1000).to_le_bytes()).as_bytes());
    let mut r = CallRecord::new(key, "bench.sim", result);
    r.arguments = vec![
        ("seed".into(), Value::Int(i.into())),
        ("steps".into(), Value::Int(((i % 10) * 100).into())),
        ("label".into(), Value::Str(format!("run{}", i % 100))),
    ];
    let start = 1_700_000_000.0 + i as f64;
    r.metadata.insert(
        "runtime".into(),
        Value::Struct(vec![
            ("start".into(), Value::Float(start)),
            ("stop".into(), Value::Float(start + 0.5)),
            ("wall_time".into(), Value::Float(0.5)),
        ]),
    );
    r
}

static CACHES: LazyLock<Caches> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let db = dir.path().join("calls.db");
    let root = dir.path().join("msgpack");
    let sql = SqlDatabase::open(&SqlTarget::File(db.clone()))
        .unwrap_or_else(|e| panic!("{e}"))
        .calls();
    let files =
        FileCalls::open(root.join("calls"), FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..CALLS {
        let r = record(i);
        sql.save(r.clone()).unwrap_or_else(|e| panic!("{e}"));
        files.save(r).unwrap_or_else(|e| panic!("{e}"));
    }
    let sqlite = Cache::sqlite(&db).unwrap_or_else(|e| panic!("{e}"));
    let msgpack = Cache::msgpack(&root, FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    // Both answer the same before anything is measured.
    for c in [&sqlite, &msgpack] {
        assert_eq!(by_seed(c).count().unwrap_or_else(|e| panic!("{e}")), 1);
    }
    Caches {
        _dir: dir,
        sqlite,
        msgpack,
        msgpack_calls: root.join("calls"),
    }
});

fn by_seed(c: &Cache) -> Query {
    c.query().function("bench.sim").arg("seed", SEED)
}

mod sqlite {
    use super::*;

    /// `count()` of the calls with one argument value (one match).
    #[divan::bench(sample_count = 50)]
    fn count_by_argument() -> usize {
        by_seed(&CACHES.sqlite)
            .count()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `records()` of the calls with one argument value (one match), decoded and checked.
    #[divan::bench(sample_count = 50)]
    fn fetch_by_argument() -> usize {
        by_seed(&CACHES.sqlite)
            .records()
            .unwrap_or_else(|e| panic!("{e}"))
            .len()
    }

    /// `count()` of 10 000 matches (`steps = 300`), in SQL.
    #[divan::bench(sample_count = 20)]
    fn count_tenth() -> usize {
        CACHES
            .sqlite
            .query()
            .arg("steps", 300u64)
            .count()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The ten newest of 10 000 matches.
    #[divan::bench(sample_count = 20)]
    fn newest_ten_of_a_tenth() -> usize {
        let q = CACHES
            .sqlite
            .query()
            .arg("steps", 300u64)
            .newest_first()
            .take(10);
        q.records().unwrap_or_else(|e| panic!("{e}")).len()
    }
}

mod msgpack {
    use super::*;

    /// `count()` of the calls with one argument value: every call file read and filtered.
    #[divan::bench(sample_count = 5)]
    fn count_by_argument() -> usize {
        by_seed(&CACHES.msgpack)
            .count()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `records()` of the calls with one argument value.
    #[divan::bench(sample_count = 5)]
    fn fetch_by_argument() -> usize {
        by_seed(&CACHES.msgpack)
            .records()
            .unwrap_or_else(|e| panic!("{e}"))
            .len()
    }

    /// The floor of any scan: listing the 100 000 call files (no reading).
    #[divan::bench(sample_count = 5)]
    fn floor_list_files() -> usize {
        walk(&CACHES.msgpack_calls)
    }

    /// The floor with reading: every call file read into memory, on every core.
    #[divan::bench(sample_count = 5)]
    fn floor_read_files() -> usize {
        let mut paths = Vec::new();
        collect(&CACHES.msgpack_calls, &mut paths);
        use rayon::prelude::*;
        paths
            .par_iter()
            .map(|p| std::fs::read(p).map_or(0, |b| b.len()))
            .sum()
    }

    fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                collect(&p, out);
            } else {
                out.push(p);
            }
        }
    }

    fn walk(dir: &std::path::Path) -> usize {
        let mut paths = Vec::new();
        collect(dir, &mut paths);
        black_box(paths.len())
    }
}
