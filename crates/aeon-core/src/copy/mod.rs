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

use serde::Serialize;

use crate::error::Result;
use crate::id::Id;
use crate::ingest::Ingest;
use crate::progress::Progress;
use crate::repository::Repository;
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
    let mut copier =
        Copier { source, ingest: Ingest::new(target, progress)?, trees: HashMap::new() };
    for p in points {
        if present.contains(&origin(p)) {
            report.already_present.push(p.id.to_hex());
            continue;
        }
        let root = copier.tree(&p.snapshot.tree, 0)?;
        let mut s = p.snapshot.clone();
        s.tree = root;
        s.original = Some(origin(p));
        // Parents are ids of the source repository: meaningless in the target.
        s.parent = None;
        let id = copier.ingest.commit(&s)?;
        report.copied.push((p.id.to_hex(), id.to_hex()));
        progress.add(1, 0);
    }
    let stats = copier.ingest.stats;
    report.bytes_read = stats.bytes_read;
    report.blobs_added = stats.blobs_added;
    report.bytes_stored = stats.bytes_stored;
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
    ingest: Ingest<'a>,
    /// Source tree id -> target tree id.
    trees: HashMap<Id, Id>,
}

impl Copier<'_> {
    fn tree(&mut self, source_id: &Id, depth: usize) -> Result<Id> {
        if let Some(id) = self.trees.get(source_id) {
            return Ok(*id);
        }
        crate::tree::ensure_depth(depth, &format_args!("tree {source_id}"))?;
        let mut tree = self.source.load_tree(source_id)?;
        for node in &mut tree.nodes {
            match node.kind {
                NodeKind::File if !node.content.is_empty() => {
                    let identity = node.content.iter().flat_map(|id| id.0).collect();
                    let mut stream = crate::dump::ContentReader::new(self.source, node);
                    node.content = self.ingest.file(Some(identity), &mut stream)?.0;
                }
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        node.subtree = Some(self.tree(&sub, depth + 1)?);
                    }
                }
                _ => {}
            }
        }
        // The source's order is kept: it is the order its writer chose, and sorted already.
        let id = self.ingest.tree_as_is(&tree)?;
        self.trees.insert(*source_id, id);
        Ok(id)
    }
}
