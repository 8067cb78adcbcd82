//! The call record: what a call storage keeps for every stored call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, Value};

/// One stored call: the function, its arguments in queryable form, its metadata and the digest of
/// the value it returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallRecord {
    /// The call's lookup key.
    pub key: Digest,
    /// The function's name (by default its module path and identifier).
    pub function: String,
    /// The function's declared `version`, if any.
    pub version: Option<String>,
    /// The digest of the function's normalized source, when it is memoized with `hash_code`.
    pub code: Option<Digest>,
    /// The generic type arguments of this instantiation, in declaration order.
    pub type_args: Vec<String>,
    /// The hashed arguments, by parameter name, in declaration order.
    pub arguments: Vec<(String, Value)>,
    /// The digest of the stored result value.
    pub result: Digest,
    /// Metadata by name (`runtime`, ...).
    pub metadata: BTreeMap<String, Value>,
}

impl CallRecord {
    /// A record with no type arguments, arguments or metadata.
    #[must_use]
    pub fn new(key: Digest, function: impl Into<String>, result: Digest) -> Self {
        Self {
            key,
            function: function.into(),
            version: None,
            code: None,
            type_args: Vec::new(),
            arguments: Vec::new(),
            result,
            metadata: BTreeMap::new(),
        }
    }

    /// Decodes a record stored under `key` (MessagePack, as every backend stores it) and checks
    /// that it is the record of `key`.
    ///
    /// # Errors
    ///
    /// Why the bytes are not the record of `key`: [`RecordError::Undecodable`] for bytes that are
    /// not a call record, [`RecordError::WrongKey`] for the record of another key.
    pub fn decode_for(key: &Digest, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: Self = crate::codec::decode(bytes)
            .map_err(|source| RecordError::Undecodable { key: *key, source })?;
        if record.key != *key {
            return Err(RecordError::WrongKey {
                expected: *key,
                found: record.key,
            });
        }
        Ok(record)
    }

    /// The argument named `name`, if it was hashed.
    #[must_use]
    pub fn argument(&self, name: &str) -> Option<&Value> {
        self.arguments
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// The argument named `name` as a `T`, read back from its recorded form (see
    /// [`Value::deserialize_into`]); [`CallRecord::argument`] gives the [`Value`] itself.
    ///
    /// ```
    /// use fleche_storage::{CallRecord, Digest, Value};
    ///
    /// let mut r = CallRecord::new(Digest::from_bytes([1; 32]), "f", Digest::from_bytes([2; 32]));
    /// r.arguments.push(("seed".into(), Value::from(7u32)));
    /// assert_eq!(r.arg::<u64>("seed").ok(), Some(7));
    /// assert!(r.arg::<u64>("steps").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ArgError`], naming the argument: there is none of that name, or it is not a `T`.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ArgError> {
        let value = self.argument(name).ok_or_else(|| ArgError::Missing {
            name: name.to_owned(),
            function: self.function.clone(),
        })?;
        value.deserialize_into().map_err(|source| ArgError::Type {
            name: name.to_owned(),
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}

/// Why [`CallRecord::arg`] cannot give an argument back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgError {
    /// The record has no argument of that name.
    #[error("the call of `{function}` has no argument `{name}`")]
    Missing {
        /// The argument asked for.
        name: String,
        /// The function of the record.
        function: String,
    },
    /// The argument's recorded form is not a value of the type asked for.
    #[error("argument `{name}` is not a `{type_name}`: {source}")]
    Type {
        /// The argument asked for.
        name: String,
        /// The type asked for.
        type_name: &'static str,
        /// What does not match.
        #[source]
        source: crate::value::ValueError,
    },
}

/// Why stored bytes are not the call record of a key ([`CallRecord::decode_for`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a MessagePack call record.
    #[error("undecodable call record: {source}")]
    Undecodable {
        /// The key the record was stored under.
        key: Digest,
        /// The decoder's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// The bytes are the record of another key.
    #[error("found the record of {found} instead")]
    WrongKey {
        /// The key the record was stored under.
        expected: Digest,
        /// The key the record says it belongs to.
        found: Digest,
    },
}

/// Every readable record among `keys`, loaded with `load`; unreadable ones are skipped with a
/// warning, so one damaged entry does not hide the others.
#[cfg(feature = "hdf5")]
pub(crate) fn readable(
    keys: Vec<Digest>,
    load: impl Fn(&Digest) -> Result<Option<CallRecord>, crate::StorageError>,
) -> Vec<CallRecord> {
    keys.iter()
        .filter_map(|key| match load(key) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "skipping unreadable call record");
                None
            }
        })
        .collect()
}

/// [`readable`], keeping only the records `keep` accepts, with the loads spread over the
/// machine's cores when there are enough keys for threads to pay.
pub(crate) fn readable_parallel(
    keys: Vec<Digest>,
    load: impl Fn(&Digest) -> Result<Option<CallRecord>, crate::StorageError> + Sync,
    keep: impl Fn(&CallRecord) -> bool + Sync,
) -> Vec<CallRecord> {
    /// Below this many keys, one thread does it.
    const PER_THREAD: usize = 256;
    let one = &|key: &Digest| match load(key) {
        Ok(Some(r)) if keep(&r) => Some(r),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "skipping unreadable call record");
            None
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(keys.len() / PER_THREAD)
        .min(16);
    if threads <= 1 {
        return keys.iter().filter_map(one).collect();
    }
    let chunk = keys.len().div_ceil(threads);
    let parts: Vec<Option<Vec<CallRecord>>> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(s, || part.iter().filter_map(one).collect::<Vec<_>>())
                    .map_err(|_| part)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().ok(),
                // No thread could be started: this thread reads the part.
                Err(part) => Some(part.iter().filter_map(one).collect()),
            })
            .collect()
    });
    let mut out = Vec::new();
    for (part, records) in keys.chunks(chunk).zip(parts) {
        match records {
            Some(r) => out.extend(r),
            // A panicked reader: read its part again here.
            None => out.extend(part.iter().filter_map(one)),
        }
    }
    out
}
