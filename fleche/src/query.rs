//! Listing and filtering stored calls.

use std::cmp::Ordering;
use std::ops::{Bound, RangeBounds};
use std::time::{Duration, SystemTime};

use fleche_storage::{CallRecord, Digest, Value};
use serde::de::DeserializeOwned;

use crate::metadata::{Runtime, Tags};
use crate::scope::current_cache;
use crate::{Cache, Error, Key};

/// A filter over the call records of a cache: by function, version, argument value, metadata and
/// result, in an order, with paging.
///
/// Runs against the cache active where it is evaluated, or the one given with
/// [`in_cache`](Query::in_cache) ([`Cache::query`] starts with it). Every memoized function's
/// companion module has a `query()` that starts with the function's name. Arguments compare in
/// stored form: type and value, so `1u64` matches `1u32` and `1i64` (one integer kind) but not
/// `1.0`; strings match strings. Records come oldest first (by recorded start time) unless
/// [`newest_first`](Query::newest_first) says otherwise; [`skip`](Query::skip) and
/// [`take`](Query::take) apply after ordering, and [`count`](Query::count) counts what
/// [`records`](Query::records) returns.
///
/// ```
/// #[fleche::memoize]
/// fn area(w: u32, h: u32) -> u32 { w * h }
///
/// # fn main() -> Result<(), fleche::Error> {
/// let c = fleche::Cache::memory();
/// fleche::with_cache(&c, || { area(2, 3); area(2, 5); area(4, 5); });
/// assert_eq!(area::query().arg("w", 2u32).in_cache(&c).count()?, 2);
/// assert_eq!(c.query().arg_range("h", 4u32..).count()?, 2);
/// assert_eq!(c.query().arg_in("w", [4u32, 9]).only()?.arg::<u32>("h")?, 5);
/// let newest = c.query().newest_first().take(1).results::<u32>()?;
/// assert_eq!(newest[0].1, 20);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Query {
    filters: Vec<Filter>,
    newest_first: bool,
    skip: usize,
    take: Option<usize>,
    cache: Option<Cache>,
}

#[derive(Debug, Clone)]
enum Filter {
    Function(String),
    Version(String),
    Result(Digest),
    Arg(String, Value),
    ArgIn(String, Vec<Value>),
    ArgRange(String, Bound<Value>, Bound<Value>),
    Tag(String, Value),
    HasMeta(String),
    Since(SystemTime),
    Until(SystemTime),
    SlowerThan(Duration),
}

/// Orders two numbers (integers of any width, floats), or says they are not comparable.
fn numeric_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Some(x.cmp(y)),
        (Value::Int(_), Value::UInt(_)) => Some(Ordering::Less),
        (Value::UInt(_), Value::Int(_)) => Some(Ordering::Greater),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn within(v: &Value, low: &Bound<Value>, high: &Bound<Value>) -> bool {
    let above = match low {
        Bound::Unbounded => true,
        Bound::Included(b) => {
            matches!(numeric_cmp(v, b), Some(Ordering::Greater | Ordering::Equal))
        }
        Bound::Excluded(b) => matches!(numeric_cmp(v, b), Some(Ordering::Greater)),
    };
    let below = match high {
        Bound::Unbounded => true,
        Bound::Included(b) => matches!(numeric_cmp(v, b), Some(Ordering::Less | Ordering::Equal)),
        Bound::Excluded(b) => matches!(numeric_cmp(v, b), Some(Ordering::Less)),
    };
    above && below
}

fn bound<T: Key>(b: Bound<&T>) -> Bound<Value> {
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included(v.to_value()),
        Bound::Excluded(v) => Bound::Excluded(v.to_value()),
    }
}

