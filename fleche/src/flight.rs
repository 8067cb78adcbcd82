//! In-process single-flight: concurrent misses of one key compute once.
//!
//! The first thread to miss a key becomes its *leader* and runs the body; threads that miss the
//! same key meanwhile wait for the leader and take its encoded result. If the leader fails (an
//! `Err` result, a panic, an unencodable value), the waiters retry and one of them leads.
//!
//! Deadlock freedom: a thread that is itself leading a call never waits for another leader; it
//! computes instead. A cycle of waits would need a waiting thread that leads, so none forms, even
//! under work-stealing pools (rayon) where a blocked leader may have stolen unrelated work. A
//! recursive function (fib) therefore never deadlocks; nested calls that race may compute twice.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex};

use fleche_storage::Digest;

use crate::sync::{DigestMap, lock};

thread_local! {
    /// How many calls this thread leads right now.
    static LEADING: Cell<usize> = const { Cell::new(0) };
}

/// The in-flight calls of one cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<DigestMap<Arc<Flight>>>>,
}

#[derive(Default)]
pub(crate) struct Flight {
    /// `None` while running; `Some(None)` when the leader failed; `Some(Some(bytes))` when it
    /// produced a result.
    outcome: Mutex<Option<Option<Arc<Vec<u8>>>>>,
    done: Condvar,
}

/// What a thread that missed should do.
pub(crate) enum Join {
    /// Run the body; the token publishes the outcome when dropped.
    Lead(Lead),
    /// Another thread produced this encoded result.
    Shared(Arc<Vec<u8>>),
    /// The leader failed: look up again, and lead if still missing.
    Retry,
    /// Run the body without coordinating (this thread already leads a call).
    Alone,
}

impl Flights {
    /// Joins the flight for `key`: leads it or waits for its leader.
    pub(crate) fn join(&self, key: Digest) -> Join {
        if LEADING.with(Cell::get) > 0 {
            return Join::Alone;
        }
        let flight = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(f) => Arc::clone(f),
                None => {
                    let flight = Arc::new(Flight::default());
                    map.insert(key, Arc::clone(&flight));
                    LEADING.with(|n| n.set(n.get() + 1));
                    return Join::Lead(Lead {
                        map: Arc::clone(&self.map),
                        key,
                        flight,
                        outcome: None,
                    });
                }
            }
        };
        let mut outcome = lock(&flight.outcome);
        loop {
            match &*outcome {
                Some(Some(bytes)) => return Join::Shared(Arc::clone(bytes)),
                Some(None) => return Join::Retry,
                None => {
                    outcome = flight
                        .done
                        .wait(outcome)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }
}

/// The leader's token. Dropping it (normally or while unwinding from a panic) ends the flight and
/// wakes the waiters.
pub(crate) struct Lead {
    map: Arc<Mutex<DigestMap<Arc<Flight>>>>,
    key: Digest,
    flight: Arc<Flight>,
    outcome: Option<Arc<Vec<u8>>>,
}

impl Lead {
    /// Records the encoded result the waiters will take.
    pub(crate) fn succeed(&mut self, bytes: Arc<Vec<u8>>) {
        self.outcome = Some(bytes);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.key);
        *lock(&self.flight.outcome) = Some(self.outcome.take());
        self.flight.done.notify_all();
        LEADING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}
