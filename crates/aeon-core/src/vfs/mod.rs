//! A read-only file tree over a repository's recovery points, for a mount (or any browser):
//!
//! ```text
//! /snapshots/<time>_<short id>/…     each point's tree     /snapshots/latest -> newest
//! /hosts/<host>/<time>_<short id>/…  the points of a host  /hosts/<host>/latest
//! /tags/<tag>/<time>_<short id>/…    the points of a tag   /tags/<tag>/latest
//! /at/<YYYY-MM-DD>[T<HH:MM>] -> ../snapshots/<the newest point at or before that time>
//! ```
//!
//! The folders above the points are made here ([`Entry::Virtual`]); below, every entry is a
//! node of a point's tree. File contents are read blob by blob (each verified), through a
//! bounded cache with read-ahead. The list of points is read again when it is older than the
//! refresh period, so new points appear without remounting.

mod content;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};

pub use content::OpenFile;

use crate::error::Result;
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind, Tree};

/// Folders made by the view (not stored in any point).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Virtual {
    Root,
    Snapshots,
    Hosts,
    Host(String),
    Tags,
    Tag(String),
    At,
}

/// What a path of the view is.
#[derive(Debug, Clone)]
pub enum Entry {
    Virtual(Virtual),
    /// A symbolic link made by the view (`latest`, `at/<date>`).
    Link(String),
    /// A node of a point: the point's id, its time, and the node (the point's root is a
    /// directory node named `/`).
    Node {
        point: Id,
        time: DateTime<FixedOffset>,
        node: Arc<Node>,
    },
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        match self {
            Entry::Virtual(_) => true,
            Entry::Link(_) => false,
            Entry::Node { node, .. } => node.kind == NodeKind::Dir,
        }
    }
}

/// Tuning of a [`Vfs`].
#[derive(Debug, Clone)]
pub struct VfsOptions {
    /// Bytes of decoded file data kept in memory.
    pub cache_bytes: usize,
    /// Trees kept decoded.
    pub cached_trees: usize,
    /// How old the list of points may get before a listing reads it again.
    pub refresh: Duration,
    /// Blobs read ahead of a sequential reader.
    pub read_ahead: usize,
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            cache_bytes: 256 << 20,
            cached_trees: 4096,
            refresh: Duration::from_secs(5),
            read_ahead: 4,
        }
    }
}

/// The points as the view shows them, newest last.
struct Points {
    entries: Vec<SnapshotEntry>,
    /// `<time>_<short id>` of each entry, in the same order.
    names: Vec<String>,
    read_at: Instant,
}

impl Points {
    fn read(repo: &Repository) -> Result<Points> {
        let (mut entries, _unreadable) = repo.list_snapshots()?;
        entries.sort_by_key(|e| (e.snapshot.time, e.id));
        let names = entries.iter().map(point_name).collect();
        Ok(Points { entries, names, read_at: Instant::now() })
    }

    fn ids(&self) -> BTreeSet<Id> {
        self.entries.iter().map(|e| e.id).collect()
    }
}

/// A point's folder name: its local time to the second and its short id.
pub fn point_name(e: &SnapshotEntry) -> String {
    format!(
        "{}_{}",
        e.snapshot.time.with_timezone(&Local).format("%Y-%m-%dT%H:%M:%S"),
        e.id.short()
    )
}

pub struct Vfs {
    /// Behind a lock: new points bring new packs, and the index is read again for them.
    repo: RwLock<Repository>,
    points: RwLock<Points>,
    trees: Mutex<lru::LruCache<Id, Arc<Tree>>>,
    pub(crate) blobs: content::BlobCache,
    options: VfsOptions,
}

impl Vfs {
    pub fn new(repo: Repository, options: VfsOptions) -> Result<Vfs> {
        let points = Points::read(&repo)?;
        let trees = NonZeroUsize::new(options.cached_trees.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Vfs {
            points: RwLock::new(points),
            repo: RwLock::new(repo),
            trees: Mutex::new(lru::LruCache::new(trees)),
            blobs: content::BlobCache::new(options.cache_bytes),
            options,
        })
    }

