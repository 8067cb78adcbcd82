//! `#[memoize]` behaviour: K01, K04–K09, K12, K14.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use fleche::{Cache, Key, KeyHasher, Runtime, memoize, with_cache};
use serde::{Deserialize, Serialize};

use crate::support::Counter;

#[memoize(name = "golden.call", version = 1)]
fn golden(a: u64, b: &str) -> u64 {
    a + b.len() as u64
}

/// The digest of a fixed call, pinned among the golden vectors (K03).
pub(crate) fn golden_call_digest() -> String {
    golden::digest(7, "x").to_string()
}

static K01_RUNS: Counter = Counter::new();

#[memoize]
fn k01(x: u64) -> u64 {
    K01_RUNS.hit();
    x * 10
}

#[test]
fn k01_basic_hit() {
    with_cache(Cache::memory(), || {
        assert_eq!(k01(2), 20);
        assert_eq!(k01(2), 20);
        assert_eq!(K01_RUNS.get(), 1);
        assert!(k01::contains(2));
        assert!(!k01::contains(3));
    });
}

#[test]
fn k01_record_holds_name_arguments_and_runtime() {
    let c = Cache::memory();
    with_cache(&c, || golden(1, "ab"));
    let records = c.records().unwrap_or_default();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.function, "golden.call");
    assert_eq!(r.version.as_deref(), Some("1"));
    assert_eq!(r.argument("a"), Some(&fleche::Value::Int(1)));
    assert_eq!(r.argument("b"), Some(&fleche::Value::Str("ab".into())));
    assert_eq!(r.key, with_cache(&c, || golden::digest(1, "ab")));
    let rt = Runtime::from_record(r).map(|rt| rt.stop >= rt.start);
    assert_eq!(rt, Some(true));
}

static K04_RUNS: Counter = Counter::new();

mod k04_v1 {
    #[fleche::memoize(name = "k04", version = 1)]
    pub(crate) fn f(x: u64) -> u64 {
        super::K04_RUNS.hit();
        x + 1
    }
}

mod k04_v2 {
    #[fleche::memoize(name = "k04", version = 2)]
    pub(crate) fn f(x: u64) -> u64 {
        super::K04_RUNS.hit();
        x + 1
    }
}

#[test]
fn k04_version_invalidates() {
    with_cache(Cache::memory(), || {
        assert_ne!(k04_v1::f::digest(1), k04_v2::f::digest(1));
        k04_v1::f(1);
        k04_v1::f(1);
        k04_v2::f(1);
        assert_eq!(K04_RUNS.get(), 2);
    });
}

static K05_RUNS: Counter = Counter::new();

mod k05_a {
    #[fleche::memoize]
    pub(crate) fn same(x: u64) -> u64 {
        x
    }
    #[fleche::memoize(name = "k05.shared")]
    pub(crate) fn named(x: u64) -> u64 {
        super::K05_RUNS.hit();
        x
    }
}

mod k05_b {
    #[fleche::memoize]
    pub(crate) fn same(x: u64) -> u64 {
        x
    }
    #[fleche::memoize(name = "k05.shared")]
    pub(crate) fn named(x: u64) -> u64 {
        super::K05_RUNS.hit();
        x
    }
}

#[test]
fn k05_name_is_in_the_key() {
    with_cache(Cache::memory(), || {
        assert_ne!(k05_a::same::digest(1), k05_b::same::digest(1));
        assert_eq!(k05_a::named::digest(1), k05_b::named::digest(1));
        k05_a::named(4);
        k05_b::named(4);
        assert_eq!(
            K05_RUNS.get(),
            1,
            "the explicit name survives moving the function"
        );
    });
    let c = Cache::memory();
    with_cache(&c, || k05_a::same(1));
    let names: Vec<String> = c
        .records()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.function)
        .collect();
    assert_eq!(names, vec![format!("{}::k05_a::same", module_path!())]);
}

mod k06_a {
    #[fleche::memoize(name = "k06", hash_code)]
    pub(crate) fn f(x: u64) -> u64 {
        x + 1
    }
}

mod k06_b {
    #[fleche::memoize(name = "k06", hash_code)]
    pub(crate) fn f(x: u64) -> u64 {
        x + 2
    }
}

