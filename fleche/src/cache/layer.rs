//! One values storage and one calls storage, with the read-only and size-limit wrappers: the unit
//! that caches, stacks and pools are made of.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use fleche_storage::{
    CallRecord, CallStorage, Digest, Payload, Selection, StorageError, TypedValue, ValueStorage,
    destructure,
};

use super::eviction::EvictionPolicy;
use crate::sync::lock;

/// Which records a filtered layer shows.
pub(crate) type RecordFilter = Arc<dyn Fn(&CallRecord) -> bool + Send + Sync>;

/// A values storage and a calls storage, possibly read-only or size-limited.
#[derive(Clone)]
pub(crate) struct Layer {
    values: Arc<dyn ValueStorage>,
    calls: Arc<dyn CallStorage>,
    read_only: bool,
    limit: Option<Arc<Limit>>,
    /// Destructure values at this depth on save (`fleche_storage::destructure`).
    remaining_depth: Option<usize>,
    /// Recompute every loaded value's blake3 digest (`verify = "digest"`).
    verify_digest: bool,
    /// Memoized lookups miss (stores still happen): `Cache::refreshing`.
    refreshing: bool,
    /// Only the records this accepts are visible: `Cache::filtered`.
    filter: Option<RecordFilter>,
    /// Where errors say they happened.
    location: String,
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("values", &self.values)
            .field("calls", &self.calls)
            .field("read_only", &self.read_only)
            .field("max_size", &self.limit.as_ref().map(|l| l.max))
            .field("remaining_depth", &self.remaining_depth)
            .field("verify_digest", &self.verify_digest)
            .field("refreshing", &self.refreshing)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// At most `max` call records; the policy picks what goes.
pub(crate) struct Limit {
    max: usize,
    state: Mutex<LimitState>,
}

struct LimitState {
    /// Whether the records already in the storage have been registered with the policy.
    loaded: bool,
    policy: Box<dyn EvictionPolicy>,
}

impl Limit {
    fn new(max: usize, policy: Box<dyn EvictionPolicy>) -> Self {
        Self {
            max,
            state: Mutex::new(LimitState {
                loaded: false,
                policy,
            }),
        }
    }
}

impl Layer {
    /// A writable layer of `values` and `calls`, named `location` in errors.
    pub(crate) fn new(
        values: Arc<dyn ValueStorage>,
        calls: Arc<dyn CallStorage>,
        location: impl Into<String>,
    ) -> Self {
        Self {
            values,
            calls,
            read_only: false,
            limit: None,
            remaining_depth: None,
            verify_digest: false,
            refreshing: false,
            filter: None,
            location: location.into(),
        }
    }

    /// The same storages, read-only.
    pub(crate) fn with_read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The same storages, keeping at most `max` records.
    pub(crate) fn with_limit(mut self, max: usize, policy: Box<dyn EvictionPolicy>) -> Self {
        self.limit = Some(Arc::new(Limit::new(max, policy)));
        self
    }

    /// The same storages, destructuring values `depth` deep on save.
    pub(crate) fn with_remaining_depth(mut self, depth: usize) -> Self {
        self.remaining_depth = Some(depth);
        self
    }

    /// The same storages, recomputing the digest of every value loaded.
    pub(crate) fn with_verify_digest(mut self) -> Self {
        self.verify_digest = true;
        self
    }

    /// The same storages, missing on every memoized lookup but storing.
    pub(crate) fn with_refreshing(mut self) -> Self {
        self.refreshing = true;
        self
    }

    /// The same storages, read-only, showing only the records `filter` accepts.
    pub(crate) fn with_filter(mut self, filter: RecordFilter) -> Self {
        self.filter = Some(filter);
        self.read_only = true;
        self
    }

    fn visible(&self, r: &CallRecord) -> bool {
        self.filter.as_ref().is_none_or(|f| f(r))
    }

    /// The result digest of `key` among the visible records.
    fn visible_result(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        match &self.filter {
            None => self.calls.result_of(key),
            Some(f) => Ok(self.calls.load(key)?.filter(|r| f(r)).map(|r| r.result)),
        }
    }

    /// With `verify = "digest"`: that `bytes` are the value `digest` names.
    fn verified(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        if self.verify_digest && blake3::hash(bytes).as_bytes() != digest.as_bytes() {
            return Err(StorageError::corrupt(
                self.location.clone(),
                digest,
                "its bytes do not hash to its digest (verify = \"digest\")",
            ));
        }
        Ok(())
    }

    /// Whether saves and evictions are refused.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Every stored value's digest.
    pub(crate) fn value_digests(&self) -> Result<Vec<Digest>, StorageError> {
        self.values.digests()
    }

    /// The record stored under `key`.
    pub(crate) fn record(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        Ok(self.calls.load(key)?.filter(|r| self.visible(r)))
    }

    /// Every stored record.
    pub(crate) fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        let mut records = self.calls.records()?;
        if self.filter.is_some() {
            records.retain(|r| self.visible(r));
        }
        Ok(records)
    }

