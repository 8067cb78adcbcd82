//! `type = "hdf5"` (alias `bagofholding_hdf`): the keys of an HDF5 storage.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `root` | required | the directory of `.h5` files; relative to the configuration file |
//! | `prefix_length` | 2 ([`DEFAULT_PREFIX_LENGTH`]) | digest characters (1–64) naming the file an entry goes in |
//! | `lock_timeout` | wait forever | seconds (not negative) to wait for another process's lock on a file before giving up (the call then runs uncached, with a warning) |
//! | `shared` | `false` | group-shared modes (2770 directories, 0660 files) instead of 0700/0600 |
//! | `max_entry_size` | `"1 GiB"` | the largest entry written or read back, and the longest `.h5` file read (bytes, or a string with a unit) |
//!
//! In a template (`template = "hdf5"`), `root` holds the whole cache: values in `root/values`,
//! calls in `root/calls`.

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{Backend, Settings, StorageSpec};

/// How many leading hexadecimal digest characters name an entry's file by default.
pub const DEFAULT_PREFIX_LENGTH: usize = 2;
/// The accepted `prefix_length`s.
pub const PREFIX_LENGTHS: std::ops::RangeInclusive<usize> = 1..=64;

/// The `hdf5` backend's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Hdf5Backend;

// Without the `hdf5` feature the registry refuses the type before a spec is made.
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
#[derive(Debug)]
struct Hdf5Spec {
    root: PathBuf,
    template: bool,
    prefix_length: usize,
    lock_timeout: Option<Duration>,
    shared: bool,
    max_entry_size: Option<u64>,
}

impl Backend for Hdf5Backend {
    fn name(&self) -> &'static str {
        "hdf5"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["bagofholding_hdf"]
    }
    fn feature(&self) -> Option<&'static str> {
        Some("hdf5")
    }
    fn enabled(&self) -> bool {
        cfg!(feature = "hdf5")
    }
    fn keys(&self, _template: bool) -> &'static [&'static str] {
        &[
            "root",
            "prefix_length",
            "lock_timeout",
            "shared",
            "max_entry_size",
        ]
    }
    fn parse(&self, s: &Settings<'_>) -> Option<Box<dyn StorageSpec>> {
        let root = s.required_path("root", "an HDF5 storage needs a `root` directory");
        let range = i64::try_from(*PREFIX_LENGTHS.start()).unwrap_or(1)
            ..=i64::try_from(*PREFIX_LENGTHS.end()).unwrap_or(64);
        let prefix_length = s
            .integer("prefix_length", range)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_PREFIX_LENGTH);
        let lock_timeout = s.seconds("lock_timeout");
        let shared = s.bool("shared").unwrap_or(false);
        let max_entry_size = s.bytes("max_entry_size");
        if s.failed() || !self.enabled() {
            return None;
        }
        spec(Hdf5Spec {
            root: root?,
            template: s.is_template(),
            prefix_length,
            lock_timeout,
            shared,
            max_entry_size,
        })
    }
}

#[cfg(feature = "hdf5")]
fn spec(spec: Hdf5Spec) -> Option<Box<dyn StorageSpec>> {
    Some(Box::new(spec))
}

#[cfg(not(feature = "hdf5"))]
fn spec(_: Hdf5Spec) -> Option<Box<dyn StorageSpec>> {
    None
}

#[cfg(feature = "hdf5")]
mod open {
    use std::path::PathBuf;

    use super::Hdf5Spec;
    use crate::backend::StorageSpec;
    use crate::file::{CALLS_DIR, VALUES_DIR};
    use crate::hdf5::{Hdf5Calls, Hdf5Values};
    use crate::{CallStorage, StorageError, ValueStorage};

    impl Hdf5Spec {
        fn dir(&self, part: &str) -> PathBuf {
            if self.template {
                self.root.join(part)
            } else {
                self.root.clone()
            }
        }
    }

    impl StorageSpec for Hdf5Spec {
        fn open_values(&self) -> Result<Box<dyn ValueStorage>, StorageError> {
            let v = Hdf5Values::open_with(self.dir(VALUES_DIR), self.prefix_length, self.shared)?
                .lock_timeout(self.lock_timeout);
            Ok(Box::new(match self.max_entry_size {
                Some(max) => v.max_entry_size(max),
                None => v,
            }))
        }
        fn open_calls(&self) -> Result<Box<dyn CallStorage>, StorageError> {
            let c = Hdf5Calls::open_with(self.dir(CALLS_DIR), self.prefix_length, self.shared)?
                .lock_timeout(self.lock_timeout);
            Ok(Box::new(match self.max_entry_size {
                Some(max) => c.max_entry_size(max),
                None => c,
            }))
        }
    }
}
