//! `type = "sql"`: the keys of an SQLite storage.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | required | `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///~/x.db`, `sqlite:///:memory:`, or a bare path (`fleche/calls.db`); relative to the configuration file |
//! | `shared` | `false` | group-shared modes (2770 directories, 0660 files) instead of 0700/0600 |
//! | `max_entry_size` | `"1 GiB"` | the largest value or record written or read back (bytes, or a string with a unit) |
//!
//! In a template (`template = "sql"`), one database holds the whole cache: `url`, or `root` for
//! the file `root/fleche.db` ([`DATABASE_FILE`]).

use super::SqlTarget;
use crate::backend::{Backend, Settings, StorageSpec};

/// The database file of a template's `root`.
pub const DATABASE_FILE: &str = "fleche.db";

/// The `sql` backend's configuration.
#[derive(Debug, Clone, Copy)]
pub struct SqlBackend;

#[cfg(feature = "sqlite")]
#[derive(Debug)]
struct SqlSpec {
    target: SqlTarget,
    shared: bool,
    max_entry_size: Option<u64>,
}

impl Backend for SqlBackend {
    fn name(&self) -> &'static str {
        "sql"
    }
    fn feature(&self) -> Option<&'static str> {
        Some("sqlite")
    }
    fn enabled(&self) -> bool {
        cfg!(feature = "sqlite")
    }
    fn keys(&self, template: bool) -> &'static [&'static str] {
        if template {
            &["url", "root", "shared", "max_entry_size"]
        } else {
            &["url", "shared", "max_entry_size"]
        }
    }
    fn parse(&self, s: &Settings<'_>) -> Option<Box<dyn StorageSpec>> {
        let shared = s.bool("shared").unwrap_or(false);
        let max_entry_size = s.bytes("max_entry_size");
        let target = match (s.get("url"), s.get("root")) {
            (Some(_), Some(_)) => {
                s.error(Some("root"), "give either `url` or `root`, not both");
                None
            }
            (None, Some(_)) => s
                .path("root")
                .map(|root| SqlTarget::File(root.join(DATABASE_FILE))),
            (Some(_), None) => s.string("url").and_then(|url| target(s, url)),
            (None, None) => {
                s.error(
                    Some("url"),
                    "missing: an `sql` storage needs a `url`, as `sqlite:///cache.db`",
                );
                None
            }
        };
        if s.failed() || !self.enabled() {
            return None;
        }
        spec(target?, shared, max_entry_size)
    }
}

#[cfg(feature = "sqlite")]
fn spec(
    target: SqlTarget,
    shared: bool,
    max_entry_size: Option<u64>,
) -> Option<Box<dyn StorageSpec>> {
    Some(Box::new(SqlSpec {
        target,
        shared,
        max_entry_size,
    }))
}

#[cfg(not(feature = "sqlite"))]
fn spec(_: SqlTarget, _: bool, _: Option<u64>) -> Option<Box<dyn StorageSpec>> {
    None
}

/// The database `url` names: an SQLite URL, or a bare path.
fn target(s: &Settings<'_>, url: &str) -> Option<SqlTarget> {
    if url == ":memory:" {
        return Some(SqlTarget::Memory);
    }
    if !url.contains("://") {
        if url.is_empty() {
            s.error(Some("url"), "names no file");
            return None;
        }
        return Some(SqlTarget::File(s.resolve(url)));
    }
    match SqlTarget::from_url(url, s.base(), s.home()) {
        Ok(t) => Some(t),
        Err(e) => {
            s.error(Some("url"), e);
            None
        }
    }
}

#[cfg(feature = "sqlite")]
mod open {
    use super::SqlSpec;
    use crate::backend::{StorageSpec, Storages};
    use crate::sql::{SqlDatabase, SqlTarget};
    use crate::{CallStorage, StorageError, ValueStorage};

    impl SqlSpec {
        fn open(&self) -> Result<SqlDatabase, StorageError> {
            let db = SqlDatabase::open_with(&self.target, self.shared)?;
            Ok(match self.max_entry_size {
                Some(max) => db.max_entry_size(max),
                None => db,
            })
        }
    }

    impl StorageSpec for SqlSpec {
        fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError> {
            Ok(Box::new(self.open()?.values()))
        }
        fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError> {
            Ok(Box::new(self.open()?.calls()))
        }
        fn open_both(&self) -> Result<Storages, StorageError> {
            let db = self.open()?;
            Ok((Box::new(db.values()), Box::new(db.calls())))
        }
        fn persistent(&self) -> bool {
            self.target != SqlTarget::Memory
        }
    }
}
