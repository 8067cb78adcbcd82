//! Caches and scoping at run time: K10 (failing caches), K13 (single-flight), C06 (void), F02
//! (reserved names), scope guards and carrying a scope into worker threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex, PoisonError};
use std::time::Duration;

use fleche::storage::{
    CallRecord, CallStorage, Digest, MemoryCalls, MemoryValues, StorageError, ValueStorage,
};
use fleche::{Cache, Error, memoize, try_with_cache, with_cache};
use rayon::prelude::*;

use crate::support::{Counter, capture_warnings};

/// Serializes the tests that read or set the process-wide sticky and default caches.
static GLOBAL: Mutex<()> = Mutex::new(());

fn global() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct FailingValues {
    fail_save: bool,
    garbage: bool,
    inner: MemoryValues,
}

impl ValueStorage for FailingValues {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        if self.garbage {
            return Ok(self.inner.load(digest)?.map(|_| vec![0xc1, 0xff, 0x00]));
        }
        self.inner.load(digest)
    }
    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        if self.fail_save {
            return Err(StorageError::Io {
                path: "/full/disk".into(),
                source: std::io::Error::other("no space left on device"),
            });
        }
        self.inner.save(digest, bytes)
    }
    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.inner.contains(digest)
    }
    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.inner.evict(digest)
    }
    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        self.inner.digests()
    }
}

#[derive(Debug, Default)]
struct FailingCalls {
    fail_save: bool,
    fail_load: bool,
    inner: MemoryCalls,
}

impl FailingCalls {
    fn rejected() -> StorageError {
        StorageError::Rejected {
            location: "injected".into(),
            operation: "save",
        }
    }
}

impl CallStorage for FailingCalls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        if self.fail_load {
            return Err(StorageError::Backend {
                location: "injected".into(),
                message: "connection reset".into(),
            });
        }
        self.inner.result_of(key)
    }
    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        self.inner.load(key)
    }
    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        if self.fail_save {
            return Err(Self::rejected());
        }
        self.inner.save(record)
    }
    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        self.inner.evict(key)
    }
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        self.inner.records()
    }
}

static K10_RUNS: Counter = Counter::new();

#[memoize]
fn k10(x: u64) -> Vec<u64> {
    K10_RUNS.hit();
    vec![x; 3]
}

#[test]
fn k10_failing_value_writes_degrade_to_uncached() {
    let calls = MemoryCalls::new();
    let cache = Cache::from_storages(
        "failing",
        FailingValues {
            fail_save: true,
            ..FailingValues::default()
        },
        calls.clone(),
    );
    let before = K10_RUNS.get();
    let (results, warnings) = capture_warnings(|| with_cache(&cache, || (k10(1), k10(1))));
    assert_eq!(results, (vec![1, 1, 1], vec![1, 1, 1]));
    assert_eq!(
        K10_RUNS.get() - before,
        2,
        "nothing was cached, so both calls ran"
    );
    assert!(warnings.contains("cannot store result"), "{warnings}");
    assert!(warnings.contains("no space left on device"), "{warnings}");
    assert!(
        calls.is_empty(),
        "no call record points at a value that was not written"
    );
}

#[test]
fn k10_failing_record_writes_degrade_to_uncached() {
    let cache = Cache::from_storages(
        "failing",
        MemoryValues::new(),
        FailingCalls {
            fail_save: true,
            ..FailingCalls::default()
        },
    );
    let (r, warnings) = capture_warnings(|| with_cache(&cache, || k10(2)));
    assert_eq!(r, vec![2, 2, 2]);
    assert!(warnings.contains("injected rejected save"), "{warnings}");
}

#[test]
fn k10_failing_lookups_degrade_to_uncached() {
    let cache = Cache::from_storages(
        "failing",
        MemoryValues::new(),
        FailingCalls {
            fail_load: true,
            ..FailingCalls::default()
        },
    );
    let (r, warnings) = capture_warnings(|| with_cache(&cache, || (k10(3), k10::contains(3))));
    assert_eq!(r, (vec![3, 3, 3], false));
    assert!(warnings.contains("cache lookup failed"), "{warnings}");
    assert!(warnings.contains("connection reset"), "{warnings}");
}

