//! Groups sealed blobs into packs, writes them, and records them in index files.
//!
//! Write ordering for crash consistency: a pack is durable before any index file names it, and
//! index files are durable before the recovery point that needs them is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{Backend, FileType};
use crate::blob::BlobType;
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::lock::LockState;
use crate::pack::PackWriter;

/// Packs recorded per index file before it is written: bounds what a crash can orphan.
const PACKS_PER_INDEX_FILE: usize = 32;

#[derive(Debug, Default, Clone, Copy)]
pub struct PackerStats {
    pub packs_written: u64,
    pub index_files_written: u64,
    pub blobs_written: u64,
    /// Bytes of blob plaintext stored.
    pub raw_bytes: u64,
    /// Bytes written to storage, packs and index files together.
    pub stored_bytes: u64,
}

pub struct Packer {
    backend: Arc<dyn Backend>,
    cipher: Cipher,
    pack_size: usize,
    data: PackWriter,
    tree: PackWriter,
    pending: IndexFile,
    stats: PackerStats,
    lock: Option<Arc<LockState>>,
    quota: Option<Arc<Quota>>,
}

/// A storage budget shared by the packers of one process.
#[derive(Debug)]
pub struct Quota {
    pub limit: u64,
    used: AtomicU64,
}

impl Quota {
    pub fn new(limit: u64, used: u64) -> Quota {
        Quota { limit, used: AtomicU64::new(used) }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Claims `n` bytes, or fails without claiming if that would pass the limit.
    pub fn reserve(&self, n: u64) -> Result<()> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|&total| total <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| Error::QuotaExceeded { used, limit: self.limit, needed: n })
    }
}

impl Packer {
    pub fn new(backend: Arc<dyn Backend>, cipher: Cipher, pack_size: u32) -> Packer {
        Packer {
            backend,
            cipher,
            pack_size: pack_size as usize,
            data: PackWriter::new(),
            tree: PackWriter::new(),
            pending: IndexFile::default(),
            stats: PackerStats::default(),
            lock: None,
            quota: None,
        }
    }

    /// Index files are written only while this lock is held (see [`LockState::ensure_held`]).
    pub fn with_lock(mut self, lock: Option<Arc<LockState>>) -> Packer {
        self.lock = lock;
        self
    }

    /// Packs are written only while the repository stays within `limit` bytes.
    pub fn with_quota(mut self, limit: u64, used: u64) -> Packer {
        self.quota = Some(Arc::new(Quota::new(limit, used)));
        self
    }

    pub fn quota(&self) -> Option<&Quota> {
        self.quota.as_deref()
    }

    /// Adds a sealed blob. Tree and data blobs go to separate packs so that metadata can be
    /// read (and cached) without touching file data.
    pub fn add(&mut self, blob_type: BlobType, id: Id, sealed: &[u8], raw_len: u32) -> Result<()> {
        let w = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        w.add(blob_type, id, sealed, raw_len)?;
        self.stats.blobs_written += 1;
        self.stats.raw_bytes += raw_len as u64;
        if w.size() >= self.pack_size {
            self.flush_pack(blob_type)?;
        }
        Ok(())
    }

    fn flush_pack(&mut self, blob_type: BlobType) -> Result<()> {
        let w = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        if w.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(w);
        let (bytes, id, blobs) = full.finish(&self.cipher)?;
        if let Some(q) = &self.quota {
            q.reserve(bytes.len() as u64)?;
        }
        self.backend.write(FileType::Pack, &id.to_hex(), &bytes)?;
        self.stats.packs_written += 1;
        self.stats.stored_bytes += bytes.len() as u64;
        self.pending.packs.push(IndexPack { id, size: bytes.len() as u64, blobs });
        if self.pending.packs.len() >= PACKS_PER_INDEX_FILE {
            self.flush_index()?;
        }
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        if self.pending.packs.is_empty() {
            return Ok(());
        }
        if let Some(l) = &self.lock {
            l.ensure_held()?;
        }
        let file = std::mem::take(&mut self.pending);
        let bytes = file.encode(&self.cipher)?;
        self.backend.write(FileType::Index, &Id::of_stored_bytes(&bytes).to_hex(), &bytes)?;
        self.stats.index_files_written += 1;
        self.stats.stored_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes every open pack and the index that names them. After this returns, every blob
    /// added is durable and findable.
    pub fn finish(mut self) -> Result<PackerStats> {
        self.flush_pack(BlobType::Data)?;
        self.flush_pack(BlobType::Tree)?;
        self.flush_index()?;
        Ok(self.stats)
    }

    /// After a failure: records the packs already written in an index file, so that the next
    /// backup reuses them, and drops the blobs not yet in a pack.
    pub fn abandon(mut self) -> Result<PackerStats> {
        self.flush_index()?;
        Ok(self.stats)
    }

    pub fn stats(&self) -> PackerStats {
        self.stats
    }
}