mod k06_reformatted {
    #[fleche::memoize(name = "k06", hash_code)]
    #[rustfmt::skip]
    pub(crate) fn f( x : u64 )
        -> u64
    {
        // A comment is not code.
        x+1
    }
}

mod k06_plain_a {
    #[fleche::memoize(name = "k06.plain")]
    pub(crate) fn f(x: u64) -> u64 {
        x + 1
    }
}

mod k06_plain_b {
    #[fleche::memoize(name = "k06.plain")]
    pub(crate) fn f(x: u64) -> u64 {
        x + 2
    }
}

#[test]
fn k06_hash_code() {
    assert_ne!(k06_a::f::digest(1), k06_b::f::digest(1));
    assert_eq!(k06_plain_a::f::digest(1), k06_plain_b::f::digest(1));
    assert_eq!(k06_a::f::digest(1), k06_reformatted::f::digest(1));
    let c = Cache::memory();
    with_cache(&c, || k06_a::f(1));
    let code = c.records().unwrap_or_default().pop().and_then(|r| r.code);
    assert!(code.is_some(), "hash_code records the code digest");
}

static K07_RUNS: Counter = Counter::new();

/// Needs no `Key` impl: it is ignored.
struct Progress;

#[memoize]
fn k07(
    a: u64,
    #[ignore] b: u64,
    #[ignore] _progress: &Progress,
    #[ignore] log: &mut Vec<u64>,
) -> u64 {
    K07_RUNS.hit();
    log.push(b);
    a
}

#[test]
fn k07_ignored_arguments() {
    let c = Cache::memory();
    let mut log = Vec::new();
    with_cache(&c, || {
        assert_eq!(k07(1, 2, &Progress, &mut log), 1);
        assert_eq!(k07(1, 3, &Progress, &mut log), 1);
    });
    assert_eq!(K07_RUNS.get(), 1);
    assert_eq!(log, vec![2]);
    let records = c.records().unwrap_or_default();
    assert_eq!(records.len(), 1);
    let names: Vec<&str> = records[0]
        .arguments
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, vec!["a"]);
}

static K08_RUNS: Counter = Counter::new();

#[memoize]
fn k08_result(x: i64) -> Result<i64, String> {
    K08_RUNS.hit();
    if x < 0 {
        Err(format!("{x} is negative"))
    } else {
        Ok(x)
    }
}

#[memoize]
fn k08_io(x: u8) -> std::io::Result<u8> {
    K08_RUNS.hit();
    if x == 0 {
        Err(std::io::Error::other("zero"))
    } else {
        Ok(x)
    }
}

/// An error type with no serde impls: only `Ok` values are stored.
#[derive(Debug, PartialEq)]
struct NotSerde;

#[memoize]
fn k08_plain_err(x: u8) -> Result<u8, NotSerde> {
    K08_RUNS.hit();
    if x == 0 { Err(NotSerde) } else { Ok(x) }
}

static K08_PANICS: Counter = Counter::new();

#[memoize]
fn k08_panics(x: u8) -> u8 {
    K08_PANICS.hit();
    if x == 0 {
        panic!("boom");
    }
    x
}

static K08_NONE: Counter = Counter::new();

#[memoize]
fn k08_option(x: u8) -> Option<u8> {
    K08_NONE.hit();
    (x > 0).then_some(x)
}

#[test]
fn k08_errors_and_panics_are_not_cached() {
    let c = Cache::memory();
    with_cache(&c, || {
        assert!(k08_result(-1).is_err());
        assert!(k08_result(-1).is_err());
        assert_eq!(K08_RUNS.get(), 2);
        assert!(!k08_result::contains(-1));
        assert_eq!(k08_result(5), Ok(5));
        assert_eq!(k08_result(5), Ok(5));
        assert_eq!(K08_RUNS.get(), 3);
        assert_eq!(k08_result::load(5), Some(5));

        assert!(k08_io(0).is_err());
        assert_eq!(k08_io(1).ok(), Some(1));
        assert_eq!(k08_io(1).ok(), Some(1));
        assert_eq!(K08_RUNS.get(), 5);

        assert_eq!(k08_plain_err(0), Err(NotSerde));
        assert_eq!(k08_plain_err(0), Err(NotSerde));
        assert_eq!(k08_plain_err(2), Ok(2));
        assert_eq!(k08_plain_err(2), Ok(2));
        assert_eq!(K08_RUNS.get(), 8);
    });
    assert_eq!(
        c.records().unwrap_or_default().len(),
        3,
        "only the Ok calls are stored"
    );

    let p = Cache::memory();
    for _ in 0..2 {
        let r = catch_unwind(AssertUnwindSafe(|| with_cache(&p, || k08_panics(0))));
        assert!(r.is_err());
    }
    assert_eq!(K08_PANICS.get(), 2);
    assert!(p.records().unwrap_or_default().is_empty());
}

