//! The one error type of the engine. Every variant names what is wrong so that the CLI can
//! print a one-line message and pick an exit code without parsing strings.

use std::path::PathBuf;

use crate::id::Id;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a [`Error::Corrupt`] concerns: callers act on the kind (check groups problems by it,
/// restore names the pack of a blob) without parsing sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Config,
    KeySlot(String),
    /// A pack, by its name on storage.
    Pack(String),
    Index(String),
    /// A recovery point, by its name on storage.
    Snapshot(String),
    Label(String),
    Lock(String),
    /// A blob, and the pack it was read from when known.
    Blob {
        blob_type: crate::blob::BlobType,
        id: Id,
        pack: Option<Id>,
    },
    /// Described in words only (a decoder's own part of an object).
    Other(String),
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Config => write!(f, "config"),
            Object::KeySlot(n) => write!(f, "key slot {n}"),
            Object::Pack(n) => write!(f, "pack {n}"),
            Object::Index(n) => write!(f, "index file {n}"),
            Object::Snapshot(n) => write!(f, "recovery point {n}"),
            Object::Label(n) => write!(f, "label record {n}"),
            Object::Lock(n) => write!(f, "lock {n}"),
            Object::Blob { blob_type, id, pack: None } => {
                write!(f, "{} blob {id}", blob_type.name())
            }
            Object::Blob { blob_type, id, pack: Some(p) } => {
                write!(f, "{} blob {id} in pack {p}", blob_type.name())
            }
            Object::Other(words) => f.write_str(words),
        }
    }
}

impl From<String> for Object {
    fn from(words: String) -> Object {
        Object::Other(words)
    }
}

impl From<&str> for Object {
    fn from(words: &str) -> Object {
        Object::Other(words.to_string())
    }
}

impl From<&String> for Object {
    fn from(words: &String) -> Object {
        Object::Other(words.clone())
    }
}

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

    #[error("{object} is corrupted: {reason}")]
    Corrupt { object: Object, reason: String },

    #[error("{kind} {id} not found")]
    ObjectNotFound { kind: &'static str, id: String },

    #[error("no {kind} matches {prefix:?}")]
    NoMatch { kind: &'static str, prefix: String },

    #[error("{prefix:?} is ambiguous: it matches {count} {kind}s; give more characters")]
    Ambiguous { kind: &'static str, prefix: String, count: usize },

    #[error("blob {0} is not in the index")]
    BlobNotIndexed(Id),

    /// Storage failed (after any retries): a local disk's error as it is, a remote service's
    /// as an error of the closest kind (permission denied, …) carrying its message.
    #[error("storage error at {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: std::io::Error,
    },

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

    /// An append-only client (`--append-only`) was about to delete or replace an object.
    #[error(
        "append-only: refusing {0} (this client never deletes or replaces anything; run it without --append-only, with a credential that may delete)"
    )]
    AppendOnly(String),

    /// A write-only client met something only a full key reads.
    #[error(
        "write-only key: {0}; a write-only client adds recovery points and reads nothing (use a full key: a password, key file or secret key)"
    )]
    WriteOnly(String),

    #[error("storage quota exceeded: {used} bytes used of {limit}, and {needed} more are needed")]
    QuotaExceeded { used: u64, limit: u64, needed: u64 },
}

impl Error {
    pub fn corrupt(object: impl Into<Object>, reason: impl Into<String>) -> Self {
        Error::Corrupt { object: object.into(), reason: reason.into() }
    }

    /// The object a corruption error concerns, if it is one.
    pub fn object(&self) -> Option<&Object> {
        match self {
            Error::Corrupt { object, .. } => Some(object),
            _ => None,
        }
    }

    /// A corruption error that a decoder described in words, typed as `object` when the words
    /// name it (decoders below the repository know objects only by their description).
    pub fn about(self, object: Object) -> Error {
        match self {
            Error::Corrupt { object: Object::Other(words), reason }
                if words == object.to_string() =>
            {
                Error::Corrupt { object, reason }
            }
            other => other,
        }
    }

    /// A storage failure at `location` described in words (a service's message, a location
    /// that is down).
    pub fn storage(location: impl Into<String>, message: impl Into<String>) -> Self {
        let source = std::io::Error::other(message.into());
        Error::Storage { location: location.into(), source }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// True when storage, or a restore's target, reported that it is full (ENOSPC, EDQUOT).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Storage { source, .. } | Error::Io { source, .. } => {
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
