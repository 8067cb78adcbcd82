//! Destructuring (S05) and garbage collection (C09), on every value backend.

use fleche::storage::FileOptions;
use fleche::{Cache, memoize, with_cache};

use crate::support::Counter;

/// Numeric sequences are single blocks (scalars, for destructuring), so the shared
/// sub-collections here are of strings, and the floats ride along as blocks.
type Nested = (Vec<Vec<String>>, Vec<String>, Vec<f64>, u32);

/// One memoized function and run counter per test: tests run in parallel.
macro_rules! nested {
    ($name:ident, $runs:ident) => {
        static $runs: Counter = Counter::new();

        #[memoize(name = "destructuring.nested")]
        fn $name(n: u32) -> Nested {
            $runs.hit();
            let shared = vec!["x".to_owned(), "y".into(), "z".into()];
            (
                vec![shared, vec![format!("{n}"); 2], vec![]],
                vec!["a".into(), format!("n{n}")],
                vec![1.5, f64::from(n)],
                n,
            )
        }
    };
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, Cache)> {
    let ok = |r: Result<Cache, fleche::Error>| r.unwrap_or_else(|e| panic!("{e}"));
    #[allow(unused_mut)]
    let mut backends = vec![
        ("memory", Cache::memory()),
        (
            "msgpack",
            ok(Cache::msgpack(dir.join("files"), FileOptions::new())),
        ),
    ];
    #[cfg(feature = "sqlite")]
    backends.push(("sql", ok(Cache::sqlite(dir.join("cache.db")))));
    backends
}

nested!(nested_a, RUNS_A);

#[test]
fn s05_every_depth_reads_what_every_depth_wrote() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, base) in backends(dir.path()) {
        for write in 0..5usize {
            let writer = base
                .remaining_depth(write)
                .unwrap_or_else(|e| panic!("{e}"));
            let n = u32::try_from(write).unwrap_or(0) + 100 * u32::from(name.len() as u8);
            let expected = with_cache(&writer, || nested_a(n));
            for read in 0..5usize {
                let reader = base.remaining_depth(read).unwrap_or_else(|e| panic!("{e}"));
                let before = RUNS_A.get();
                let got = with_cache(&reader, || nested_a(n));
                assert_eq!(got, expected, "{name}: written at {write}, read at {read}");
                assert_eq!(RUNS_A.get(), before, "{name}: a hit at depth {read}");
            }
            // And without any depth set.
            assert_eq!(with_cache(&base, || nested_a::load(n)), Some(expected));
        }
    }
}

nested!(nested_b, RUNS_B);

#[test]
fn s05_shared_sub_collections_are_stored_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, base) in backends(dir.path()) {
        let c = base.remaining_depth(1).unwrap_or_else(|e| panic!("{e}"));
        with_cache(&c, || {
            nested_b(1);
        });
        let after_one = c.values_count();
        with_cache(&c, || {
            nested_b(2);
        });
        let added = c.values_count() - after_one;
        // The second result adds its root, its own outer vector and the parts that differ
        // (`["2", "2"]` and `["a", "n2"]`), but not `["x", "y", "z"]` nor `[]`; the block of
        // floats is a scalar and stays in the root.
        assert_eq!(added, 4, "{name}: {added} new entries");
    }
}

nested!(nested_c, RUNS_C);

#[test]
fn c09_gc_removes_unreferenced_values_only() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, base) in backends(dir.path()) {
        let c = base.remaining_depth(0).unwrap_or_else(|e| panic!("{e}"));
        with_cache(&c, || {
            nested_c(7);
            nested_c(8);
        });
        let before = c.values_count();
        assert_eq!(
            c.gc().unwrap_or_else(|e| panic!("{e}")),
            0,
            "{name}: everything is referenced"
        );
        assert!(with_cache(&c, || nested_c::evict(7)));
        let removed = c.gc().unwrap_or_else(|e| panic!("{e}"));
        assert!(removed > 0, "{name}");
        assert_eq!(c.values_count(), before - removed);
        let runs = RUNS_C.get();
        assert_eq!(
            with_cache(&c, || nested_c::load(8)).map(|v| v.3),
            Some(8),
            "{name}: kept"
        );
        assert_eq!(RUNS_C.get(), runs);
        assert!(
            c.read_only().is_ok_and(|ro| ro.gc().is_err()),
            "{name}: read-only rejects gc"
        );
    }
}

trait ValuesCount {
    fn values_count(&self) -> usize;
}

impl ValuesCount for Cache {
    /// How many entries the values storage holds.
    fn values_count(&self) -> usize {
        self.value_digests()
            .map(|d| d.len())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
