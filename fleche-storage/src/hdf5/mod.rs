//! The `hdf5` backend (alias `bagofholding_hdf`): real HDF5 files that h5py and every other HDF5
//! tool open, written by the pure-Rust `hdf5-pure` crate (no C library to install).
//!
//! Entries whose digests share their first `prefix_length` hexadecimal characters (default 2)
//! live in one file, `root/<prefix>.h5`, each in a group named by its full digest. A value that
//! is a sequence of floats is stored as a `float64` dataset `data`, a sequence of integers as an
//! `int64` dataset, a sequence of equally long float sequences as a two-dimensional `float64`
//! dataset; anything else as the `uint8` dataset `msgpack` holding its encoding. The group's
//! attribute `fleche` says which. A call record is the `uint8` dataset `record` (its MessagePack
//! encoding), with the attributes `function` and `result` for browsing.
//!
//! Every group also carries its stamp (layout version [`LAYOUT_VERSION`]): the attributes
//! `layout_version`, `address` (the digest it was stored under) and `checksum` (xxh3-128 over the
//! address and the entry's MessagePack bytes, `crate::integrity`). A load rebuilds the bytes and
//! checks both, so an entry copied to another group or edited in place is a miss, with a warning,
//! that the next store replaces. Groups of layout 1 (no stamp) are misses too, warned about once
//! per store. Files are read whole, and only when they are regular files (symbolic links are not
//! followed) within `max_entry_size`; datasets are checked against it before they are read.
//!
//! Writers serialize on a lock file beside each HDF5 file (`<prefix>.h5.lock`), taken with the
//! operating system's file locks, so several processes can write one cache. A store edits its
//! file in one commit, a replaced entry's deletion included. A file that is not sound HDF5 is
//! moved aside to `<prefix>.h5.corrupt-<unix time>` by the next write, which starts a new file.
//! Readers open an existing lock file read-only, and read without a lock where the lock file
//! can be neither opened nor created (read-only media), so such caches can be read.
//!
//! Modes, on Unix: directories the backend creates are `0700`, and the `.h5` files, their
//! `.h5.lock` files and the temporary files new `.h5` files are written to are `0600`, so a cache
//! is private by default; `Hdf5Values::open_with` and `Hdf5Calls::open_with` with `shared` make
//! them `2770` (setgid) and `0660`, for a group. An existing root directory keeps its mode.
//!
//! The configuration half of this module (type name, keys, ranges) is always compiled, so a
//! configuration naming `hdf5` in a build without the `hdf5` feature says which feature it needs.

mod config;
#[cfg(feature = "hdf5")]
mod store;

pub use config::{DEFAULT_PREFIX_LENGTH, Hdf5Backend, PREFIX_LENGTHS};

/// The HDF5 layout version this code writes and reads (`docs/format.md`, "HDF5 backend"). Layout
/// 2 stamps every group with the address it was stored under and a checksum of the entry; groups
/// of layout 1 (no stamp) are misses, rewritten by the next store of their key.
pub const LAYOUT_VERSION: u32 = 2;
#[cfg(feature = "hdf5")]
pub use store::{Hdf5Calls, Hdf5Values};
