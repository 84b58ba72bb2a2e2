//! Groups sealed blobs into packs, writes them, and records them in index files.
//!
//! Write ordering for crash consistency: a pack is durable before any index file names it, and
//! index files are durable before the recovery point that needs them is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{Backend, FileType, Upload};
use crate::blob::BlobType;
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::lock::LockState;
use crate::pack::{FinishedPack, PackBody, PackWriter};
use crate::parity::{GroupWriter, Slot};

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
    /// Parity objects written, and their bytes (not in `stored_bytes`).
    pub parity_objects: u64,
    pub parity_bytes: u64,
}

pub struct Packer {
    backend: Arc<dyn Backend>,
    cipher: Cipher,
    pack_size: usize,
    /// The packs filling, started with their first blob.
    data: Option<PackWriter>,
    tree: Option<PackWriter>,
    pending: IndexFile,
    stats: PackerStats,
    lock: Option<Arc<LockState>>,
    quota: Option<Arc<Quota>>,
    /// Writes full packs while the next one fills (started by the first full pack).
    writer: Option<PackWriterThread>,
    spare_buffer: Option<Vec<u8>>,
    /// Seals the packs into parity groups, when the repository has parity.
    parity: Option<Arc<GroupWriter>>,
    /// The parity slots of packs filling in memory (a streamed pack's slot is in its upload).
    memory_slots: [Option<Slot>; 2],
    /// A write-only client's record of the packs it wrote (it cannot read the index).
    writer_record: Option<crate::cache::WriterRecord>,
}

/// Stores a finished pack; returns it as the index records it, and a memory pack's buffer.
/// A memory pack's parity share is added here; its group is sealed when it was the last.
fn store(
    backend: &dyn Backend,
    pack: FinishedPack,
    slot: Option<Slot>,
) -> (Result<IndexPack>, Option<Vec<u8>>) {
    let FinishedPack { id, size, entries, body } = pack;
    let mut slot = slot;
    if let (Some(s), PackBody::Bytes(bytes)) = (&mut slot, &body) {
        s.feed(bytes);
    }
    let placement = slot.as_ref().map(Slot::index);
    let (stored, buffer) = body.store(backend, &id.to_hex(), placement);
    let sealed = stored.and_then(|()| slot.map_or(Ok(()), |s| s.finish(id)));
    (sealed.map(|()| IndexPack { id, size, blobs: entries }), buffer)
}

/// A streamed pack's upload, adding each piece's parity share on its way to storage.
struct TappedUpload {
    inner: Box<dyn Upload>,
    slot: Slot,
}

impl Upload for TappedUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.slot.feed(data);
        self.inner.write(data)
    }

    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        let TappedUpload { inner, slot } = *self;
        inner.finish(name)?;
        let id =
            name.parse::<Id>().map_err(|_| Error::InvalidInput(format!("pack name {name}")))?;
        slot.finish(id)
    }
}

/// One thread that stores finished packs in order and reports each as it becomes durable. Its
/// queue holds no pack: the packer hands a pack over only when the thread is free to take it,
/// so at most one pack is being written while the next one fills (bounded memory).
struct PackWriterThread {
    queue: Option<crossbeam_channel::Sender<(FinishedPack, Option<Slot>)>>,
    /// Each write's outcome, with a memory pack's buffer for the next pack to reuse.
    done: crossbeam_channel::Receiver<(Result<IndexPack>, Option<Vec<u8>>)>,
    handle: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
}

impl PackWriterThread {
    fn start(backend: Arc<dyn Backend>) -> std::io::Result<PackWriterThread> {
        let (queue, jobs) = crossbeam_channel::bounded::<(FinishedPack, Option<Slot>)>(0);
        let (report, done) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new().name("pack-writer".into()).spawn(move || {
            for (pack, slot) in jobs {
                let _ = report.send(store(backend.as_ref(), pack, slot));
            }
        })?;
        Ok(PackWriterThread { queue: Some(queue), done, handle: Some(handle), in_flight: 0 })
    }
}

