//! Differences between two recovery points, or between a recovery point and the live file
//! system: added, removed, modified (content or type), and metadata-only changes.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::metadata::{OwnerNames, read_xattrs};
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, RawName, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
    Metadata,
}

impl ChangeKind {
    /// One-character marker as restic prints it.
    pub fn marker(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'U',
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub path: String,
    pub change: ChangeKind,
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

/// Same type and same bytes (content ids, link target, device number).
pub fn same_content(a: &Node, b: &Node) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.content == b.content
        && a.target == b.target
        && a.rdev == b.rdev
}

/// Same metadata that a restore sets (access and change times excluded: reading changes them).
pub fn same_metadata(a: &Node, b: &Node) -> bool {
    a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.xattrs == b.xattrs
}

/// Compares the directories `a` and `b` (tree ids; `None` = absent) below `path`.
pub fn diff_trees(
    repo: &Repository,
    a: Option<&Id>,
    b: Option<&Id>,
    path: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(()); // identical subtrees: nothing below differs
    }
    crate::tree::ensure_depth(crate::tree::depth_of(path), &path)?;
    let load = |t: Option<&Id>| -> Result<Tree> {
        t.map(|id| repo.load_tree(id)).transpose().map(Option::unwrap_or_default)
    };
    let (ta, tb) = (load(a)?, load(b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                removed_or_added(repo, &ta.nodes[i], path, ChangeKind::Removed, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                removed_or_added(repo, &tb.nodes[j], path, ChangeKind::Added, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                let p = join(path, &x.name);
                if x.kind == NodeKind::Dir && y.kind == NodeKind::Dir {
                    if !same_metadata(x, y) {
                        out.push(Change {
                            path: p.clone(),
                            change: ChangeKind::Metadata,
                            kind: y.kind,
                        });
                    }
                    diff_trees(repo, x.subtree.as_ref(), y.subtree.as_ref(), &p, out)?;
                } else if x.kind != y.kind {
                    removed_or_added(repo, x, path, ChangeKind::Removed, out)?;
                    removed_or_added(repo, y, path, ChangeKind::Added, out)?;
                } else if !same_content(x, y) {
                    out.push(Change { path: p, change: ChangeKind::Modified, kind: y.kind });
                } else if !same_metadata(x, y) {
                    out.push(Change { path: p, change: ChangeKind::Metadata, kind: y.kind });
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn join(dir: &str, name: &RawName) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name.to_string_lossy())
}

/// Reports `node` and, for a directory, everything below it.
fn removed_or_added(
    repo: &Repository,
    node: &Node,
    dir: &str,
    change: ChangeKind,
    out: &mut Vec<Change>,
) -> Result<()> {
    let p = join(dir, &node.name);
    out.push(Change { path: p.clone(), change, kind: node.kind });
    if node.kind == NodeKind::Dir
        && let Some(sub) = node.subtree
    {
        crate::tree::ensure_depth(crate::tree::depth_of(&p), &p)?;
        for child in repo.load_tree(&sub)?.nodes {
            removed_or_added(repo, &child, &p, change, out)?;
        }
    }
    Ok(())
}

/// Compares the recovery point's `node` (at `path`) with the live file system at `live`.
/// Files whose size or mtime differ are read and chunked to tell content from metadata changes.
pub fn diff_live(
    repo: &Repository,
    node: &Node,
    live: &Path,
    path: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    let owners = OwnerNames::default();
    let md = fs::symlink_metadata(live).map_err(|e| Error::io(live, e))?;
    let now = live_node(live, node.name.0.as_slice(), &md, &owners);
    let mut how = LiveCompare::default();
    compare_live(repo, node, &now, live, path, &owners, &mut how, out)
}

/// How a live comparison reads files, and what it read.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct LiveCompare {
    /// Chunk and hash every file, even one whose size and mtime match (a proof, not a guess).
    pub prove: bool,
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub others: u64,
}

/// Compares the recovery point's directory `node` with the directory `live`, hashing every
/// file's content (`aeon verify`). The top directory's own metadata is not compared (a
/// restore's target folder is not the source's).
pub fn verify_live(
    repo: &Repository,
    node: &Node,
    live: &Path,
    out: &mut Vec<Change>,
) -> Result<LiveCompare> {
    let owners = OwnerNames::default();
    let md = fs::symlink_metadata(live).map_err(|e| Error::io(live, e))?;
    let mut now = live_node(live, node.name.0.as_slice(), &md, &owners);
    if node.kind == NodeKind::Dir && now.kind == NodeKind::Dir {
        now = Node { subtree: now.subtree, ..node.clone() };
    }
    let mut how = LiveCompare { prove: true, ..Default::default() };
    compare_live(repo, node, &now, live, "", &owners, &mut how, out)?;
    Ok(how)
}

fn live_node(path: &Path, name: &[u8], md: &fs::Metadata, owners: &OwnerNames) -> Node {
    let mut n = crate::archiver::node_from_metadata(name, md);
    n.user = owners.user(n.uid);
    n.group = owners.group(n.gid);
    n.xattrs = read_xattrs(path).unwrap_or_default();
    if n.kind == NodeKind::Symlink {
        n.target = fs::read_link(path).ok().map(|t| RawName(t.as_os_str().as_bytes().to_vec()));
    }
    n
}

#[allow(clippy::too_many_arguments)]
fn compare_live(
    repo: &Repository,
    old: &Node,
    now: &Node,
    live: &Path,
    path: &str,
    owners: &OwnerNames,
    how: &mut LiveCompare,
    out: &mut Vec<Change>,
) -> Result<()> {
    if old.kind != now.kind {
        out.push(Change { path: path.into(), change: ChangeKind::Removed, kind: old.kind });
        out.push(Change { path: path.into(), change: ChangeKind::Added, kind: now.kind });
        return Ok(());
    }
    match old.kind {
        NodeKind::Dir => {
            how.dirs += 1;
            if !same_metadata(old, now) {
                out.push(Change {
                    path: path.into(),
                    change: ChangeKind::Metadata,
                    kind: old.kind,
                });
            }
            let tree = match old.subtree {
                Some(id) => repo.load_tree(&id)?,
                None => Tree::default(),
            };
            let mut live_names: Vec<_> = fs::read_dir(live)
                .map_err(|e| Error::io(live, e))?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            live_names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for child in &tree.nodes {
                let p = join(path, &child.name);
                let lp: PathBuf = live.join(child.name.as_os_str());
                match fs::symlink_metadata(&lp) {
                    Ok(md) => {
                        let now_child = live_node(&lp, &child.name.0, &md, owners);
                        compare_live(repo, child, &now_child, &lp, &p, owners, how, out)?;
                    }
                    Err(_) => removed_or_added(repo, child, path, ChangeKind::Removed, out)?,
                }
            }
            for name in live_names {
                if tree.find(name.as_bytes()).is_none() {
                    let p = format!("{}/{}", path.trim_end_matches('/'), name.to_string_lossy());
                    out.push(Change { path: p, change: ChangeKind::Added, kind: NodeKind::File });
                }
            }
        }
        kind => {
            // Files whose size and mtime match are taken as unchanged (as rsync does); others
            // are chunked to tell a content change from a metadata-only one.
            let content_same = if kind == NodeKind::File {
                how.files += 1;
                if how.prove {
                    how.bytes += now.size;
                }
                (!how.prove && old.size == now.size && old.mtime == now.mtime)
                    || (old.size == now.size
                        && live_content(repo, live).is_ok_and(|ids| ids == old.content))
            } else {
                how.others += 1;
                same_content(old, now)
            };
            let change = if !content_same {
                Some(ChangeKind::Modified)
            } else if !same_metadata(old, now) {
                Some(ChangeKind::Metadata)
            } else {
                None
            };
            if let Some(change) = change {
                out.push(Change { path: path.into(), change, kind });
            }
        }
    }
    Ok(())
}

/// The blob ids the file would have if backed up now.
fn live_content(repo: &Repository, path: &Path) -> Result<Vec<Id>> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut ids = Vec::new();
    for c in Chunker::new(f, repo.settings().chunker, repo.gear().clone()) {
        ids.push(repo.hasher().hash(&c.map_err(|e| Error::io(path, e))?));
    }
    Ok(ids)
}
