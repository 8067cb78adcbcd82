//! Cache kinds: read-only (C01), stacks (C02, C03), pools (C04), size limits (C05), overwrite
//! (C07) and transfer (C08).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use fleche::storage::{CallRecord, CallStorage, Digest, MemoryCalls, MemoryValues, StorageError};
use fleche::{Cache, Error, Fifo, Query, memoize, with_cache};

use crate::support::{Counter, capture_warnings};

/// One memoized function and run counter per test: tests run in parallel.
macro_rules! tracked {
    ($name:ident, $runs:ident) => {
        static $runs: Counter = Counter::new();

        #[memoize(name = "kinds.f")]
        fn $name(x: u64) -> u64 {
            $runs.hit();
            x * 10
        }
    };
}

fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

tracked!(c01, C01_RUNS);

#[test]
fn c01_read_only() {
    let base = Cache::memory();
    with_cache(&base, || c01(1));
    let ro = ok(base.read_only());
    let before = C01_RUNS.get();
    let (r, warnings) = capture_warnings(|| with_cache(&ro, || (c01(1), c01(2))));
    assert_eq!(r, (10, 20));
    assert_eq!(
        C01_RUNS.get() - before,
        1,
        "the entry written through the base loads; the miss runs"
    );
    assert!(
        warnings.is_empty(),
        "not saving is not a failure: {warnings}"
    );
    assert_eq!(
        ok(base.records()).len(),
        1,
        "nothing saved through the read-only view"
    );
    let key = with_cache(&ro, || c01::digest(1));
    let err = ro
        .evict(&key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("rejected evict"), "{err}");
    let into = ok(Cache::memory().read_only());
    let err = base
        .transfer(&into, &Query::new(), false)
        .err()
        .map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("rejected save"));
    assert!(ok(base.contains(&key)));
}

/// A calls storage that counts its saves.
#[derive(Debug, Default)]
struct CountingCalls {
    inner: MemoryCalls,
    saves: Arc<AtomicUsize>,
}

impl CallStorage for CountingCalls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        self.inner.result_of(key)
    }
    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        self.inner.load(key)
    }
    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(record)
    }
    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.inner.evict(key)
    }
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        self.inner.records()
    }
}

tracked!(c02, C02_RUNS);

#[test]
fn c02_stack_back_fills_the_first_layer_only() {
    let saves = Arc::new(AtomicUsize::new(0));
    let c1 = Cache::from_storages(
        "c1",
        MemoryValues::new(),
        CountingCalls {
            saves: Arc::clone(&saves),
            ..CountingCalls::default()
        },
    );
    let (c2, c3) = (Cache::memory(), Cache::memory());
    with_cache(&c3, || c02(1));
    let stack = ok(Cache::stack("stack", [c1.clone(), c2.clone(), c3.clone()]));
    let before = C02_RUNS.get();
    // 8 concurrent loads copy back once.
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                assert_eq!(with_cache(&stack, || c02(1)), 10);
            });
        }
    });
    assert_eq!(C02_RUNS.get(), before, "a hit in c3");
    assert_eq!(saves.load(Ordering::SeqCst), 1, "copied back once");
    assert!(with_cache(&c1, || c02::contains(1)));
    assert!(
        !with_cache(&c2, || c02::contains(1)),
        "only the first layer is back-filled"
    );
    // Saves go to the first layer.
    with_cache(&stack, || c02(2));
    assert!(with_cache(&c1, || c02::contains(2)));
    assert!(!with_cache(&c3, || c02::contains(2)));
    // Evict removes from every layer.
    assert!(with_cache(&stack, || c02::evict(1)));
    for c in [&c1, &c2, &c3] {
        assert!(!with_cache(c, || c02::contains(1)));
    }
    // Stacks don't nest.
    let nested = Cache::stack("nested", [stack.clone(), c2]);
    assert!(matches!(nested, Err(Error::Composition { .. })));
    assert!(matches!(
        Cache::stack("empty", []),
        Err(Error::Composition { .. })
    ));
}

