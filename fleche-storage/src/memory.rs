//! The in-process backend: hash maps behind read-write locks.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::{
    CallRecord, CallStorage, Digest, DigestBuildHasher, Payload, StorageError, TypedValue,
    ValueStorage,
};

type Map<V> = HashMap<Digest, V, DigestBuildHasher>;

/// A stored value: its bytes, or the value itself (saved through
/// [`ValueStorage::save_value`]), whose bytes are made when something asks for them.
#[derive(Debug, Clone)]
enum Entry {
    Bytes(Arc<[u8]>),
    Value(Arc<dyn TypedValue>),
}

/// Values kept in process memory. Clones share the same entries.
///
/// Values saved through [`ValueStorage::save_value`] are kept as themselves, so a hit of a
/// memoized call is a clone of the value, without encoding or decoding; their bytes are produced
/// only when asked for ([`ValueStorage::load`], a transfer, a stack copying them on).
#[derive(Debug, Default, Clone)]
pub struct MemoryValues {
    entries: Arc<RwLock<Map<Entry>>>,
}

impl MemoryValues {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of stored values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encode(digest: &Digest, value: &dyn TypedValue) -> Result<Vec<u8>, StorageError> {
        value.encode().map_err(|source| StorageError::EncodeValue {
            location: "memory".to_owned(),
            digest: *digest,
            source,
        })
    }
}

impl ValueStorage for MemoryValues {
    fn load(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StorageError> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(digest) {
            None => Ok(None),
            Some(Entry::Bytes(bytes)) => Ok(Some(bytes.to_vec())),
            Some(Entry::Value(v)) => Self::encode(digest, &**v).map(Some),
        }
    }

    fn load_with(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, StorageError> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(digest) {
            None => Ok(false),
            Some(Entry::Bytes(bytes)) => {
                visit(bytes);
                Ok(true)
            }
            Some(Entry::Value(v)) => {
                visit(&Self::encode(digest, &**v)?);
                Ok(true)
            }
        }
    }

    fn load_payload(
        &self,
        digest: &Digest,
        visit: &mut dyn FnMut(Payload<'_>),
    ) -> Result<bool, StorageError> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(digest) {
            None => Ok(false),
            Some(Entry::Bytes(bytes)) => {
                visit(Payload::Bytes(bytes));
                Ok(true)
            }
            Some(Entry::Value(v)) => {
                visit(Payload::Value(&**v));
                Ok(true)
            }
        }
    }

    fn keeps_values(&self) -> bool {
        true
    }

    fn save_value(&self, digest: &Digest, value: Arc<dyn TypedValue>) -> Result<(), StorageError> {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // A value replaces bytes of the same digest: the same content, cheaper to hit.
        map.insert(*digest, Entry::Value(value));
        Ok(())
    }

    fn save(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StorageError> {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(*digest)
            .or_insert_with(|| Entry::Bytes(Arc::from(bytes)));
        Ok(())
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StorageError> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.contains_key(digest))
    }

    fn evict(&self, digest: &Digest) -> Result<bool, StorageError> {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        Ok(map.remove(digest).is_some())
    }

    fn digests(&self) -> Result<Vec<Digest>, StorageError> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.keys().copied().collect())
    }
}

/// Call records kept in process memory. Clones share the same records.
#[derive(Debug, Default, Clone)]
pub struct MemoryCalls {
    records: Arc<RwLock<Map<CallRecord>>>,
}

