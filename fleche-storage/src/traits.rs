//! The two storage traits every backend implements.

use std::any::Any;
use std::fmt::{self, Debug};
use std::io::Read;
use std::sync::Arc;

use crate::{CallRecord, Digest, Selection, StorageError};

/// A result value kept as itself, not as bytes: what a storage that lives in process memory can
/// hold so that a hit is a clone (see [`ValueStorage::keeps_values`]). Any `Serialize + Send +
/// Sync + 'static` type is one; its bytes are produced only when something asks for them.
pub trait TypedValue: Any + Send + Sync {
    /// The value, to downcast to its type.
    fn as_any(&self) -> &dyn Any;
    /// The value's bytes in the value format (`docs/format.md`, "Values").
    ///
    /// # Errors
    ///
    /// What the value's `Serialize` reports.
    fn encode(&self) -> Result<Vec<u8>, crate::encoding::EncodeError>;
}

impl<T: serde::Serialize + Send + Sync + 'static> TypedValue for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn encode(&self) -> Result<Vec<u8>, crate::encoding::EncodeError> {
        crate::encoding::to_vec(self)
    }
}

impl Debug for dyn TypedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedValue(..)")
    }
}

/// A stored value as a storage lends it to a reader ([`ValueStorage::load_payload`]): in
/// whichever of three forms costs the storage least.
#[derive(Debug)]
pub enum Payload<'a> {
    /// The value's bytes.
    Bytes(&'a [u8]),
    /// The value's bytes as a stream, read straight from storage (so a large block can be read
    /// into its final memory). The storage checks what was read against the entry's checksum
    /// after the visit, and the load fails as corrupt if it does not match: a reader must not
    /// use what it decoded unless the load returns `Ok(true)`.
    Stream(PayloadReader<'a>),
    /// The value itself, as a storage that keeps values in memory holds it.
    Value(&'a dyn TypedValue),
}

/// A value's bytes, streamed: exactly [`len`](PayloadReader::len) bytes, of which the first are
/// already at hand ([`head`](PayloadReader::head)), so a reader can look at a header without
/// consuming the stream.
pub struct PayloadReader<'a> {
    head: &'a [u8],
    at: usize,
    rest: &'a mut dyn Read,
    len: u64,
}

impl Debug for PayloadReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadReader")
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> PayloadReader<'a> {
    /// A stream of `len` bytes: `head`, then what `rest` gives.
    pub fn new(head: &'a [u8], rest: &'a mut dyn Read, len: u64) -> Self {
        Self {
            head,
            at: 0,
            rest,
            len,
        }
    }

    /// The total length of the value's bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the value has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes of the value (all of them for a short value), not yet read.
    #[must_use]
    pub fn head(&self) -> &[u8] {
        &self.head[self.at..]
    }

    /// Reads the whole (rest of the) value into memory; nothing beyond [`len`](Self::len).
    ///
    /// # Errors
    ///
    /// The stream's error, or [`std::io::ErrorKind::UnexpectedEof`] when it ends early.
    pub fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        let want = usize::try_from(self.len).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(want.min(64 << 20));
        self.take(self.len).read_to_end(&mut out)?;
        if out.len() as u64 != self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(out)
    }
}

impl Read for PayloadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.rest.read(buf)
    }
}

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
    /// Calls `visit` with the value stored under `digest` in the form the storage has at least
    /// cost (see [`Payload`]), and says whether there was one. The default lends the bytes of
    /// [`load_with`](ValueStorage::load_with). For [`Payload::Stream`] the storage verifies the
    /// bytes after `visit` returns and reports a mismatch as [`StorageError::Corrupt`].
    fn load_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        self.load_with(digest, &mut |bytes| visit(Payload::Bytes(bytes)))
    }
    /// Whether the storage keeps values themselves ([`save_value`](ValueStorage::save_value)):
    /// only then does a writer make a [`TypedValue`] for it.
    fn keeps_values(&self) -> bool {
        false
    }
    /// Stores `value` under `digest` (the blake3 digest of its bytes): a storage that
    /// [`keeps_values`](ValueStorage::keeps_values) keeps the value itself and lends it as
    /// [`Payload::Value`]. The default stores its bytes.
    fn save_value(&self, digest: &Digest, value: Arc<dyn TypedValue>) -> Result<(), StorageError> {
        let bytes = value.encode().map_err(|source| StorageError::EncodeValue {
            location: std::any::type_name::<Self>().to_owned(),
            digest: *digest,
            source,
        })?;
        self.save(digest, &bytes)
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
    /// The key of every stored record, readable or not (what `fleche verify` checks one by one).
    /// The default lists the readable records' keys.
    fn keys(&self) -> Result<Vec<Digest>, StorageError> {
        Ok(self.records()?.into_iter().map(|r| r.key).collect())
    }
    /// The records `selection` matches, in its order, paged: what a query asks of a storage.
    /// The default filters [`records`](CallStorage::records) with [`Selection::apply`], so a
    /// backend that does not override it answers every query correctly; a backend with indexes
    /// (the SQLite one) answers from them. Whatever it does, it must return what the default
    /// returns on the same records.
    fn select(&self, selection: &Selection) -> Result<Vec<CallRecord>, StorageError> {
        Ok(selection.apply(self.records()?))
    }
    /// How many records [`select`](CallStorage::select) returns for `selection`. The default
    /// counts them; a backend with indexes counts without reading the records.
    fn count(&self, selection: &Selection) -> Result<usize, StorageError> {
        Ok(self.select(selection)?.len())
    }
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
    fn load_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        (**self).load_payload(digest, visit)
    }
    fn keeps_values(&self) -> bool {
        (**self).keeps_values()
    }
    fn save_value(&self, digest: &Digest, value: Arc<dyn TypedValue>) -> Result<(), StorageError> {
        (**self).save_value(digest, value)
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
    fn select(&self, selection: &Selection) -> Result<Vec<CallRecord>, StorageError> {
        (**self).select(selection)
    }
    fn keys(&self) -> Result<Vec<Digest>, StorageError> {
        (**self).keys()
    }
    fn count(&self, selection: &Selection) -> Result<usize, StorageError> {
        (**self).count(selection)
    }
    fn reclaim_temporary(&self, older_than: std::time::Duration) -> Result<usize, StorageError> {
        (**self).reclaim_temporary(older_than)
    }
}
