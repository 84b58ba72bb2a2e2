//! Storage backends: the one narrow interface through which the engine reaches storage.
//!
//! Everything above this trait is storage-agnostic. Writes are all-or-nothing: a reader never
//! sees a partly written object, which is what makes the write ordering in `docs/FORMAT.md`
//! sufficient for crash consistency.

mod append_only;
mod forward;
mod limiter;
mod local;
mod memory;
mod mirror;
mod remote;
pub mod stripe;

pub use append_only::AppendOnly;
pub use limiter::RateLimited;
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub(crate) use mirror::is_location_failure;
pub use mirror::{Location, MirrorBackend};
pub use remote::{RemoteBackend, RemoteOptions, is_remote, open_location};
pub use stripe::StripeBackend;

use crate::error::Result;

/// The kinds of object a repository stores, each in its own namespace (folder or prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    Audit,
    Parity,
    /// Changes to a recovery point's labels (protection, tags, description).
    Label,
    /// Where the rolling scrub of `check --scrub` stopped.
    Scrub,
}

impl FileType {
    /// The folder or key prefix of this namespace.
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
            FileType::Audit => "audit",
            FileType::Parity => "parity",
            FileType::Label => "labels",
            FileType::Scrub => "scrub",
        }
    }

    /// The object of this kind named `name`, as errors name it.
    pub fn object(self, name: &str) -> crate::error::Object {
        use crate::error::Object;
        match self {
            FileType::Config => Object::Config,
            FileType::Key => Object::KeySlot(name.into()),
            FileType::Pack => Object::Pack(name.into()),
            FileType::Index => Object::Index(name.into()),
            FileType::Snapshot => Object::Snapshot(name.into()),
            FileType::Label => Object::Label(name.into()),
            FileType::Lock => Object::Lock(name.into()),
            FileType::Audit | FileType::Parity | FileType::Scrub => {
                Object::Other(format!("{} {name}", self.dir()))
            }
        }
    }

    pub fn all_dirs() -> [FileType; 9] {
        use FileType::*;
        [Key, Pack, Index, Snapshot, Lock, Audit, Parity, Label, Scrub]
    }
}

/// The key of an object below the repository root, the same on every backend (so a repository
/// can be copied between them with any file tool): `config`, `data/<ab>/<id>`, `<dir>/<name>`.
pub fn object_path(t: FileType, name: &str) -> String {
    match t {
        FileType::Config => "config".to_string(),
        FileType::Pack if name.len() >= 2 => format!("data/{}/{name}", &name[..2]),
        _ => format!("{}/{name}", t.dir()),
    }
}

/// A stored object's name and size, as listings return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// An object written piece by piece and named when complete (a pack is named by its hash).
pub trait Upload: Send {
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the object durable under `name`. An upload dropped unfinished leaves nothing
    /// visible: at most a partial file that [`Backend::remove_leftovers`] clears.
    fn finish(self: Box<Self>, name: &str) -> Result<()>;
}

pub trait Backend: Send + Sync {
    /// Where this backend points, for messages.
    fn location(&self) -> String;
    /// Creates the empty structure of a new repository.
    fn create(&self) -> Result<()>;
    /// Whether anything exists at this location (a folder, a bucket prefix), repository or not.
    fn location_exists(&self) -> Result<bool>;

    /// What the location holds that is not a repository's config, if anything: `init` refuses
    /// a location that is not empty (a new key beside someone's data, or beside the objects of
    /// a repository whose config was lost, would mix two repositories). The default looks for
    /// repository objects; a backend that can see other files says so too.
    fn foreign_contents(&self) -> Result<Option<String>> {
        for t in FileType::all_dirs() {
            if let Some(o) = self.list(t)?.first() {
                return Ok(Some(format!("{} {}", t.dir(), o.name)));
            }
        }
        Ok(None)
    }
    /// Size of an object, or `None` if it does not exist.
    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>>;
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// Reads `length` bytes at `offset`; a short object is an error, never a short read.
    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>>;
    /// [`Backend::read`] into `buf`, replacing what it held: a reader of many objects keeps
    /// one buffer, instead of the kernel mapping and zeroing fresh pages for each.
    fn read_into(&self, t: FileType, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read(t, name)?;
        Ok(())
    }
    /// [`Backend::read_range`] into `buf`, replacing what it held.
    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        *buf = self.read_range(t, name, offset, length)?;
        Ok(())
    }
    /// Hints that `length` bytes at `offset` of the object (`length` 0: to its end) will be
    /// read soon, so storage can start fetching them while the caller works on something else.
    /// Only a hint: it may do nothing, and never fails.
    fn prefetch(&self, _t: FileType, _name: &str, _offset: u64, _length: u64) {}
    /// Stores an object atomically and durably: when this returns, it survives a crash.
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()>;
    /// [`Backend::write`] of an object that fills slot `placement` of a parity group: storage
    /// striped over locations puts it on that slot's location (see `backend::stripe`); other
    /// storage ignores the hint.
    fn write_placed(&self, t: FileType, name: &str, data: &[u8], _placement: usize) -> Result<()> {
        self.write(t, name, data)
    }
    /// Starts streaming an object to storage, or `None` where objects are stored whole (the
    /// caller then builds it in memory and calls [`Backend::write`]). Streaming spares a
    /// backup the memory of the packs it is filling and writing.
    fn start_upload(&self, _t: FileType) -> Result<Option<Box<dyn Upload>>> {
        Ok(None)
    }
    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>>;
    /// When storage last wrote the object, by storage's own clock: one entry per copy (one per
    /// location of a mirror), `None` where a copy cannot tell or lacks the object.
    /// [`crate::error::Error::ObjectNotFound`] when no replica has it. Lock ages are measured
    /// with these, never with a client's clock (see [`crate::lock`]).
    fn modified(&self, t: FileType, name: &str) -> Result<Vec<Option<std::time::SystemTime>>> {
        match self.stat(t, name)? {
            Some(_) => Ok(vec![None]),
            None => Err(crate::error::Error::ObjectNotFound {
                kind: "object",
                id: object_path(t, name),
            }),
        }
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
    /// The permission bits of an object that users other than its owner may read (local
    /// storage only; `None` elsewhere or when it is private). `check` warns about key slots.
    fn readable_by_others(&self, _t: FileType, _name: &str) -> Option<u32> {
        None
    }
    /// Removes partial uploads that a killed writer left behind, untouched for `older_than`
    /// (younger ones may belong to a writer still at work). Returns how many were removed.
    fn remove_leftovers(&self, _older_than: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}
