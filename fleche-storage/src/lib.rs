//! Storage traits and backends for [fleche](https://docs.rs/fleche) caches.
//!
//! A fleche cache is two storages:
//!
//! - a [`ValueStorage`] holds encoded results, content-addressed by the [`Digest`] of their bytes,
//!   so equal results are stored once;
//! - a [`CallStorage`] holds [`CallRecord`]s: which function was called with which arguments,
//!   when, and the digest of the value it returned.
//!
//! This crate defines those traits, the data types they exchange and the built-in backends. It
//! depends on neither the `fleche` crate nor its macros, so a third-party backend needs only this
//! crate.
//!
//! | backend | values | calls | notes |
//! |---|---|---|---|
//! | [`memory`] | [`MemoryValues`] | [`MemoryCalls`] | per process, shared by clones |
//! | [`void`] | [`VoidValues`] | [`VoidCalls`] | stores nothing; every load misses |
//! | [`file`](mod@file) (`msgpack`) | [`FileValues`] | [`FileCalls`] | one file per entry; shared between processes |
//! | [`sql`] | [`SqlValues`] | [`SqlCalls`] | SQLite (bundled), WAL; arguments queryable as JSON; feature `sqlite` |
//! | [`hdf5`](mod@hdf5) | [`Hdf5Values`] | [`Hdf5Calls`] | HDF5 files h5py reads; numeric arrays as typed datasets; feature `hdf5` |
//!
//! # Cargo features
//!
//! All on by default:
//!
//! - `sqlite`: the `sql` backend (rusqlite with a bundled SQLite);
//! - `zstd`: zstd compression of file entries ([`FileOptions::compress`]). Without it, writing
//!   with `compress` set fails, and reading a compressed entry is a [`StorageError::Corrupt`]
//!   saying so;
//! - `hdf5`: the `hdf5` backend (the pure-Rust `hdf5-pure`).

pub mod backend;
pub mod codec;
pub mod destructure;
mod digest;
pub mod encoding;
mod error;
pub mod file;
mod fs;
pub mod hdf5;
pub mod integrity;
pub mod memory;
mod record;
pub mod registry;
pub mod select;
pub mod sql;
mod traits;
mod value;
pub mod void;

pub use digest::{Digest, DigestBuildHasher, DigestHasher, ParseDigestError};
pub use error::StorageError;
pub use file::envelope::{ParseSigningKeyError, SigningKey};
pub use file::{FileCalls, FileOptions, FileValues};
#[cfg(feature = "hdf5")]
pub use hdf5::{Hdf5Calls, Hdf5Values};
pub use memory::{MemoryCalls, MemoryValues};
pub use record::{ArgError, CallRecord, RecordError};
pub use select::{Condition, Selection};
#[cfg(feature = "sqlite")]
pub use sql::{SqlCalls, SqlDatabase, SqlValues};
pub use sql::{SqlTarget, SqlUrlError};
pub use traits::{CallStorage, Payload, PayloadReader, TypedValue, ValueStorage};
pub use value::{Value, ValueError};
pub use void::{VoidCalls, VoidValues};
