//! The `sql` backend: SQLite through rusqlite (bundled, so nothing needs installing).
//!
//! One database file can hold a whole cache: call records in the `calls` table, with their
//! arguments and metadata as JSON columns (queryable with SQLite's JSON functions, and indexed
//! per argument in `arguments`), and encoded values in the `"values"` table. The database runs in
//! WAL mode with a busy timeout, so several processes and threads can use it at once. The schema
//! is versioned with `PRAGMA user_version` (`docs/format.md`, "SQL backend").
//!
//! Every row carries a checksum of its address and payload, and every load checks it, so a
//! damaged row, or one swapped with or copied from another address, is never served
//! ([`StorageError::Corrupt`](crate::StorageError::Corrupt), a miss with a warning upstream); the
//! next store replaces it. Payloads longer than `max_entry_size` are refused before they are
//! read.
//!
//! Modes, on Unix: the database file is created `0600` and the directories leading to it that
//! the backend creates `0700`, so a cache is private by default; `SqlDatabase::open_with` with
//! `shared` creates them `0660` and `2770` (setgid) for a group. SQLite gives the `-wal` and
//! `-shm` files the database file's mode. An existing database file or directory keeps its mode.
//!
//! The configuration half of this module (type name, keys, URLs) is always compiled, so a
//! configuration naming `sql` in a build without the `sqlite` feature says which feature it needs.

use std::path::{Path, PathBuf};

mod config;
#[cfg(feature = "sqlite")]
mod select;
#[cfg(feature = "sqlite")]
mod store;

pub use config::{DATABASE_FILE, SqlBackend};
#[cfg(feature = "sqlite")]
pub use store::{SCHEMA_VERSION, SqlCalls, SqlDatabase, SqlValues};

/// Where a database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlTarget {
    /// A file, created if missing (its directory too).
    File(PathBuf),
    /// A private in-memory database (`:memory:`).
    Memory,
}

impl SqlTarget {
    /// Parses a URL: `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///~/x.db`,
    /// `sqlite:///:memory:` or `sqlite://` (memory). Relative paths resolve against `base`, `~`
    /// against `home`.
    ///
    /// # Errors
    ///
    /// [`SqlUrlError`] for a URL that is not an SQLite URL.
    pub fn from_url(url: &str, base: &Path, home: Option<&Path>) -> Result<Self, SqlUrlError> {
        let rest = url
            .strip_prefix("sqlite://")
            .ok_or_else(|| SqlUrlError::NotSqlite {
                url: url.to_owned(),
            })?;
        if rest.is_empty() || rest == "/:memory:" || rest == ":memory:" {
            return Ok(Self::Memory);
        }
        let path = rest
            .strip_prefix('/')
            .ok_or_else(|| SqlUrlError::MissingSlash {
                url: url.to_owned(),
            })?;
        if path.is_empty() {
            return Err(SqlUrlError::NoFile {
                url: url.to_owned(),
            });
        }
        let resolved = match (path.strip_prefix("~/"), home) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => base.join(path),
        };
        Ok(Self::File(resolved))
    }
}

/// Why a URL does not name an SQLite database ([`SqlTarget::from_url`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlUrlError {
    /// The URL does not start with `sqlite://`.
    #[error("`{url}` is not an SQLite URL: write `sqlite:///path/to/file.db`")]
    NotSqlite {
        /// The URL.
        url: String,
    },
    /// `sqlite://` is followed by a path without the third slash.
    #[error("`{url}`: expected three slashes, as in `sqlite:///cache.db`")]
    MissingSlash {
        /// The URL.
        url: String,
    },
    /// `sqlite:///` with nothing after it.
    #[error("`{url}` names no file")]
    NoFile {
        /// The URL.
        url: String,
    },
}
