//! Checking every entry of a cache: [`Cache::verify`].

use fleche_storage::{Digest, StorageError};

use super::Cache;
use crate::Error;

/// What [`Cache::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// How many call records were checked.
    pub calls: usize,
    /// How many values (destructured parts included) were checked.
    pub values: usize,
    /// The entries that failed their check.
    pub corrupt: Vec<Corrupt>,
    /// How many corrupt entries were removed (with `repair`).
    pub repaired: usize,
}

/// One entry that failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Corrupt {
    /// A call record or a value.
    pub kind: EntryKind,
    /// Its address: the call key, or the value digest.
    pub address: Digest,
    /// Why, as the storage said it (the location is part of it).
    pub reason: String,
}

/// The two kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A call record.
    Call,
    /// A value.
    Value,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::Call => "call",
            EntryKind::Value => "value",
        })
    }
}

impl Cache {
    /// Reads every call record and every value of every layer, checking each against its
    /// address and checksum (and signature, when the cache signs) as every load does. With
    /// `repair`, every corrupt entry is removed, so the next call that needs it recomputes and
    /// stores it. `progress` is called after each entry with (done, total).
    ///
    /// ```
    /// #[fleche::memoize]
    /// fn sq(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let c = fleche::Cache::memory();
    /// fleche::with_cache(&c, || sq(3));
    /// let report = c.verify(false, &mut |_, _| {})?;
    /// assert_eq!((report.calls, report.corrupt.len()), (1, 0));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage cannot be listed or fails other than by a corrupt
    /// entry; with `repair`, when a corrupt entry cannot be removed (a read-only cache).
    pub fn verify(
        &self,
        repair: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Verification, Error> {
        let mut report = Verification::default();
        for layer in self.layers() {
            let keys = layer.call_keys().map_err(|e| self.error(e))?;
            let digests = layer.value_digests().map_err(|e| self.error(e))?;
            let total = keys.len() + digests.len();
            report.calls += keys.len();
            report.values += digests.len();
            let mut done = 0;
            let mut bad = |kind, address: Digest, e: StorageError| -> Result<(), Error> {
                if !matches!(e, StorageError::Corrupt { .. }) {
                    return Err(self.error(e));
                }
                report.corrupt.push(Corrupt {
                    kind,
                    address,
                    reason: e.to_string(),
                });
                if repair {
                    let removed = match kind {
                        EntryKind::Call => layer.evict(&address),
                        EntryKind::Value => layer.evict_value(&address),
                    };
                    report.repaired += usize::from(removed.map_err(|e| self.error(e))?);
                }
                Ok(())
            };
            for key in keys {
                if let Err(e) = layer.record(&key) {
                    bad(EntryKind::Call, key, e)?;
                }
                done += 1;
                progress(done, total);
            }
            for digest in digests {
                if let Err(e) = layer.value(&digest) {
                    bad(EntryKind::Value, digest, e)?;
                }
                done += 1;
                progress(done, total);
            }
        }
        Ok(report)
    }

    /// The bytes of the value `digest` (reassembled when it was destructured), checked, from
    /// the first layer holding it: what `fleche cat` decodes.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the values storage fails or the value is corrupt.
    pub fn value(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        self.value_bytes(digest)
    }
}
