//! Errors raised by storages.

use std::path::PathBuf;

use crate::Digest;

/// The error behind a [`StorageError::Corrupt`], when a decoder or library raised one.
pub(crate) type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a storage. Every variant names where: a path, a digest, a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation on a file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored entry could not be decoded (truncated, tampered, wrong format).
    #[error("corrupt entry {digest} in {location}: {}", detail(reason, source.as_deref()))]
    Corrupt {
        /// The storage (a path or a backend name).
        location: String,
        /// The key of the entry.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
        /// The decoder's or library's error, when one said what is wrong.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The storage refuses the operation (read-only, pool member, injected failure).
    #[error("{location} rejected {operation}")]
    Rejected {
        /// The storage (a path or a backend name).
        location: String,
        /// The operation refused: `save`, `evict`, ...
        operation: &'static str,
    },
    /// A value kept as itself could not be encoded when its bytes were asked for.
    #[error("{location}: cannot encode value {digest}: {source}")]
    EncodeValue {
        /// The storage (a path or a backend name).
        location: String,
        /// The value's digest.
        digest: Digest,
        /// The encoder's error.
        #[source]
        source: crate::encoding::EncodeError,
    },
    /// A call record could not be encoded as MessagePack.
    #[error("{location}: cannot encode call record {key}: {source}")]
    Encode {
        /// The storage (a path or a backend name).
        location: String,
        /// The key of the record.
        key: Digest,
        /// The encoder's error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// An entry could not be sealed in its envelope (compression failed or is not built in).
    #[error("{location}: cannot write entry {digest}: {source}")]
    Seal {
        /// The storage (a path).
        location: String,
        /// The key of the entry.
        digest: Digest,
        /// Why sealing failed.
        #[source]
        source: crate::file::envelope::SealError,
    },
    /// The storage's settings are invalid, or do not match what is stored.
    #[error("{location}: {reason}")]
    Settings {
        /// The storage (a path or a backend name).
        location: String,
        /// What is wrong with the settings.
        reason: String,
    },
    /// A result larger than the storage's `max_entry_size`: not stored.
    #[error(
        "{location}: entry {digest} is {size} bytes, more than max_entry_size ({max}); not stored"
    )]
    TooLarge {
        /// The storage.
        location: String,
        /// The entry's digest or key.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Another process held a lock longer than the configured `lock_timeout`.
    #[error("{}: another process held the lock for longer than {waited:?} (`lock_timeout`)", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long fleche waited.
        waited: std::time::Duration,
    },
    /// A database whose schema is newer than this version of fleche reads.
    #[error(
        "{location}: the database schema version {found} is newer than this fleche supports ({supported}); upgrade fleche"
    )]
    NewerSchema {
        /// The database.
        location: String,
        /// The schema version found in the database.
        found: i64,
        /// The newest schema version this code reads.
        supported: i64,
    },
    /// An SQLite operation failed.
    #[cfg(feature = "sqlite")]
    #[error("{location}: {source}")]
    Sqlite {
        /// The database (a path, or `:memory:`).
        location: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// An HDF5 file could not be read or written.
    #[cfg(feature = "hdf5")]
    #[error("{location}: {source}")]
    Hdf5 {
        /// The HDF5 file.
        location: String,
        /// The underlying error.
        #[source]
        source: hdf5_pure::Error,
    },
    /// Any other failure of a backend outside this crate, described by a message.
    #[error("{location}: {message}")]
    Backend {
        /// The storage (a path or a backend name).
        location: String,
        /// The backend's description of the failure.
        message: String,
    },
}

impl StorageError {
    /// A [`StorageError::Corrupt`] without an underlying error: what a backend returns for an
    /// entry that is present but is not the entry of its address.
    #[must_use]
    pub fn corrupt(
        location: impl Into<String>,
        digest: &Digest,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            location: location.into(),
            digest: *digest,
            reason: reason.into(),
            source: None,
        }
    }

    /// A [`StorageError::Corrupt`] caused by `source`.
    pub(crate) fn corrupt_by(
        location: impl Into<String>,
        digest: &Digest,
        reason: impl Into<String>,
        source: impl Into<BoxedError>,
    ) -> Self {
        Self::Corrupt {
            location: location.into(),
            digest: *digest,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

/// `reason: source`, leaving out whichever is empty.
fn detail(
    reason: &str,
    source: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
) -> String {
    match source {
        Some(s) if reason.is_empty() => s.to_string(),
        Some(s) => format!("{reason}: {s}"),
        None => reason.to_owned(),
    }
}
