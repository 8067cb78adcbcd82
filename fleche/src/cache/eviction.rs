//! Which call record a size-limited cache drops when it is full.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use fleche_storage::{Digest, DigestBuildHasher};

/// Chooses the call records a size-limited cache evicts. The cache calls it under a lock, so an
/// implementation needs no synchronization of its own.
pub trait EvictionPolicy: Send + fmt::Debug {
    /// A record was saved (new, or overwritten: either way it is now the most recently used).
    fn insert(&mut self, key: Digest);
    /// A record was read (a hit).
    fn touch(&mut self, key: &Digest);
    /// A record is gone (evicted explicitly).
    fn remove(&mut self, key: &Digest);
    /// The record to evict next, forgotten by the policy; `None` when it tracks none.
    fn victim(&mut self) -> Option<Digest>;
    /// How many records the policy tracks.
    fn len(&self) -> usize;
    /// Whether the policy tracks no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Least recently used first: the default policy.
#[derive(Debug, Default)]
pub struct Lru {
    tick: u64,
    last_used: HashMap<Digest, u64, DigestBuildHasher>,
    by_age: BTreeMap<u64, Digest>,
}

impl Lru {
    /// An empty policy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl EvictionPolicy for Lru {
    fn insert(&mut self, key: Digest) {
        self.tick += 1;
        if let Some(old) = self.last_used.insert(key, self.tick) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.tick, key);
    }

    fn touch(&mut self, key: &Digest) {
        if self.last_used.contains_key(key) {
            self.insert(*key);
        }
    }

    fn remove(&mut self, key: &Digest) {
        if let Some(t) = self.last_used.remove(key) {
            self.by_age.remove(&t);
        }
    }

    fn victim(&mut self) -> Option<Digest> {
        let (_, key) = self.by_age.pop_first()?;
        self.last_used.remove(&key);
        Some(key)
    }

    fn len(&self) -> usize {
        self.last_used.len()
    }
}

/// First saved, first evicted; reads do not matter.
#[derive(Debug, Default)]
pub struct Fifo(Lru);

impl Fifo {
    /// An empty policy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl EvictionPolicy for Fifo {
    fn insert(&mut self, key: Digest) {
        if !self.0.last_used.contains_key(&key) {
            self.0.insert(key);
        }
    }
    fn touch(&mut self, _: &Digest) {}
    fn remove(&mut self, key: &Digest) {
        self.0.remove(key);
    }
    fn victim(&mut self) -> Option<Digest> {
        self.0.victim()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut p = Lru::new();
        p.insert(d(1));
        p.insert(d(2));
        p.insert(d(3));
        p.touch(&d(1));
        assert_eq!(p.victim(), Some(d(2)));
        assert_eq!(p.victim(), Some(d(3)));
        p.insert(d(1));
        assert_eq!(p.len(), 1);
        p.remove(&d(1));
        assert_eq!(p.victim(), None);
    }

    #[test]
    fn fifo_ignores_reads() {
        let mut p = Fifo::new();
        p.insert(d(1));
        p.insert(d(2));
        p.touch(&d(1));
        p.insert(d(1));
        assert_eq!(p.victim(), Some(d(1)));
    }
}
