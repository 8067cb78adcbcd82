//! Small synchronization helpers shared by the cache, its layers and single-flight.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use fleche_storage::{Digest, DigestBuildHasher};

/// Locks `m`, ignoring poisoning: a panic in one memoized body must not turn every later call
/// into a panic. Every critical section in fleche leaves its data consistent at each step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A map keyed by digests, hashed by their first bytes (they are uniformly distributed already).
pub(crate) type DigestMap<V> = HashMap<Digest, V, DigestBuildHasher>;
