//! The runtime behind `#[memoize]`: identity, lookup, single-flight, sealing and storing.
//!
//! The generated code of a memoized function calls, in order: [`Call::new`] (digests the
//! arguments), [`Call::lookup`] (hit, or lead the miss), [`Pending::seal`] (records the arguments
//! and the start time before the body runs), the body, then [`Sealed::finish`] (stores the
//! result). Nothing here panics; every cache failure becomes a miss or an unsaved result plus a
//! `tracing` warning.

use std::cell::Cell;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use std::any::Any;

use fleche_storage::encoding::{self, Element};
use fleche_storage::{CallRecord, Digest, Payload, PayloadReader, TypedValue, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::flight::{Flights, Join, Lead};
use crate::key::{KeyHasher, tag};
use crate::metadata::{Chosen, Collect, MetaKind, Metadata, Runtime, ThreadClock};
use crate::scope::current_cache;
use crate::{Cache, Error, Query};

/// A memoized function's static description, built by the macro.
#[derive(Debug)]
pub struct FnInfo {
    name: &'static str,
    version: Option<&'static str>,
    code: Option<&'static str>,
    params: &'static [&'static str],
    /// Built-in metadata kinds `meta(..)` names.
    meta: &'static [MetaKind],
    /// Custom metadata kinds `meta(..)` names.
    custom: &'static [&'static dyn Metadata],
    /// The declaring crate's name and version.
    package: (Option<&'static str>, Option<&'static str>),
    identity: OnceLock<Identity>,
    /// Identities of generic instantiations (and methods, keyed by `Self`), computed once each.
    instances: RwLock<Vec<(Vec<&'static str>, Identity)>>,
}

/// How many instantiations of one function keep their identity cached; more are recomputed on
/// every call (correct, only slower).
const MAX_INSTANCES: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Identity {
    /// The blake3 key under which this function's argument encodings are hashed.
    key: [u8; 32],
    code: Option<Digest>,
}

impl FnInfo {
    /// `code` is the function's normalized source when `hash_code` is set; `params` are the names
    /// of the hashed parameters, in order.
    #[must_use]
    pub const fn new(
        name: &'static str,
        version: Option<&'static str>,
        code: Option<&'static str>,
        params: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            version,
            code,
            params,
            meta: &[],
            custom: &[],
            package: (None, None),
            identity: OnceLock::new(),
            instances: RwLock::new(Vec::new()),
        }
    }

    /// The metadata kinds `#[memoize(meta(..))]` names, besides the configured ones.
    #[must_use]
    pub const fn with_meta(
        mut self,
        builtin: &'static [MetaKind],
        custom: &'static [&'static dyn Metadata],
    ) -> Self {
        self.meta = builtin;
        self.custom = custom;
        self
    }

    /// The declaring crate's name and version, for [`Environment`](crate::Environment).
    #[must_use]
    pub const fn with_package(
        mut self,
        name: Option<&'static str>,
        version: Option<&'static str>,
    ) -> Self {
        self.package = (name, version);
        self
    }

    /// The function's name, as stored in call records.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn identity(&self, type_args: &[&'static str]) -> Identity {
        if type_args.is_empty() {
            return *self
                .identity
                .get_or_init(|| self.compute_identity(type_args));
        }
        let known = self
            .instances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find_map(|(args, id)| (args.as_slice() == type_args).then_some(*id));
        if let Some(id) = known {
            return id;
        }
        let id = self.compute_identity(type_args);
        let mut instances = self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if instances.len() < MAX_INSTANCES && !instances.iter().any(|(a, _)| a == type_args) {
            instances.push((type_args.to_vec(), id));
        }
        id
    }

    /// `digest(("fleche.fn", name, version, code, type_args))` (`docs/format.md`, "Call keys").
    fn compute_identity(&self, type_args: &[&str]) -> Identity {
        let code = self
            .code
            .map(|src| Digest::from_bytes(*blake3::hash(src.as_bytes()).as_bytes()));
        let key = crate::digest(&("fleche.fn", self.name, self.version, code, type_args));
        Identity {
            key: *key.as_bytes(),
            code,
        }
    }

    fn call_key(&self, identity: &Identity, write_args: impl FnOnce(&mut KeyHasher)) -> Digest {
        let mut h = KeyHasher::keyed(&identity.key);
        h.write_tag(tag::TUPLE);
        h.write_len(self.params.len());
        write_args(&mut h);
        h.finalize()
    }

    /// A query for this function's stored calls.
    pub fn query(&self) -> Query {
        Query::new().function(self.name)
    }
}

