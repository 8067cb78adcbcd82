//! Errors raised by storages.

use std::path::PathBuf;

use crate::Digest;

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
    #[error("corrupt entry {digest} in {location}: {reason}")]
    Corrupt {
        /// The storage (a path or a backend name).
        location: String,
        /// The key of the entry.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage refuses the operation (read-only, pool member, injected failure).
    #[error("{location} rejected {operation}")]
    Rejected {
        /// The storage (a path or a backend name).
        location: String,
        /// The operation refused: `save`, `evict`, ...
        operation: &'static str,
    },
    /// Any other backend failure.
    #[error("{location}: {message}")]
    Backend {
        /// The storage (a path or a backend name).
        location: String,
        /// The backend's description of the failure.
        message: String,
    },
}
