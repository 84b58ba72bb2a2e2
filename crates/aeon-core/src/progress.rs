//! Progress reporting without terminal concerns: the engine counts, the front end draws.

use std::sync::atomic::{AtomicU64, Ordering};

/// Receives counts from long operations. Implementations must be cheap: they are called from
/// worker threads for every file and chunk.
pub trait Progress: Send + Sync {
    /// The expected totals, when known (they may grow while a scan is still running).
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// Work done since the last call.
    fn add(&self, _files: u64, _bytes: u64) {}
    /// Something worth telling that does not stop the operation: the one channel through which
    /// the engine reports warnings and notes, whoever renders them (a terminal, a log, JSON).
    fn notice(&self, _notice: &Notice) {}
    /// An audit record was appended: the log's new head (the hash to keep elsewhere, for
    /// `aeon audit verify --head`).
    fn audit_recorded(&self, _head: &str) {}
    /// A warning about one item that does not stop the operation.
    fn warn(&self, message: &str) {
        self.notice(&Notice::warning(message));
    }
}

/// How much a [`Notice`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing; nothing is wrong (a stale lock removed, a kernel file system left out).
    Note,
    /// Something was not done, or something found is wrong, and the operation went on.
    Warning,
}

/// A warning or note from the engine, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub level: Level,
    pub message: String,
}

impl Notice {
    pub fn note(message: impl Into<String>) -> Notice {
        Notice { level: Level::Note, message: message.into() }
    }
    pub fn warning(message: impl Into<String>) -> Notice {
        Notice { level: Level::Warning, message: message.into() }
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Note => "note",
            Level::Warning => "warning",
        };
        write!(f, "{level}: {}", self.message)
    }
}

/// Keeps every notice, in order: for tests and for callers that render them later.
#[derive(Default)]
pub struct Collected(std::sync::Mutex<Vec<Notice>>);

impl Collected {
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Progress for Collected {
    fn notice(&self, notice: &Notice) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(notice.clone());
    }
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
