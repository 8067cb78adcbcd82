//! The two storage traits every backend implements.

use std::fmt::Debug;

use crate::{CallRecord, Digest, StorageError};

/// Stores encoded result values by the digest of their bytes.
///
/// Implementations must be safe to share between threads. A load of an entry that is absent must
/// return `Ok(None)`; a load of an entry that is present but unreadable should return
/// [`StorageError::Corrupt`], which fleche treats as a miss with a warning.
pub trait ValueStorage: Send + Sync + Debug {
    /// The bytes stored under `digest`.
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError>;
    /// Calls `visit` with the bytes stored under `digest`, if any, and says whether there were
    /// any. Backends that hold values in memory override it to lend the bytes without copying
    /// them: it is the hot path of every hit.
    fn load_with(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, StorageError> {
        Ok(self.load(digest)?.map(|bytes| visit(&bytes)).is_some())
    }
    /// Stores `bytes` under `digest` (the blake3 digest of `bytes`). Saving an existing digest
    /// again is allowed and leaves one entry.
    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError>;
    /// Whether an entry is stored under `digest`.
    fn contains(&self, digest: &Digest) -> Result<bool, StorageError>;
    /// Removes the entry; `Ok(true)` if there was one.
    fn evict(&self, digest: &Digest) -> Result<bool, StorageError>;
    /// Every stored digest, in no particular order.
    fn digests(&self) -> Result<Vec<Digest>, StorageError>;
    /// Removes temporary files older than `older_than` that writers killed mid-write left
    /// behind; returns how many. Storages without temporary files keep the default (none).
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        let _ = older_than;
        Ok(0)
    }
}

/// Stores [`CallRecord`]s by their lookup key.
pub trait CallStorage: Send + Sync + Debug {
    /// The result digest of the call stored under `key`: the hot path of every memoized call, so
    /// backends should answer it without decoding the whole record where they can.
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError>;
    /// The whole record stored under `key`.
    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError>;
    /// Stores `record` under `record.key`, replacing any record with the same key.
    fn save(&self, record: CallRecord) -> Result<(), StorageError>;
    /// Stores `record` only if no record is stored under its key; `Ok(true)` when it was
    /// stored. Of several concurrent callers for one key, exactly one should get `true`: the
    /// built-in backends make the check and the store one atomic step, across processes too.
    /// The default checks, then saves, which is only as atomic as the storage is single-user.
    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        if self.load(&record.key)?.is_some() {
            return Ok(false);
        }
        self.save(record)?;
        Ok(true)
    }
    /// Removes the record; `Ok(true)` if there was one.
    fn evict(&self, key: &Digest) -> Result<bool, StorageError>;
    /// Every stored record, in no particular order.
    fn records(&self) -> Result<Vec<CallRecord>, StorageError>;
    /// Removes temporary files older than `older_than` that writers killed mid-write left
    /// behind; returns how many. Storages without temporary files keep the default (none).
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        let _ = older_than;
        Ok(0)
    }
}

impl<T: ValueStorage + ?Sized> ValueStorage for Box<T> {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).load(digest)
    }
    fn load_with(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, StorageError> {
        (**self).load_with(digest, visit)
    }
    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).save(digest, bytes)
    }
    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        (**self).contains(digest)
    }
    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        (**self).evict(digest)
    }
    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        (**self).digests()
    }
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        (**self).reclaim_temporary(older_than)
    }
}

impl<T: CallStorage + ?Sized> CallStorage for Box<T> {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        (**self).result_of(key)
    }
    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        (**self).load(key)
    }
    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        (**self).save(record)
    }
    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        (**self).save_new(record)
    }
    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        (**self).evict(key)
    }
    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        (**self).records()
    }
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        (**self).reclaim_temporary(older_than)
    }
}
