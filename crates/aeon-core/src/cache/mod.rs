//! A local cache of repository metadata (index files, recovery points, tree packs), so that
//! listing, `ls`, `find` and `diff` on remote storage download no pack data after the first run.
//!
//! Every cached object is named by the BLAKE3 of its bytes, as on storage, so the cache checks
//! itself: an object whose content does not match its name is deleted and fetched again. It is
//! never stale either: what exists is always listed from storage, and objects that left the
//! repository (pruned packs, forgotten points, replaced index files) are dropped from the cache
//! when the listing no longer names them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::id::Id;

/// Tree packs kept decoded in memory while walking trees.
const PACKS_IN_MEMORY: usize = 8;

/// What is cached, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Index,
    Snapshot,
    TreePack,
    /// Audit records (immutable and content-named, like the rest).
    Audit,
}

impl CacheKind {
    fn dir(self) -> &'static str {
        match self {
            CacheKind::Index => "index",
            CacheKind::Snapshot => "snapshots",
            CacheKind::TreePack => "trees",
            CacheKind::Audit => "audit",
        }
    }
}

/// The packs a write-only client wrote (see [`Cache::writer_record`]).
#[derive(Debug, Clone)]
pub struct WriterRecord {
    path: PathBuf,
}

impl WriterRecord {
    /// What was recorded; nothing if there is no record or it does not decode (deduplication
    /// then starts afresh, which only costs uploads).
    pub fn load(&self) -> crate::index::IndexFile {
        fs::read(&self.path)
            .ok()
            .and_then(|d| crate::index::IndexFile::decode_plaintext(&d, "writer record").ok())
            .unwrap_or_default()
    }

    /// Adds the packs of an index file just written.
    pub fn add(&self, written: &crate::index::IndexFile) -> std::io::Result<()> {
        let mut record = self.load();
        record.packs.extend(written.packs.iter().cloned());
        self.store(&record)
    }

    /// Replaces the record (atomically: a crash leaves the old one or the new one).
    pub fn store(&self, record: &crate::index::IndexFile) -> std::io::Result<()> {
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, record.plaintext(true))?;
        fs::rename(&tmp, &self.path)
    }
}

pub struct Cache {
    root: PathBuf,
    recent: Mutex<VecDeque<(Id, Arc<Vec<u8>>)>>,
    stats: Mutex<HashMap<&'static str, u64>>,
}

impl Cache {
    /// The cache of one repository: `<base>/<repository id>/`. The base defaults
    /// ([`crate::repository::CacheDir::Default`]) to
    /// `$XDG_CACHE_HOME/aeon` or `~/.cache/aeon`.
    pub fn open(base: &Path, repository_id: &str) -> std::io::Result<Cache> {
        use std::os::unix::fs::DirBuilderExt;
        let root = base.join(repository_id);
        // The owner's alone, like the repository: it holds (sealed) metadata.
        let mut private = fs::DirBuilder::new();
        private.recursive(true).mode(0o700);
        for k in [CacheKind::Index, CacheKind::Snapshot, CacheKind::TreePack, CacheKind::Audit] {
            private.create(root.join(k.dir()))?;
        }
        // A cache directory tag keeps other backup tools (and Aeon's --exclude-caches) out.
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# This is Aeon's metadata cache.\n",
            );
        }
        Ok(Cache { root, recent: Mutex::new(VecDeque::new()), stats: Mutex::new(HashMap::new()) })
    }

    /// A write-only client's record of the packs it wrote with slot `slot` (index plaintext):
    /// what it deduplicates against, as it cannot read the index.
    pub fn writer_record(&self, slot: &str) -> WriterRecord {
        WriterRecord { path: self.root.join(format!("writer-{}", &slot[..slot.len().min(32)])) }
    }

    fn path(&self, kind: CacheKind, name: &str) -> PathBuf {
        self.root.join(kind.dir()).join(name)
    }

    fn count(&self, what: &'static str) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()).entry(what).or_default() += 1;
    }

    /// Hits, misses and repairs so far (for tests and `-v`).
    pub fn stats(&self) -> HashMap<&'static str, u64> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cached object, if present and intact.
    pub fn get(&self, kind: CacheKind, name: &str) -> Option<Vec<u8>> {
        let p = self.path(kind, name);
        let data = fs::read(&p).ok()?;
        if Id::of_stored_bytes(&data).to_hex() != name {
            self.count("damaged");
            let _ = fs::remove_file(&p);
            return None;
        }
        self.count("hit");
        Some(data)
    }

    /// Stores an object (best effort: a cache that cannot be written only costs speed).
    pub fn put(&self, kind: CacheKind, name: &str, data: &[u8]) {
        self.count("miss");
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.path(kind, name);
        // An unpredictable name, created afresh (never through a link another user planted).
        let mut nonce = [0u8; 12];
        if crate::crypto::fill_random(&mut nonce).is_err() {
            return;
        }
        let tmp = p.with_extension(format!("tmp-{}", hex::encode(nonce)));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(data));
        if written.is_err() || fs::rename(&tmp, &p).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Drops cached objects of `kind` that the repository no longer has.
    pub fn retain(&self, kind: CacheKind, keep: &HashSet<String>) {
        let Ok(rd) = fs::read_dir(self.root.join(kind.dir())) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// A tree pack from memory, the disk cache, or `fetch` (whose result is cached).
    pub fn tree_pack(
        &self,
        id: &Id,
        fetch: impl FnOnce() -> crate::Result<Vec<u8>>,
    ) -> crate::Result<Arc<Vec<u8>>> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = recent.iter().position(|(p, _)| p == id) {
            let entry = recent.remove(pos).expect("present");
            let data = entry.1.clone();
            recent.push_front(entry);
            return Ok(data);
        }
        let name = id.to_hex();
        let data = match self.get(CacheKind::TreePack, &name) {
            Some(d) => d,
            None => {
                let d = fetch()?;
                if Id::of_stored_bytes(&d) != *id {
                    return Err(crate::Error::corrupt(
                        format!("pack {id}"),
                        "content does not match its name",
                    ));
                }
                self.put(CacheKind::TreePack, &name, &d);
                d
            }
        };
        let data = Arc::new(data);
        recent.push_front((*id, data.clone()));
        recent.truncate(PACKS_IN_MEMORY);
        Ok(data)
    }
}
