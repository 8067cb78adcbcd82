//! `type = "msgpack"` (aliases `pickle`, `cloudpickle`, `dill`): the keys of a file storage.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `root` | required | the directory; relative to the configuration file |
//! | `compress` | `false` | `true` (zstd level 3) or a zstd level from 1 to 22 |
//! | `secret_key` | `FLECHE_SECRET_KEY` | signing keys (hexadecimal); the first signs, any verifies |
//! | `durable` | `false` | fsync every entry and its directory before a save returns |
//! | `lock_timeout` | none | seconds (not negative); file storages take no locks, so nothing waits |
//! | `shared` | `false` | group-shared modes (2770 directories, 0660 files) instead of 0700/0600 |
//! | `max_entry_size` | `"1 GiB"` | the largest entry written or read back (bytes, or a string with a unit) |
//!
//! In a template (`template = "msgpack"`), `root` holds the whole cache: values in
//! `root/values`, calls in `root/calls`.

use std::path::PathBuf;

use super::envelope::SigningKey;
use super::{FileCalls, FileOptions, FileValues};
use crate::backend::{Backend, Settings, StorageSpec};
use crate::{CallStorage, StorageError, ValueStorage};

/// The directory of a cache's values under a template's `root`.
pub const VALUES_DIR: &str = "values";
/// The directory of a cache's call records under a template's `root`.
pub const CALLS_DIR: &str = "calls";

const KEYS: [&str; 7] = [
    "root",
    "compress",
    "secret_key",
    "durable",
    "lock_timeout",
    "shared",
    "max_entry_size",
];

/// The `msgpack` backend's configuration.
#[derive(Debug, Clone, Copy)]
pub struct FileBackend;

#[derive(Debug)]
struct FileSpec {
    root: PathBuf,
    template: bool,
    options: FileOptions,
}

impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        "msgpack"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["pickle", "cloudpickle", "dill"]
    }
    fn keys(&self, _template: bool) -> &'static [&'static str] {
        &KEYS
    }
    fn parse(&self, s: &Settings<'_>) -> Option<Box<dyn StorageSpec>> {
        let root = s.required_path("root", "a file storage needs a `root` directory");
        let mut options = FileOptions::new();
        match s.get("compress") {
            None | Some(toml::Value::Boolean(false)) => {}
            Some(toml::Value::Boolean(true)) => options = options.compress(3),
            Some(toml::Value::Integer(level)) if (1..=22).contains(level) => {
                options = options.compress(i32::try_from(*level).unwrap_or(3));
            }
            Some(v) => s.error(
                Some("compress"),
                format!("expected true, false or a zstd level from 1 to 22, found {v}"),
            ),
        }
        if options.compress.is_some() && !cfg!(feature = "zstd") {
            s.error(
                Some("compress"),
                "compression needs fleche built with the `zstd` feature",
            );
        }
        options = options
            .durable(s.bool("durable").unwrap_or(false))
            .shared(s.bool("shared").unwrap_or(false));
        let _ = s.seconds("lock_timeout");
        if let Some(max) = s.bytes("max_entry_size") {
            options = options.max_entry_size(max);
        }
        let keys = signing_keys(s);
        if s.failed() {
            return None;
        }
        Some(Box::new(FileSpec {
            root: root?,
            template: s.is_template(),
            options: options.keys(keys),
        }))
    }
}

/// `secret_key`, else `FLECHE_SECRET_KEY`, parsed; problems recorded in `s`.
fn signing_keys(s: &Settings<'_>) -> Vec<SigningKey> {
    let parse = |at: Option<&str>, hex: &str| match SigningKey::from_hex(hex) {
        Ok(k) => Some(k),
        Err(e) => {
            match at {
                Some(at) => s.error(Some(at), e),
                None => s.error(None, format!("FLECHE_SECRET_KEY: {e}")),
            }
            None
        }
    };
    if s.get("secret_key").is_some() {
        return s
            .strings("secret_key")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(at, hex)| parse(Some(&at), hex))
            .collect();
    }
    s.env_secret_keys()
        .map(|list| {
            list.split([',', ' ', '\n', '\t'])
                .filter(|h| !h.is_empty())
                .filter_map(|hex| parse(None, hex))
                .collect()
        })
        .unwrap_or_default()
}

impl FileSpec {
    fn dir(&self, part: &str) -> PathBuf {
        if self.template {
            self.root.join(part)
        } else {
            self.root.clone()
        }
    }
}

impl StorageSpec for FileSpec {
    fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError> {
        Ok(Box::new(FileValues::open(
            self.dir(VALUES_DIR),
            self.options.clone(),
        )?))
    }
    fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError> {
        Ok(Box::new(FileCalls::open(
            self.dir(CALLS_DIR),
            self.options.clone(),
        )?))
    }
    fn can_sign(&self) -> bool {
        true
    }
}
