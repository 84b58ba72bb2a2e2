//! The one error type of the engine. Every variant names what is wrong so that the CLI can
//! print a one-line message and pick an exit code without parsing strings.

use std::path::PathBuf;

use crate::id::Id;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no repository at {0}")]
    RepositoryNotFound(String),

    #[error("{0} is not an Aeon repository ({1})")]
    NotARepository(String, String),

    #[error(
        "repository format version {found} is newer than this aeon supports (up to {supported}); upgrade aeon"
    )]
    UnsupportedVersion { found: u8, supported: u8 },

    #[error("a repository already exists at {0}")]
    AlreadyExists(String),

    /// `init` over a location holding something else, or a repository whose config is gone.
    #[error(
        "{location} is not empty (it holds {holds}): a repository is only made in an empty place"
    )]
    NotEmpty { location: String, holds: String },

    #[error("wrong password or no key slot matches")]
    WrongPassword,

    /// No slot opened, and some could not be tried at all (they might have).
    #[error("wrong password or no key slot matches ({0})")]
    WrongPasswordWithSkipped(String),

    #[error("{what} is corrupted: {reason}")]
    Corrupt { what: String, reason: String },

    #[error("{kind} {id} not found")]
    ObjectNotFound { kind: &'static str, id: String },

    #[error("no {kind} matches {prefix:?}")]
    NoMatch { kind: &'static str, prefix: String },

    #[error("{prefix:?} is ambiguous: it matches {count} {kind}s; give more characters")]
    Ambiguous { kind: &'static str, prefix: String, count: usize },

    #[error("blob {0} is not in the index")]
    BlobNotIndexed(Id),

    #[error("storage error on {path}: {source}")]
    Backend {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("storage error at {location}: {message}")]
    Storage { location: String, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    InvalidInput(String),

    #[error("operation cancelled")]
    Cancelled,

    #[error("recovery point {0} is protected")]
    Protected(String),

    #[error("the repository is locked by {0}")]
    Locked(String),

    #[error(
        "lost the repository lock ({0}): it could not be refreshed, so others may judge it stale"
    )]
    LockLost(String),

    #[error("storage quota exceeded: {used} bytes used of {limit}, and {needed} more are needed")]
    QuotaExceeded { used: u64, limit: u64, needed: u64 },
}

impl Error {
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into(), reason: reason.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// True when storage, or a restore's target, reported that it is full (ENOSPC, EDQUOT).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Backend { source, .. } | Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            }
            _ => false,
        }
    }

    /// True when the error means stored data failed authentication or parsing.
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}