    /// The visible records `selection` matches, ordered and paged (pushed down to the calls
    /// storage).
    pub(crate) fn select(&self, selection: &Selection) -> Result<Vec<CallRecord>, StorageError> {
        if self.filter.is_none() {
            return self.calls.select(selection);
        }
        let mut records = self.calls.select(&selection.unpaged())?;
        records.retain(|r| self.visible(r));
        Ok(selection.page(records))
    }

    /// How many records [`select`](Layer::select) returns.
    pub(crate) fn count(&self, selection: &Selection) -> Result<usize, StorageError> {
        if self.filter.is_none() {
            return self.calls.count(selection);
        }
        Ok(self.select(selection)?.len())
    }

    /// Whether a call is stored under `key` (not counted as a use).
    pub(crate) fn holds(&self, key: &Digest) -> Result<bool, StorageError> {
        Ok(self.visible_result(key)?.is_some())
    }

    /// Calls `visit` with value `digest` in the cheapest form its storage has (see
    /// [`Payload`]): the value itself, a stream, or bytes (reassembled when it was destructured,
    /// and checked when this layer verifies digests). `Ok(None)` when the value is missing. A
    /// stream is verified by the storage after `visit` returns: `visit`'s result is returned
    /// only when it was.
    pub(crate) fn visit_payload<T>(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>) -> T,
    ) -> Result<Option<T>, StorageError> {
        /// What a visit of whole bytes came to.
        enum Got<T> {
            Out(T),
            Split(Vec<u8>),
            // Boxed: a hit moves this through the storage's callback; keep it small.
            Bad(Box<StorageError>),
        }
        let whole = |bytes: &[u8], visit: &mut dyn FnMut(Payload<'_>) -> T| {
            if destructure::is_split(bytes) {
                Got::Split(bytes.to_vec())
            } else if let Err(e) = self.verified(digest, bytes) {
                Got::Bad(Box::new(e))
            } else {
                Got::Out(visit(Payload::Bytes(bytes)))
            }
        };
        let mut got = None;
        self.values.load_payload(digest, &mut |payload| {
            got = Some(match payload {
                Payload::Bytes(bytes) => whole(bytes, visit),
                Payload::Stream(mut reader) => {
                    if self.verify_digest || destructure::is_split(reader.head()) {
                        match reader.read_all() {
                            Ok(bytes) => whole(&bytes, visit),
                            Err(e) => Got::Bad(Box::new(StorageError::corrupt(
                                self.location.clone(),
                                digest,
                                format!("cannot read: {e}"),
                            ))),
                        }
                    } else {
                        Got::Out(visit(Payload::Stream(reader)))
                    }
                }
                Payload::Value(value) => Got::Out(visit(Payload::Value(value))),
            });
        })?;
        let (mut out, destructured) = match got {
            None => (None, None),
            Some(Got::Out(v)) => (Some(v), None),
            Some(Got::Split(root)) => (None, Some(root)),
            Some(Got::Bad(e)) => return Err(*e),
        };
        if let Some(root) = destructured {
            let joined = destructure::join(digest, &root, &mut |d| self.values.load(d))?;
            self.verified(digest, &joined)?;
            out = Some(visit(Payload::Bytes(&joined)));
        }
        Ok(out)
    }

    fn rejected(&self, operation: &'static str) -> StorageError {
        StorageError::Rejected {
            location: self.location.clone(),
            operation,
        }
    }

    /// The result digest of `key`, counting as a use for the eviction policy.
    pub(crate) fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        if self.refreshing {
            return Ok(None);
        }
        let found = self.visible_result(key)?;
        if let (Some(_), Some(limit)) = (found, &self.limit) {
            lock(&limit.state).policy.touch(key);
        }
        Ok(found)
    }

    /// Stores a value and then its record, so a record never points at a missing value; then
    /// evicts past the size limit.
    pub(crate) fn store(&self, bytes: &[u8], record: CallRecord) -> Result<(), StorageError> {
        self.store_kept(bytes, None, record)
    }

    /// Whether this layer's values storage keeps values as themselves (and does not split
    /// them): only then is a [`TypedValue`] worth making for it.
    pub(crate) fn keeps_values(&self) -> bool {
        self.remaining_depth.is_none() && self.values.keeps_values()
    }

    /// [`Layer::store`], handing the storage the value itself when it keeps values (`keep`
    /// makes it) and the bytes otherwise.
    pub(crate) fn store_kept(
        &self,
        bytes: &[u8],
        keep: Option<&dyn Fn() -> Arc<dyn TypedValue>>,
        record: CallRecord,
    ) -> Result<(), StorageError> {
        if self.read_only {
            return Err(self.rejected("save"));
        }
        let key = record.key;
        match keep {
            Some(make) if self.keeps_values() => self.values.save_value(&record.result, make())?,
            _ => self.save_value(&record.result, bytes)?,
        }
        match &self.limit {
            None => self.calls.save(record),
            Some(limit) => {
                let mut state = lock(&limit.state);
                if !state.loaded {
                    let mut existing = self.calls.records()?;
                    // The oldest first, so they are the first to go.
                    existing.sort_by(|a, b| start_of(a).total_cmp(&start_of(b)));
                    for r in existing {
                        state.policy.insert(r.key);
                    }
                    state.loaded = true;
                }
                self.calls.save(record)?;
                state.policy.insert(key);
                while state.policy.len() > limit.max {
                    let Some(victim) = state.policy.victim() else {
                        break;
                    };
                    self.calls.evict(&victim)?;
                }
                Ok(())
            }
        }
    }

    /// Stores a value and then its record unless a record is stored under its key, in one
    /// atomic step with the check (across processes for the built-in backends); `Ok(true)` when
    /// this call stored it.
    pub(crate) fn store_new(&self, bytes: &[u8], record: CallRecord) -> Result<bool, StorageError> {
        if self.read_only {
            return Err(self.rejected("save"));
        }
        let key = record.key;
        self.save_value(&record.result, bytes)?;
        if !self.calls.save_new(record)? {
            return Ok(false);
        }
        if let Some(limit) = &self.limit {
            let mut state = lock(&limit.state);
            if state.loaded {
                state.policy.insert(key);
                while state.policy.len() > limit.max {
                    let Some(victim) = state.policy.victim() else {
                        break;
                    };
                    self.calls.evict(&victim)?;
                }
            }
        }
        Ok(true)
    }

    pub(crate) fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        if self.read_only {
            return Err(self.rejected("evict"));
        }
        let removed = self.calls.evict(key)?;
        if let Some(limit) = &self.limit {
            lock(&limit.state).policy.remove(key);
        }
        Ok(removed)
    }

    /// Saves a value, split into its parts when this layer destructures.
    fn save_value(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        let Some(depth) = self.remaining_depth else {
            return self.values.save(digest, bytes);
        };
        match destructure::split(bytes, depth) {
            Ok(split) => {
                // Parts first: a stored root never references a missing part.
                for (d, part) in &split.children {
                    self.values.save(d, part)?;
                }
                self.values.save(digest, &split.root)
            }
            Err(_) => self.values.save(digest, bytes),
        }
    }

    /// The key of every stored record, readable or not.
    pub(crate) fn call_keys(&self) -> Result<Vec<Digest>, StorageError> {
        self.calls.keys()
    }

    /// Removes the value `digest` (not its parts); `Ok(true)` if it was there.
    pub(crate) fn evict_value(&self, digest: &Digest) -> Result<bool, StorageError> {
        if self.read_only {
            return Err(self.rejected("evict"));
        }
        self.values.evict(digest)
    }

    /// A value's bytes, reassembled if it was destructured.
    pub(crate) fn value(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        match self.values.load(digest)? {
            None => Ok(None),
            Some(bytes) => {
                let joined = destructure::join(digest, &bytes, &mut |d| self.values.load(d))?;
                self.verified(digest, &joined)?;
                Ok(Some(joined))
            }
        }
    }

    /// The record under `key` and its value's bytes (reassembled), when both are there.
    pub(crate) fn entry(
        &self,
        key: &Digest,
    ) -> Result<Option<(CallRecord, Vec<u8>)>, StorageError> {
        let Some(record) = self.record(key)? else {
            return Ok(None);
        };
        Ok(self.value(&record.result)?.map(|bytes| (record, bytes)))
    }

    /// Removes the values no call record refers to, directly or through destructured parts.
    /// Returns how many were removed.
    pub(crate) fn gc(&self) -> Result<usize, StorageError> {
        if self.read_only {
            return Err(self.rejected("gc"));
        }
        let mut live = HashSet::new();
        let mut todo: Vec<Digest> = self
            .calls
            .records()?
            .into_iter()
            .map(|r| r.result)
            .collect();
        while let Some(d) = todo.pop() {
            if !live.insert(d) {
                continue;
            }
            if let Some(bytes) = self.values.load(&d)? {
                todo.extend(destructure::references(&bytes));
            }
        }
        let mut removed = 0;
        for d in self.values.digests()? {
            if !live.contains(&d) && self.values.evict(&d)? {
                removed += 1;
            }
        }
        // Temporary files of writers killed mid-write; an hour leaves live writers alone.
        let hour = std::time::Duration::from_secs(3600);
        removed += self.values.reclaim_temporary(hour)?;
        removed += self.calls.reclaim_temporary(hour)?;
        Ok(removed)
    }
}

/// When a record's call started, in seconds since the epoch (0 when unknown).
fn start_of(r: &CallRecord) -> f64 {
    r.metadata
        .get("runtime")
        .and_then(|v| v.field("start"))
        .and_then(fleche_storage::Value::as_f64)
        .unwrap_or(0.0)
}
