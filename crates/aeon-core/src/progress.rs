//! Progress reporting without terminal concerns: the engine counts, the front end draws.

use std::sync::atomic::{AtomicU64, Ordering};

/// Receives counts from long operations. Implementations must be cheap: they are called from
/// worker threads for every file and chunk.
pub trait Progress: Send + Sync {
    /// The expected totals, when known (they may grow while a scan is still running).
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// Work done since the last call.
    fn add(&self, _files: u64, _bytes: u64) {}
    /// A warning about one item that does not stop the operation.
    fn warn(&self, _message: &str) {}
}

/// Discards everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Counts totals; handy for tests and summaries.
#[derive(Default)]
pub struct Counter {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

impl Progress for Counter {
    fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
