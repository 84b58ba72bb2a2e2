//! `aeon repair snapshots`: recovery points that need lost data are written again without the
//! lost files, so that everything else in them restores and checks clean (restic's `repair
//! snapshots`).
//!
//! A data blob is lost when no index entry names it or its pack is not on storage; a tree when
//! it does not load. Run `aeon repair` (which rebuilds what parity and copies can) and `aeon
//! repair index` (which leaves damaged packs out of the index) first. Each rewritten point keeps
//! its time, host, paths and labels, records the point it replaces in `original`, and is tagged
//! `repaired`; the original stays until the user forgets it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::backend::FileType;
use crate::blob::{self, BlobType};
use crate::error::Result;
use crate::id::Id;
use crate::repository::Packer;
use crate::repository::Repository;
use crate::tree::{NodeKind, Tree};

use super::RepairOptions;

/// The tag every rewritten recovery point carries.
pub const REPAIRED_TAG: &str = "repaired";

#[derive(Debug, Serialize)]
pub struct RewrittenPoint {
    pub original: String,
    /// The new point's id (absent with --dry-run).
    pub rewritten: Option<String>,
    /// Paths left out (directories whose listing is lost end in `/`).
    pub removed: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepair {
    pub points: Vec<RewrittenPoint>,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    packs_on_storage: HashSet<String>,
    /// Tree id → (new id, paths removed below it); `None`: the tree itself is lost.
    done: HashMap<Id, Option<(Id, Vec<String>)>>,
    packer: Option<Packer>,
    dry_run: bool,
}

impl Rewriter<'_> {
    fn blob_readable(&self, id: &Id) -> bool {
        self.repo.index().get_readable(id).is_some_and(|loc| {
            self.packs_on_storage.contains(&self.repo.index().pack(loc.pack).id.to_hex())
        })
    }

    fn rewrite(&mut self, id: &Id, depth: usize) -> Result<Option<(Id, Vec<String>)>> {
        if let Some(r) = self.done.get(id) {
            return Ok(r.clone());
        }
        let tree = match (depth < crate::tree::MAX_DEPTH && self.blob_readable(id))
            .then(|| self.repo.load_tree(id))
        {
            Some(Ok(t)) => t,
            _ => {
                self.done.insert(*id, None);
                return Ok(None);
            }
        };
        let mut removed = Vec::new();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let name = node.name.to_string_lossy();
            if node.kind == NodeKind::Dir
                && let Some(sub) = node.subtree
            {
                match self.rewrite(&sub, depth + 1)? {
                    None => {
                        removed.push(format!("{name}/"));
                        continue;
                    }
                    Some((new, below)) => {
                        removed.extend(below.into_iter().map(|p| format!("{name}/{p}")));
                        node.subtree = Some(new);
                    }
                }
            } else if node.content.iter().any(|b| !self.blob_readable(b)) {
                removed.push(name);
                continue;
            }
            nodes.push(node);
        }
        let result = if removed.is_empty() {
            (*id, removed)
        } else {
            let new_tree = Tree { nodes };
            let bytes = new_tree.encode();
            let new_id = self.repo.hasher().hash(&bytes);
            if !self.dry_run && !self.repo.index().contains(&new_id) {
                let packer = self.packer.get_or_insert_with(|| self.repo.packer());
                let sealed = blob::seal_blob(
                    self.repo.cipher(),
                    BlobType::Tree,
                    &new_id,
                    &bytes,
                    self.repo.settings().compression,
                )?;
                packer.add(BlobType::Tree, new_id, &sealed, bytes.len() as u32)?;
            }
            (new_id, removed)
        };
        self.done.insert(*id, Some(result.clone()));
        Ok(Some(result))
    }
}

/// Rewrites every recovery point of `repo` that needs lost data.
pub fn rewrite_damaged(repo: Repository, opts: &RepairOptions) -> Result<SnapshotRepair> {
    let packs_on_storage =
        repo.backend().list(FileType::Pack)?.into_iter().map(|o| o.name).collect();
    let (points, _) = repo.list_snapshots()?;
    let mut w = Rewriter {
        repo: &repo,
        packs_on_storage,
        done: HashMap::new(),
        packer: None,
        dry_run: opts.dry_run,
    };
    let mut planned = Vec::new();
    for p in &points {
        let (root, removed) = match w.rewrite(&p.snapshot.tree, 0)? {
            Some((root, removed)) if !removed.is_empty() => (Some(root), removed),
            Some(_) => continue,
            // The root itself is lost: nothing of the point can be kept.
            None => (None, vec!["/".to_string()]),
        };
        planned.push((p, root, removed));
    }
    if let Some(packer) = w.packer.take() {
        packer.finish()?;
    }
    let mut report = SnapshotRepair::default();
    for (p, root, removed) in planned {
        let rewritten = match (root, opts.dry_run) {
            (Some(root), false) => {
                let mut snap = p.snapshot.clone();
                snap.tree = root;
                snap.original = Some(snap.original.unwrap_or(p.id));
                snap.protected = false;
                if !snap.tags.iter().any(|t| t == REPAIRED_TAG) {
                    snap.tags.push(REPAIRED_TAG.to_string());
                    snap.tags.sort();
                }
                Some(repo.save_snapshot(&snap)?.to_hex())
            }
            _ => None,
        };
        report.points.push(RewrittenPoint {
            original: p.id.to_hex(),
            rewritten,
            removed: removed
                .into_iter()
                .map(|r| if r.starts_with('/') { r } else { format!("/{r}") })
                .collect(),
        });
    }
    Ok(report)
}