tracked!(c03, C03_RUNS);

#[test]
fn c03_read_only_first_layer_still_hits() {
    let base = Cache::memory();
    let below = Cache::memory();
    with_cache(&below, || c03(5));
    let stack = ok(Cache::stack("stack", [ok(base.read_only()), below]));
    let before = C03_RUNS.get();
    let (r, warnings) = capture_warnings(|| with_cache(&stack, || c03(5)));
    assert_eq!(r, 50);
    assert_eq!(C03_RUNS.get(), before);
    assert!(warnings.contains("could not copy a hit back"), "{warnings}");
    assert!(ok(base.records()).is_empty());
}

tracked!(c04, C04_RUNS);

#[test]
fn c04_pool_reads_and_never_writes() {
    let (p1, p2) = (Cache::memory(), Cache::memory());
    with_cache(&p2, || c04(1));
    with_cache(&p1, || c04(2));
    with_cache(&p2, || c04(2));
    let pool = ok(Cache::pool("pool", [p1.clone(), p2.clone()]));
    let before = C04_RUNS.get();
    assert_eq!(with_cache(&pool, || c04(1)), 10);
    assert_eq!(C04_RUNS.get(), before, "found in the second member");
    assert!(!with_cache(&p1, || c04::contains(1)), "no back-fill");
    assert_eq!(with_cache(&pool, || c04(3)), 30);
    assert_eq!(C04_RUNS.get(), before + 1);
    assert!(!with_cache(&pool, || c04::contains(3)), "nothing written");
    let key = with_cache(&pool, || c04::digest(1));
    assert!(pool.evict(&key).is_err());
    assert!(
        Cache::memory()
            .transfer(&pool, &Query::new(), false)
            .is_err()
    );
    let keys: Vec<Digest> = ok(pool.records()).into_iter().map(|r| r.key).collect();
    assert_eq!(keys.len(), 2, "the union without duplicates: {keys:?}");
}

tracked!(c05, C05_RUNS);

#[test]
fn c05_max_size() {
    let limited = ok(Cache::memory().max_size(3));
    with_cache(&limited, || {
        for x in 0..5 {
            c05(x);
        }
    });
    assert_eq!(ok(limited.records()).len(), 3);
    // The most recent survive.
    assert!(with_cache(&limited, || c05::contains(4)
        && c05::contains(3)
        && !c05::contains(0)));

    // Records already stored count.
    let base = Cache::memory();
    with_cache(&base, || {
        c05(10);
        c05(11);
    });
    let view = ok(base.max_size(3));
    with_cache(&view, || {
        c05(12);
        c05(13);
    });
    assert_eq!(ok(base.records()).len(), 3);
    assert!(
        !with_cache(&base, || c05::contains(10)),
        "the oldest went first"
    );

    // Least recently used, not least recently saved.
    let lru = ok(Cache::memory().max_size(2));
    with_cache(&lru, || {
        c05(20);
        c05(21);
        c05(20);
        c05(22);
    });
    assert!(with_cache(&lru, || c05::contains(20) && !c05::contains(21)));
    let fifo = ok(Cache::memory().max_size_with(2, Fifo::new()));
    with_cache(&fifo, || {
        c05(30);
        c05(31);
        c05(30);
        c05(32);
    });
    assert!(with_cache(&fifo, || !c05::contains(30) && c05::contains(31)));

    // Under 4 threads x 10 saves.
    let shared = ok(Cache::memory().max_size(3));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let shared = &shared;
            s.spawn(move || {
                with_cache(shared, || {
                    for i in 0..10 {
                        c05(100 + t * 10 + i);
                    }
                })
            });
        }
    });
    assert_eq!(ok(shared.records()).len(), 3);
}

tracked!(c07, C07_RUNS);

