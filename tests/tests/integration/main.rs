//! Integration tests for fleche, in one binary. Scenario IDs (K01, C06, F02, ...) refer to the
//! acceptance scenarios and appear in test names.

// Tests exercise panics on purpose.
#![allow(clippy::panic)]

mod arrays;
mod config;
mod destructuring;
mod files;
#[cfg(feature = "hdf5")]
mod hdf5;
mod keys;
mod kinds;
mod macros;
mod make_like;
mod metadata;
mod processes;
mod query;
mod runtime;
#[cfg(feature = "sqlite")]
mod sql_trust;
mod support;
mod ui;
