//! Writing recovery points whose content does not come from a local file system walk: another
//! Aeon repository (`copy`), or a restic or Borg repository (`import`).
//!
//! The caller builds each tree itself, bottom up; [`Ingest`] chunks file contents with the
//! target's chunker, stores each blob the target does not hold yet (sealing a batch of chunks
//! on every core at once), and commits a recovery point once every blob it references is in
//! storage and indexed, so an interrupted run loses nothing it committed.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use rayon::prelude::*;

use crate::blob::{self, BlobType};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::progress::Progress;
use crate::repository::{Packer, Repository};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// Chunks waiting to be sealed together: enough for every core to have work.
const PENDING_BYTES: usize = 16 << 20;

/// What an ingest stored, over all the recovery points it committed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct IngestStats {
    /// File content read from the source (plaintext).
    pub bytes_read: u64,
    /// Blobs new to the target and their bytes as stored (compressed, encrypted, with overhead).
    pub blobs_added: u64,
    pub bytes_stored: u64,
}

/// Stores trees and file contents into `target` (whose index must be loaded), one recovery
/// point at a time.
pub struct Ingest<'a> {
    target: &'a Repository,
    progress: &'a dyn Progress,
    packer: Option<Packer>,
    /// Blobs stored in this run (the target's loaded index does not know them).
    queued: HashSet<Id>,
    /// A source's identity of a file's content -> its blobs and size here (identical files are
    /// chunked once per run).
    files: HashMap<Vec<u8>, (Vec<Id>, u64)>,
    pending: Vec<(Id, Vec<u8>)>,
    pending_bytes: usize,
    /// The start of the file being read, kept across files (see [`Ingest::file`]).
    head: Vec<u8>,
    /// With a quota: the bytes the repository occupies so far.
    used: Option<u64>,
    pub stats: IngestStats,
}

