//! The restore plan: what to create, write, link and delete, decided before touching the disk.
//!
//! The plan is made and carried out in batches of a few thousand entries, in tree order: memory
//! stays bounded whatever the number of files (the whole plan of 200,000 files held 245 MiB),
//! and files written together sit together in the packs, because backups store them in that
//! same order.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Overwrite, RestoreOptions};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::tree::{Node, NodeFault, NodeKind, is_safe_name};

pub(super) enum Action {
    /// `existed`: something was at `path` when planning (else nothing need be removed there).
    Dir {
        path: PathBuf,
        node: Node,
        existed: bool,
    },
    File {
        path: PathBuf,
        node: Node,
        write_data: bool,
        existed: bool,
    },
    HardLink {
        path: PathBuf,
        primary: PathBuf,
    },
    Symlink {
        path: PathBuf,
        node: Node,
    },
    Special {
        path: PathBuf,
        node: Node,
    },
}

impl Action {
    /// Where the action puts its entry.
    pub(super) fn path(&self) -> &Path {
        match self {
            Action::Dir { path, .. }
            | Action::File { path, .. }
            | Action::HardLink { path, .. }
            | Action::Symlink { path, .. }
            | Action::Special { path, .. } => path,
        }
    }
}

/// Entries and data blobs a batch holds before it is carried out. Small enough to bound memory
/// (a few MiB of nodes), large enough that the workers writing its data stay busy.
pub(super) const BATCH_WEIGHT: usize = 16_384;

/// A stretch of the plan, carried out before the next is made.
#[derive(Default)]
pub(super) struct Batch {
    /// In pre-order: every directory before what it contains (or in an earlier batch).
    pub actions: Vec<Action>,
    pub deletions: Vec<PathBuf>,
    /// Entries refused while planning, and things worth knowing.
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    /// Entries plus data blobs.
    weight: usize,
}

/// Refuses names that would step outside their directory: a crafted tree must not write
/// anywhere but below the target.
fn safe_name(node: &Node) -> Option<&OsStr> {
    is_safe_name(&node.name.0).then(|| node.name.as_os_str())
}

/// The entries of `tree` a restore leaves out (and reports), by position: those with a fault
/// that [`NodeFault::refused`] names. A tree `check` accepts has none.
pub fn refused_entries(tree: &crate::tree::Tree) -> HashMap<usize, NodeFault> {
    tree.faults().into_iter().filter(|(_, f)| f.refused()).collect()
}

struct Planner<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    out: Batch,
    batch_weight: usize,
    execute: &'a mut dyn FnMut(Batch),
    /// Directories on the current path not yet known to hold anything included (only with
    /// include patterns): they join the plan with their first included entry, or never.
    undecided_dirs: Vec<Action>,
    /// (device, inode) of multiply linked files already planned, with where they go.
    link_groups: HashMap<(u64, u64), PathBuf>,
}

/// Plans the restore of `node` into `target`, handing each batch to `execute` when it reaches
/// `batch_weight`.
pub(super) fn plan(
    repo: &Repository,
    node: &Node,
    node_path: &str,
    target: &Path,
    opts: &RestoreOptions,
    batch_weight: usize,
    execute: &mut dyn FnMut(Batch),
) -> Result<()> {
    let mut p = Planner {
        repo,
        opts,
        out: Batch::default(),
        batch_weight,
        execute,
        undecided_dirs: Vec::new(),
        link_groups: HashMap::new(),
    };
    let snap_path = PathBuf::from(if node_path.is_empty() { "/" } else { node_path });
    // Into an empty target nothing needs looking up: no file there to compare or replace.
    let target_is_empty = std::fs::read_dir(target).is_ok_and(|mut rd| rd.next().is_none());
    if node.kind == NodeKind::Dir {
        p.plan_children(node.subtree, &snap_path, target, target_is_empty)?;
    } else {
        let name = safe_name(node).ok_or_else(|| {
            Error::corrupt("tree", format!("unsafe file name {:?}", node.name.to_string_lossy()))
        })?;
        p.plan_node(node.clone(), snap_path, target.join(name), target_is_empty)?;
    }
    let last = std::mem::take(&mut p.out);
    (p.execute)(last);
    Ok(())
}

