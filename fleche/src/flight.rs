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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// How many flights have ended, counted as each leaves the map.
    ended: Arc<AtomicU64>,
}

#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<FlightState>,
    done: Condvar,
}

#[derive(Default)]
struct FlightState {
    /// `None` while running; `Some(None)` when the leader failed; `Some(Some(bytes))` when it
    /// produced a result.
    outcome: Option<Option<Arc<Vec<u8>>>>,
    /// Threads waiting for the outcome: the leader wakes them only if there are any.
    waiting: usize,
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
    /// How many flights have ended so far. A thread that reads it before a lookup that misses,
    /// and finds it unchanged when it then leads, knows no leader in this process stored the
    /// key in between: it need not look again.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::Acquire)
    }

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
                        ended: Arc::clone(&self.ended),
                        key,
                        flight,
                        outcome: None,
                    });
                }
            }
        };
        let mut state = lock(&flight.state);
        loop {
            match &state.outcome {
                Some(Some(bytes)) => return Join::Shared(Arc::clone(bytes)),
                Some(None) => return Join::Retry,
                None => {
                    state.waiting += 1;
                    state = flight
                        .done
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    state.waiting -= 1;
                }
            }
        }
    }
}

/// The leader's token. Dropping it (normally or while unwinding from a panic) ends the flight and
/// wakes the waiters.
pub(crate) struct Lead {
    map: Arc<Mutex<DigestMap<Arc<Flight>>>>,
    ended: Arc<AtomicU64>,
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
        {
            let mut map = lock(&self.map);
            map.remove(&self.key);
            self.ended.fetch_add(1, Ordering::AcqRel);
        }
        let waiting = {
            let mut state = lock(&self.flight.state);
            state.outcome = Some(self.outcome.take());
            state.waiting
        };
        // Waiters register under the same lock before they wait: none is missed.
        if waiting > 0 {
            self.flight.done.notify_all();
        }
        LEADING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}
