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
//! Writers serialize on a lock file beside each HDF5 file (`<prefix>.h5.lock`), taken with the
//! operating system's file locks, so several processes can write one cache.
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
#[cfg(feature = "hdf5")]
pub use store::{Hdf5Calls, Hdf5Values};