    pub(crate) fn repo(&self) -> std::sync::RwLockReadGuard<'_, Repository> {
        self.repo.read().unwrap_or_else(|p| p.into_inner())
    }

    fn points(&self) -> std::sync::RwLockReadGuard<'_, Points> {
        self.points.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the list of points again if it is older than the refresh period (and the index,
    /// when points were added). Returns whether the list changed.
    pub fn refresh(&self) -> Result<bool> {
        if self.points().read_at.elapsed() < self.options.refresh {
            return Ok(false);
        }
        self.refresh_now()
    }

    /// Reads the list of points again now.
    pub fn refresh_now(&self) -> Result<bool> {
        let fresh = Points::read(&self.repo())?;
        let mut points = self.points.write().unwrap_or_else(|p| p.into_inner());
        let added = fresh.ids().difference(&points.ids()).count() > 0;
        let changed = added || fresh.entries.len() != points.entries.len();
        if added {
            self.repo.write().unwrap_or_else(|p| p.into_inner()).reload_index()?;
        }
        *points = fresh;
        Ok(changed)
    }

    /// When the newest point was taken (the time of the view's own folders).
    pub fn newest_time(&self) -> Option<DateTime<FixedOffset>> {
        self.points().entries.last().map(|e| e.snapshot.time)
    }

    /// The entries of the folder `dir`, by name (bytes: names need not be UTF-8).
    pub fn children(&self, dir: &Entry) -> Result<Vec<(Vec<u8>, Entry)>> {
        let points = self.points();
        let named = |filter: &dyn Fn(&SnapshotEntry) -> bool| -> Vec<(Vec<u8>, Entry)> {
            let mut out: Vec<(Vec<u8>, Entry)> = Vec::new();
            let mut newest = None;
            for (e, name) in points.entries.iter().zip(&points.names) {
                if filter(e) {
                    out.push((name.clone().into_bytes(), point_root(e)));
                    newest = Some(name);
                }
            }
            if let Some(newest) = newest {
                out.push((b"latest".to_vec(), Entry::Link(newest.clone())));
            }
            out
        };
        Ok(match dir {
            Entry::Virtual(Virtual::Root) => ["snapshots", "hosts", "tags", "at"]
                .iter()
                .map(|n| {
                    let entry = self.child_of_root(n).unwrap_or(Entry::Virtual(Virtual::Root));
                    (n.as_bytes().to_vec(), entry)
                })
                .collect(),
            Entry::Virtual(Virtual::Snapshots) => named(&|_| true),
            Entry::Virtual(Virtual::Hosts) => {
                let hosts: BTreeSet<&str> =
                    points.entries.iter().map(|e| e.snapshot.hostname.as_str()).collect();
                hosts
                    .into_iter()
                    .map(|h| (h.as_bytes().to_vec(), Entry::Virtual(Virtual::Host(h.into()))))
                    .collect()
            }
            Entry::Virtual(Virtual::Host(h)) => named(&|e| &e.snapshot.hostname == h),
            Entry::Virtual(Virtual::Tags) => {
                let tags: BTreeSet<&str> = points
                    .entries
                    .iter()
                    .flat_map(|e| e.snapshot.tags.iter().map(String::as_str))
                    .collect();
                tags.into_iter()
                    .map(|t| (t.as_bytes().to_vec(), Entry::Virtual(Virtual::Tag(t.into()))))
                    .collect()
            }
            Entry::Virtual(Virtual::Tag(t)) => named(&|e| e.snapshot.tags.contains(t)),
            Entry::Virtual(Virtual::At) => {
                // One entry per day with a point: the newest point at the end of that day.
                let mut days: BTreeMap<NaiveDate, String> = BTreeMap::new();
                for (e, name) in points.entries.iter().zip(&points.names) {
                    days.insert(e.snapshot.time.with_timezone(&Local).date_naive(), name.clone());
                }
                days.into_iter()
                    .map(|(d, name)| {
                        (
                            d.format("%Y-%m-%d").to_string().into_bytes(),
                            Entry::Link(format!("../snapshots/{name}")),
                        )
                    })
                    .collect()
            }
            Entry::Link(_) => Vec::new(),
            Entry::Node { point, time, node } => {
                let Some(subtree) = node.subtree.filter(|_| node.kind == NodeKind::Dir) else {
                    return Ok(Vec::new());
                };
                self.tree(&subtree)?
                    .nodes
                    .iter()
                    .map(|n| {
                        let entry =
                            Entry::Node { point: *point, time: *time, node: Arc::new(n.clone()) };
                        (n.name.0.clone(), entry)
                    })
                    .collect()
            }
        })
    }

    fn child_of_root(&self, name: &str) -> Option<Entry> {
        Some(Entry::Virtual(match name {
            "snapshots" => Virtual::Snapshots,
            "hosts" => Virtual::Hosts,
            "tags" => Virtual::Tags,
            "at" => Virtual::At,
            _ => return None,
        }))
    }

    /// The entry `name` of the folder `dir`, if there is one. Below `at/`, any date or time
    /// (`2026-12-01`, `2026-12-01T14:30`) names the newest point at or before it.
    pub fn child(&self, dir: &Entry, name: &[u8]) -> Result<Option<Entry>> {
        match dir {
            Entry::Virtual(Virtual::Root) => {
                Ok(std::str::from_utf8(name).ok().and_then(|n| self.child_of_root(n)))
            }
            Entry::Virtual(Virtual::At) => {
                let Some(when) = std::str::from_utf8(name).ok().and_then(parse_at) else {
                    return Ok(None);
                };
                let points = self.points();
                let newest = points
                    .entries
                    .iter()
                    .zip(&points.names)
                    .filter(|(e, _)| e.snapshot.time <= when)
                    .max_by_key(|(e, _)| (e.snapshot.time, e.id));
                Ok(newest.map(|(_, n)| Entry::Link(format!("../snapshots/{n}"))))
            }
            Entry::Node { point, time, node } => {
                let Some(subtree) = node.subtree.filter(|_| node.kind == NodeKind::Dir) else {
                    return Ok(None);
                };
                let tree = self.tree(&subtree)?;
                // Nodes are sorted by name bytes.
                Ok(tree.nodes.binary_search_by(|n| n.name.0.as_slice().cmp(name)).ok().map(|i| {
                    Entry::Node {
                        point: *point,
                        time: *time,
                        node: Arc::new(tree.nodes[i].clone()),
                    }
                }))
            }
            _ => Ok(self.children(dir)?.into_iter().find(|(n, _)| n == name).map(|(_, e)| e)),
        }
    }

    /// A tree, decoded once and kept.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(t.clone());
        }
        let tree = Arc::new(self.repo().load_tree(id)?);
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).put(*id, tree.clone());
        Ok(tree)
    }

    /// Opens a file node for reading.
    pub fn open(&self, node: &Node) -> Result<OpenFile> {
        OpenFile::new(self, node)
    }

    pub fn options(&self) -> &VfsOptions {
        &self.options
    }
}

