//! Several processes on one file cache (S07) and a writer killed mid-write (S03). The processes
//! are the `fleche-stress` helper binary of this crate.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleche::storage::{FileOptions, FileValues, ValueStorage};
use fleche::{Cache, memoize, with_cache};

const STRESS: &str = env!("CARGO_BIN_EXE_fleche-stress");

/// The same identity as the helper's, so this process reads what the helpers wrote.
#[memoize(name = "stress.square")]
fn square(i: u64) -> u64 {
    i * i
}

#[memoize(name = "stress.block")]
fn block(i: u64) -> Vec<f64> {
    (0..512 * 1024)
        .map(|j| (i * 1_000_003 + j) as f64)
        .collect()
}

#[test]
fn s07_four_processes_on_one_file_cache() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let children: Vec<_> = (0..4)
        .map(|seed| {
            Command::new(STRESS)
                .args([
                    "sweep",
                    &dir.path().display().to_string(),
                    "200",
                    &seed.to_string(),
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {STRESS}: {e}"))
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cache = Cache::msgpack(dir.path(), FileOptions::new()).unwrap_or_else(|e| panic!("{e}"));
    let records = cache.records().unwrap_or_default();
    assert_eq!(records.len(), 200, "one record per call, no duplicates");
    with_cache(&cache, || {
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