/// How the next memoized call on this thread behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Look up; on a miss run and store.
    Normal,
    /// Run the body; neither look up nor store.
    Uncached,
    /// Run the body and store the result over any stored one.
    Rerun,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Normal) };
}

/// Sets the mode the next memoized call on this thread consumes.
pub fn set_mode(mode: Mode) {
    MODE.with(|m| m.set(mode));
}

/// Runs `f` with `mode` applying to the first memoized call it makes, then clears it.
pub(crate) fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            set_mode(Mode::Normal);
        }
    }
    set_mode(mode);
    let _reset = Reset;
    f()
}

/// How a result type is encoded and decoded: made once per call where the type is known to be
/// [`Storable`], so the rest of the call path carries no trait bounds (and a non-storable result
/// type is reported once, at the return type).
pub struct Codec<T> {
    encode: fn(&T) -> Result<Vec<u8>, String>,
    decode: fn(&[u8]) -> Result<T, String>,
    read: fn(&mut PayloadReader<'_>) -> Result<T, String>,
    /// For types a memory cache can keep as themselves: the hit (a downcast and a clone) and
    /// the value to keep.
    typed: Option<Typed<T>>,
}

struct Typed<T> {
    get: fn(&dyn Any) -> Option<T>,
    keep: fn(&T) -> Arc<dyn TypedValue>,
}

impl<T> Clone for Typed<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Typed<T> {}

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Codec<T> {}

impl<T> std::fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("typed", &self.typed.is_some())
            .finish()
    }
}

/// The value-format codec of `T` (`docs/format.md`, "Values").
#[must_use]
pub const fn codec<T: Serialize + DeserializeOwned>() -> Codec<T> {
    Codec {
        encode: |v| encoding::to_vec(v).map_err(|e| e.to_string()),
        decode: |b| encoding::from_slice(b).map_err(|e| e.to_string()),
        read: |r| {
            let bytes = r.read_all().map_err(|e| e.to_string())?;
            encoding::from_slice(&bytes).map_err(|e| e.to_string())
        },
        typed: None,
    }
}

/// [`codec`], for a type memory caches keep as itself: a memory hit is a clone.
#[must_use]
pub const fn typed_codec<T>() -> Codec<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    Codec {
        typed: Some(Typed {
            get: |any| any.downcast_ref::<T>().cloned(),
            keep: |v| Arc::new(v.clone()),
        }),
        ..codec::<T>()
    }
}

/// The codec of a `Vec` of a block element type: encoded and decoded with one copy, read from a
/// stream straight into the vector's memory, kept as itself by memory caches.
#[must_use]
pub const fn bulk_codec<E>() -> Codec<Vec<E>>
where
    E: Element + Serialize + DeserializeOwned,
{
    Codec {
        encode: |v| encoding::encode_vec(v).map_err(|e| e.to_string()),
        decode: |b| encoding::decode_vec(b).map_err(|e| e.to_string()),
        read: |r| {
            let len = r.len();
            encoding::read_vec(r, len).map_err(|e| e.to_string())
        },
        ..typed_codec::<Vec<E>>()
    }
}