impl Filter {
    fn matches(&self, r: &CallRecord) -> bool {
        let runtime = || Runtime::from_record(r);
        match self {
            Filter::Function(f) => r.function == *f,
            Filter::Version(v) => r.version.as_deref() == Some(v.as_str()),
            Filter::Result(d) => r.result == *d,
            Filter::Arg(name, value) => r.argument(name) == Some(value),
            Filter::ArgIn(name, values) => r.argument(name).is_some_and(|a| values.contains(a)),
            Filter::ArgRange(name, low, high) => {
                r.argument(name).is_some_and(|a| within(a, low, high))
            }
            Filter::Tag(k, v) => Tags::from_record(r).is_some_and(|t| t.get(k) == Some(v)),
            Filter::HasMeta(name) => r.metadata.contains_key(name),
            Filter::Since(t) => runtime().is_some_and(|rt| rt.start >= *t),
            Filter::Until(t) => runtime().is_some_and(|rt| rt.start <= *t),
            Filter::SlowerThan(d) => runtime().is_some_and(|rt| rt.wall_time > *d),
        }
    }
}

impl Query {
    /// A query matching every record.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Only records of the function named `name`.
    pub fn function(self, name: impl Into<String>) -> Self {
        self.with(Filter::Function(name.into()))
    }

    /// Only records of the function's declared `version` `v`.
    pub fn version(self, v: impl Into<String>) -> Self {
        self.with(Filter::Version(v.into()))
    }

    /// Only records whose result is the value `digest`.
    pub fn result(self, digest: Digest) -> Self {
        self.with(Filter::Result(digest))
    }

    /// Only records whose argument `name` equals `value` (compared in stored form).
    pub fn arg<T: Key>(self, name: impl Into<String>, value: T) -> Self {
        self.with(Filter::Arg(name.into(), value.to_value()))
    }

    /// Only records whose argument `name` equals one of `values`.
    pub fn arg_in<T: Key>(
        self,
        name: impl Into<String>,
        values: impl IntoIterator<Item = T>,
    ) -> Self {
        let values = values.into_iter().map(|v| v.to_value()).collect();
        self.with(Filter::ArgIn(name.into(), values))
    }

    /// Only records whose numeric argument `name` lies in `range` (`2u64..5`, `..=3`, `1.5..`):
    /// integers of any type compare by value, floats with integers numerically; a
    /// non-numeric argument never matches.
    pub fn arg_range<T: Key + PartialOrd>(
        self,
        name: impl Into<String>,
        range: impl RangeBounds<T>,
    ) -> Self {
        let low = bound(range.start_bound());
        let high = bound(range.end_bound());
        self.with(Filter::ArgRange(name.into(), low, high))
    }

    /// Only records made inside a [`with_tags`](crate::with_tags) scope that set tag `key` to
    /// `value`.
    pub fn tag<T: Key>(self, key: impl Into<String>, value: T) -> Self {
        self.with(Filter::Tag(key.into(), value.to_value()))
    }

    /// Only records that carry the metadata `name` (`"runtime"`, `"tags"`, ...).
    pub fn has_meta(self, name: impl Into<String>) -> Self {
        self.with(Filter::HasMeta(name.into()))
    }

    /// Only calls that started at `t` or later.
    pub fn since(self, t: SystemTime) -> Self {
        self.with(Filter::Since(t))
    }

    /// Only calls that started at `t` or earlier.
    pub fn until(self, t: SystemTime) -> Self {
        self.with(Filter::Until(t))
    }

    /// Only calls whose body ran longer than `d`.
    pub fn slower_than(self, d: Duration) -> Self {
        self.with(Filter::SlowerThan(d))
    }

    /// The newest calls first.
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// The oldest calls first (the default).
    pub fn oldest_first(mut self) -> Self {
        self.newest_first = false;
        self
    }

    /// Leaves out the first `n` records (after ordering).
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// At most `n` records (after ordering and skipping).
    pub fn take(mut self, n: usize) -> Self {
        self.take = Some(n);
        self
    }

    /// Runs against `cache` instead of the active cache.
    pub fn in_cache(mut self, cache: &Cache) -> Self {
        self.cache = Some(cache.clone());
        self
    }

    pub(crate) fn active_cache(&self) -> Cache {
        self.cache.clone().unwrap_or_else(current_cache)
    }

    fn matches(&self, r: &CallRecord) -> bool {
        self.filters.iter().all(|f| f.matches(r))
    }