impl Planner<'_> {
    fn included(&self, snap_path: &Path) -> bool {
        self.opts.includes.is_empty() || self.opts.includes.matches(snap_path)
    }

    /// Something below the undecided directories is restored: they are, too.
    fn decide_dirs(&mut self) {
        self.out.weight += self.undecided_dirs.len();
        self.out.actions.append(&mut self.undecided_dirs);
    }

    /// Adds an action; the directories leading to it go first if they were undecided.
    fn push(&mut self, action: Action) {
        let blobs = match &action {
            Action::File { node, .. } => node.content.len(),
            _ => 0,
        };
        self.decide_dirs();
        self.out.actions.push(action);
        self.out.weight += 1 + blobs;
        if self.out.weight >= self.batch_weight {
            let full = std::mem::take(&mut self.out);
            (self.execute)(full);
        }
    }

    /// Plans a directory's entries (`subtree`). `target_is_new`: the target directory does not
    /// exist yet (or is empty), so neither do its entries: 200,000 lookups saved on a fresh
    /// restore of as many files.
    fn plan_children(
        &mut self,
        subtree: Option<Id>,
        snap_dir: &Path,
        target_dir: &Path,
        target_is_new: bool,
    ) -> Result<()> {
        let Some(subtree) = subtree else { return Ok(()) };
        crate::tree::ensure_depth(snap_dir.components().count(), &snap_dir.display())?;
        let tree = self.repo.load_tree(&subtree)?;
        let refused = refused_entries(&tree);
        let mut seen = HashSet::new();
        for (i, node) in tree.nodes.into_iter().enumerate() {
            if let Some(fault) = refused.get(&i) {
                self.out.errors.push(format!(
                    "{}: refused {fault} {:?} in the recovery point",
                    snap_dir.display(),
                    node.name.to_string_lossy()
                ));
                continue;
            }
            if self.opts.delete {
                seen.insert(node.name.0.clone());
            }
            let name = node.name.as_os_str().to_os_string();
            let (snap_path, path) = (snap_dir.join(&name), target_dir.join(&name));
            self.plan_node(node, snap_path, path, target_is_new)?;
        }
        if self.opts.delete && !target_is_new {
            self.plan_deletions(&seen, snap_dir, target_dir);
        }
        Ok(())
    }

    fn plan_deletions(&mut self, keep: &HashSet<Vec<u8>>, snap_dir: &Path, target_dir: &Path) {
        let Ok(rd) = std::fs::read_dir(target_dir) else { return };
        for entry in rd.flatten() {
            let name = entry.file_name();
            if keep.contains(name.as_bytes()) {
                continue;
            }
            let snap_path = snap_dir.join(&name);
            // Only what this restore is responsible for is deleted.
            if self.opts.excludes.matches(&snap_path) || !self.included(&snap_path) {
                continue;
            }
            self.out.deletions.push(target_dir.join(&name));
        }
    }

    fn plan_node(
        &mut self,
        node: Node,
        snap_path: PathBuf,
        path: PathBuf,
        parent_is_new: bool,
    ) -> Result<()> {
        if self.opts.excludes.matches(&snap_path) {
            return Ok(());
        }
        let existing = if parent_is_new { None } else { std::fs::symlink_metadata(&path).ok() };
        let existed = existing.is_some();
        if node.kind == NodeKind::Dir {
            let is_new = !existing.as_ref().is_some_and(|md| md.is_dir());
            let subtree = node.subtree;
            let dir = Action::Dir { path: path.clone(), node, existed };
            let depth = self.undecided_dirs.len();
            if self.included(&snap_path) {
                self.push(dir);
            } else {
                self.undecided_dirs.push(dir);
            }
            self.plan_children(subtree, &snap_path, &path, is_new)?;
            // Still undecided: nothing below it is restored, so neither is it.
            self.undecided_dirs.truncate(depth);
            return Ok(());
        }
        if !self.included(&snap_path) {
            return Ok(());
        }
        self.decide_dirs();
        if existing.is_some() && self.opts.overwrite == Overwrite::Never {
            return Ok(());
        }
        match node.kind {
            NodeKind::File => {
                if node.links > 1 && node.inode != 0 {
                    let key = (node.device, node.inode);
                    if let Some(primary) = self.link_groups.get(&key) {
                        let primary = primary.clone();
                        self.push(Action::HardLink { path, primary });
                        return Ok(());
                    }
                    self.link_groups.insert(key, path.clone());
                }
                let unchanged = self.opts.overwrite == Overwrite::IfChanged
                    && existing.as_ref().is_some_and(|md| {
                        md.is_file()
                            && md.len() == node.size
                            && md.mtime() == node.mtime.0
                            && md.mtime_nsec() == node.mtime.1 as i64
                            && md.nlink() == 1
                    });
                let write_data = !unchanged;
                self.push(Action::File { path, node, write_data, existed });
            }
            NodeKind::Symlink => self.push(Action::Symlink { path, node }),
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                self.push(Action::Special { path, node })
            }
            NodeKind::Socket => self.out.notes.push(format!(
                "{}: a socket; recorded in the recovery point, not recreated",
                path.display()
            )),
            NodeKind::Dir => unreachable!("handled above"),
        }
        Ok(())
    }
}