/// Picks the codec of a result type by autoref specialization. The macro calls
/// `(&&&Probe::<T, TYPED>::new()).codec()`, which resolves to the first that applies of
/// [`ViaBulk`] (a `Vec` of numbers), [`ViaTyped`] (`Clone + Send + Sync + 'static`, only when
/// `TYPED`: the macro sets it only for types it can see are free of lifetimes and generic
/// parameters), [`ViaSerde`] (both serde traits) and [`NotStorable`], whose single unmet bound
/// ([`Storable`]) reports the problem once, with a message that says what to do, instead of one
/// error per missing serde trait.
pub struct Probe<T, const TYPED: bool = false>(std::marker::PhantomData<fn() -> T>);

impl<T, const TYPED: bool> Probe<T, TYPED> {
    /// A probe for `T`.
    #[must_use]
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, const TYPED: bool> Default for Probe<T, TYPED> {
    fn default() -> Self {
        Self::new()
    }
}

/// The codec of a `Vec` of a block element type.
pub trait ViaBulk<T> {
    /// [`bulk_codec`].
    fn codec(&self) -> Codec<T>;
}

impl<E, const TYPED: bool> ViaBulk<Vec<E>> for &&Probe<Vec<E>, TYPED>
where
    E: Element + Serialize + DeserializeOwned,
{
    fn codec(&self) -> Codec<Vec<E>> {
        bulk_codec()
    }
}

/// The codec of a storable type that memory caches can keep as itself.
pub trait ViaTyped<T> {
    /// [`typed_codec`].
    fn codec(&self) -> Codec<T>;
}

impl<T> ViaTyped<T> for &Probe<T, true>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn codec(&self) -> Codec<T> {
        typed_codec()
    }
}

/// The codec of a storable type.
pub trait ViaSerde<T> {
    /// The value-format codec.
    fn codec(&self) -> Codec<T>;
}

impl<T: Serialize + DeserializeOwned, const TYPED: bool> ViaSerde<T> for Probe<T, TYPED> {
    fn codec(&self) -> Codec<T> {
        codec()
    }
}

/// The fallback, selected only for types that are not storable; its bound fails.
pub trait NotStorable<T> {
    /// Never callable: `T: Storable` does not hold for any type.
    fn codec(self) -> Codec<T>
    where
        T: Storable;
}

impl<T, const TYPED: bool> NotStorable<T> for Probe<T, TYPED> {
    fn codec(self) -> Codec<T>
    where
        T: Storable,
    {
        T::unreachable()
    }
}

impl<T> Codec<T> {
    fn error(value: &Digest, message: String) -> Error {
        Error::Decode {
            value: *value,
            type_name: std::any::type_name::<T>(),
            message,
        }
    }

    fn decode(&self, bytes: &[u8], value: &Digest) -> Result<T, Error> {
        (self.decode)(bytes).map_err(|message| Self::error(value, message))
    }

    /// Decodes a value in whichever form its storage lent it.
    fn decode_payload(&self, payload: Payload<'_>, value: &Digest) -> Result<T, Error> {
        match payload {
            Payload::Bytes(bytes) => self.decode(bytes, value),
            Payload::Stream(mut reader) => {
                (self.read)(&mut reader).map_err(|message| Self::error(value, message))
            }
            Payload::Value(kept) => {
                if let Some(v) = self.typed.and_then(|t| (t.get)(kept.as_any())) {
                    return Ok(v);
                }
                // Kept as another type with the same bytes (a newtype, say): through its bytes.
                let bytes = kept
                    .encode()
                    .map_err(|e| Self::error(value, e.to_string()))?;
                self.decode(&bytes, value)
            }
        }
    }
}

/// Whether `FLECHE_DISABLE` is set to `1` (or `true`, `yes`, `on`) in the process's environment,
/// read once: every memoized call then runs its body, looking up and storing nothing.
#[must_use]
pub fn disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| {
        std::env::var("FLECHE_DISABLE").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    })
}