impl MemoryCalls {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of stored records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CallStorage for MemoryCalls {
    fn result_of(&self, key: &Digest) -> Result<Option<Digest>, StorageError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).map(|r| r.result))
    }

    fn load(&self, key: &Digest) -> Result<Option<CallRecord>, StorageError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).cloned())
    }

    fn save(&self, record: CallRecord) -> Result<(), StorageError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(record.key, record);
        Ok(())
    }

    fn save_new(&self, record: CallRecord) -> Result<bool, StorageError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        match map.entry(record.key) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(record);
                Ok(true)
            }
        }
    }

    fn evict(&self, key: &Digest) -> Result<bool, StorageError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        Ok(map.remove(key).is_some())
    }

    fn records(&self) -> Result<Vec<CallRecord>, StorageError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.values().cloned().collect())
    }

    /// Filters the records in place and clones only the matches.
    fn select(&self, selection: &crate::Selection) -> Result<Vec<CallRecord>, StorageError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let matching = map
            .values()
            .filter(|r| selection.matches(r))
            .cloned()
            .collect();
        drop(map);
        Ok(selection.page(matching))
    }

    fn count(&self, selection: &crate::Selection) -> Result<usize, StorageError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let n = map.values().filter(|r| selection.matches(r)).count();
        drop(map);
        let after_skip = n.saturating_sub(selection.skip);
        Ok(selection.take.map_or(after_skip, |t| after_skip.min(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Digest {
        Digest::from_bytes([b; 32])
    }

    #[test]
    fn values_round_trip_and_evict() -> Result<(), StorageError> {
        let v = MemoryValues::new();
        assert_eq!(v.load(&d(1))?, None);
        v.save(&d(1), b"abc")?;
        v.save(&d(1), b"abc")?;
        assert_eq!(v.len(), 1);
        assert_eq!(v.load(&d(1))?.as_deref(), Some(&b"abc"[..]));
        let mut seen = Vec::new();
        assert!(v.load_with(&d(1), &mut |b| seen.extend_from_slice(b))?);
        assert!(!v.load_with(&d(2), &mut |_| panic!("absent"))?);
        assert_eq!(seen, b"abc");
        assert!(v.contains(&d(1))?);
        assert_eq!(v.digests()?, vec![d(1)]);
        assert!(v.evict(&d(1))?);
        assert!(!v.evict(&d(1))?);
        assert!(v.is_empty());
        Ok(())
    }

    #[test]
    fn values_kept_as_themselves_lend_themselves_and_make_bytes_on_demand()
    -> Result<(), StorageError> {
        let v = MemoryValues::new();
        let floats = vec![1.5f64, -2.0];
        let bytes = crate::encoding::to_vec(&floats).unwrap_or_default();
        v.save_value(&d(1), Arc::new(floats.clone()))?;
        let mut lent = None;
        assert!(v.load_payload(&d(1), &mut |p| {
            lent = match p {
                Payload::Value(t) => t.as_any().downcast_ref::<Vec<f64>>().cloned(),
                _ => None,
            }
        })?);
        assert_eq!(lent, Some(floats));
        // Its bytes, for whoever needs them, are the value format's.
        assert_eq!(v.load(&d(1))?, Some(bytes.clone()));
        let mut seen = Vec::new();
        assert!(v.load_with(&d(1), &mut |b| seen.extend_from_slice(b))?);
        assert_eq!(seen, bytes);
        // Bytes saved plainly are lent as bytes.
        v.save(&d(2), b"xyz")?;
        let mut kind = "";
        v.load_payload(&d(2), &mut |p| {
            kind = if matches!(p, Payload::Bytes(b"xyz")) {
                "bytes"
            } else {
                "other"
            }
        })?;
        assert_eq!(kind, "bytes");
        Ok(())
    }

    #[test]
    fn clones_share_entries() -> Result<(), StorageError> {
        let a = MemoryCalls::new();
        let b = a.clone();
        a.save(CallRecord::new(d(1), "f", d(2)))?;
        assert_eq!(b.result_of(&d(1))?, Some(d(2)));
        // Overwrite keeps one record with the newest content (C07).
        let mut newer = CallRecord::new(d(1), "f", d(3));
        newer.version = Some("2".into());
        b.save(newer.clone())?;
        assert_eq!(a.records()?, vec![newer]);
        Ok(())
    }
}

/// `type = "memory"`: a new, empty in-process storage per cache. It takes no keys.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBackend;

#[derive(Debug)]
struct MemorySpec;

impl crate::backend::Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn keys(&self, _template: bool) -> &'static [&'static str] {
        &[]
    }
    fn parse(
        &self,
        _: &crate::backend::Settings<'_>,
    ) -> Option<Box<dyn crate::backend::StorageSpec>> {
        Some(Box::new(MemorySpec))
    }
}

impl crate::backend::StorageSpec for MemorySpec {
    fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError> {
        Ok(Box::new(MemoryValues::new()))
    }
    fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError> {
        Ok(Box::new(MemoryCalls::new()))
    }
    fn persistent(&self) -> bool {
        false
    }
}