#[test]
fn k08_none_is_cached() {
    with_cache(Cache::memory(), || {
        assert_eq!(k08_option(0), None);
        assert_eq!(k08_option(0), None);
        assert_eq!(K08_NONE.get(), 1);
        assert!(k08_option::contains(0));
    });
}

/// A key whose value can change behind a shared reference.
struct Sneaky(RefCell<u64>);

impl Key for Sneaky {
    fn key(&self, h: &mut KeyHasher) {
        self.0.borrow().key(h);
    }
    fn to_value(&self) -> fleche::Value {
        self.0.borrow().to_value()
    }
}

#[memoize]
fn k09(s: &Sneaky) -> u64 {
    let before = *s.0.borrow();
    *s.0.borrow_mut() = 999;
    before
}

#[test]
fn k09_inputs_are_sealed_before_the_body() {
    let c = Cache::memory();
    let s = Sneaky(RefCell::new(1));
    with_cache(&c, || assert_eq!(k09(&s), 1));
    let records = c.records().unwrap_or_default();
    assert_eq!(records[0].argument("s"), Some(&fleche::Value::Int(1)));
    with_cache(&c, || {
        assert!(k09::contains(&Sneaky(RefCell::new(1))));
        assert!(!k09::contains(&Sneaky(RefCell::new(999))));
    });
}

#[derive(Key, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Circle {
    r: u64,
}

static AREA_RUNS: Counter = Counter::new();

impl Circle {
    #[memoize]
    fn area(&self) -> u64 {
        AREA_RUNS.hit();
        3 * self.r * self.r
    }

    #[memoize]
    fn scaled(self, by: u64) -> Self {
        Circle { r: self.r * by }
    }

    #[memoize]
    fn unit() -> Self {
        Circle { r: 1 }
    }
}

#[derive(Key)]
struct Square {
    r: u64,
}

impl Square {
    #[memoize]
    fn area(&self) -> u64 {
        self.r * self.r
    }
}

#[test]
fn k12_methods() {
    let c = Cache::memory();
    with_cache(&c, || {
        let a = Circle { r: 2 };
        assert_eq!(a.area(), 12);
        assert_eq!(a.area(), 12);
        assert_eq!(Circle { r: 3 }.area(), 27);
        assert_eq!(AREA_RUNS.get(), 2, "self is in the key");
        assert_eq!(a.scaled(2), Circle { r: 4 });
        assert_eq!(Circle::unit(), Circle { r: 1 });
        assert!(a.area_call().contains());
        assert_eq!(a.area_call().load(), Some(12));
        assert!(a.scaled_call(2).contains());
        assert!(!a.scaled_call(3).contains());
        assert!(Circle::unit_call().contains());
        // Same method name and same field values on another type: another key.
        assert_ne!(a.area_call().digest(), Square { r: 2 }.area_call().digest());
        assert_eq!(Square { r: 2 }.area(), 4);
        assert!(a.area_call().evict());
        assert!(!a.area_call().contains());
    });
}

#[memoize]
fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

#[memoize]
fn sum_generic<T>(xs: &[T]) -> u64
where
    T: Key + Copy + Into<u64>,
{
    xs.iter().map(|&x| x.into()).sum()
}

#[memoize]
fn repeat<const N: usize>(x: u8) -> Vec<u8> {
    vec![x; N]
}

