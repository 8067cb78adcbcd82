//! [`Cache`]: a values storage and a calls storage under one name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use std::path::Path;

use fleche_storage::{
    CallRecord, CallStorage, Digest, DigestBuildHasher, FileCalls, FileOptions, FileValues,
    MemoryCalls, MemoryValues, StorageError, ValueStorage, VoidCalls, VoidValues,
};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::flight::Flights;

/// The names every program can use without a configuration file.
pub const RESERVED_NAMES: [&str; 3] = ["memory", "void", "default"];

/// A cache: a values storage and a calls storage under one name.
///
/// `Cache` is a cheap handle (an `Arc`): clones share the same storages. Pass it to
/// [`with_cache`](crate::with_cache) to make it the active cache of a scope.
///
/// ```
/// use fleche::Cache;
///
/// let c = Cache::memory();
/// assert_eq!(c.name(), "memory");
/// assert!(c.records().unwrap().is_empty());
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    values: Box<dyn ValueStorage>,
    calls: Box<dyn CallStorage>,
    /// `None` for caches that store nothing: their calls never wait for each other.
    flights: Option<Flights>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("values", &self.inner.values)
            .field("calls", &self.inner.calls)
            .finish()
    }
}

impl Cache {
    /// A new, empty in-process cache, private to this handle and its clones.
    #[must_use]
    pub fn memory() -> Self {
        Self::from_storages("memory", MemoryValues::new(), MemoryCalls::new())
    }

    /// A cache that stores nothing: under it every call runs its body.
    #[must_use]
    pub fn void() -> Self {
        Self {
            inner: Arc::new(Inner {
                name: "void".to_owned(),
                values: Box::new(VoidValues),
                calls: Box::new(VoidCalls),
                flights: None,
            }),
        }
    }