/// Runs `f`, making the first memoized call it makes run its body without looking up or storing
/// anything. Works for every memoized function, methods included.
///
/// ```
/// #[fleche::memoize]
/// fn now_ish(x: u64) -> u64 { x }
///
/// # fn main() {
/// let c = fleche::Cache::memory();
/// fleche::with_cache(&c, || fleche::uncached(|| now_ish(1)));
/// assert!(c.records().unwrap().is_empty());
/// # }
/// ```
pub fn uncached<R>(f: impl FnOnce() -> R) -> R {
    with_mode(Mode::Uncached, f)
}

/// Runs `f`, making the first memoized call it makes recompute its result and store it over the
/// stored one. Works for every memoized function, methods included.
pub fn rerun<R>(f: impl FnOnce() -> R) -> R {
    with_mode(Mode::Rerun, f)
}

/// One call of a memoized function, from its arguments' digest on.
#[must_use]
#[derive(Debug)]
pub struct Call {
    info: &'static FnInfo,
    cache: Cache,
    key: Digest,
    code: Option<Digest>,
    type_args: Vec<&'static str>,
    mode: Mode,
    asynchronous: bool,
}

impl Call {
    /// Digests the arguments (`write_args` feeds each hashed argument in order) under the
    /// function's identity, and picks the active cache.
    pub fn new(
        info: &'static FnInfo,
        type_args: &[&'static str],
        write_args: impl FnOnce(&mut KeyHasher),
    ) -> Self {
        let identity = info.identity(type_args);
        Self {
            info,
            cache: current_cache(),
            key: info.call_key(&identity, write_args),
            code: identity.code,
            type_args: type_args.to_vec(),
            mode: match MODE.with(|m| m.replace(Mode::Normal)) {
                _ if disabled() => Mode::Uncached,
                mode => mode,
            },
            asynchronous: false,
        }
    }

    /// [`Call::new`] for an `async fn`: its misses do not block on each other.
    pub fn new_async(
        info: &'static FnInfo,
        type_args: &[&'static str],
        write_args: impl FnOnce(&mut KeyHasher),
    ) -> Self {
        Self {
            asynchronous: true,
            ..Self::new(info, type_args, write_args)
        }
    }

    /// The stored result, or the pending miss the caller must compute.
    pub fn lookup<T>(self, codec: &Codec<T>) -> Lookup<T> {
        if self.mode != Mode::Normal {
            return Lookup::Miss(self.pending(None));
        }
        loop {
            let ended = self.cache.flights().map(Flights::ended);
            if let Some((v, _)) = self.try_load(codec, false) {
                return Lookup::Hit(v);
            }
            let join = match (self.asynchronous, self.cache.flights()) {
                (false, Some(flights)) => flights.join(self.key),
                _ => Join::Alone,
            };
            match join {
                Join::Alone => return Lookup::Miss(self.pending(None)),
                Join::Retry => {}
                Join::Shared(bytes) => {
                    return match self.decode_shared(codec, &bytes) {
                        Some(v) => Lookup::Hit(v),
                        None => Lookup::Miss(self.pending(None)),
                    };
                }
                Join::Lead(lead)
                    if ended.is_some() && ended == self.cache.flights().map(Flights::ended) =>
                {
                    // No flight ended since the lookup missed: no leader here stored it since.
                    return Lookup::Miss(self.pending(Some(lead)));
                }
                Join::Lead(mut lead) => {
                    // Another leader may have stored the result between our miss and our lead.
                    return match self.try_load(codec, true) {
                        Some((v, bytes)) => {
                            if let Some(bytes) = bytes {
                                lead.succeed(bytes);
                            }
                            Lookup::Hit(v)
                        }
                        None => Lookup::Miss(self.pending(Some(lead))),
                    };
                }
            }
        }
    }

    fn pending(self, lead: Option<Lead>) -> Pending {
        Pending { call: self, lead }
    }

    /// The stored result, decoded; with its bytes when `keep_bytes` (for waiters).
    fn try_load<T>(&self, codec: &Codec<T>, keep_bytes: bool) -> Option<(T, Option<Arc<Vec<u8>>>)> {
        // The decode error is kept aside: what travels back through the storage layers on a
        // hit is just the value (errors are large; hits are the hot path).
        let mut unreadable = None;
        let found = self.cache.visit_result(&self.key, &mut |value, payload| {
            let bytes = match (&payload, keep_bytes) {
                (Payload::Bytes(b), true) => Some(Arc::new(b.to_vec())),
                _ => None,
            };
            match crate::artifact::restoring(|| codec.decode_payload(payload, value)) {
                (Ok(v), true) => Some((v, bytes)),
                // An artifact could not be written back (warned): the call runs instead.
                (Ok(_), false) => None,
                (Err(e), _) => {
                    unreadable = Some(e);
                    None
                }
            }
        });
        match found {
            Ok(Some(Some((v, bytes)))) => {
                // Waiters decode bytes: made from the value when the storage lent none.
                let bytes = match bytes {
                    None if keep_bytes => (codec.encode)(&v).ok().map(Arc::new),
                    other => other,
                };
                Some((v, bytes))
            }
            Ok(None) => None,
            Ok(Some(None)) => {
                if let Some(e) = unreadable {
                    tracing::warn!(function = self.info.name, key = %self.key, error = %e,
                        "stored result unreadable; recomputing");
                }
                None
            }
            Err(e) => {
                let what = if e.is_corrupt() {
                    "stored result corrupt; recomputing, and the next store replaces it"
                } else {
                    "cache lookup failed; running uncached"
                };
                tracing::warn!(function = self.info.name, key = %self.key, error = %e, "{what}");
                None
            }
        }
    }

    fn decode_shared<T>(&self, codec: &Codec<T>, bytes: &[u8]) -> Option<T> {
        let value = Digest::from_bytes(*blake3::hash(bytes).as_bytes());
        let (decoded, restored) = crate::artifact::restoring(|| codec.decode(bytes, &value));
        if !restored {
            return None;
        }
        decoded
            .map_err(|e| {
                tracing::warn!(function = self.info.name, key = %self.key, error = %e,
                    "result shared by a concurrent call unreadable; recomputing");
            })
            .ok()
    }
}

/// The outcome of [`Call::lookup`].
#[derive(Debug)]
pub enum Lookup<T> {
    /// The stored result.
    Hit(T),
    /// A miss to compute.
    Miss(Pending),
}

/// A miss: the caller seals the arguments, runs the body, and finishes.
#[must_use]
#[derive(Debug)]
pub struct Pending {
    call: Call,
    lead: Option<Lead>,
}

impl std::fmt::Debug for Lead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lead")
    }
}

