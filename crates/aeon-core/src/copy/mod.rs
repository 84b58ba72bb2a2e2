//! Copying recovery points between repositories with different keys and settings.
//!
//! Blob ids are keyed by each repository's secret and chunk boundaries are seeded per
//! repository, so nothing can be copied as stored: file contents are read from the source,
//! chunked and sealed again for the target, and every tree is rewritten with the new ids.
//! What the target already holds is not stored again, identical files are chunked once per run,
//! and each recovery point is committed as soon as it is complete, so an interrupted copy
//! resumes where it stopped (the recovery points already copied are recognised by the source
//! id recorded in `original`).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde::Serialize;

use crate::blob::{self, BlobType};
use crate::chunker::Chunker;
use crate::error::Result;
use crate::id::Id;
use crate::progress::Progress;
use crate::repository::{Packer, Repository};
use crate::snapshot::SnapshotEntry;
use crate::tree::NodeKind;

#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// (source id, new id in the target)
    pub copied: Vec<(String, String)>,
    /// Source recovery points the target already has.
    pub already_present: Vec<String>,
    pub bytes_read: u64,
    pub blobs_added: u64,
    pub bytes_stored: u64,
}

/// The identity of a recovery point across copies: the id it was first written under.
pub fn origin(e: &SnapshotEntry) -> Id {
    e.snapshot.original.unwrap_or(e.id)
}

/// Copies `points` of `source` into `target` (whose index must be loaded).
pub fn copy(
    source: &Repository,
    target: &Repository,
    points: &[SnapshotEntry],
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let (existing, _) = target.list_snapshots()?;
    let present: HashSet<Id> = existing.iter().map(origin).collect();
    let mut copier = Copier {
        source,
        target,
        trees: HashMap::new(),
        files: HashMap::new(),
        queued: HashSet::new(),
        progress,
        bytes_read: 0,
    };
    let mut used = match target.settings().quota {
        Some(_) => Some(target.storage_used()?),
        None => None,
    };
    for p in points {
        if present.contains(&origin(p)) {
            report.already_present.push(p.id.to_hex());
            continue;
        }
        let mut packer = target.packer_within_quota(used);
        let root = copier.tree(&p.snapshot.tree, 0, &mut packer)?;
        let stats = packer.finish()?;
        used = used.map(|u| u + stats.stored_bytes);
        report.blobs_added += stats.blobs_written;
        report.bytes_stored += stats.stored_bytes;
        let mut s = p.snapshot.clone();
        s.tree = root;
        s.original = Some(origin(p));
        // Parents are ids of the source repository: meaningless in the target.
        s.parent = None;
        let id = target.save_snapshot(&s)?;
        report.copied.push((p.id.to_hex(), id.to_hex()));
        progress.add(1, 0);
    }
    report.bytes_read = copier.bytes_read;
    let mut event = crate::audit::Event::new("copy").arg(source.storage().location());
    for (_, id) in &report.copied {
        event = event.added(crate::backend::FileType::Snapshot, id);
    }
    // A copy that found nothing new changed nothing: no record.
    if !report.copied.is_empty() {
        target.audit(event);
    }
    Ok(report)
}

struct Copier<'a> {
    source: &'a Repository,
    target: &'a Repository,
    /// Source tree id -> target tree id.
    trees: HashMap<Id, Id>,
    /// Source content list -> target content list.
    files: HashMap<Vec<Id>, Vec<Id>>,
    /// Blobs added in this run (the target's loaded index does not know them).
    queued: HashSet<Id>,
    progress: &'a dyn Progress,
    bytes_read: u64,
}

impl Copier<'_> {
    fn has(&self, id: &Id) -> bool {
        self.target.index().contains(id) || self.queued.contains(id)
    }

    fn store(&mut self, t: BlobType, id: Id, data: &[u8], packer: &mut Packer) -> Result<()> {
        if self.has(&id) {
            return Ok(());
        }
        let compression = self.target.settings().compression;
        let sealed = blob::seal_blob(self.target.cipher(), t, &id, data, compression)?;
        packer.add(t, id, &sealed, data.len() as u32)?;
        self.queued.insert(id);
        Ok(())
    }

    fn tree(&mut self, source_id: &Id, depth: usize, packer: &mut Packer) -> Result<Id> {
        if let Some(id) = self.trees.get(source_id) {
            return Ok(*id);
        }
        crate::tree::ensure_depth(depth, &format_args!("tree {source_id}"))?;
        let mut tree = self.source.load_tree(source_id)?;
        for node in &mut tree.nodes {
            match node.kind {
                NodeKind::File if !node.content.is_empty() => {
                    node.content = self.file(&node.content, packer)?;
                }
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        node.subtree = Some(self.tree(&sub, depth + 1, packer)?);
                    }
                }
                _ => {}
            }
        }
        let bytes = tree.encode();
        let id = self.target.hasher().hash(&bytes);
        self.store(BlobType::Tree, id, &bytes, packer)?;
        self.trees.insert(*source_id, id);
        Ok(id)
    }

    fn file(&mut self, content: &[Id], packer: &mut Packer) -> Result<Vec<Id>> {
        if let Some(ids) = self.files.get(content) {
            return Ok(ids.clone());
        }
        let stream =
            BlobStream { repo: self.source, ids: content, next: 0, buf: Vec::new(), pos: 0 };
        let settings = self.target.settings().chunker;
        let mut out = Vec::new();
        for chunk in Chunker::new(stream, settings, self.target.gear().clone()) {
            let data = chunk.map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<crate::Error>() {
                    Ok(core) => *core,
                    Err(other) => crate::Error::InvalidInput(other.to_string()),
                },
                None => crate::Error::InvalidInput("reading the source repository".into()),
            })?;
            self.bytes_read += data.len() as u64;
            self.progress.add(0, data.len() as u64);
            let id = self.target.hasher().hash(&data);
            self.store(BlobType::Data, id, &data, packer)?;
            out.push(id);
        }
        self.files.insert(content.to_vec(), out.clone());
        Ok(out)
    }
}

/// A file's content, read blob by blob from the source repository (authenticated on the way).
struct BlobStream<'a> {
    repo: &'a Repository,
    ids: &'a [Id],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for BlobStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else { return Ok(0) };
            self.buf = self.repo.read_blob(BlobType::Data, id).map_err(std::io::Error::other)?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
