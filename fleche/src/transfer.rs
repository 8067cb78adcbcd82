//! Copying stored calls between caches.

use fleche_storage::Digest;

use crate::{Cache, Error, Query};

impl Cache {
    /// Copies the calls matching `query` (and their values) from this cache into `to`. Calls
    /// already in `to` are skipped unless `overwrite`. Safe to run concurrently with other
    /// transfers and with memoized calls: every entry is copied value first, record second, and
    /// without `overwrite` of several transfers into one destination (in any processes) exactly
    /// one reports each key as copied.
    ///
    /// ```
    /// use fleche::{Cache, Query};
    ///
    /// #[fleche::memoize]
    /// fn half(x: u64) -> u64 { x / 2 }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let scratch = Cache::memory();
    /// let archive = Cache::memory();
    /// fleche::with_cache(&scratch, || { half(4); half(6); });
    /// let moved = scratch.transfer(&archive, &half::query().arg("x", 4u64), false)?;
    /// assert_eq!(moved.copied.len(), 1);
    /// scratch.pop(&moved)?;                       // remove from the source what was copied
    /// assert_eq!(scratch.records()?.len(), 1);
    /// assert_eq!(archive.records()?.len(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage fails or `to` rejects writes (read-only, pool).
    pub fn transfer(&self, to: &Cache, query: &Query, overwrite: bool) -> Result<Transfer, Error> {
        if !to.accepts_writes() {
            return Err(to.rejected("save"));
        }
        let mut report = Transfer::default();
        for record in query.records_in(self)? {
            let key = record.key;
            if !overwrite && to.contains(&key)? {
                report.skipped.push(key);
                continue;
            }
            let Some(bytes) = self.value_bytes(&record.result)? else {
                report.skipped.push(key);
                continue;
            };
            // Without `overwrite`, claiming the key and storing it are one step: of concurrent
            // transfers into one destination, in any processes, one copies each key.
            let copied = if overwrite {
                to.store(&bytes, record)?;
                true
            } else {
                to.store_new(&bytes, record)?
            };
            if copied {
                report.copied.push(key);
            } else {
                report.skipped.push(key);
            }
        }
        Ok(report)
    }

    /// Evicts from this cache the calls a [`transfer`](Cache::transfer) copied; returns how many
    /// were removed. Calls it skipped are left alone.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a calls storage fails or rejects the eviction.
    pub fn pop(&self, transfer: &Transfer) -> Result<usize, Error> {
        let mut n = 0;
        for key in &transfer.copied {
            n += usize::from(self.evict(key)?);
        }
        Ok(n)
    }
}

/// What [`Cache::transfer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// The calls copied.
    pub copied: Vec<Digest>,
    /// The calls left alone: already in the destination (without `overwrite`), or whose value is
    /// missing from the source.
    pub skipped: Vec<Digest>,
}

impl Query {
    /// Copies the matching calls and their values into `to`, keeping calls `to` already holds
    /// ([`Cache::transfer`] without `overwrite`).
    ///
    /// # Errors
    ///
    /// As [`Cache::transfer`].
    pub fn transfer(&self, to: &Cache) -> Result<Transfer, Error> {
        self.active_cache().transfer(to, self, false)
    }
}