    /// A cache made of the given storages: how custom and third-party backends are used.
    #[must_use]
    pub fn from_storages(
        name: impl Into<String>,
        values: impl ValueStorage + 'static,
        calls: impl CallStorage + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                values: Box::new(values),
                calls: Box::new(calls),
                flights: Some(Flights::default()),
            }),
        }
    }

    /// A cache of files under `root`: values in `root/values`, call records in `root/calls`, one
    /// file per entry (the `msgpack` backend; layout in `docs/format.md`). Several processes may
    /// use the same root at once.
    ///
    /// ```
    /// use fleche::storage::FileOptions;
    ///
    /// #[fleche::memoize]
    /// fn cube(x: u64) -> u64 { x * x * x }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let first = fleche::Cache::msgpack(dir.path(), FileOptions::new().compress(3))?;
    /// fleche::with_cache(&first, || cube(3));
    /// // Another handle, as another process would open it, sees the stored call.
    /// let second = fleche::Cache::msgpack(dir.path(), FileOptions::new())?;
    /// assert!(fleche::with_cache(&second, || cube::contains(3)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the directories cannot be created.
    pub fn msgpack(root: impl AsRef<Path>, options: FileOptions) -> Result<Self, Error> {
        let root = root.as_ref();
        let storage = |source| Error::Storage {
            cache: root.display().to_string(),
            source,
        };
        let values = FileValues::open(root.join("values"), options.clone()).map_err(storage)?;
        let calls = FileCalls::open(root.join("calls"), options).map_err(storage)?;
        Ok(Self::from_storages("msgpack", values, calls))
    }

    /// The cache called `name`.
    ///
    /// The reserved names work everywhere: `"memory"` is this process's shared in-memory cache
    /// (the same instance every time), `"void"` stores nothing, and `"default"` is the cache a
    /// memoized call uses when no scope or sticky cache is set.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCache`] for any other name, listing the names that exist.
    pub fn named(name: &str) -> Result<Self, Error> {
        match name {
            "memory" => Ok(shared_memory().clone()),
            "void" => Ok(shared_void().clone()),
            "default" => Ok(default_cache().clone()),
            _ => Err(Error::UnknownCache {
                name: name.to_owned(),
                known: RESERVED_NAMES.iter().map(|s| (*s).to_owned()).collect(),
                config_files: Vec::new(),
            }),
        }
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether `self` and `other` are handles to the same cache.
    #[must_use]
    pub fn same_as(&self, other: &Cache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The values storage.
    #[must_use]
    pub fn values(&self) -> &dyn ValueStorage {
        &*self.inner.values
    }

    /// The calls storage.
    #[must_use]
    pub fn calls(&self) -> &dyn CallStorage {
        &*self.inner.calls
    }

    pub(crate) fn flights(&self) -> Option<&Flights> {
        self.inner.flights.as_ref()
    }

    fn storage_error(&self, source: StorageError) -> Error {
        Error::Storage {
            cache: self.inner.name.clone(),
            source,
        }
    }

    /// Whether a call is stored under `key` (a call digest, as returned by a companion
    /// `digest` helper).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn contains(&self, key: &Digest) -> Result<bool, Error> {
        Ok(self
            .inner
            .calls
            .result_of(key)
            .map_err(|e| self.storage_error(e))?
            .is_some())
    }

    /// The record of the call stored under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn record(&self, key: &Digest) -> Result<Option<CallRecord>, Error> {
        self.inner
            .calls
            .load(key)
            .map_err(|e| self.storage_error(e))
    }

    /// The result of the call stored under `key`, decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage fails, [`Error::Decode`] when the stored value is not
    /// a `T`.
    pub fn load<T: DeserializeOwned>(&self, key: &Digest) -> Result<Option<T>, Error> {
        self.visit_result(key, &mut |value, bytes| decode(bytes, value))?
            .transpose()
    }

    /// Removes the call stored under `key`; `true` if there was one. The value it referred to
    /// stays in the values storage (other calls may share it).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn evict(&self, key: &Digest) -> Result<bool, Error> {
        self.inner
            .calls
            .evict(key)
            .map_err(|e| self.storage_error(e))
    }

    /// Every stored call record.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the calls storage fails.
    pub fn records(&self) -> Result<Vec<CallRecord>, Error> {
        self.inner
            .calls
            .records()
            .map_err(|e| self.storage_error(e))
    }

    /// Decodes the result of the call stored under `key` with `decode`, without copying the
    /// stored bytes where the backend allows: the hit path. `Ok(None)` when nothing is stored.
    pub(crate) fn visit_result<T>(
        &self,
        key: &Digest,
        decode: &mut dyn FnMut(&Digest, &[u8]) -> T,
    ) -> Result<Option<T>, Error> {
        let Some(result) = self
            .inner
            .calls
            .result_of(key)
            .map_err(|e| self.storage_error(e))?
        else {
            return Ok(None);
        };
        let mut out = None;
        self.inner
            .values
            .load_with(&result, &mut |bytes| out = Some(decode(&result, bytes)))
            .map_err(|e| self.storage_error(e))?;
        Ok(out)
    }

    /// Stores an encoded result and its call record: the value first, so a record never points
    /// at a missing value.
    pub(crate) fn store(&self, bytes: &[u8], record: CallRecord) -> Result<(), Error> {
        self.inner
            .values
            .save(&record.result, bytes)
            .map_err(|e| self.storage_error(e))?;
        self.inner
            .calls
            .save(record)
            .map_err(|e| self.storage_error(e))
    }
}

/// Decodes a stored value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], value: &Digest) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        value: *value,
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

fn shared_memory() -> &'static Cache {
    static MEMORY: OnceLock<Cache> = OnceLock::new();
    MEMORY.get_or_init(Cache::memory)
}

fn shared_void() -> &'static Cache {
    static VOID: OnceLock<Cache> = OnceLock::new();
    VOID.get_or_init(Cache::void)
}

/// The cache used when no scope or sticky cache is set: this process's shared memory cache.
pub(crate) fn default_cache() -> &'static Cache {
    shared_memory()
}

/// Anything that names or is a cache: `&str` and `String` (a name for [`Cache::named`]), `Cache`
/// and `&Cache`.
pub trait IntoCache {
    /// Resolves to a cache.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCache`] for a name that does not exist.
    fn into_cache(self) -> Result<Cache, Error>;
}

impl IntoCache for Cache {
    fn into_cache(self) -> Result<Cache, Error> {
        Ok(self)
    }
}

impl IntoCache for &Cache {
    fn into_cache(self) -> Result<Cache, Error> {
        Ok(self.clone())
    }
}

impl IntoCache for &str {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(self)
    }
}

impl IntoCache for String {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(&self)
    }
}

impl IntoCache for &String {
    fn into_cache(self) -> Result<Cache, Error> {
        Cache::named(self)
    }
}

/// Keeps `Mutex` poisoning from turning one panic into many.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) type DigestMap<V> = HashMap<Digest, V, DigestBuildHasher>;
