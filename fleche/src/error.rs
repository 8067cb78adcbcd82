//! The errors fleche returns.

use std::path::PathBuf;

use fleche_storage::{Digest, StorageError};

/// What went wrong. Every variant names the cache, file, key or function involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Query::only`](crate::Query::only) found no matching call, or more than one.
    #[error("expected exactly one matching call, found {found}")]
    NotExactlyOne {
        /// How many matched.
        found: usize,
    },
    /// [`CallRecord::arg`](crate::CallRecord::arg) could not give an argument back.
    #[error(transparent)]
    Argument(#[from] fleche_storage::ArgError),
    /// A cache name that is neither reserved nor defined in a configuration file.
    #[error(
        "unknown cache `{name}`: the caches available are {}{}",
        known.join(", "),
        files_note(config_files)
    )]
    UnknownCache {
        /// The name asked for.
        name: String,
        /// The names that would have worked.
        known: Vec<String>,
        /// The configuration files that were read.
        config_files: Vec<PathBuf>,
    },
    /// A configuration file is broken.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A configured cache's storage could not be opened (created, or read as a cache).
    #[error("cache `{cache}` in {}: `{key}`: cannot open: {source}", file.display())]
    Open {
        /// The cache's name.
        cache: String,
        /// The configuration file that defines it.
        file: PathBuf,
        /// The key of the storage's table.
        key: String,
        /// Why it cannot be opened.
        #[source]
        source: Box<StorageError>,
    },
    /// A storage operation failed.
    #[error("cache `{cache}`: {source}")]
    Storage {
        /// The cache's name.
        cache: String,
        /// The storage's error.
        #[source]
        source: StorageError,
    },
    /// Caches that cannot be combined that way (a stack inside a stack, an empty pool, ...).
    #[error("cache `{cache}`: {message}")]
    Composition {
        /// The cache being built or changed.
        cache: String,
        /// What is wrong.
        message: String,
    },
    /// A result could not be encoded for storage.
    #[error("cannot encode the result of `{function}` (call {key}): {message}")]
    Encode {
        /// The memoized function.
        function: String,
        /// The call's key.
        key: Digest,
        /// The encoder's message.
        message: String,
    },
    /// A stored value could not be decoded as the expected type.
    #[error("cannot decode value {value} as `{type_name}`: {message}")]
    Decode {
        /// The value's digest.
        value: Digest,
        /// The type asked for.
        type_name: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// A file input or artifact could not be read or written.
    #[error("{}: cannot {operation}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was being done (`read`, `write`, ...).
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error is a stored entry found damaged or tampered with: a miss that the next
    /// store of the same key repairs.
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::Storage {
                source: StorageError::Corrupt { .. },
                ..
            }
        )
    }
}

fn files_note(files: &[PathBuf]) -> String {
    if files.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        format!(" (configuration read from {})", list.join(", "))
    }
}
