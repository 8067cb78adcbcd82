//! [`Cache`]: where memoized results live.
//!
//! A cache is a values storage and a calls storage (a *layer*), optionally read-only or
//! size-limited; or a *stack* of layers (saves go to the first, hits in later layers are copied
//! back into the first); or a *pool* of layers (read-only: the first member holding a call
//! answers).

mod eviction;
mod layer;
mod verify;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fleche_storage::{
    CallRecord, CallStorage, Digest, FileCalls, FileOptions, FileValues, MemoryCalls, MemoryValues,
    Payload, Selection, StorageError, TypedValue, ValueStorage, VoidCalls, VoidValues, file,
};
#[cfg(feature = "hdf5")]
use fleche_storage::{Hdf5Calls, Hdf5Values};
#[cfg(feature = "sqlite")]
use fleche_storage::{SqlDatabase, SqlTarget};
use serde::de::DeserializeOwned;

pub use eviction::{EvictionPolicy, Fifo, Lru};
use layer::Layer;
pub use verify::{Corrupt, EntryKind, Verification};

use crate::Error;
use crate::flight::Flights;
use crate::sync::lock;

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

// A panic inside a memoized body or a `with_cache` scope leaves every cache consistent: storages
// write entries atomically, single-flight hands a failed call over to the next caller, the scope
// guard restores the previous cache, and every lock ignores poisoning. So a `Cache` can cross
// `catch_unwind`, as test harnesses need, without asking storages to be `UnwindSafe`.
impl std::panic::UnwindSafe for Cache {}
impl std::panic::RefUnwindSafe for Cache {}

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
        let layer = Layer::new(Arc::new(VoidValues), Arc::new(VoidCalls), "void");
        Self::new("void", Kind::Single(Arc::new(layer)), false)
    }

    /// A cache made of the given storages: how custom and third-party backends are used.
    #[must_use]
    pub fn from_storages(
        name: impl Into<String>,
        values: impl ValueStorage + 'static,
        calls: impl CallStorage + 'static,
    ) -> Self {
        Self::from_boxed(name, Box::new(values), Box::new(calls))
    }

    /// Like [`from_storages`](Cache::from_storages), for storages already boxed (as the
    /// configuration opens them).
    #[must_use]
    pub fn from_boxed(
        name: impl Into<String>,
        values: Box<dyn ValueStorage>,
        calls: Box<dyn CallStorage>,
    ) -> Self {
        let name = name.into();
        let layer = Layer::new(Arc::from(values), Arc::from(calls), name.clone());
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
    /// let first = fleche::Cache::msgpack(dir.path(), FileOptions::new().durable(true))?;
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
        let values =
            FileValues::open(root.join(file::VALUES_DIR), options.clone()).map_err(storage)?;
        let calls = FileCalls::open(root.join(file::CALLS_DIR), options).map_err(storage)?;
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
        let values =
            Hdf5Values::open(root.join(file::VALUES_DIR), prefix_length).map_err(storage)?;
        let calls = Hdf5Calls::open(root.join(file::CALLS_DIR), prefix_length).map_err(storage)?;
        Ok(Self::from_storages("hdf5", values, calls))
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

    fn derived(&self, what: &str, change: impl FnOnce(Layer) -> Layer) -> Result<Cache, Error> {
        let copy = change(Layer::clone(self.single(what)?));
        let single_flight = self.inner.flights.is_some() && !copy.is_read_only();
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
        self.derived("read_only", Layer::with_read_only)
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
        self.derived("max_size", |l| l.with_limit(max, Box::new(policy)))
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
        self.derived("remaining_depth", |l| l.with_remaining_depth(depth))
    }

    /// A view of the same storages that recomputes the blake3 digest of every value it loads and
    /// refuses (as a corrupt entry: a miss with a warning) a value whose bytes do not hash to the
    /// digest it was stored under: `verify = "digest"` in `fleche.toml`. This proves a value
    /// against its content address without signing, at the cost of hashing every hit.
    ///
    /// # Errors
    ///
    /// [`Error::Composition`] for a stack or a pool (set it on the layers).
    pub fn verify_digest(&self) -> Result<Cache, Error> {
        self.derived("verify_digest", Layer::with_verify_digest)
    }

    /// A view of the same storages whose memoized lookups always miss, while results are still
    /// stored (over any stored ones): rerunning a computation under it recomputes every memoized
    /// call it makes, nested ones included, and refreshes what is stored.
    ///
    /// ```
    /// #[fleche::memoize]
    /// fn step(x: u64) -> u64 { x + 1 }
    ///
    /// # fn main() -> Result<(), fleche::Error> {
    /// let c = fleche::Cache::memory();
    /// fleche::with_cache(&c, || step(1));
    /// let refreshing = c.refreshing();
    /// fleche::with_cache(&refreshing, || step(1));           // runs again, stores again
    /// assert!(fleche::with_cache(&c, || step::contains(1)));
    /// # Ok(()) }
    /// ```
    ///
    /// For a stack or a pool, every layer refreshes.
    #[must_use]
    pub fn refreshing(&self) -> Cache {
        self.map_layers(|l| l.with_refreshing())
    }

    /// A read-only view of the same storages that shows only the records `accept` accepts
    /// (what [`Cache::filtered`] builds from a query), in every layer.
    pub(crate) fn with_record_filter(&self, accept: &layer::RecordFilter) -> Cache {
        self.map_layers(|l| l.with_filter(Arc::clone(accept)))
    }

    /// The same cache with every layer changed by `change`.
    fn map_layers(&self, change: impl Fn(Layer) -> Layer) -> Cache {
        let each = |l: &Arc<Layer>| Arc::new(change(Layer::clone(l)));
        let kind = match &self.inner.kind {
            Kind::Single(l) => Kind::Single(each(l)),
            Kind::Stack { layers, .. } => Kind::Stack {
                layers: layers.iter().map(each).collect(),
                backfill: Mutex::new(()),
            },
            Kind::Pool(members) => Kind::Pool(members.iter().map(each).collect()),
        };
        let writes = match &kind {
            Kind::Single(l) => !l.is_read_only(),
            Kind::Stack { layers, .. } => layers.first().is_some_and(|l| !l.is_read_only()),
            Kind::Pool(_) => false,
        };
        Self::new(
            self.inner.name.clone(),
            kind,
            self.inner.flights.is_some() && writes,
        )
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
            seen.extend(layer.value_digests().map_err(|e| self.error(e))?);
        }
        Ok(seen.into_iter().collect())
    }

    /// Removes the values that no stored call refers to (directly, or as a destructured part),
    /// and the temporary files older than an hour that writers killed mid-write left behind, in
    /// every writable layer; returns how many were removed. A value being saved by a
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
                .filter(|l| !l.is_read_only())
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
            Kind::Single(l) => !l.is_read_only(),
            Kind::Stack { layers, .. } => layers.first().is_some_and(|l| !l.is_read_only()),
            Kind::Pool(_) => false,
        }
    }

    fn error(&self, source: StorageError) -> Error {
        Error::Storage {
            cache: self.inner.name.clone(),
            source,
        }
    }

    pub(crate) fn rejected(&self, operation: &'static str) -> Error {
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
            if layer.holds(key).map_err(|e| self.error(e))? {
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
            if let Some(r) = layer.record(key).map_err(|e| self.error(e))? {
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
        self.visit_result(key, &mut |value, payload| match payload {
            Payload::Bytes(bytes) => decode(bytes, value),
            Payload::Stream(mut reader) => {
                let bytes = reader
                    .read_all()
                    .map_err(|e| decode_error::<T>(value, e.to_string()))?;
                decode(&bytes, value)
            }
            Payload::Value(kept) => {
                let bytes = kept
                    .encode()
                    .map_err(|e| decode_error::<T>(value, e.to_string()))?;
                decode(&bytes, value)
            }
        })?
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
                for l in layers.iter().filter(|l| !l.is_read_only()) {
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
            return single.records().map_err(|e| self.error(e));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in layers {
            for r in layer.records().map_err(|e| self.error(e))? {
                if seen.insert(r.key) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// The records `selection` matches, ordered and paged; each storage runs the selection
    /// itself (in SQL on SQLite). For stacks and pools, each call once, as the first layer
    /// holding it has it.
    pub(crate) fn select(&self, selection: &Selection) -> Result<Vec<CallRecord>, Error> {
        let layers = self.layers();
        if let [single] = layers {
            return single.select(selection).map_err(|e| self.error(e));
        }
        // Each layer's first `skip + take` in order hold the page of the union.
        let mut per_layer = selection.unpaged();
        per_layer.take = selection.needed();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in layers {
            for r in layer.select(&per_layer).map_err(|e| self.error(e))? {
                if seen.insert(r.key) {
                    out.push(r);
                }
            }
        }
        Ok(selection.page(out))
    }

    /// How many records [`select`](Cache::select) returns.
    pub(crate) fn count(&self, selection: &Selection) -> Result<usize, Error> {
        if let [single] = self.layers() {
            return single.count(selection).map_err(|e| self.error(e));
        }
        Ok(self.select(selection)?.len())
    }

    /// Decodes the result of the call stored under `key` with `decode`, from the cheapest form
    /// the backend has (the value itself, a stream, or borrowed bytes): the hit path.
    /// `Ok(None)` when nothing is stored. In a stack, a hit in a later layer is first copied
    /// into the first layer.
    pub(crate) fn visit_result<T>(
        &self,
        key: &Digest,
        decode: &mut dyn FnMut(&Digest, Payload<'_>) -> T,
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
            let out = layer
                .visit_payload(&result, &mut |payload| decode(&result, payload))
                .map_err(|e| self.error(e))?;
            return Ok(out);
        }
        Ok(None)
    }

    /// Copies the entry under `key` from `from` into `first`, once, warning on failure.
    fn backfill(&self, guard: &Mutex<()>, first: &Layer, from: &Layer, key: &Digest) {
        let _once = lock(guard);
        let copied = (|| {
            if first.holds(key)? {
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

    /// The bytes of value `digest` (reassembled), from the first layer holding it.
    pub(crate) fn value_bytes(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        for layer in self.layers() {
            if let Some(bytes) = layer.value(digest).map_err(|e| self.error(e))? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The call record stored under `key` and its result's encoded bytes, both checked against
    /// their addresses, from the first layer holding the record: what a caller outside
    /// `#[memoize]` (such as `fleche run`) reads on a hit. `Ok(None)` when no record is stored,
    /// or its value is missing.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when a storage fails or the entry is corrupt ([`Error::is_corrupt`]).
    pub fn entry(&self, key: &Digest) -> Result<Option<(CallRecord, Vec<u8>)>, Error> {
        let layers = self.layers();
        for (i, layer) in layers.iter().enumerate() {
            let found = match layer.entry(key) {
                Ok(found) => found,
                Err(e) if layers.len() > 1 && i + 1 < layers.len() => {
                    tracing::warn!(cache = %self.inner.name, error = %e, "cache layer unreadable; trying the next");
                    continue;
                }
                Err(e) => return Err(self.error(e)),
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Stores `record` with `value`, the encoded result (`docs/format.md`, "Values"), in the
    /// first layer of a stack, replacing what is stored under the record's key. The record's
    /// `result` is set to the value's digest. For callers outside `#[memoize]`.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] when the storage fails; [`Error::Composition`] for a pool or a
    /// read-only cache.
    pub fn store_record(&self, mut record: CallRecord, value: &[u8]) -> Result<(), Error> {
        if !self.accepts_writes() {
            return Err(self.rejected("save"));
        }
        record.result = Digest::from_bytes(*blake3::hash(value).as_bytes());
        self.store(value, record)
    }

    /// Stores an encoded result and its record unless a record is stored under its key (in the
    /// first layer of a stack); `Ok(true)` when this call stored it.
    pub(crate) fn store_new(&self, bytes: &[u8], record: CallRecord) -> Result<bool, Error> {
        let layer = match &self.inner.kind {
            Kind::Single(l) => l,
            Kind::Stack { layers, .. } => layers.first().ok_or_else(|| self.rejected("save"))?,
            Kind::Pool(_) => return Err(self.rejected("save")),
        };
        layer.store_new(bytes, record).map_err(|e| self.error(e))
    }

    /// Stores an encoded result and its call record (in the first layer of a stack).
    pub(crate) fn store(&self, bytes: &[u8], record: CallRecord) -> Result<(), Error> {
        self.store_kept(bytes, None, record)
    }

    /// [`Cache::store`], handing a layer that keeps values the value itself (`keep` makes it).
    pub(crate) fn store_kept(
        &self,
        bytes: &[u8],
        keep: Option<&dyn Fn() -> Arc<dyn TypedValue>>,
        record: CallRecord,
    ) -> Result<(), Error> {
        let layer = match &self.inner.kind {
            Kind::Single(l) => l,
            Kind::Stack { layers, .. } => layers.first().ok_or_else(|| self.rejected("save"))?,
            Kind::Pool(_) => return Err(self.rejected("save")),
        };
        layer
            .store_kept(bytes, keep, record)
            .map_err(|e| self.error(e))
    }
}

/// Decodes a stored value (`docs/format.md`, "Values").
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], value: &Digest) -> Result<T, Error> {
    fleche_storage::encoding::from_slice(bytes).map_err(|e| decode_error::<T>(value, e.to_string()))
}

fn decode_error<T>(value: &Digest, message: String) -> Error {
    Error::Decode {
        value: *value,
        type_name: std::any::type_name::<T>(),
        message,
    }
}