impl Pending {
    /// Records the arguments' queryable form and the start time, before the body runs, so the
    /// body cannot change what the record says about its inputs.
    pub fn seal(self, arguments: impl FnOnce() -> Vec<(&'static str, Value)>) -> Sealed {
        let arguments = if self.call.mode == Mode::Uncached {
            Vec::new()
        } else {
            arguments()
        };
        let stale = (self.call.mode == Mode::Rerun).then(|| Stale {
            cache: self.call.cache.clone(),
            key: self.call.key,
            function: self.call.info.name,
            armed: true,
        });
        let clock = if self.call.asynchronous {
            ThreadClock::none()
        } else {
            ThreadClock::start()
        };
        Sealed {
            parent: crate::metadata::running(),
            pending: self,
            arguments,
            start: SystemTime::now(),
            started: Instant::now(),
            clock,
            stale,
        }
    }
}

/// A rerun's stored result, evicted unless the rerun finishes with a new one: a rerun whose body
/// returns `Err` or panics must not leave the result it was asked to replace.
#[derive(Debug)]
struct Stale {
    cache: Cache,
    key: Digest,
    function: &'static str,
    armed: bool,
}

impl Stale {
    /// The rerun produced a result: keep what is stored until it is replaced.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Stale {
    fn drop(&mut self) {
        if !self.armed || !self.cache.accepts_writes() {
            return;
        }
        if let Err(e) = self.cache.evict(&self.key) {
            tracing::warn!(function = self.function, key = %self.key, error = %e,
                "the rerun failed and its stale result could not be evicted");
        }
    }
}

/// Arguments recorded, body running.
#[must_use]
#[derive(Debug)]
pub struct Sealed {
    pending: Pending,
    arguments: Vec<(&'static str, Value)>,
    start: SystemTime,
    started: Instant,
    /// The calling thread's CPU time at the start.
    clock: ThreadClock,
    /// The memoized call running on this thread when this one was made (key, function).
    parent: Option<(Digest, &'static str)>,
    /// For a rerun: the stale result, evicted if the body fails.
    stale: Option<Stale>,
}

impl Sealed {
    /// Runs the (synchronous) body: memoized calls inside it record this call as their parent
    /// ([`Lineage`]).
    #[inline]
    pub fn run<R>(&self, body: impl FnOnce() -> R) -> R {
        let call = &self.pending.call;
        if call.mode == Mode::Uncached {
            return body();
        }
        crate::metadata::within(call.key, call.info.name, body)
    }

    /// Stores `value` as the call's result and returns it. Failures to encode or store are logged
    /// and do not change the returned value.
    pub fn finish<T>(self, codec: &Codec<T>, value: T) -> T {
        let wall_time = self.started.elapsed();
        let cpu_time = self.clock.elapsed();
        let stop = SystemTime::now();
        let Sealed {
            pending: Pending { call, mut lead },
            arguments,
            start,
            parent,
            stale,
            ..
        } = self;
        if let Some(stale) = stale {
            stale.disarm();
        }
        if call.mode == Mode::Uncached || !call.cache.accepts_writes() {
            return value;
        }
        let bytes = match (codec.encode)(&value) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(function = call.info.name, key = %call.key, error = %e,
                    "cannot encode result; not cached");
                return value;
            }
        };
        let result = Digest::from_bytes(*blake3::hash(&bytes).as_bytes());
        let metadata = Collect {
            chosen: crate::registry::configured_metadata()
                .with(Chosen::of(call.info.meta.iter().copied())),
            custom: call.info.custom,
            runtime: Runtime {
                start,
                stop,
                wall_time,
                cpu_time,
            },
            parent,
            package: call.info.package,
        }
        .into_map();
        let mut record = CallRecord::new(call.key, call.info.name, result);
        record.version = call.info.version.map(str::to_owned);
        record.code = call.code;
        record.type_args = call.type_args.iter().map(|s| (*s).to_owned()).collect();
        record.arguments = arguments
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        record.metadata = metadata;
        let stored = match codec.typed {
            // A memory cache keeps the value itself: its hits are clones.
            Some(t) => {
                let keep = || (t.keep)(&value);
                call.cache.store_kept(&bytes, Some(&keep), record)
            }
            None => call.cache.store(&bytes, record),
        };
        if let Err(e) = stored {
            tracing::warn!(function = call.info.name, key = %call.key, error = %e,
                "cannot store result; returning it uncached");
        }
        if let Some(lead) = lead.as_mut() {
            lead.succeed(Arc::new(bytes));
        }
        value
    }
}

/// A handle on one call's stored entry, without running anything: what the companion helpers
/// (`f::digest`, `f::contains`, `f::load`, `f::evict`) and a method's `<name>_call` return or use.
///
/// It is bound to the cache that was active when it was made.
#[derive(Debug, Clone)]
pub struct CallRef<T> {
    info: &'static FnInfo,
    codec: Codec<T>,
    cache: Cache,
    key: Digest,
}

impl<T> CallRef<T> {
    #[doc(hidden)]
    pub fn new(
        info: &'static FnInfo,
        codec: Codec<T>,
        type_args: &[&'static str],
        write_args: impl FnOnce(&mut KeyHasher),
    ) -> Self {
        let identity = info.identity(type_args);
        Self {
            info,
            codec,
            cache: current_cache(),
            key: info.call_key(&identity, write_args),
        }
    }

    /// The call's lookup key.
    #[must_use]
    pub fn digest(&self) -> Digest {
        self.key
    }

    /// The cache this handle looks in.
    #[must_use]
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether the call is stored. A failing cache answers `false` (with a warning).
    #[must_use]
    pub fn contains(&self) -> bool {
        self.cache.contains(&self.key).unwrap_or_else(|e| {
            tracing::warn!(function = self.info.name, key = %self.key, error = %e, "contains failed");
            false
        })
    }

    /// The stored result, without running the function. An unreadable entry answers `None`
    /// (with a warning).
    #[must_use]
    pub fn load(&self) -> Option<T> {
        let loaded = self
            .cache
            .visit_result(&self.key, &mut |value, payload| {
                self.codec.decode_payload(payload, value)
            })
            .and_then(Option::transpose);
        loaded.unwrap_or_else(|e| {
            tracing::warn!(function = self.info.name, key = %self.key, error = %e, "load failed");
            None
        })
    }

    /// The stored call record.
    #[must_use]
    pub fn record(&self) -> Option<CallRecord> {
        self.cache.record(&self.key).unwrap_or_else(|e| {
            tracing::warn!(function = self.info.name, key = %self.key, error = %e, "load failed");
            None
        })
    }

    /// Removes the stored call; `true` if there was one.
    pub fn evict(&self) -> bool {
        self.cache.evict(&self.key).unwrap_or_else(|e| {
            tracing::warn!(function = self.info.name, key = %self.key, error = %e, "evict failed");
            false
        })
    }
}

/// Implemented by no type: the bound that reports a result type lacking `serde::Serialize` or
/// `serde::Deserialize` (see [`Probe`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a memoized result: it must implement `serde::Serialize` and `serde::Deserialize`",
    label = "not storable",
    note = "derive both: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait Storable: Sized {
    /// Never called.
    fn unreachable() -> Codec<Self>;
}

#[cfg(test)]
mod tests {
    use super::*;