/// The root folder of a point, as a directory node.
fn point_root(e: &SnapshotEntry) -> Entry {
    let mut node = Node::new(crate::tree::RawName(b"/".to_vec()), NodeKind::Dir);
    node.subtree = Some(e.snapshot.tree);
    node.mode = 0o40755;
    node.uid = e.snapshot.uid;
    node.gid = e.snapshot.gid;
    let t = e.snapshot.time;
    node.mtime = crate::tree::Timestamp(t.timestamp(), t.timestamp_subsec_nanos());
    Entry::Node { point: e.id, time: e.snapshot.time, node: Arc::new(node) }
}

/// `YYYY-MM-DD` (the end of that day) or `YYYY-MM-DDTHH:MM[:SS]`, in local time.
fn parse_at(text: &str) -> Option<DateTime<FixedOffset>> {
    let local = |t: NaiveDateTime| Local.from_local_datetime(&t).latest().map(|t| t.fixed_offset());
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(d.and_hms_opt(23, 59, 59)?);
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_names_a_day_or_a_minute() {
        let day = parse_at("2026-12-01").unwrap();
        assert_eq!(day.with_timezone(&Local).format("%H:%M:%S").to_string(), "23:59:59");
        assert!(parse_at("2026-12-01T14:30").is_some());
        assert!(parse_at("2026-12-01T14:30:05").is_some());
        assert!(parse_at("yesterday").is_none());
        assert!(parse_at("2026-13-01").is_none());
    }
}
