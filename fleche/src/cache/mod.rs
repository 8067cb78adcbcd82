//! [`Cache`]: where memoized results live.
//!
//! A cache is a values storage and a calls storage (a *layer*), optionally read-only or
//! size-limited; or a *stack* of layers (saves go to the first, hits in later layers are copied
//! back into the first); or a *pool* of layers (read-only: the first member holding a call
//! answers).

mod eviction;
mod layer;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use fleche_storage::{
    CallRecord, CallStorage, Digest, DigestBuildHasher, FileCalls, FileOptions, FileValues,
    MemoryCalls, MemoryValues, StorageError, ValueStorage, VoidCalls, VoidValues, destructure,
};
#[cfg(feature = "hdf5")]
use fleche_storage::{Hdf5Calls, Hdf5Values};
#[cfg(feature = "sqlite")]
use fleche_storage::{SqlDatabase, SqlTarget};
use serde::de::DeserializeOwned;

pub use eviction::{EvictionPolicy, Fifo, Lru};
use layer::{Layer, Limit};

use crate::flight::Flights;
use crate::{Error, Query};

/// The names every program can use without a configuration file.
pub const RESERVED_NAMES: [&str; 3] = ["memory", "void", "default"];

/// A cache: where memoized results are looked up and stored.
///
/// `Cache` is a cheap handle (an `Arc`): clones share the same storages. Pass it to
/// [`with_cache`](crate::with_cache) to make it the active cache of a scope.
///
/// | made by | what it is |
/// |---|---|
/// | [`Cache::memory`], [`Cache::void`], [`Cache::msgpack`], [`Cache::from_storages`] | one values storage and one calls storage |
/// | [`Cache::read_only`] | the same storages, loads only: under it functions run and nothing is saved |
/// | [`Cache::max_size`], [`Cache::max_size_with`] | the same storages, keeping at most N call records (LRU by default) |
/// | [`Cache::stack`] | layers: loads fall through, hits are copied back into the first, saves go to the first |
/// | [`Cache::pool`] | members, read-only: the first member holding a call answers |
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
    kind: Kind,
    /// `None` for caches that store nothing: their calls never wait for each other.
    flights: Option<Flights>,
}

enum Kind {
    Single(Arc<Layer>),
    Stack {
        layers: Vec<Arc<Layer>>,
        /// Serializes back-fills, so concurrent hits copy an entry back once.
        backfill: Mutex<()>,
    },
    Pool(Vec<Arc<Layer>>),
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cache");
        d.field("name", &self.inner.name);
        match &self.inner.kind {
            Kind::Single(l) => d.field("layer", l),
            Kind::Stack { layers, .. } => d.field("stack", layers),
            Kind::Pool(members) => d.field("pool", members),
        };
        d.finish()
    }
}