    static INFO: FnInfo = FnInfo::new("tests::f", Some("1"), None, &["x"]);

    #[test]
    fn instantiation_identities_are_cached_and_distinct() {
        let a = INFO.identity(&["u8"]);
        let b = INFO.identity(&["u64"]);
        assert_ne!(a.key, b.key);
        assert_eq!(INFO.identity(&["u8"]).key, a.key);
        assert_eq!(INFO.compute_identity(&["u8"]).key, a.key);
        let cached = INFO.instances.read().map(|v| v.len()).unwrap_or_default();
        assert_eq!(cached, 2);
        assert_ne!(INFO.identity(&[]).key, a.key);
    }

    #[test]
    fn instantiation_cache_is_bounded() {
        static MANY: FnInfo = FnInfo::new("tests::many", None, None, &[]);
        let names: Vec<&'static str> = (0..MAX_INSTANCES + 10)
            .map(|i| &*Box::leak(format!("T{i}").into_boxed_str()))
            .collect();
        for n in &names {
            MANY.identity(&[n]);
        }
        let cached = MANY.instances.read().map(|v| v.len()).unwrap_or_default();
        assert_eq!(cached, MAX_INSTANCES);
        // Past the bound, identities are still right.
        let last = names[names.len() - 1];
        assert_eq!(
            MANY.identity(&[last]).key,
            MANY.compute_identity(&[last]).key
        );
    }
}
