//! Which cache a memoized call uses: see [`current_cache`].

use std::cell::RefCell;
use std::sync::{PoisonError, RwLock};

use crate::registry::{IntoCache, default_cache};
use crate::{Cache, Error};

thread_local! {
    static SCOPE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

static STICKY: RwLock<Option<Cache>> = RwLock::new(None);

/// The cache a memoized call made here and now would use.
///
/// Precedence, first match wins:
///
/// 1. the innermost [`with_cache`] scope on the calling thread;
/// 2. the sticky cache set with [`set_cache`] (process-wide);
/// 3. the default cache (this process's shared memory cache).
///
/// # Threads
///
/// A scope belongs to the thread that opened it. Work spawned on other threads (rayon,
/// `std::thread::scope`, a thread pool) starts outside it; carry the cache over by capturing
/// `current_cache()` and opening a scope in each worker:
///
/// ```
/// use rayon::prelude::*;
///
/// #[fleche::memoize]
/// fn square(x: u64) -> u64 { x * x }
///
/// # fn main() {
/// let cache = fleche::Cache::memory();
/// fleche::with_cache(&cache, || {
///     let here = fleche::current_cache();
///     let v: Vec<u64> = (0..8u64)
///         .into_par_iter()
///         .map(|x| fleche::with_cache(&here, || square(x)))
///         .collect();
///     assert_eq!(v[3], 9);
///     std::thread::scope(|s| {
///         s.spawn(|| fleche::with_cache(&here, || square(100)));
///     });
/// });
/// assert_eq!(cache.records().unwrap().len(), 9);
/// # }
/// ```
///
/// A sticky cache needs no carrying: it is process-wide. Under rayon, a worker blocked inside a
/// scope may run other queued tasks, which then see that scope; open a scope in every task, as
/// above, rather than relying on the worker's state.
#[must_use]
pub fn current_cache() -> Cache {
    if let Some(c) = SCOPE.with(|s| s.borrow().clone()) {
        return c;
    }
    if let Some(c) = STICKY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return c.clone();
    }
    default_cache().clone()
}

/// Runs `f` with `cache` as the active cache of this thread, then restores the previous one, also
/// when `f` panics.
///
/// `cache` is a [`Cache`], a `&Cache`, or a name: `"memory"`, `"void"`, `"default"` or a cache
/// defined in `fleche.toml`.
///
/// ```
/// #[fleche::memoize]
/// fn double(x: u64) -> u64 { x * 2 }
///
/// # fn main() {
/// let c = fleche::Cache::memory();
/// assert_eq!(fleche::with_cache(&c, || double(21)), 42);
/// assert!(fleche::with_cache(&c, || double::contains(21)));
/// assert!(fleche::with_cache("void", || !double::contains(21)));
/// # }
/// ```
///
/// # Panics
///
/// If `cache` is a name that does not exist; the message lists the caches that do. Use
/// [`try_with_cache`] to get the error instead.
#[allow(clippy::panic)]
pub fn with_cache<C: IntoCache, R>(cache: C, f: impl FnOnce() -> R) -> R {
    match try_with_cache(cache, f) {
        Ok(r) => r,
        Err(e) => panic!("fleche::with_cache: {e}"),
    }
}

/// Like [`with_cache`], but an unknown cache name is returned as an error instead of a panic.
///
/// # Errors
///
/// [`Error::UnknownCache`] when `cache` names no cache; `f` does not run.
pub fn try_with_cache<C: IntoCache, R>(cache: C, f: impl FnOnce() -> R) -> Result<R, Error> {
    let cache = cache.into_cache()?;
    let _guard = ScopeGuard {
        previous: SCOPE.with(|s| s.replace(Some(cache))),
    };
    Ok(f())
}

/// Restores the previous scope when dropped.
struct ScopeGuard {
    previous: Option<Cache>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

/// Makes `cache` the sticky cache: the one every thread uses outside [`with_cache`] scopes, until
/// the returned guard is dropped (which restores the previous sticky cache) or
/// [persisted](CacheGuard::persist).
///
/// ```
/// #[fleche::memoize]
/// fn triple(x: u64) -> u64 { x * 3 }
///
/// # fn main() -> Result<(), fleche::Error> {
/// let c = fleche::Cache::memory();
/// let guard = fleche::set_cache(&c)?;
/// let from_thread = std::thread::spawn(|| triple(3)).join().unwrap();
/// assert_eq!(from_thread, 9);
/// assert!(c.records()?.len() == 1);
/// drop(guard);
/// assert!(!fleche::current_cache().same_as(&c));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::UnknownCache`] when `cache` names no cache.
pub fn set_cache<C: IntoCache>(cache: C) -> Result<CacheGuard, Error> {
    let cache = cache.into_cache()?;
    let previous = STICKY
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(cache);
    Ok(CacheGuard {
        previous: Some(previous),
    })
}

/// Returned by [`set_cache`]: restores the previous sticky cache when dropped.
#[must_use = "dropping the guard immediately restores the previous cache; call `.persist()` to keep it"]
#[derive(Debug)]
pub struct CacheGuard {
    /// `None` once persisted.
    previous: Option<Option<Cache>>,
}

impl CacheGuard {
    /// Keeps the sticky cache for the rest of the process.
    pub fn persist(mut self) {
        self.previous = None;
    }
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            *STICKY.write().unwrap_or_else(PoisonError::into_inner) = previous;
        }
    }
}