impl Cache {
    fn new(name: impl Into<String>, kind: Kind, single_flight: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                kind,
                flights: single_flight.then(Flights::default),
            }),
        }
    }

    /// A new, empty in-process cache, private to this handle and its clones.
    #[must_use]
    pub fn memory() -> Self {
        Self::from_storages("memory", MemoryValues::new(), MemoryCalls::new())
    }

    /// A cache that stores nothing: under it every call runs its body.
    #[must_use]
    pub fn void() -> Self {
        let layer = Layer {
            values: Arc::new(VoidValues),
            calls: Arc::new(VoidCalls),
            read_only: false,
            limit: None,
            remaining_depth: None,
            location: "void".to_owned(),
        };
        Self::new("void", Kind::Single(Arc::new(layer)), false)
    }

    /// A cache made of the given storages: how custom and third-party backends are used.
    #[must_use]
    pub fn from_storages(
        name: impl Into<String>,
        values: impl ValueStorage + 'static,
        calls: impl CallStorage + 'static,
    ) -> Self {
        let name = name.into();
        let layer = Layer {
            values: Arc::new(values),
            calls: Arc::new(calls),
            read_only: false,
            limit: None,
            remaining_depth: None,
            location: name.clone(),
        };
        Self::new(name, Kind::Single(Arc::new(layer)), true)
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

    /// A cache in one SQLite database (the `sql` backend): call records with their arguments as
    /// queryable JSON, and values, in the file at `path` (created if missing). WAL mode and a busy
    /// timeout let several threads and processes share it.
    ///
    /// ```
    /// #[fleche::memoize]
    /// fn area(w: u32, h: u32) -> u32 { w * h }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = fleche::Cache::sqlite(dir.path().join("cache.db"))?;
    /// fleche::with_cache(&db, || area(2, 3));
    /// let again = fleche::Cache::sqlite(dir.path().join("cache.db"))?;
    /// assert_eq!(fleche::with_cache(&again, || area::load(2, 3)), Some(6));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the file cannot be opened or is not a compatible database.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let db = SqlDatabase::open(&SqlTarget::File(path.to_owned())).map_err(|source| {
            Error::Storage {
                cache: path.display().to_string(),
                source,
            }
        })?;
        Ok(Self::from_storages("sql", db.values(), db.calls()))
    }

    /// A cache of HDF5 files under `root` (the `hdf5` backend): values in `root/values`, call
    /// records in `root/calls`, entries whose digests share their first `prefix_length`
    /// hexadecimal characters in one file. Numeric sequences are stored as typed datasets that
    /// h5py and every HDF5 tool read.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the directories cannot be created or hold files written with
    /// another `prefix_length`.
    #[cfg(feature = "hdf5")]
    pub fn hdf5(root: impl AsRef<Path>, prefix_length: usize) -> Result<Self, Error> {
        let root = root.as_ref();
        let storage = |source| Error::Storage {
            cache: root.display().to_string(),
            source,
        };
        let values = Hdf5Values::open(root.join("values"), prefix_length).map_err(storage)?;
        let calls = Hdf5Calls::open(root.join("calls"), prefix_length).map_err(storage)?;
        Ok(Self::from_storages("hdf5", values, calls))
    }

    /// The cache called `name`: a reserved name, or a cache defined in the `fleche.toml` files
    /// of this process (see [`config`](crate::config)). Every call with the same name returns the
    /// same instance.
    ///
    /// The reserved names work everywhere: `"memory"` is this process's shared in-memory cache,
    /// `"void"` stores nothing, and `"default"` is the cache a memoized call uses when no scope or
    /// sticky cache is set (`FLECHE_CACHE`, else `[default] cache`, else `"memory"`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the configuration is broken; [`Error::UnknownCache`] for a name
    /// that is neither reserved nor configured, listing the names that exist and the files read.
    pub fn named(name: &str) -> Result<Self, Error> {
        match name {
            "memory" => Ok(shared_memory().clone()),
            "void" => Ok(shared_void().clone()),
            "default" => Ok(default_cache().clone()),
            _ => registry::named(name),
        }
    }

    /// A cache from the text of one cache definition (what goes under `[name]` in
    /// `fleche.toml`); relative paths resolve against the working directory.
    ///
    /// ```
    /// let c = fleche::Cache::from_toml_str("values.type = \"memory\"\ncalls.type = \"memory\"\nmax_size = 10")?;
    /// # Ok::<(), fleche::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key that is wrong.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        let env = crate::config::Env::from_process();
        let origin = env.cwd.join("<string>");
        let value: toml::Table = toml::from_str(text).map_err(|e| {
            crate::config::ConfigError::new(&origin, None, e.to_string().trim_end())
        })?;
        Ok(crate::config::build_cache(
            "cache",
            &toml::Value::Table(value),
            &origin,
            &env,
        )?)
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

    pub(crate) fn flights(&self) -> Option<&Flights> {
        self.inner.flights.as_ref()
    }

    fn single(&self, what: &str) -> Result<&Arc<Layer>, Error> {
        match &self.inner.kind {
            Kind::Single(layer) => Ok(layer),
            _ => Err(Error::Composition {
                cache: self.inner.name.clone(),
                message: format!(
                    "{what} applies to a cache of one values and one calls storage, not to a stack or a pool"
                ),
            }),
        }
    }

    fn derived(&self, what: &str, change: impl FnOnce(&mut Layer)) -> Result<Cache, Error> {
        let layer = self.single(what)?;
        let mut copy = Layer {
            values: Arc::clone(&layer.values),
            calls: Arc::clone(&layer.calls),
            read_only: layer.read_only,
            limit: layer.limit.clone(),
            remaining_depth: layer.remaining_depth,
            location: layer.location.clone(),
        };
        change(&mut copy);
        let single_flight = self.inner.flights.is_some() && !copy.read_only;
        Ok(Self::new(
            self.inner.name.clone(),
            Kind::Single(Arc::new(copy)),
            single_flight,
        ))
    }

    /// A read-only view of the same storages: loads work; memoized calls that miss run without
    /// saving; explicit evictions and transfers into it are rejected.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] for a stack or a pool (a pool is read-only already; make the
    /// layers of a stack read-only before stacking them).
    pub fn read_only(&self) -> Result<Cache, Error> {
        self.derived("read_only", |l| l.read_only = true)
    }

    /// A view of the same storages that keeps at most `max` call records, evicting the least
    /// recently used. Records already stored count. Values are not pruned.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] for a stack or a pool.
    pub fn max_size(&self, max: usize) -> Result<Cache, Error> {
        self.max_size_with(max, Lru::new())
    }

    /// Like [`max_size`](Cache::max_size) with another eviction policy.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] for a stack or a pool.
    pub fn max_size_with(
        &self,
        max: usize,
        policy: impl EvictionPolicy + 'static,
    ) -> Result<Cache, Error> {
        let limit = Arc::new(Limit::new(max, Box::new(policy)));
        self.derived("max_size", |l| l.limit = Some(limit))
    }

    /// A view of the same storages that destructures results on save: sub-collections at least
    /// `depth` deep are stored under their own digests, so parts shared between results are
    /// stored once (see [`fleche_storage::destructure`]). Loads reassemble destructured values at
    /// every depth, with or without this setting.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] for a stack or a pool.
    pub fn remaining_depth(&self, depth: usize) -> Result<Cache, Error> {
        self.derived("remaining_depth", |l| l.remaining_depth = Some(depth))
    }

    /// The digests of every stored value (for stacks and pools, of every layer, without
    /// duplicates), destructured parts included.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a values storage fails.
    pub fn value_digests(&self) -> Result<Vec<Digest>, Error> {
        let mut seen = HashSet::new();
        for layer in self.layers() {
            seen.extend(layer.values.digests().map_err(|e| self.error(e))?);
        }
        Ok(seen.into_iter().collect())
    }

    /// Removes the values that no stored call refers to (directly, or as a destructured part),
    /// in every writable layer; returns how many were removed. A value being saved by a
    /// concurrent call just before its record may be removed too: that call's next lookup is
    /// then a miss, never a wrong result.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage fails; a read-only cache or a pool rejects it.
    pub fn gc(&self) -> Result<usize, Error> {
        match &self.inner.kind {
            Kind::Single(l) => l.gc().map_err(|e| self.error(e)),
            Kind::Stack { layers, .. } => layers
                .iter()
                .filter(|l| !l.read_only)
                .map(|l| l.gc().map_err(|e| self.error(e)))
                .sum(),
            Kind::Pool(_) => Err(self.rejected("gc")),
        }
    }

    fn layers_of(name: &str, caches: Vec<Cache>, what: &str) -> Result<Vec<Arc<Layer>>, Error> {
        if caches.is_empty() {
            return Err(Error::Composition {
                cache: name.to_owned(),
                message: format!("a {what} needs at least one cache"),
            });
        }
        caches
            .iter()
            .map(|c| match &c.inner.kind {
                Kind::Single(layer) => Ok(Arc::clone(layer)),
                _ => Err(Error::Composition {
                    cache: name.to_owned(),
                    message: format!(
                        "`{}` is a stack or a pool: {what}s do not nest",
                        c.inner.name
                    ),
                }),
            })
            .collect()
    }

    /// A stack of caches: a load looks in each in order, and a hit in a later layer is copied
    /// into the first layer (only); saves go to the first layer; evictions remove from every
    /// layer. If the first layer is read-only, hits are still returned (with a warning that they
    /// could not be copied).
    ///
    /// ```
    /// use fleche::Cache;
    ///
    /// #[fleche::memoize]
    /// fn slow(x: u64) -> u64 { x + 1 }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let fast = Cache::memory();
    /// let shared = Cache::memory();
    /// fleche::with_cache(&shared, || slow(1));
    /// let stack = Cache::stack("layered", [fast.clone(), shared])?;
    /// assert_eq!(fleche::with_cache(&stack, || slow(1)), 2);     // found in `shared` ...
    /// assert!(fleche::with_cache(&fast, || slow::contains(1)));  // ... and copied into `fast`
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] when `caches` is empty or holds a stack or a pool.
    pub fn stack(
        name: impl Into<String>,
        caches: impl IntoIterator<Item = Cache>,
    ) -> Result<Cache, Error> {
        let name = name.into();
        let caches: Vec<Cache> = caches.into_iter().collect();
        let single_flight = caches.iter().any(|c| c.inner.flights.is_some());
        let layers = Self::layers_of(&name, caches, "stack")?;
        Ok(Self::new(
            name,
            Kind::Stack {
                layers,
                backfill: Mutex::new(()),
            },
            single_flight,
        ))
    }

    /// A pool of caches, read-only: a load is answered by the first member holding the call,
    /// and nothing is ever written or copied. [`records`](Cache::records) is the union of the
    /// members', without duplicates.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] when `caches` is empty or holds a stack or a pool.
    pub fn pool(
        name: impl Into<String>,
        caches: impl IntoIterator<Item = Cache>,
    ) -> Result<Cache, Error> {
        let name = name.into();
        let layers = Self::layers_of(&name, caches.into_iter().collect(), "pool")?;
        Ok(Self::new(name, Kind::Pool(layers), false))
    }

    /// Whether memoized calls under this cache store their results.
    pub(crate) fn accepts_writes(&self) -> bool {
        match &self.inner.kind {
            Kind::Single(l) => !l.read_only,
            Kind::Stack { layers, .. } => layers.first().is_some_and(|l| !l.read_only),
            Kind::Pool(_) => false,
        }
    }

    fn error(&self, source: StorageError) -> Error {
        Error::Storage {
            cache: self.inner.name.clone(),
            source,
        }
    }

    fn rejected(&self, operation: &'static str) -> Error {
        self.error(StorageError::Rejected {
            location: self.inner.name.clone(),
            operation,
        })
    }

    fn layers(&self) -> &[Arc<Layer>] {
        match &self.inner.kind {
            Kind::Single(l) => std::slice::from_ref(l),
            Kind::Stack { layers, .. } | Kind::Pool(layers) => layers,
        }
    }

    /// Whether a call is stored under `key` (a call digest, as returned by a companion
    /// `digest` helper), in any layer.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a calls storage fails.
    pub fn contains(&self, key: &Digest) -> Result<bool, Error> {
        for layer in self.layers() {
            if layer
                .calls
                .result_of(key)
                .map_err(|e| self.error(e))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The record of the call stored under `key` (from the first layer holding it).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a calls storage fails.
    pub fn record(&self, key: &Digest) -> Result<Option<CallRecord>, Error> {
        for layer in self.layers() {
            if let Some(r) = layer.calls.load(key).map_err(|e| self.error(e))? {
                return Ok(Some(r));
            }
        }
        Ok(None)
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

    /// Removes the call stored under `key` (from every layer of a stack); `true` if there was
    /// one. The value it referred to stays in the values storage (other calls may share it).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a calls storage fails, or rejects the eviction (a read-only cache,
    /// a pool).
    pub fn evict(&self, key: &Digest) -> Result<bool, Error> {
        match &self.inner.kind {
            Kind::Single(l) => l.evict(key).map_err(|e| self.error(e)),
            Kind::Stack { layers, .. } => {
                let mut removed = false;
                for l in layers.iter().filter(|l| !l.read_only) {
                    removed |= l.evict(key).map_err(|e| self.error(e))?;
                }
                Ok(removed)
            }
            Kind::Pool(_) => Err(self.rejected("evict")),
        }
    }

    /// Every stored call record; for stacks and pools, the union over the layers, each call once
    /// (as the first layer holding it has it).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a calls storage fails.
    pub fn records(&self) -> Result<Vec<CallRecord>, Error> {
        let layers = self.layers();
        if let [single] = layers {
            return single.calls.records().map_err(|e| self.error(e));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in layers {
            for r in layer.calls.records().map_err(|e| self.error(e))? {
                if seen.insert(r.key) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Decodes the result of the call stored under `key` with `decode`, without copying the
    /// stored bytes where the backend allows: the hit path. `Ok(None)` when nothing is stored.
    /// In a stack, a hit in a later layer is first copied into the first layer.
    pub(crate) fn visit_result<T>(
        &self,
        key: &Digest,
        decode: &mut dyn FnMut(&Digest, &[u8]) -> T,
    ) -> Result<Option<T>, Error> {
        let layers = self.layers();
        for (i, layer) in layers.iter().enumerate() {
            let found = match layer.result_of(key) {
                Ok(found) => found,
                // One broken layer does not hide the others.
                Err(e) if layers.len() > 1 => {
                    tracing::warn!(cache = %self.inner.name, error = %e, "cache layer unreadable; trying the next");
                    continue;
                }
                Err(e) => return Err(self.error(e)),
            };
            let Some(result) = found else { continue };
            if i > 0
                && let Kind::Stack { backfill, .. } = &self.inner.kind
            {
                self.backfill(backfill, &layers[0], layer, key);
            }
            let mut out = None;
            let mut destructured = None;
            layer
                .values
                .load_with(&result, &mut |bytes| {
                    if destructure::is_split(bytes) {
                        destructured = Some(bytes.to_vec());
                    } else {
                        out = Some(decode(&result, bytes));
                    }
                })
                .map_err(|e| self.error(e))?;
            if let Some(root) = destructured {
                let joined = destructure::join(&result, &root, &mut |d| layer.values.load(d))
                    .map_err(|e| self.error(e))?;
                out = Some(decode(&result, &joined));
            }
            return Ok(out);
        }
        Ok(None)
    }

    /// Copies the entry under `key` from `from` into `first`, once, warning on failure.
    fn backfill(&self, guard: &Mutex<()>, first: &Layer, from: &Layer, key: &Digest) {
        let _once = lock(guard);
        let copied = (|| {
            if first.calls.result_of(key)?.is_some() {
                return Ok(());
            }
            match from.entry(key)? {
                Some((record, bytes)) => first.store(&bytes, record),
                None => Ok(()),
            }
        })();
        if let Err(e) = copied {
            tracing::warn!(cache = %self.inner.name, key = %key, error = %e,
                "could not copy a hit back into the first layer of the stack");
        }
    }

    /// Stores an encoded result and its call record (in the first layer of a stack).
    pub(crate) fn store(&self, bytes: &[u8], record: CallRecord) -> Result<(), Error> {
        match &self.inner.kind {
            Kind::Single(l) => l.store(bytes, record).map_err(|e| self.error(e)),
            Kind::Stack { layers, .. } => match layers.first() {
                Some(l) => l.store(bytes, record).map_err(|e| self.error(e)),
                None => Err(self.rejected("save")),
            },
            Kind::Pool(_) => Err(self.rejected("save")),
        }
    }

    /// Copies the calls matching `query` (and their values) from this cache into `to`. Calls
    /// already in `to` are skipped unless `overwrite`. Safe to run concurrently with other
    /// transfers and with memoized calls: every entry is copied value first, record second.
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
            let bytes = self
                .layers()
                .iter()
                .find_map(|l| l.value(&record.result).transpose());
            match bytes {
                Some(bytes) => {
                    let bytes = bytes.map_err(|e| self.error(e))?;
                    to.store(&bytes, record)?;
                    report.copied.push(key);
                }
                None => report.skipped.push(key),
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

/// The cache used when no scope or sticky cache is set: `FLECHE_CACHE`, else the configuration's
/// `[default] cache`, else the shared memory cache. A broken configuration cannot stop a memoized
/// call: it is logged as an error, once, and the memory cache is used.
pub(crate) fn default_cache() -> &'static Cache {
    static DEFAULT: OnceLock<Cache> = OnceLock::new();
    DEFAULT.get_or_init(|| match registry::default() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the default cache is unusable; memoized calls outside a scope use the memory cache");
            shared_memory().clone()
        }
    })
}

/// The caches named in this process's configuration, built once each.
mod registry {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use super::{Cache, RESERVED_NAMES, lock, shared_memory};
    use crate::Error;
    use crate::config::{Config, DefaultCache, Env};

    fn config() -> Result<&'static Config, Error> {
        static CONFIG: OnceLock<Result<Config, crate::config::ConfigError>> = OnceLock::new();
        CONFIG
            .get_or_init(|| Config::discover(&Env::from_process()))
            .as_ref()
            .map_err(|e| Error::Config(e.clone()))
    }

    pub(super) fn named(name: &str) -> Result<Cache, Error> {
        static BUILT: OnceLock<Mutex<HashMap<String, Cache>>> = OnceLock::new();
        let config = config()?;
        let mut built = lock(BUILT.get_or_init(Default::default));
        if let Some(c) = built.get(name) {
            return Ok(c.clone());
        }
        match config.build(name)? {
            Some(c) => {
                built.insert(name.to_owned(), c.clone());
                Ok(c)
            }
            None => Err(Error::UnknownCache {
                name: name.to_owned(),
                known: RESERVED_NAMES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .chain(config.cache_names())
                    .collect(),
                config_files: config.files().to_vec(),
            }),
        }
    }

    pub(super) fn default() -> Result<Cache, Error> {
        match config()?.default_cache()? {
            DefaultCache::Memory => Ok(shared_memory().clone()),
            DefaultCache::Inline(c) => Ok(c),
            DefaultCache::Named(n) if n == "default" => Ok(shared_memory().clone()),
            DefaultCache::Named(n) => Cache::named(&n),
        }
    }
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
