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
//! set by [`set_cache`], else the default cache (the process's shared memory cache). See
//! [`scope`](crate::current_cache) for carrying a scope into worker threads.
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

mod cache;
mod call;
mod error;
mod flight;
pub(crate) mod key;
mod metadata;
mod query;
mod scope;

pub use cache::{Cache, IntoCache, RESERVED_NAMES};
pub use call::CallRef;
pub use error::Error;
pub use fleche_macros::{Key, memoize};
pub use fleche_storage::{CallRecord, Digest, StorageError, Value};
pub use key::{KEY_FORMAT_VERSION, Key, KeyHasher, Serde, digest, key_serialize};
pub use metadata::Runtime;
pub use query::Query;
pub use scope::{CacheGuard, current_cache, set_cache, try_with_cache, with_cache};

/// The storage traits and built-in backends, for custom caches ([`Cache::from_storages`]).
pub mod storage {
    pub use fleche_storage::*;
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
    call::with_mode(call::Mode::Uncached, f)
}

/// Runs `f`, making the first memoized call it makes recompute its result and store it over the
/// stored one. Works for every memoized function, methods included.
pub fn rerun<R>(f: impl FnOnce() -> R) -> R {
    call::with_mode(call::Mode::Rerun, f)
}

/// Not public API: what the macros expand to.
#[doc(hidden)]
pub mod __private {
    pub use crate::call::{
        Call, CallRef, Codec, FnInfo, Lookup, Mode, NotStorable, Pending, Probe, Sealed, Storable,
        ViaSerde, codec, set_mode,
    };

    /// The recorded arguments of a call.
    #[inline]
    pub fn args<const N: usize>(
        entries: [(&'static str, crate::Value); N],
    ) -> Vec<(&'static str, crate::Value)> {
        Vec::from(entries)
    }

    /// The fields of a derived struct's queryable form.
    #[inline]
    pub fn fields<const N: usize>(entries: [(String, crate::Value); N]) -> crate::Value {
        crate::Value::Struct(Vec::from(entries))
    }
    pub use crate::{Digest, Key, KeyHasher, Query, Value};
    pub use core::any::{type_name, type_name_of_val};
    pub use core::option::Option::{self, None, Some};
    pub use core::result::Result::{Err, Ok};
    pub use std::borrow::ToOwned;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::vec::Vec;

    /// Pins the output type of a memoized `async fn`'s body, so `?` in it infers.
    #[inline(always)]
    pub fn async_output<R, F: core::future::Future<Output = R>>(f: F) -> F {
        f
    }
}