#[test]
fn k12_generic_functions() {
    with_cache(Cache::memory(), || {
        assert_eq!(size_of::<u8>(), 1);
        assert_eq!(size_of::<u64>(), 8);
        assert_eq!(size_of::<u8>(), 1);
        assert_ne!(size_of::digest::<u8>(), size_of::digest::<u64>());
        assert!(size_of::contains::<u64>());
        assert_eq!(sum_generic(&[1u8, 2]), 3);
        assert_eq!(sum_generic(&[1u32, 2]), 3);
        assert_eq!(repeat::<2>(7), vec![7, 7]);
        assert_eq!(repeat::<3>(7), vec![7, 7, 7]);
        assert_ne!(repeat::digest::<2>(7), repeat::digest::<3>(7));
    });
}

static ASYNC_RUNS: Counter = Counter::new();

#[memoize]
async fn fetch(x: u64) -> Result<u64, String> {
    ASYNC_RUNS.hit();
    let y = async { x * 3 }.await;
    if y > 100 {
        return Err("too big".into());
    }
    let checked: u64 = y.checked_add(0).ok_or("overflow")?;
    Ok(checked)
}

#[test]
fn k12_async_fn() {
    with_cache(Cache::memory(), || {
        assert_eq!(pollster::block_on(fetch(2)), Ok(6));
        assert_eq!(pollster::block_on(fetch(2)), Ok(6));
        assert_eq!(ASYNC_RUNS.get(), 1);
        assert!(pollster::block_on(fetch(50)).is_err());
        assert!(pollster::block_on(fetch(50)).is_err());
        assert_eq!(ASYNC_RUNS.get(), 3);
        assert_eq!(pollster::block_on(fetch::uncached(2)), Ok(6));
        assert_eq!(ASYNC_RUNS.get(), 4);
        assert_eq!(fetch::load(2), Some(6));
    });
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn k12_async_futures_are_send() {
    let f = fetch(1);
    assert_send(&f);
}

#[memoize]
fn impl_arg(x: impl Key + AsRef<str>) -> usize {
    x.as_ref().len()
}

#[memoize]
fn patterns((a, b): (u8, u8), _: u8, [c, d]: [u8; 2]) -> u16 {
    u16::from(a) + u16::from(b) + u16::from(c) + u16::from(d)
}

#[memoize]
fn lifetimes<'a, 'b>(xs: &'a [u64], label: &'b str) -> String
where
    'b: 'a,
{
    format!("{label}:{}", xs.len())
}

#[memoize]
fn mutable_binding(mut x: u64) -> u64 {
    x += 1;
    x
}

#[memoize]
fn maps(m: &HashMap<String, u32>) -> u32 {
    m.values().sum()
}

#[test]
fn k12_impl_trait_patterns_lifetimes() {
    let c = Cache::memory();
    with_cache(&c, || {
        assert_eq!(impl_arg("abc"), 3);
        assert_eq!(impl_arg(String::from("abc")), 3);
        assert_eq!(patterns((1, 2), 0, [3, 4]), 10);
        assert!(patterns::contains((1, 2), 0, [3, 4]));
        assert!(
            !patterns::contains((1, 2), 1, [3, 4]),
            "`_` parameters are still inputs"
        );
        assert_eq!(lifetimes(&[1, 2], "n"), "n:2");
        assert_eq!(mutable_binding(1), 2);
        assert_eq!(mutable_binding(1), 2);
        let m: HashMap<String, u32> = [("a".to_owned(), 1), ("b".to_owned(), 2)]
            .into_iter()
            .collect();
        assert_eq!(maps(&m), 3);
        let rebuilt: HashMap<String, u32> = [("b".to_owned(), 2), ("a".to_owned(), 1)]
            .into_iter()
            .collect();
        assert!(maps::contains(&rebuilt));
    });
    let pattern_record = c
        .records()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.function.ends_with("::patterns"));
    let names: Vec<String> = pattern_record
        .map(|r| r.arguments.into_iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["(a, b)", "_1", "[c, d]"]);
}

static K14_RUNS: Counter = Counter::new();

#[memoize]
fn k14(x: u64) -> u64 {
    K14_RUNS.hit();
    x + 100
}