    /// Every matching record of `cache`, ordered, before paging.
    fn matching(&self, cache: &Cache) -> Result<Vec<CallRecord>, Error> {
        let mut records: Vec<CallRecord> = cache
            .records()?
            .into_iter()
            .filter(|r| self.matches(r))
            .collect();
        // Ties (or no runtime) in key order, so the order is the same on every backend.
        records.sort_by(|a, b| {
            let start = |r: &CallRecord| Runtime::from_record(r).map(|rt| rt.start);
            start(a).cmp(&start(b)).then_with(|| a.key.cmp(&b.key))
        });
        if self.newest_first {
            records.reverse();
        }
        Ok(records)
    }

    /// The matching records, in order, paged.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn records(&self) -> Result<Vec<CallRecord>, Error> {
        self.records_in(&self.active_cache())
    }

    /// The matching records of `cache` (ignoring [`in_cache`](Query::in_cache)), in order, paged.
    pub(crate) fn records_in(&self, cache: &Cache) -> Result<Vec<CallRecord>, Error> {
        let records = self.matching(cache)?;
        let take = self.take.unwrap_or(usize::MAX);
        Ok(records.into_iter().skip(self.skip).take(take).collect())
    }

    /// How many records [`records`](Query::records) returns.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn count(&self) -> Result<usize, Error> {
        Ok(self.records()?.len())
    }

    /// The matching record that started last, whatever the order and paging.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn latest(&self) -> Result<Option<CallRecord>, Error> {
        let mut all = self.matching(&self.active_cache())?;
        Ok(if self.newest_first {
            all.into_iter().next()
        } else {
            all.pop()
        })
    }

    /// The matching record that started first, whatever the order and paging.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn oldest(&self) -> Result<Option<CallRecord>, Error> {
        let mut all = self.matching(&self.active_cache())?;
        Ok(if self.newest_first {
            all.pop()
        } else {
            all.into_iter().next()
        })
    }

    /// The one matching record.
    ///
    /// # Errors
    ///
    /// [`Error::NotExactlyOne`] naming how many match when that is not one; [`Error::Storage`]
    /// when the calls storage fails.
    pub fn only(&self) -> Result<CallRecord, Error> {
        let mut records = self.records()?;
        match records.len() {
            1 => Ok(records.remove(0)),
            found => Err(Error::NotExactlyOne { found }),
        }
    }

    /// The matching records with their results decoded as `T`; a record whose value is missing
    /// is left out.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage fails, [`Error::Decode`] when a stored result is not a
    /// `T`.
    pub fn results<T: DeserializeOwned>(&self) -> Result<Vec<(CallRecord, T)>, Error> {
        let cache = self.active_cache();
        let mut out = Vec::new();
        for r in self.records_in(&cache)? {
            if let Some(v) = cache.load::<T>(&r.key)? {
                out.push((r, v));
            }
        }
        Ok(out)
    }

    /// Evicts every matching record; returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn evict(&self) -> Result<usize, Error> {
        let cache = self.active_cache();
        let mut n = 0;
        for r in self.records_in(&cache)? {
            n += usize::from(cache.evict(&r.key)?);
        }
        Ok(n)
    }
}

impl Cache {
    /// A query over this cache's records.
    pub fn query(&self) -> Query {
        Query::new().in_cache(self)
    }

    /// A read-only view of this cache showing only the calls `query`'s filters match (its order,
    /// paging and cache are ignored): memoized calls under it hit only those calls, and run
    /// without storing otherwise.
    ///
    /// ```
    /// #[fleche::memoize]
    /// fn sq(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let c = fleche::Cache::memory();
    /// fleche::with_cache(&c, || { sq(1); sq(2); });
    /// let only_two = c.filtered(fleche::Query::new().arg("x", 2u64));
    /// assert!(fleche::with_cache(&only_two, || sq::contains(2)));
    /// assert!(!fleche::with_cache(&only_two, || sq::contains(1)));
    /// assert_eq!(only_two.records()?.len(), 1);
    /// # Ok(()) }
    /// ```
    /// For a stack or a pool, every layer is filtered.
    #[must_use]
    pub fn filtered(&self, query: Query) -> Cache {
        let filters = query.filters;
        let accept: std::sync::Arc<dyn Fn(&CallRecord) -> bool + Send + Sync> =
            std::sync::Arc::new(move |r: &CallRecord| filters.iter().all(|f| f.matches(r)));
        self.with_record_filter(&accept)
    }
}