impl<'a> Ingest<'a> {
    pub fn new(target: &'a Repository, progress: &'a dyn Progress) -> Result<Ingest<'a>> {
        let used = match target.settings().quota {
            Some(_) => Some(target.storage_used()?),
            None => None,
        };
        Ok(Ingest {
            target,
            progress,
            packer: None,
            queued: HashSet::new(),
            files: HashMap::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            head: Vec::new(),
            used,
            stats: IngestStats::default(),
        })
    }

    pub fn target(&self) -> &Repository {
        self.target
    }

    fn has(&self, id: &Id) -> bool {
        self.target.index().contains(id) || self.queued.contains(id)
    }

    fn packer(&mut self) -> &mut Packer {
        let (target, used) = (self.target, self.used);
        self.packer.get_or_insert_with(|| target.packer_within_quota(used))
    }

    /// Seals the pending chunks on every core and hands them to the packer in order.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let (cipher, compression) = (self.target.cipher(), self.target.settings().compression);
        let sealed: Vec<Result<(Id, Vec<u8>, u32)>> = pending
            .par_iter()
            .map(|(id, data)| {
                blob::seal_blob(cipher, BlobType::Data, id, data, compression)
                    .map(|s| (*id, s, data.len() as u32))
            })
            .collect();
        for s in sealed {
            let (id, sealed, len) = s?;
            self.packer().add(BlobType::Data, id, &sealed, len)?;
        }
        Ok(())
    }

    /// Stores `source` as a file's content: its blob ids and size. `identity` names the content
    /// in the source (e.g. its list of blob ids there); content seen before under the same
    /// identity is not read again.
    pub fn file(
        &mut self,
        identity: Option<Vec<u8>>,
        source: &mut dyn Read,
    ) -> Result<(Vec<Id>, u64)> {
        if let Some(known) = identity.as_ref().and_then(|k| self.files.get(k)) {
            return Ok(known.clone());
        }
        let mut ids = Vec::new();
        let mut size = 0u64;
        let target = self.target;
        let params = target.settings().chunker;
        // Most files are smaller than one chunk window: read whole into a buffer kept across
        // files and cut in place. A Chunker per file would allocate and zero a window of the
        // largest chunk size each time (most of an import's time, in the kernel).
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let max = params.max_size as u64;
        source.take(max).read_to_end(&mut head).map_err(source_error)?;
        let chunks: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>>> = if (head.len() as u64)
            < max
        {
            Box::new(
                crate::chunker::chunk_slice(&head, params, target.gear()).map(|c| Ok(c.to_vec())),
            )
        } else {
            let whole = std::io::Cursor::new(&head[..]).chain(source);
            Box::new(Chunker::new(whole, params, target.gear().clone()))
        };
        for chunk in chunks {
            let data = chunk.map_err(source_error)?;
            size += data.len() as u64;
            self.stats.bytes_read += data.len() as u64;
            self.progress.add(0, data.len() as u64);
            let id = target.hasher().hash(&data);
            ids.push(id);
            if self.has(&id) {
                continue;
            }
            self.queued.insert(id);
            self.pending_bytes += data.len();
            self.pending.push((id, data));
            if self.pending_bytes >= PENDING_BYTES {
                self.flush()?;
            }
        }
        self.head = head;
        if let Some(k) = identity {
            self.files.insert(k, (ids.clone(), size));
        }
        Ok((ids, size))
    }

    /// Stores one directory's tree (sorted first: the canonical order) and returns its id.
    pub fn tree(&mut self, tree: &mut Tree) -> Result<Id> {
        tree.sort();
        self.tree_as_is(tree)
    }

    /// Stores a tree in the order it already has.
    pub fn tree_as_is(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = tree.encode();
        let id = self.target.hasher().hash(&bytes);
        if !self.has(&id) {
            let compression = self.target.settings().compression;
            let sealed =
                blob::seal_blob(self.target.cipher(), BlobType::Tree, &id, &bytes, compression)?;
            self.packer().add(BlobType::Tree, id, &sealed, bytes.len() as u32)?;
            self.queued.insert(id);
        }
        Ok(id)
    }

    /// Makes everything stored so far durable and indexed, then writes `snapshot` (whose tree
    /// was stored through this ingest or is already in the target) and returns its id.
    pub fn commit(&mut self, snapshot: &Snapshot) -> Result<Id> {
        self.flush()?;
        if let Some(packer) = self.packer.take() {
            let stats = packer.finish()?;
            self.used = self.used.map(|u| u + stats.stored_bytes);
            self.stats.blobs_added += stats.blobs_written;
            self.stats.bytes_stored += stats.stored_bytes;
        }
        self.target.save_snapshot(snapshot)
    }

    /// Stops without a recovery point, keeping what is complete: the packs already written are
    /// indexed, so the next run reuses them.
    pub fn abandon(&mut self) {
        self.pending.clear();
        if let Some(packer) = self.packer.take() {
            let _ = packer.abandon();
        }
    }
}

/// A stream made of pieces fetched one after another (a source repository's blobs, a pipe's
/// frames): `next` gives the next piece, or `None` at the end.
pub struct Pieces<B, F> {
    next: F,
    piece: Option<B>,
    pos: usize,
}

impl<B: AsRef<[u8]>, F: FnMut() -> std::io::Result<Option<B>>> Pieces<B, F> {
    pub fn new(next: F) -> Self {
        Pieces { next, piece: None, pos: 0 }
    }
}

impl<B: AsRef<[u8]>, F: FnMut() -> std::io::Result<Option<B>>> Read for Pieces<B, F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(piece) = &self.piece {
                let rest = &piece.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = out.len().min(rest.len());
                    out[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match (self.next)()? {
                Some(p) => (self.piece, self.pos) = (Some(p), 0),
                None => return Ok(0),
            }
        }
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A read error of the source, as the engine's error when it is one (e.g. a blob that fails
/// authentication in the source repository).
fn source_error(e: std::io::Error) -> Error {
    let said = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(core)) => *core,
        _ => Error::InvalidInput(format!("reading the source: {said}")),
    }
}