impl Drop for PackWriterThread {
    fn drop(&mut self) {
        // A pack in flight is finished (or fails) before the packer goes: no write outlives it.
        self.queue.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
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
            data: None,
            tree: None,
            pending: IndexFile::default(),
            stats: PackerStats::default(),
            lock: None,
            quota: None,
            writer: None,
            spare_buffer: None,
            parity: None,
            memory_slots: [None, None],
            writer_record: None,
        }
    }

    /// Seals every pack written into parity groups through `parity` (none: no parity).
    pub fn with_parity(mut self, parity: Option<Arc<GroupWriter>>) -> Packer {
        self.parity = parity;
        self
    }

    /// Records each index file written in a write-only client's local record too.
    pub fn with_writer_record(mut self, record: Option<crate::cache::WriterRecord>) -> Packer {
        self.writer_record = record;
        self
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
        let pack_size = self.pack_size;
        let w = self.pack_writer(blob_type)?;
        w.add(blob_type, id, sealed, raw_len)?;
        let full = w.size() >= pack_size;
        self.stats.blobs_written += 1;
        self.stats.raw_bytes += raw_len as u64;
        if full {
            self.flush_pack(blob_type)?;
        }
        Ok(())
    }

    /// The pack filling with `blob_type` blobs, started if there is none: streamed where the
    /// backend can, else built in memory (in the buffer of the last pack written, if any).
    fn pack_writer(&mut self, blob_type: BlobType) -> Result<&mut PackWriter> {
        let slot = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        if slot.is_none() {
            let cipher = &self.cipher;
            let parity_slot = self.parity.as_ref().map(|p| p.begin());
            let writer = match self.backend.start_upload(FileType::Pack)? {
                Some(upload) => match parity_slot {
                    Some(p) => PackWriter::streaming(
                        Box::new(TappedUpload { inner: upload, slot: p }),
                        cipher,
                    ),
                    None => PackWriter::streaming(upload, cipher),
                },
                None => {
                    self.memory_slots[blob_type as usize - 1] = parity_slot;
                    match self.spare_buffer.take() {
                        Some(buf) => PackWriter::with_buffer(buf, cipher),
                        None => PackWriter::with_capacity(self.pack_size, cipher),
                    }
                }
            };
            *slot = Some(writer);
        }
        Ok(slot.as_mut().expect("started above"))
    }

    fn flush_pack(&mut self, blob_type: BlobType) -> Result<()> {
        let slot = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        let parity_slot = self.memory_slots[blob_type as usize - 1].take();
        let Some(full) = slot.take().filter(|w| !w.is_empty()) else {
            if let Some(s) = parity_slot {
                s.release();
            }
            return Ok(());
        };
        // The thread writes one pack at a time: wait for the one in flight (at most one), whose
        // buffer the next pack reuses, so two pack buffers serve the whole backup.
        self.collect_written()?;
        let pack = full.finish(&self.cipher)?;
        if let Some(q) = &self.quota {
            q.reserve(pack.size)?;
        }
        if self.writer.is_none() {
            self.writer = PackWriterThread::start(self.backend.clone()).ok();
        }
        let mut pack = pack;
        let mut parity_slot = parity_slot;
        if let Some(writer) = &mut self.writer
            && let Some(queue) = &writer.queue
        {
            match queue.send((pack, parity_slot)) {
                Ok(()) => {
                    writer.in_flight += 1;
                    return Ok(());
                }
                // The thread is gone (only a bug could make it panic): write here instead.
                Err(e) => (pack, parity_slot) = e.into_inner(),
            }
        }
        let (written, buffer) = store(self.backend.as_ref(), pack, parity_slot);
        self.spare_buffer = buffer;
        self.written(written)
    }

    /// Waits for the packs in flight and records those made durable. Returns the first write
    /// that failed (the packs written before it are still recorded).
    fn collect_written(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(writer) = self.writer.as_mut().filter(|w| w.in_flight > 0) {
            let Ok((report, buffer)) = writer.done.recv() else { break };
            writer.in_flight -= 1;
            // Reused rather than freed: allocating 16 MiB anew costs 4,096 page faults.
            if buffer.is_some() {
                self.spare_buffer = buffer;
            }
            if let Err(e) = self.written(report) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Accounts for one pack write; a durable pack goes into the next index file.
    fn written(&mut self, result: Result<IndexPack>) -> Result<()> {
        let pack = result?;
        self.stats.packs_written += 1;
        self.stats.stored_bytes += pack.size;
        self.pending.packs.push(pack);
        if self.pending.packs.len() >= PACKS_PER_INDEX_FILE {
            self.flush_index(false)?;
        }
        Ok(())
    }

    /// Writes the packs pending into an index file: with parity, only those whose group is
    /// sealed (so that an index file names protected packs; the others wait), unless `all`.
    fn flush_index(&mut self, all: bool) -> Result<()> {
        let waiting = match (&self.parity, all) {
            (Some(p), false) => {
                let (ready, waiting): (Vec<IndexPack>, Vec<IndexPack>) =
                    std::mem::take(&mut self.pending.packs)
                        .into_iter()
                        .partition(|pack| p.is_sealed(&pack.id) || p.is_abandoned(&pack.id));
                self.pending.packs = ready;
                waiting
            }
            _ => Vec::new(),
        };
        let flushed = self.write_pending();
        self.pending.packs.extend(waiting);
        flushed
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.pending.packs.is_empty() {
            return Ok(());
        }
        if let Some(l) = &self.lock {
            l.ensure_held()?;
        }
        let file = std::mem::take(&mut self.pending);
        let bytes = file.encode(&self.cipher)?;
        self.backend.write(FileType::Index, &Id::of_stored_bytes(&bytes).to_hex(), &bytes)?;
        if let Some(record) = &self.writer_record {
            // Failing to record costs the next run's deduplication only, never data.
            let _ = record.add(&file);
        }
        self.stats.index_files_written += 1;
        self.stats.stored_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes every open pack and the index that names them. After this returns, every blob
    /// added is durable and findable.
    pub fn finish(mut self) -> Result<PackerStats> {
        let flushed = self
            .flush_pack(BlobType::Data)
            .and_then(|()| self.flush_pack(BlobType::Tree))
            .and_then(|()| self.collect_written());
        let flushed =
            flushed.and_then(|()| self.parity.as_ref().map_or(Ok(()), |p| p.seal_filling()));
        if let Err(e) = flushed {
            // A pack write failed (disk full, network): the packs written before it are still
            // indexed, so that the next backup reuses them.
            let _ = self.abandon();
            return Err(e);
        }
        self.flush_index(true)?;
        self.count_parity();
        Ok(self.stats)
    }

    /// After a failure: records the packs already written in an index file, so that the next
    /// backup reuses them, and drops the blobs not yet in a pack.
    pub fn abandon(mut self) -> Result<PackerStats> {
        // The packs still filling go first: a full disk then has room for the index file.
        self.data = None;
        self.tree = None;
        self.memory_slots = [None, None];
        let _ = self.collect_written();
        // Packs whose group was not sealed are indexed all the same (reuse matters more): they
        // stay without parity until `aeon repair` or `aeon prune` protects them.
        self.flush_index(true)?;
        self.count_parity();
        Ok(self.stats)
    }

    fn count_parity(&mut self) {
        if let Some(p) = &self.parity {
            let s = p.stats();
            self.stats.parity_objects = s.parity_objects;
            self.stats.parity_bytes = s.parity_bytes;
        }
    }

    pub fn stats(&self) -> PackerStats {
        self.stats
    }
}