#[test]
fn k10_unreadable_values_are_misses() {
    let cache = Cache::from_storages(
        "garbage",
        FailingValues {
            garbage: true,
            ..FailingValues::default()
        },
        MemoryCalls::new(),
    );
    let before = K10_RUNS.get();
    let (r, warnings) = capture_warnings(|| with_cache(&cache, || (k10(4), k10(4), k10::load(4))));
    assert_eq!(r, (vec![4, 4, 4], vec![4, 4, 4], None));
    assert_eq!(K10_RUNS.get() - before, 2);
    assert!(warnings.contains("stored result unreadable"), "{warnings}");
}

static K13_RUNS: Counter = Counter::new();

#[memoize]
fn k13_slow(x: u64) -> u64 {
    K13_RUNS.hit();
    std::thread::sleep(Duration::from_millis(100));
    x * 7
}

#[test]
fn k13_concurrent_misses_compute_once() {
    let cache = Cache::memory();
    let barrier = Barrier::new(8);
    let results: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    with_cache(&cache, || k13_slow(6))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert_eq!(results, vec![42; 8]);
    assert_eq!(K13_RUNS.get(), 1);
}

static K13_FLAKY_RUNS: Counter = Counter::new();
static K13_FLAKY_FAILED: AtomicBool = AtomicBool::new(false);

#[memoize]
fn k13_flaky(x: u64) -> u64 {
    K13_FLAKY_RUNS.hit();
    std::thread::sleep(Duration::from_millis(50));
    if !K13_FLAKY_FAILED.swap(true, Ordering::SeqCst) {
        panic!("first leader fails");
    }
    x + 1
}

#[test]
fn k13_a_failed_leader_hands_over() {
    let cache = Cache::memory();
    let barrier = Barrier::new(6);
    let outcomes: Vec<Option<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    catch_unwind(AssertUnwindSafe(|| with_cache(&cache, || k13_flaky(1)))).ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 1);
    assert!(outcomes.iter().flatten().all(|&v| v == 2));
    assert_eq!(
        K13_FLAKY_RUNS.get(),
        2,
        "one failed run, then one successful run shared by all"
    );
}

#[memoize]
fn fib(n: u32) -> u128 {
    if n < 2 {
        u128::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn k13_recursion_does_not_deadlock() {
    let cache = Cache::memory();
    assert_eq!(with_cache(&cache, || fib(90)), 2_880_067_194_370_816_120);
    // From several threads at once, racing on the same sub-problems.
    let fresh = Cache::memory();
    let results: Vec<u128> = (0..4u32)
        .into_par_iter()
        .map(|i| with_cache(&fresh, || fib(60 + i)))
        .collect();
    assert_eq!(results[0], 1_548_008_755_920);
    assert_eq!(results[3], 6_557_470_319_842);
    assert!(with_cache(&fresh, || fib::contains(30)));
}

static C06_RUNS: Counter = Counter::new();

#[memoize]
fn c06(x: u64) -> u64 {
    C06_RUNS.hit();
    x
}

#[test]
fn c06_void_stores_nothing() {
    let void = Cache::void();
    with_cache(&void, || {
        c06(1);
        c06(1);
        assert!(!c06::contains(1));
        assert_eq!(c06::load(1), None);
    });
    assert_eq!(C06_RUNS.get(), 2);
    assert!(void.records().unwrap_or_default().is_empty());
    with_cache("void", || c06(1));
    assert_eq!(C06_RUNS.get(), 3);
}

static F02_RUNS: Counter = Counter::new();

#[memoize]
fn f02(x: u64) -> u64 {
    F02_RUNS.hit();
    x
}

#[test]
fn f02_reserved_names_work_without_a_file() {
    let _g = global();
    let memory = Cache::named("memory").ok();
    let again = Cache::named("memory").ok();
    assert!(
        matches!((&memory, &again), (Some(a), Some(b)) if a.same_as(b)),
        "one instance"
    );
    assert!(
        !Cache::memory().same_as(&Cache::memory()),
        "Cache::memory() is private"
    );
    with_cache("memory", || f02(10));
    with_cache("memory", || f02(10));
    assert_eq!(F02_RUNS.get(), 1);
    let default = Cache::named("default").ok();
    assert!(default.is_some_and(|d| d.same_as(&fleche::current_cache())));
    assert!(
        with_cache("default", || f02::contains(10)),
        "default is the memory cache here"
    );
    assert_eq!(
        Cache::named("void").map(|c| c.name().to_owned()).ok(),
        Some("void".into())
    );
}

#[test]
fn unknown_names_are_errors_listing_what_exists() {
    let err = try_with_cache("fast", || ()).err();
    assert!(matches!(&err, Some(Error::UnknownCache { name, .. }) if name == "fast"));
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("unknown cache `fast`"), "{text}");
    assert!(text.contains("memory, void, default"), "{text}");
    let panic = catch_unwind(|| with_cache("fast", || ())).err();
    let message = panic
        .and_then(|p| p.downcast::<String>().ok())
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("unknown cache `fast`"), "{message}");
}

