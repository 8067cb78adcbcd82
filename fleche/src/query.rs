//! Listing and filtering stored calls.

use std::ops::{Bound, RangeBounds};
use std::time::{Duration, SystemTime};

use fleche_storage::{CallRecord, Condition, Digest, Selection, Value};
use serde::de::DeserializeOwned;

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
    selection: Selection,
    cache: Option<Cache>,
}

fn bound<T: Key>(b: Bound<&T>) -> Bound<Value> {
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included(v.to_value()),
        Bound::Excluded(v) => Bound::Excluded(v.to_value()),
    }
}

impl Query {
    /// A query matching every record.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(mut self, condition: Condition) -> Self {
        self.selection.conditions.push(condition);
        self
    }

    /// The conditions, order and paging, as a calls storage receives them
    /// ([`CallStorage::select`](fleche_storage::CallStorage::select)).
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Only records of the function named `name`.
    pub fn function(self, name: impl Into<String>) -> Self {
        self.with(Condition::Function(name.into()))
    }

    /// Only records of the function's declared `version` `v`.
    pub fn version(self, v: impl Into<String>) -> Self {
        self.with(Condition::Version(v.into()))
    }

    /// Only records whose result is the value `digest`.
    pub fn result(self, digest: Digest) -> Self {
        self.with(Condition::Result(digest))
    }

    /// Only records whose argument `name` equals `value` (compared in stored form).
    pub fn arg<T: Key>(self, name: impl Into<String>, value: T) -> Self {
        self.with(Condition::Arg {
            name: name.into(),
            value: value.to_value(),
        })
    }

    /// Only records whose argument `name` equals the stored form `value`: for tools that read
    /// values they have no type for (`fleche ls --arg steps=100`).
    pub fn arg_value(self, name: impl Into<String>, value: Value) -> Self {
        self.with(Condition::Arg {
            name: name.into(),
            value,
        })
    }

    /// Only records tagged `key` = the stored form `value` (see [`arg_value`](Query::arg_value)).
    pub fn tag_value(self, key: impl Into<String>, value: Value) -> Self {
        self.with(Condition::Tag {
            key: key.into(),
            value,
        })
    }

    /// Only records whose argument `name` equals one of `values`.
    pub fn arg_in<T: Key>(
        self,
        name: impl Into<String>,
        values: impl IntoIterator<Item = T>,
    ) -> Self {
        let values = values.into_iter().map(|v| v.to_value()).collect();
        self.with(Condition::ArgIn {
            name: name.into(),
            values,
        })
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
        self.with(Condition::ArgRange {
            name: name.into(),
            low,
            high,
        })
    }

    /// Only records made inside a [`with_tags`](crate::with_tags) scope that set tag `key` to
    /// `value`.
    pub fn tag<T: Key>(self, key: impl Into<String>, value: T) -> Self {
        self.with(Condition::Tag {
            key: key.into(),
            value: value.to_value(),
        })
    }

    /// Only records that carry the metadata `name` (`"runtime"`, `"tags"`, ...).
    pub fn has_meta(self, name: impl Into<String>) -> Self {
        self.with(Condition::HasMeta(name.into()))
    }

    /// Only calls that started at `t` or later.
    pub fn since(self, t: SystemTime) -> Self {
        self.with(Condition::Since(t))
    }

    /// Only calls that started at `t` or earlier.
    pub fn until(self, t: SystemTime) -> Self {
        self.with(Condition::Until(t))
    }

    /// Only calls whose body ran longer than `d`.
    pub fn slower_than(self, d: Duration) -> Self {
        self.with(Condition::SlowerThan(d))
    }

    /// The newest calls first.
    pub fn newest_first(mut self) -> Self {
        self.selection.newest_first = true;
        self
    }

    /// The oldest calls first (the default).
    pub fn oldest_first(mut self) -> Self {
        self.selection.newest_first = false;
        self
    }

    /// Leaves out the first `n` records (after ordering).
    pub fn skip(mut self, n: usize) -> Self {
        self.selection.skip = n;
        self
    }

    /// At most `n` records (after ordering and skipping).
    pub fn take(mut self, n: usize) -> Self {
        self.selection.take = Some(n);
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
        cache.select(&self.selection)
    }

    /// How many records [`records`](Query::records) returns; on SQLite, counted in SQL.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn count(&self) -> Result<usize, Error> {
        self.active_cache().count(&self.selection)
    }

    /// The first record in `newest_first` order, whatever the paging.
    fn first(&self, newest_first: bool) -> Result<Option<CallRecord>, Error> {
        let mut selection = self.selection.unpaged();
        selection.newest_first = newest_first;
        selection.take = Some(1);
        Ok(self.active_cache().select(&selection)?.into_iter().next())
    }

    /// The matching record that started last, whatever the order and paging.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn latest(&self) -> Result<Option<CallRecord>, Error> {
        self.first(true)
    }

    /// The matching record that started first, whatever the order and paging.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn oldest(&self) -> Result<Option<CallRecord>, Error> {
        self.first(false)
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
        let selection = query.selection.unpaged();
        let accept: std::sync::Arc<dyn Fn(&CallRecord) -> bool + Send + Sync> =
            std::sync::Arc::new(move |r: &CallRecord| selection.matches(r));
        self.with_record_filter(&accept)
    }
}