#[test]
fn c07_overwrite_keeps_one_record_with_the_newest_metadata() {
    let c = Cache::memory();
    with_cache(&c, || c07(1));
    let first = ok(c.records())[0].clone();
    with_cache(&c, || c07::rerun(1));
    let records = ok(c.records());
    assert_eq!(records.len(), 1);
    let start = |r: &CallRecord| fleche::Runtime::from_record(r).map(|rt| rt.start);
    assert!(start(&records[0]) > start(&first));
}

tracked!(c08, C08_RUNS);

#[test]
fn c08_transfer() {
    let from = Cache::memory();
    let to = Cache::memory();
    with_cache(&from, || {
        for x in 0..4 {
            c08(x);
        }
    });
    with_cache(&to, || c08(0));
    let before = ok(to.record(&with_cache(&to, || c08::digest(0))));

    let all = c08::query();
    let t = ok(from.transfer(&to, &all, false));
    assert_eq!(
        (t.copied.len(), t.skipped.len()),
        (3, 1),
        "existing keys are skipped"
    );
    assert_eq!(ok(to.record(&with_cache(&to, || c08::digest(0)))), before);
    let t2 = ok(from.transfer(&to, &all, true));
    assert_eq!(t2.copied.len(), 4, "overwrite copies them all");

    // Only matching records; pop removes only what was transferred.
    let other = Cache::memory();
    let one = ok(from.transfer(&other, &c08::query().arg("x", 2u64), false));
    assert_eq!(one.copied.len(), 1);
    assert_eq!(ok(from.pop(&one)), 1);
    let left: Vec<u64> = ok(from.records())
        .iter()
        .filter_map(|r| r.argument("x").and_then(fleche::Value::as_i128))
        .map(|x| x as u64)
        .collect();
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&2));
    let before = C08_RUNS.get();
    assert_eq!(with_cache(&other, || c08(2)), 20);
    assert_eq!(C08_RUNS.get(), before, "the value came along");

    // Concurrent transfers are safe.
    let dest = Cache::memory();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| ok(from.transfer(&dest, &Query::new(), false)));
        }
    });
    assert_eq!(ok(dest.records()).len(), 3);
}

tracked!(c08_race, C08_RACE_RUNS);

/// Concurrent transfers into one destination, each through its own handle (as separate processes
/// would open it): every key is reported copied by exactly one of them.
#[test]
fn c08_concurrent_transfers_copy_each_key_once() {
    let source = Cache::memory();
    with_cache(&source, || {
        for x in 0..40 {
            c08_race(x);
        }
    });
    let mut backends = vec!["memory", "msgpack"];
    if cfg!(feature = "sqlite") {
        backends.push("sqlite");
    }
    if cfg!(feature = "hdf5") {
        backends.push("hdf5");
    }
    for backend in backends {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let shared = Cache::memory();
        let handle = || match backend {
            "memory" => shared.clone(),
            #[cfg(feature = "sqlite")]
            "sqlite" => Cache::sqlite(dir.path().join("c.db")).unwrap_or_else(|e| panic!("{e}")),
            _ => Cache::msgpack(dir.path(), fleche::storage::FileOptions::new())
                .unwrap_or_else(|e| panic!("{e}")),
        };
        let start = Barrier::new(8);
        let copied: Vec<Vec<Digest>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let to = handle();
                    let (source, start) = (&source, &start);
                    s.spawn(move || {
                        start.wait();
                        source
                            .transfer(&to, &Query::new(), false)
                            .unwrap_or_else(|e| panic!("{e}"))
                            .copied
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| panic!("a transfer panicked")))
                .collect()
        });
        let mut all: Vec<Digest> = copied.into_iter().flatten().collect();
        assert_eq!(all.len(), 40, "{backend}: each key copied once in all");
        all.sort_by_key(Digest::to_hex);
        all.dedup();
        assert_eq!(all.len(), 40, "{backend}: no key copied twice");
        assert_eq!(handle().records().map(|r| r.len()).ok(), Some(40));
    }
}