#[memoize]
fn unwind_probe(x: u64) -> u64 {
    assert!(x != 0, "no zero");
    x
}

#[test]
fn a_cache_crosses_catch_unwind() {
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>(_: &T) {}
    let c = Cache::memory();
    unwind_safe(&c);
    // No AssertUnwindSafe: this is what test harnesses write.
    assert!(catch_unwind(|| with_cache(&c, || unwind_probe(0))).is_err());
    assert_eq!(
        catch_unwind(|| with_cache(&c, || unwind_probe(3))).ok(),
        Some(3)
    );
    assert_eq!(
        c.records().map(|r| r.len()).ok(),
        Some(1),
        "the panic stored nothing"
    );
    assert_eq!(with_cache(&c, || unwind_probe::load(3)), Some(3));
}

#[test]
fn scopes_nest_and_restore_even_on_panic() {
    let outer = Cache::memory();
    let inner = Cache::memory();
    with_cache(&outer, || {
        assert!(fleche::current_cache().same_as(&outer));
        with_cache(&inner, || assert!(fleche::current_cache().same_as(&inner)));
        assert!(fleche::current_cache().same_as(&outer));
        let r = catch_unwind(AssertUnwindSafe(|| {
            with_cache(&inner, || panic!("inside a scope"));
        }));
        assert!(r.is_err());
        assert!(
            fleche::current_cache().same_as(&outer),
            "restored after the panic"
        );
    });
}

#[test]
fn sticky_cache_applies_to_all_threads_until_dropped() {
    let _g = global();
    let sticky = Cache::memory();
    let scoped = Cache::memory();
    {
        let _guard = fleche::set_cache(&sticky).ok();
        assert!(fleche::current_cache().same_as(&sticky));
        let from_thread = std::thread::spawn(fleche::current_cache).join().ok();
        assert!(from_thread.is_some_and(|c| c.same_as(&sticky)));
        // A scope still wins over the sticky cache.
        with_cache(&scoped, || {
            assert!(fleche::current_cache().same_as(&scoped))
        });
    }
    assert!(
        !fleche::current_cache().same_as(&sticky),
        "the guard restored the default"
    );
    assert!(fleche::set_cache("nope").is_err());
}

#[memoize]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn scope_is_carried_into_rayon_and_scoped_threads() {
    let cache = Cache::memory();
    with_cache(&cache, || {
        let here = fleche::current_cache();
        let squares: Vec<u64> = (0..16u64)
            .into_par_iter()
            .map(|x| with_cache(&here, || square(x)))
            .collect();
        assert_eq!(squares[15], 225);
        std::thread::scope(|s| {
            s.spawn(|| with_cache(&here, || square(100)));
        });
    });
    assert_eq!(cache.records().map(|r| r.len()).ok(), Some(17));
    // Without carrying it, a new thread does not see the scope.
    let seen = with_cache(&cache, || {
        std::thread::spawn(fleche::current_cache).join().ok()
    });
    assert!(seen.is_some_and(|c| !c.same_as(&cache)));
}

#[test]
fn a_cache_from_a_toml_string_names_the_bad_key() {
    let err = Cache::from_toml_str("values.type = \"redis\"\ncalls.type = \"memory\"")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("<string>: `cache.values.type`: unknown storage type `redis`"),
        "{err}"
    );
    let ok = Cache::from_toml_str("template = \"memory\"\nmax_size = 2");
    assert!(ok.is_ok_and(|c| c.name() == "cache"));
}
