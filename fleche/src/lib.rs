//! Persistent, queryable memoization.
//!
//! Put [`#[memoize]`](macro@memoize) on an expensive pure function: fleche digests its arguments
//! with blake3 through their canonical [`Key`] encoding, looks the call up in the active
//! [`Cache`], and on a miss runs the body and stores the result together with a queryable record
//! of the call.
//!
//! ```
//! use fleche::{memoize, Key};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Key, Serialize, Deserialize)]
//! struct Spec { steps: u32, dt: f64 }
//!
//! #[memoize]
//! fn simulate(spec: &Spec) -> Vec<f64> {
//!     (0..spec.steps).map(|i| f64::from(i) * spec.dt).collect()
//! }
//!
//! # fn main() {
//! let spec = Spec { steps: 4, dt: 0.5 };
//! let cache = fleche::Cache::memory();
//! let first = fleche::with_cache(&cache, || simulate(&spec));   // runs the body
//! let again = fleche::with_cache(&cache, || simulate(&spec));   // served from the cache
//! assert_eq!(first, again);
//! assert!(fleche::with_cache(&cache, || simulate::contains(&spec)));
//! # }
//! ```
//!
//! # Choosing the cache
//!
//! A memoized call uses the innermost [`with_cache`] scope of its thread, else the sticky cache
//! set by [`set_cache`], else the default cache: the one `FLECHE_CACHE` names, else `[default]
//! cache` of the `fleche.toml` files that apply (see [`config`]), else the process's memory cache.
//! See [`current_cache`] for carrying a scope into worker threads (rayon, `std::thread::scope`).
//!
//! Caches are in memory ([`Cache::memory`]), in files ([`Cache::msgpack`]), in SQLite
//! ([`Cache::sqlite`]) or in HDF5 files ([`Cache::hdf5`]); they can be read-only, size-limited,
//! stacked or pooled, and can store nested results as shared parts (see [`Cache`]). The on-disk
//! formats are versioned and specified in `docs/format.md`.
//!
//! # Keys
//!
//! Every hashed argument implements [`Key`]. The standard types do: all integers and floats,
//! `bool`, `char`, `str`/`String`, slices, `Vec`, arrays, `VecDeque`, tuples up to 12, `Option`,
//! `Result`, `HashMap`/`BTreeMap` and `HashSet`/`BTreeSet` (order-independently), `Box`, `Arc`,
//! `Rc`, `Cow`, references, `Path`/`PathBuf`, `Duration`, `()` and `PhantomData`. Structs and enums
//! derive it with `#[derive(Key)]`; a type that only implements `serde::Serialize` is passed as
//! [`Serde<T>`](Serde). The encoding is specified in `docs/format.md` and never changes without a
//! [`KEY_FORMAT_VERSION`] bump.
//!
//! # Results
//!
//! A result must implement `serde::Serialize` and `serde::Deserialize`; it is stored as
//! MessagePack. A function returning `Result<T, E>` caches only `Ok(T)` (errors are never stored,
//! and `E` needs no serde impls); a panic is never cached; `Option<T>` caches both variants. A
//! failing cache never changes what the function returns: it becomes a miss or an unsaved result
//! plus a `tracing` warning.

mod artifact;
mod cache;
mod call;
pub mod config;
mod error;
mod files;
mod flight;
pub(crate) mod key;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod mapped;
pub mod metadata;
mod query;
mod registry;
mod scope;
mod sync;
mod transfer;

