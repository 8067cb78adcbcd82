//! Listing and filtering stored calls.

use fleche_storage::{CallRecord, Value};

use crate::metadata::Runtime;
use crate::scope::current_cache;
use crate::{Cache, Error, Key};

/// A filter over the call records of a cache: by function, by argument value.
///
/// Runs against the cache active where it is evaluated, or the one given with
/// [`in_cache`](Query::in_cache). Every memoized function's companion module has a
/// `query()` that starts with the function's name.
///
/// ```
/// #[fleche::memoize]
/// fn area(w: u32, h: u32) -> u32 { w * h }
///
/// # fn main() -> Result<(), fleche::Error> {
/// let c = fleche::Cache::memory();
/// fleche::with_cache(&c, || { area(2, 3); area(2, 5); area(4, 5); });
/// let q = area::query().arg("w", 2u32).in_cache(&c);
/// assert_eq!(q.count()?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Query {
    function: Option<String>,
    arguments: Vec<(String, Value)>,
    cache: Option<Cache>,
}

impl Query {
    /// A query matching every record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only records of the function named `name`.
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.function = Some(name.into());
        self
    }

    /// Only records whose argument `name` equals `value` (compared in queryable form).
    pub fn arg<T: Key>(mut self, name: impl Into<String>, value: T) -> Self {
        self.arguments.push((name.into(), value.to_value()));
        self
    }

    /// Runs against `cache` instead of the active cache.
    pub fn in_cache(mut self, cache: &Cache) -> Self {
        self.cache = Some(cache.clone());
        self
    }

    fn matches(&self, r: &CallRecord) -> bool {
        self.function.as_deref().is_none_or(|f| r.function == f)
            && self
                .arguments
                .iter()
                .all(|(name, value)| r.argument(name) == Some(value))
    }

    /// The matching records, oldest first (by recorded start time).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn records(&self) -> Result<Vec<CallRecord>, Error> {
        let cache = self.cache.clone().unwrap_or_else(current_cache);
        self.records_in(&cache)
    }

    /// The matching records of `cache` (ignoring [`in_cache`](Query::in_cache)), oldest first.
    pub(crate) fn records_in(&self, cache: &Cache) -> Result<Vec<CallRecord>, Error> {
        let mut records: Vec<CallRecord> = cache
            .records()?
            .into_iter()
            .filter(|r| self.matches(r))
            .collect();
        records.sort_by_key(|r| Runtime::from_record(r).map(|rt| rt.start));
        Ok(records)
    }

    /// How many records match.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn count(&self) -> Result<usize, Error> {
        Ok(self.records()?.len())
    }

    /// Evicts every matching record; returns how many were removed.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn evict(&self) -> Result<usize, Error> {
        let cache = self.cache.clone().unwrap_or_else(current_cache);
        let mut n = 0;
        for r in self.records()? {
            n += usize::from(cache.evict(&r.key)?);
        }
        Ok(n)
    }
}