#[test]
fn k14_helpers() {
    let c = Cache::memory();
    with_cache(&c, || {
        assert!(!k14::contains(1));
        assert_eq!(k14::load(1), None);
        assert_eq!(k14(1), 101);
        assert_eq!(K14_RUNS.get(), 1);
        assert_eq!(k14::digest(1), c.records().unwrap_or_default()[0].key);
        assert_eq!(k14::load(1), Some(101));

        assert_eq!(k14::uncached(2), 102);
        assert_eq!(K14_RUNS.get(), 2);
        assert!(!k14::contains(2), "uncached stores nothing");

        let first = c
            .record(&k14::digest(1))
            .ok()
            .flatten()
            .and_then(|r| Runtime::from_record(&r));
        assert_eq!(k14::rerun(1), 101);
        assert_eq!(K14_RUNS.get(), 3, "rerun recomputes");
        let second = c
            .record(&k14::digest(1))
            .ok()
            .flatten()
            .and_then(|r| Runtime::from_record(&r));
        assert!(
            second.map(|s| s.start) > first.map(|f| f.start),
            "rerun overwrites the record"
        );
        assert_eq!(k14::query().count().ok(), Some(1));

        assert_eq!(k14(1), 101);
        assert_eq!(K14_RUNS.get(), 3);
        assert!(k14::evict(1));
        assert!(!k14::evict(1));
        assert!(!k14::contains(1));
        assert_eq!(k14(1), 101);
        assert_eq!(K14_RUNS.get(), 4);

        // The closure forms work for any memoized call.
        fleche::uncached(|| k14(5));
        assert!(!k14::contains(5));
        fleche::rerun(|| k14(1));
        assert_eq!(K14_RUNS.get(), 6);
        // The mode applies to one call only.
        fleche::uncached(|| ());
        k14(6);
        assert!(k14::contains(6));
    });
}

#[memoize]
fn bar(x: u64, y: u64, z: u64) -> u64 {
    x + y + z
}

#[test]
fn k14_query_filters_by_argument() {
    let c = Cache::memory();
    with_cache(&c, || {
        bar(1, 5, 10);
        bar(2, 5, 20);
        bar(1, 6, 10);
    });
    let q = bar::query().in_cache(&c);
    assert_eq!(q.clone().arg("y", 5u64).count().ok(), Some(2));
    assert_eq!(q.clone().arg("x", 1u64).count().ok(), Some(2));
    assert_eq!(q.count().ok(), Some(3));
    assert_eq!(
        fleche::Query::new()
            .function("nope")
            .in_cache(&c)
            .count()
            .ok(),
        Some(0)
    );
}

static FLAKY_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FLAKY_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[memoize]
fn k14_flaky(x: u64) -> Result<u64, String> {
    use std::sync::atomic::Ordering;
    assert!(!FLAKY_PANICS.load(Ordering::SeqCst), "asked to panic");
    if FLAKY_FAILS.load(Ordering::SeqCst) {
        Err("asked to fail".to_owned())
    } else {
        Ok(x + 1)
    }
}

/// A rerun that fails leaves no stale result behind (as the reference does), whether the body
/// returns `Err` or panics.
#[test]
fn k14_a_failed_rerun_evicts_the_stale_result() {
    use std::sync::atomic::Ordering;
    let cache = Cache::memory();
    with_cache(&cache, || {
        assert_eq!(k14_flaky(1), Ok(2));
        assert!(k14_flaky::contains(1));
        FLAKY_FAILS.store(true, Ordering::SeqCst);
        assert!(k14_flaky::rerun(1).is_err());
        assert!(!k14_flaky::contains(1), "evicted after an Err");
        FLAKY_FAILS.store(false, Ordering::SeqCst);
        assert_eq!(k14_flaky(1), Ok(2));
        FLAKY_PANICS.store(true, Ordering::SeqCst);
        let panicked = std::panic::catch_unwind(|| k14_flaky::rerun(1));
        FLAKY_PANICS.store(false, Ordering::SeqCst);
        assert!(panicked.is_err());
        assert!(!k14_flaky::contains(1), "evicted after a panic");
        // A normal call that fails evicts nothing.
        assert_eq!(k14_flaky(3), Ok(4));
        FLAKY_FAILS.store(true, Ordering::SeqCst);
        assert!(k14_flaky::uncached(3).is_err());
        FLAKY_FAILS.store(false, Ordering::SeqCst);
        assert!(k14_flaky::contains(3));
    });
}
