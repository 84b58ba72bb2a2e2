//! `aeon-core`: the engine of the Aeon backup system.
//!
//! This crate has no CLI, terminal or async-runtime concerns. Every concept lives in the
//! module named after it: [`chunker`], [`crypto`], [`keys`], [`blob`], [`pack`], [`index`],
//! [`tree`], [`snapshot`], [`backend`], [`repository`], [`lock`], [`archiver`], [`restorer`], [`check`],
//! [`retention`] (which recovery points to keep), [`prune`] (garbage collection), [`stats`].
//! The on-storage format is specified byte by byte in `docs/FORMAT.md`.

pub mod archiver;
pub mod audit;
pub mod backend;
pub mod blob;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod direct_io;
pub mod drill;
pub mod dump;
pub mod error;
pub mod filter;
pub mod find;
pub mod format;
pub mod id;
pub mod import;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod locations;
pub mod lock;
pub mod metadata;
pub mod pack;
pub mod parallel;
pub mod parity;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod report;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod snapshot;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree;
pub mod vfs;

pub use error::{Error, Result};
pub use id::Id;
pub use repository::Repository;

/// Version of this library, recorded in every recovery point it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
