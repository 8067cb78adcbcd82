//! Several processes on one file cache and on one SQLite cache (S07), and a writer killed
//! mid-write (S03). The processes
//! are the `fleche-stress` helper binary of this crate.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleche::storage::{FileOptions, FileValues, ValueStorage};
use fleche::{Cache, with_cache};
// The helper's own functions, so this process reads what the helpers wrote.
use fleche_tests::stress::{block, square};

use crate::support::{STRESS, sweep_in_processes};

#[test]
fn s07_four_processes_on_one_file_cache() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    sweep_in_processes("sweep", dir.path(), 200, 4);
    let cache = Cache::msgpack(dir.path(), FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    check_sweep(&cache);
}

#[cfg(feature = "sqlite")]
#[test]
fn s07_four_processes_on_one_sqlite_cache() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("cache.db");
    sweep_in_processes("sweep-sql", &db, 200, 4);
    let cache = Cache::sqlite(&db).unwrap_or_else(|e| panic!("{e}"));
    check_sweep(&cache);
}

/// No errors, every entry readable by this process, no duplicate records.
fn check_sweep(cache: &Cache) {
    let records = cache.records().unwrap_or_default();
    assert_eq!(records.len(), 200, "one record per call, no duplicates");
    with_cache(cache, || {
        for i in 0..200 {
            assert_eq!(square::load(i), Some(i * i), "entry {i} readable");
        }
    });
}

#[test]
fn s03_a_killed_writer_leaves_no_partial_entry() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(STRESS)
        .args(["write-forever", &dir.path().display().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {STRESS}: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(line.trim(), "ready");
    // Let it write a few large entries, then SIGKILL it, most likely mid-write.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(400) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    child.wait().unwrap_or_else(|e| panic!("{e}"));

    let cache = Cache::msgpack(dir.path(), FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    // The entry written before the kill is intact.
    assert_eq!(with_cache(&cache, || block::load(0)), Some(block(0)));
    // Every visible entry is complete.
    let values = FileValues::open(dir.path().join("values"), FileOptions::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let digests = values.digests().unwrap_or_default();
    assert!(!digests.is_empty());
    for d in &digests {
        assert!(values.load(d).is_ok(), "value {d} is readable");
    }
    for r in cache.records().unwrap_or_default() {
        assert!(
            values.contains(&r.result).unwrap_or(false),
            "record {} points at a stored value",
            r.key
        );
    }
}