pub use artifact::Artifact;
pub use cache::{Cache, Corrupt, EntryKind, EvictionPolicy, Fifo, Lru, Verification};
pub use call::{CallRef, disabled, rerun, uncached};
pub use config::RESERVED_NAMES;
pub use error::Error;
pub use files::{FileContents, FileStamp};
/// Memoizes a function: its results are looked up in, and stored to, the active [`Cache`].
///
/// ```
/// use fleche::memoize;
///
/// #[memoize]
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(10));
///     x * x
/// }
///
/// # fn main() {
/// let cache = fleche::Cache::memory();
/// fleche::with_cache(&cache, || {
///     assert_eq!(slow_square(4), 16);            // miss: runs the body
///     assert_eq!(slow_square(4), 16);            // hit
///     assert!(slow_square::contains(4));
///     assert_eq!(slow_square::load(5), None);    // never computed
/// });
/// # }
/// ```
///
/// # Options
///
/// | option | effect |
/// |---|---|
/// | `name = "sweep.fit"` | the function's stable name (default: `module_path!()::fn`), so moving or renaming it keeps its cache |
/// | `version = 2` or `version = "2b"` | part of the identity: bump it to invalidate stored results |
/// | `hash_code` | the function's normalized source (signature and body, whitespace and comments excluded) is part of the identity: editing the code invalidates |
/// | `crate = path` | where fleche is, when it is renamed or re-exported |
///
/// A parameter marked `#[ignore]` is not part of the key and needs no [`Key`] impl (a progress
/// bar, a logger, a thread pool); it may be `&mut`.
///
/// # Requirements
///
/// Every other parameter's type implements [`Key`] (`self` too, for methods). The result
/// implements `serde::Serialize` and `serde::Deserialize`. For a return type written
/// `Result<T, E>` (any path ending in `Result`, such as `io::Result<T>`), only `T` needs serde, and
/// only `Ok` values are stored. `&mut` parameters, `const fn` and `impl Trait` results are
/// rejected at compile time with an error at the offending token.
///
/// # What is generated
///
/// The function keeps its signature. For a free function `f`, a companion module `f` (functions
/// and modules live in different namespaces) holds helpers taking the same arguments:
/// `f::digest`, `f::contains`, `f::load`, `f::evict`, `f::uncached`, `f::rerun` and `f::query`. For
/// a method or an associated function `m` (one with `self` or `Self` in its signature), an
/// associated function `m_call` returns a [`CallRef`] instead:
///
/// ```
/// #[derive(fleche::Key)]
/// struct Circle { r: u64 }
///
/// impl Circle {
///     #[fleche::memoize]
///     fn area(&self) -> u64 { 3 * self.r * self.r }
/// }
///
/// # fn main() {
/// fleche::with_cache(fleche::Cache::memory(), || {
///     let c = Circle { r: 2 };
///     assert_eq!(c.area(), 12);
///     assert_eq!(c.area_call().load(), Some(12));
///     assert_eq!(fleche::uncached(|| c.area()), 12);
/// });
/// # }
/// ```
///
/// Memoized free functions belong at module level: inside a function body the companion module
/// cannot name the function.
///
/// # Behaviour
///
/// The arguments are digested and recorded before the body runs. Concurrent misses of one key in
/// a process run the body once (an `async fn`'s misses do not wait for each other). A panic is
/// never cached. A cache that fails is logged and bypassed: the function's result is never
/// affected.
pub use fleche_macros::memoize;
pub use registry::IntoCache;
pub use transfer::Transfer;

/// Derives [`Key`](trait@Key) for a struct or enum: every field, by name, in declaration order
/// (`docs/format.md`, "Derived types"). Type parameters must implement `Key`.
///
/// `#[key(skip)]` on a field leaves it out of the key; `#[key(crate = path)]` on the type names
/// the fleche crate when it is renamed.
///
/// ```
/// use fleche::Key;
///
/// #[derive(Key)]
/// enum Solver { Euler, RungeKutta { order: u8 } }
///
/// #[derive(Key)]
/// struct Spec {
///     steps: u32,
///     solver: Solver,
///     #[key(skip)]
///     label: String,
/// }
///
/// let a = Spec { steps: 10, solver: Solver::RungeKutta { order: 4 }, label: "a".into() };
/// let b = Spec { steps: 10, solver: Solver::RungeKutta { order: 4 }, label: "b".into() };
/// assert_eq!(fleche::digest(&a), fleche::digest(&b));
/// ```
pub use fleche_macros::Key;
pub use fleche_storage::{CallRecord, Digest, StorageError, Value};
pub use key::{KEY_FORMAT_VERSION, Key, KeyHasher, Serde, digest, key_serialize};
pub use metadata::{Environment, Git, Lineage, Metadata, Runtime, Tags, with_tags};
pub use query::Query;
pub use scope::{CacheGuard, current_cache, set_cache, try_with_cache, with_cache};

/// The storage traits and built-in backends, for custom caches ([`Cache::from_storages`]).
pub mod storage {
    pub use fleche_storage::*;
}

/// Not public API: what the macros expand to.
#[doc(hidden)]
pub mod __private;
