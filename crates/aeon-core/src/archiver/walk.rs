//! The directory walk: turns source paths into an ordered stream of entries for the finisher
//! and of file jobs for the readers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::parent::ParentTrees;
use super::{FILE_BATCH_BYTES, FILE_BATCH_FILES, FileBatch, FileJob, FileOutcome, Item, Shared};
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::id::Id;
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree};

/// Makes every source path absolute and lexically normal, checks it exists, and drops paths
/// already inside another source.
pub fn absolute_source_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::InvalidInput("nothing to back up: give at least one path".into()));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
        let mut norm = PathBuf::from("/");
        for c in abs.components() {
            match c {
                Component::Normal(n) => norm.push(n),
                Component::ParentDir => {
                    norm.pop();
                }
                _ => {}
            }
        }
        std::fs::symlink_metadata(&norm).map_err(|e| Error::io(&norm, e))?;
        out.push(norm);
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in out {
        if let Some(k) = kept.iter().find(|k| p.starts_with(k)) {
            // A symlink is recorded as a link: what lies beneath the path it leads to would
            // have no place in the point.
            if std::fs::symlink_metadata(k).is_ok_and(|md| md.file_type().is_symlink()) {
                return Err(Error::InvalidInput(format!(
                    "{} is a symbolic link (backed up as a link) and {} lies beneath it: give \
                     one of them, or the directory the link leads to",
                    k.display(),
                    p.display()
                )));
            }
            continue;
        }
        kept.push(p);
    }
    Ok(kept)
}

/// The first 43 bytes of a valid CACHEDIR.TAG.
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The directories above the sources: `/home/a` and `/home/b` share the virtual `home`.
#[derive(Default)]
struct VirtualDir {
    children: BTreeMap<Vec<u8>, VirtualEntry>,
}

enum VirtualEntry {
    Source(PathBuf),
    Dir(PathBuf, VirtualDir),
}

fn build_virtual_root(sources: &[PathBuf]) -> VirtualDir {
    let mut root = VirtualDir::default();
    for src in sources {
        let parts: Vec<&OsStr> = src
            .components()
            .filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None })
            .collect();
        let mut dir = &mut root;
        let mut path = PathBuf::from("/");
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let key = part.as_bytes().to_vec();
            if i + 1 == parts.len() {
                dir.children.insert(key, VirtualEntry::Source(path.clone()));
                break;
            }
            let entry = dir
                .children
                .entry(key)
                .or_insert_with(|| VirtualEntry::Dir(path.clone(), VirtualDir::default()));
            match entry {
                VirtualEntry::Dir(_, d) => dir = d,
                VirtualEntry::Source(_) => break, // already covered by a source above it
            }
        }
    }
    root
}

fn timestamp(secs: i64, nsecs: i64) -> Timestamp {
    Timestamp(secs, nsecs.clamp(0, 999_999_999) as u32)
}

/// Builds a tree node from `lstat` metadata (no content, target or subtree yet).
pub fn node_from_metadata(name: &[u8], md: &Metadata) -> Node {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else if ft.is_block_device() {
        NodeKind::Blockdev
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    };
    let mut n = Node::new(RawName(name.to_vec()), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.mtime = timestamp(md.mtime(), md.mtime_nsec());
    n.atime = Some(timestamp(md.atime(), md.atime_nsec()));
    n.ctime = Some(timestamp(md.ctime(), md.ctime_nsec()));
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    if kind == NodeKind::File {
        n.size = md.size();
    }
    if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
        n.rdev = Some(md.rdev());
    }
    n
}

pub(super) struct Walker<'s, 'a> {
    pub shared: &'s Shared<'a>,
    jobs: Sender<FileBatch>,
    items: Sender<Vec<Item>>,
    /// Items not yet handed to the finisher. They go in batches: one channel message (and
    /// one wake-up of a sleeping finisher) per entry was a tenth of a no-change backup's walk.
    pending: RefCell<Vec<Item>>,
    /// Files to read not yet handed to the readers.
    files: RefCell<PendingFiles>,
    open_dirs: OpenDirs,
    /// The parent's trees, read ahead.
    parent_trees: Option<&'s ParentTrees>,
    /// Per device: the kind of kernel file system it is, if it is one whose files describe
    /// kernel state rather than hold data (looked up once per device).
    pseudo_file_systems: RefCell<std::collections::HashMap<u64, Option<&'static str>>>,
}

/// File systems whose files are the kernel's view of itself: their sizes lie (0 for files that
/// read as pages), some block forever when read (/proc/kmsg, trace_pipe), and restoring them
/// means nothing. A backup records such a mount point as an empty directory (docs/FORMAT.md §10).
fn pseudo_file_system(path: &Path) -> Option<&'static str> {
    let kind = rustix::fs::statfs(path).ok()?.f_type as u64;
    Some(match kind {
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0x7363_6673 => "securityfs",
        0x0027_e0eb => "cgroup",
        0x6367_7270 => "cgroup2",
        0x6165_676c => "pstore",
        0xcafe_4a11 => "bpf",
        0x6265_6570 => "configfs",
        0xf97c_ff8c => "selinuxfs",
        0x6573_5543 => "fusectl",
        0x4249_4e4d => "binfmt_misc",
        0xde5e_81e4 => "efivarfs",
        _ => return None,
    })
}

#[derive(Default)]
struct PendingFiles {
    batch: Option<FileBatch>,
    bytes: u64,
}

/// Items handed to the finisher at once.
const ITEM_BATCH: usize = 256;

impl<'s, 'a> Walker<'s, 'a> {
    pub fn new(
        shared: &'s Shared<'a>,
        jobs: Sender<FileBatch>,
        items: Sender<Vec<Item>>,
        parent_trees: Option<&'s ParentTrees>,
    ) -> Self {
        Walker {
            shared,
            jobs,
            items,
            pending: RefCell::new(Vec::with_capacity(ITEM_BATCH)),
            files: RefCell::default(),
            open_dirs: OpenDirs::default(),
            parent_trees,
            pseudo_file_systems: RefCell::default(),
        }
    }

    /// Walks every source; returns early (quietly) if the backup is aborted.
    pub fn run(&self, sources: &[PathBuf], parent_root: Option<&Id>) {
        let root = build_virtual_root(sources);
        let parent_tree = parent_root.and_then(|id| self.load_parent_tree(id));
        if self.send(Item::EnterDir) {
            self.walk_virtual(&root, parent_tree.as_ref());
        }
        let root_node = Node::new(RawName(Vec::new()), NodeKind::Dir);
        if self.send(Item::LeaveDir(root_node, parent_root.copied())) {
            self.flush();
        }
    }

    fn send(&self, item: Item) -> bool {
        if self.shared.aborted() {
            return false;
        }
        let mut pending = self.pending.borrow_mut();
        pending.push(item);
        if pending.len() < ITEM_BATCH {
            return true;
        }
        drop(pending);
        self.flush()
    }

    /// Hands the pending items to the finisher; false if it has stopped.
    fn flush(&self) -> bool {
        // Files first: the finisher waits for every file it is given, so none may still be here.
        if !self.dispatch_files() {
            return false;
        }
        let batch =
            std::mem::replace(&mut *self.pending.borrow_mut(), Vec::with_capacity(ITEM_BATCH));
        batch.is_empty() || self.items.send(batch).is_ok()
    }

    /// Adds a file to the batch for the readers. Returns where the batch's outcomes will
    /// arrive if the file begins a new batch (its item carries that to the finisher).
    fn queue_file(&self, job: FileJob) -> Option<Receiver<Vec<Option<FileOutcome>>>> {
        let mut pending = self.files.borrow_mut();
        let mut receiver = None;
        let size = job.before.size;
        let batch = pending.batch.get_or_insert_with(|| {
            let (done, rx) = bounded(1);
            receiver = Some(rx);
            FileBatch { files: Vec::with_capacity(FILE_BATCH_FILES), done }
        });
        batch.files.push(job);
        let full = batch.files.len() >= FILE_BATCH_FILES;
        pending.bytes += size;
        if full || pending.bytes >= FILE_BATCH_BYTES {
            drop(pending);
            self.dispatch_files();
        }
        receiver
    }

    /// Hands the pending files to the readers; false if they have stopped.
    fn dispatch_files(&self) -> bool {
        let Some(batch) = std::mem::take(&mut *self.files.borrow_mut()).batch else {
            return true;
        };
        let sent = self.jobs.send(batch).is_ok();
        if !sent {
            self.shared.stop();
        }
        sent
    }

    fn load_parent_tree(&self, id: &Id) -> Option<Tree> {
        if let Some(tree) = self.parent_trees.and_then(|ahead| ahead.take(id)) {
            return Some(tree);
        }
        // A parent that cannot be read only costs speed: everything is read afresh.
        self.shared.repo.load_tree(id).ok()
    }

    fn parent_subtree(parent: Option<&Tree>, name: &[u8]) -> (Option<Node>, Option<Id>) {
        let node = parent.and_then(|t| t.find(name)).cloned();
        let subtree = node.as_ref().filter(|n| n.kind == NodeKind::Dir).and_then(|n| n.subtree);
        (node, subtree)
    }

    fn walk_virtual(&self, dir: &VirtualDir, parent: Option<&Tree>) {
        for (name, entry) in &dir.children {
            let (parent_node, parent_subtree) = Self::parent_subtree(parent, name);
            match entry {
                VirtualEntry::Source(path) => {
                    let device = std::fs::symlink_metadata(path).map(|m| m.dev()).ok();
                    self.walk_entry(path, name, None, parent_node.as_ref(), device)
                }
                VirtualEntry::Dir(path, children) => {
                    // A directory above a source is recorded as the directory the path leads
                    // to, even when it is reached through a symbolic link (`/home` -> `/data/home`):
                    // the point keeps the path as it was given (docs/FORMAT.md §10).
                    let resolved = match std::fs::canonicalize(path)
                        .and_then(|real| std::fs::metadata(&real).map(|md| (real, md)))
                    {
                        Ok(resolved) => resolved,
                        Err(e) => {
                            self.shared.warn(format!("{}: {e}", path.display()));
                            continue;
                        }
                    };
                    let (real, md) = resolved;
                    if !md.is_dir() {
                        self.shared.warn(format!("{}: not a directory (skipped)", path.display()));
                        continue;
                    }
                    let node = self.describe(&real, name, &md, None);
                    let sub = parent_subtree.and_then(|id| self.load_parent_tree(&id));
                    if !self.send(Item::EnterDir) {
                        return;
                    }
                    self.walk_virtual(children, sub.as_ref());
                    if !self.send(Item::LeaveDir(node, parent_subtree)) {
                        return;
                    }
                }
            }
        }
    }

    /// The node for `path` with everything the backup records: owner names and xattrs too.
    /// Extended attributes are taken from `previous` (the same entry in the parent recovery
    /// point) when its inode and ctime are unchanged: setting one changes the ctime, and not
    /// asking saves a system call (and a path lookup) per entry. A regular file's are left to
    /// the reader that opens it, which reads them from the open file.
    fn describe(&self, path: &Path, name: &[u8], md: &Metadata, previous: Option<&Node>) -> Node {
        let mut node = node_from_metadata(name, md);
        node.user = self.shared.owners.user(node.uid);
        node.group = self.shared.owners.group(node.gid);
        if let Some(p) = previous.filter(|p| {
            p.kind == node.kind
                && p.inode == node.inode
                && p.ctime.is_some()
                && p.ctime == node.ctime
        }) {
            node.xattrs = p.xattrs.clone();
            return node;
        }
        if md.is_file() {
            return node;
        }
        match crate::metadata::read_xattrs(path) {
            Ok(x) => node.xattrs = x,
            Err(e) => {
                self.shared.warn(format!("{}: extended attributes not read: {e}", path.display()))
            }
        }
        node
    }

    /// `entry`: the directory entry of `path` when listed from its directory, whose metadata
    /// is read relative to the listing instead of by a lookup of the whole path, and the
    /// directory, opened on demand for the readers to open its files relative to.
    fn walk_entry(
        &self,
        path: &Path,
        name: &[u8],
        entry: Option<(&std::fs::DirEntry, &DirForReaders)>,
        parent_node: Option<&Node>,
        root_device: Option<u64>,
    ) {
        if self.shared.aborted() {
            return;
        }
        let opts = self.shared.opts;
        if opts.excludes.matches(path) {
            return;
        }
        // Continuous protection: a directory nothing changed in since the parent is the parent's,
        // node and subtree, neither listed nor read (its tree must still be indexed).
        if let (Some(changed), Some(previous)) = (&opts.changed, parent_node)
            && previous.kind == NodeKind::Dir
            && previous.subtree.is_some_and(|t| self.shared.repo.index().contains(&t))
            && !changed.touches(path)
        {
            self.shared.counters.dirs_unchanged.fetch_add(1, Ordering::Relaxed);
            self.send(Item::Node(previous.clone()));
            return;
        }
        let md = match entry.map_or_else(|| std::fs::symlink_metadata(path), |e| e.0.metadata()) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.shared
                    .warn(format!("{}: vanished during the backup (skipped)", path.display()));
                return;
            }
            Err(e) => {
                self.shared.warn(format!("{}: {e} (skipped)", path.display()));
                return;
            }
        };
        if md.is_file() && opts.exclude_larger_than.is_some_and(|limit| md.len() > limit) {
            return;
        }
        let mut node = self.describe(path, name, &md, parent_node);
        let c = &self.shared.counters;
        // Another file system begins at a directory (or a source), so only those are asked,
        // never the files of a walk; a symlink cannot tell: statfs would follow it elsewhere.
        let may_begin_file_system = md.is_dir() || (entry.is_none() && !md.is_symlink());
        if may_begin_file_system && self.on_pseudo_file_system(path, md.dev()).is_some() {
            if node.kind == NodeKind::Dir {
                // Recorded as the empty directory a restore needs to mount it on again.
                if self.send(Item::EnterDir) {
                    self.send(Item::LeaveDir(node, None));
                }
            }
            return;
        }
        match node.kind {
            NodeKind::Dir => {
                let other_fs = opts.one_file_system && root_device.is_some_and(|d| d != md.dev());
                self.walk_dir(path, node, parent_node, root_device, other_fs)
            }
            NodeKind::File => {
                let previous = parent_node.filter(|p| p.kind == NodeKind::File);
                if let Some(p) = previous.filter(|p| self.unchanged(p, &node)) {
                    c.files_unchanged.fetch_add(1, Ordering::Relaxed);
                    c.total_bytes.fetch_add(node.size, Ordering::Relaxed);
                    self.shared.progress.add(1, node.size);
                    node.content = p.content.clone();
                    self.send(Item::Node(node));
                    return;
                }
                if previous.is_some() { &c.files_changed } else { &c.files_new }
                    .fetch_add(1, Ordering::Relaxed);
                let is_new = previous.is_none();
                let job = FileJob {
                    path: path.to_path_buf(),
                    dir: entry.and_then(|(_, dir)| dir.get(&self.open_dirs)),
                    before: super::FileState::of(&node),
                    sparse: crate::metadata::SparseReader::looks_sparse(&md),
                    is_new,
                };
                let outcomes = self.queue_file(job);
                self.send(Item::File(node, outcomes));
            }
            NodeKind::Symlink => match std::fs::read_link(path) {
                Ok(target) => {
                    node.target = Some(RawName(target.as_os_str().as_bytes().to_vec()));
                    self.send(Item::Node(node));
                }
                Err(e) => self.shared.warn(format!("{}: {e} (skipped)", path.display())),
            },
            _ => {
                self.send(Item::Node(node));
            }
        }
    }

    /// The kind of pseudo file system `path` (on device `dev`) is on, noting its first sighting.
    fn on_pseudo_file_system(&self, path: &Path, dev: u64) -> Option<&'static str> {
        let mut known = self.pseudo_file_systems.borrow_mut();
        if let Some(&kind) = known.get(&dev) {
            return kind;
        }
        let kind = pseudo_file_system(path);
        known.insert(dev, kind);
        if let Some(kind) = kind {
            self.shared.note(format!(
                "{}: a {kind} file system (kernel state, not data): its contents are not backed up",
                path.display()
            ));
        }
        kind
    }

    /// Same size, mtime, ctime and inode as in the parent, and every blob still indexed.
    fn unchanged(&self, previous: &Node, now: &Node) -> bool {
        previous.size == now.size
            && previous.mtime == now.mtime
            && previous.ctime == now.ctime
            && previous.inode == now.inode
            && (previous.size == 0 || !previous.content.is_empty())
            && previous.content.iter().all(|id| self.shared.repo.index().contains(id))
    }

    /// Whether a directory is marked to keep only its marker file, and which one.
    fn marker_in(&self, dir: &Path) -> Option<Vec<u8>> {
        let opts = self.shared.opts;
        for name in &opts.exclude_if_present {
            if std::fs::symlink_metadata(dir.join(name)).is_ok() {
                return Some(name.as_bytes().to_vec());
            }
        }
        if opts.exclude_caches {
            let tag = dir.join("CACHEDIR.TAG");
            let mut head = [0u8; 43];
            if let Ok(mut f) = std::fs::File::open(&tag) {
                use std::io::Read;
                if f.read_exact(&mut head).is_ok() && &head[..] == CACHEDIR_SIGNATURE {
                    return Some(b"CACHEDIR.TAG".to_vec());
                }
            }
        }
        None
    }

    fn walk_dir(
        &self,
        path: &Path,
        node: Node,
        parent_node: Option<&Node>,
        root_device: Option<u64>,
        other_file_system: bool,
    ) {
        let parent_subtree =
            parent_node.filter(|n| n.kind == NodeKind::Dir).and_then(|n| n.subtree);
        let parent_tree = parent_subtree.and_then(|id| self.load_parent_tree(&id));
        if !self.send(Item::EnterDir) {
            return;
        }
        let marker = if other_file_system { None } else { self.marker_in(path) };
        match std::fs::read_dir(path) {
            // A mount point of another file system is recorded, its contents are not.
            _ if other_file_system => {}
            Ok(rd) => {
                let mut entries = Vec::new();
                for entry in rd {
                    match entry {
                        Ok(e) => entries.push((e.file_name(), e)),
                        Err(e) => self
                            .shared
                            .warn(format!("{}: {e} (listing incomplete)", path.display())),
                    }
                }
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                if let Some(keep) = &marker {
                    entries.retain(|(n, _)| n.as_bytes() == keep.as_slice());
                }
                let dir = DirForReaders::new(path);
                for (name, entry) in &entries {
                    let child_parent = parent_tree.as_ref().and_then(|t| t.find(name.as_bytes()));
                    let child = path.join(name);
                    self.walk_entry(
                        &child,
                        name.as_bytes(),
                        Some((entry, &dir)),
                        child_parent,
                        root_device,
                    );
                    if self.shared.aborted() {
                        return;
                    }
                }
            }
            Err(e) => self.shared.warn(format!("{}: {e} (contents skipped)", path.display())),
        }
        self.send(Item::LeaveDir(node, parent_subtree));
    }
}

/// Directories kept open for readers at once, at most. Each queued file holds its directory
/// open until read, and a tree of one file per directory would otherwise hold thousands: files
/// beyond this are opened by their whole path, as before.
pub(super) const MAX_OPEN_DIRS: usize = 256;

/// A directory being walked, opened the first time one of its files is queued.
pub(super) struct DirForReaders<'p> {
    path: &'p Path,
    open: std::cell::OnceCell<Option<Arc<std::fs::File>>>,
}

impl<'p> DirForReaders<'p> {
    fn new(path: &'p Path) -> Self {
        DirForReaders { path, open: std::cell::OnceCell::new() }
    }

    /// The open directory, or `None` (files are then opened by path) if it cannot be opened or
    /// `open_dirs` are already held.
    fn get(&self, open_dirs: &OpenDirs) -> Option<Arc<std::fs::File>> {
        self.open.get_or_init(|| open_dirs.open(self.path)).clone()
    }
}

/// Counts the directories held open for readers (see [`MAX_OPEN_DIRS`]).
#[derive(Default)]
pub(super) struct OpenDirs {
    held: RefCell<Vec<std::sync::Weak<std::fs::File>>>,
}

impl OpenDirs {
    fn open(&self, path: &Path) -> Option<Arc<std::fs::File>> {
        use rustix::fs::{Mode, OFlags};
        let mut held = self.held.borrow_mut();
        if held.len() >= MAX_OPEN_DIRS {
            held.retain(|d| d.strong_count() > 0);
            if held.len() >= MAX_OPEN_DIRS {
                return None;
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let dir = Arc::new(std::fs::File::from(rustix::fs::open(path, flags, Mode::empty()).ok()?));
        held.push(Arc::downgrade(&dir));
        Some(dir)
    }
}

/// Lists every directory and reads every entry's metadata under `sources`, on `threads`
/// threads, ahead of the walker; returns the files and bytes found (the progress bar's totals),
/// or `None` if `stop` cut it short.
///
/// Besides the totals, its listings warm the kernel's caches for the walker, which is one
/// thread in depth-first order and, with a parent recovery point, does little else than wait
/// for the disk: several listings in flight at once halve that wait.
///
/// It goes only where the walker will: not into excluded paths nor, with `one_file_system`,
/// onto other file systems (a dead network mount there must not hang the backup).
///
/// For [`ScanPurpose::WarmCaches`] it stops by itself once listing no longer waits on the disk.
pub fn scan_ahead(
    sources: &[PathBuf],
    threads: usize,
    purpose: ScanPurpose,
    excludes: &PathFilter,
    one_file_system: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<(u64, u64)> {
    struct Queue {
        /// Directories to list, with the device of the source they are under.
        dirs: Vec<(PathBuf, u64)>,
        busy: usize,
    }
    let (files, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let count = |md: &Metadata| {
        files.fetch_add(1, Ordering::Relaxed);
        if md.is_file() {
            bytes.fetch_add(md.len(), Ordering::Relaxed);
        }
    };
    let mut roots = Vec::new();
    for source in sources {
        match std::fs::symlink_metadata(source) {
            Ok(md) if md.is_dir() => roots.push((source.clone(), md.dev())),
            Ok(md) => count(&md),
            Err(_) => {}
        }
    }
    let queue = Mutex::new(Queue { dirs: roots, busy: 0 });
    let more = Condvar::new();
    let stopped = AtomicBool::new(false);
    // Only a scan that may stop early watches its waits: two more system calls per directory.
    let watch_waits = purpose == ScanPurpose::WarmCaches;
    let warm_streak = AtomicU64::new(0);
    let stop = || stop() || warm_streak.load(Ordering::Relaxed) >= WARM_DIRECTORIES_TO_STOP;
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            super::spawn_stage(s, "scan-ahead", || {
                loop {
                    let (dir, device) = {
                        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            if stop() {
                                stopped.store(true, Ordering::Relaxed);
                                return;
                            }
                            if let Some(d) = q.dirs.pop() {
                                q.busy += 1;
                                break d;
                            }
                            if q.busy == 0 {
                                more.notify_all();
                                return;
                            }
                            q = more.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let mut found = Vec::new();
                    let waits_before = watch_waits.then(blocking_waits_of_this_thread).flatten();
                    if let Ok(rd) = std::fs::read_dir(&dir) {
                        for e in rd.flatten() {
                            let Ok(md) = e.metadata() else { continue };
                            if !md.is_dir() {
                                count(&md);
                                continue;
                            }
                            let elsewhere = one_file_system && md.dev() != device;
                            if !elsewhere && !excludes.matches(&e.path()) {
                                found.push((e.path(), device));
                            }
                        }
                    }
                    if let Some(before) = waits_before {
                        if blocking_waits_of_this_thread() == Some(before) {
                            warm_streak.fetch_add(1, Ordering::Relaxed);
                        } else {
                            warm_streak.store(0, Ordering::Relaxed);
                        }
                    }
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    // Reversed so that popping visits them in listing order, as the walker does.
                    q.dirs.extend(found.into_iter().rev());
                    q.busy -= 1;
                    more.notify_all();
                }
            });
        }
    });
    (!stopped.into_inner()).then(|| (files.into_inner(), bytes.into_inner()))
}

/// What a [`scan_ahead`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanPurpose {
    /// The totals for a progress bar: it lists everything.
    Totals,
    /// Only the caches' warmth for the walker: once directories are listed without waiting on
    /// the disk, the caches were warm already (or the walker has caught up) and the scan would
    /// only double the walker's system calls on cores the backup needs.
    WarmCaches,
}

/// Directories in a row listed without a wait that make a [`ScanPurpose::WarmCaches`] scan stop.
/// Fewer let a few directories whose blocks the kernel had read ahead stop the scan while most
/// of the tree was still on the disk.
const WARM_DIRECTORIES_TO_STOP: u64 = 64;

/// How often the calling thread has given up the CPU to wait (its voluntary context switches):
/// unchanged across a listing, that listing was served from the caches. `None` where the
/// system does not count them per thread.
fn blocking_waits_of_this_thread() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, and the
        // value is read only when it reports success.
        let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        // SAFETY: as above, `done == 0` means the struct was filled.
        (done == 0).then(|| unsafe { usage.assume_init() }.ru_nvcsw as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// A `scan_ahead` of a backup's sources on threads of its own, started before the repository
/// is open: the disk answers the first listings while the key is derived (Argon2id keeps both
/// cores busy for 0.14 s, during which a cold walk would otherwise not have begun). Hand it to
/// [`super::backup_after_scan`]; dropped, it stops.
pub struct EarlyScan {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<(u64, u64)>>>,
}

impl EarlyScan {
    /// Starts scanning the sources of `opts` (their paths, excludes and file-system limit).
    pub fn start(opts: &super::BackupOptions) -> Result<EarlyScan> {
        let sources = absolute_source_paths(&opts.paths)?;
        let excludes = opts.excludes.clone();
        let one_file_system = opts.one_file_system;
        let purpose = opts.scan_purpose();
        let stop = Arc::new(AtomicBool::new(false));
        // Only a head start: a backup without it is as correct, so a failed spawn is ignored.
        let thread = std::thread::Builder::new()
            .name("early-scan".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let stopped = || stop.load(Ordering::Relaxed);
                    let threads = super::SCAN_THREADS;
                    scan_ahead(&sources, threads, purpose, &excludes, one_file_system, &stopped)
                }
            })
            .ok();
        Ok(EarlyScan { stop, thread })
    }

    /// Asks the scan to stop at its next directory.
    pub(super) fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits for the scan: its totals, or `None` if it was stopped first.
    pub(super) fn totals(mut self) -> Option<(u64, u64)> {
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for EarlyScan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for EarlyScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyScan").field("stopped", &self.stop.load(Ordering::Relaxed)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_ahead_counts_what_the_walker_will_visit() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        for dir in ["a/b", "a/c", "skip"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (file, len) in [("top", 3), ("a/one", 10), ("a/b/two", 20), ("a/c/three", 30)] {
            std::fs::write(root.join(file), vec![1u8; len]).unwrap();
        }
        std::fs::write(root.join("skip/hidden"), [0u8; 99]).unwrap();
        let single = d.path().join("single");
        std::fs::write(&single, [0u8; 5]).unwrap();
        let excludes = PathFilter::new(&[format!("{}/skip", root.display())], &[]).unwrap();
        let sources = [root, single];
        let totals = ScanPurpose::Totals;
        assert_eq!(scan_ahead(&sources, 3, totals, &excludes, true, &|| false), Some((5, 68)));
        assert_eq!(scan_ahead(&sources, 3, totals, &excludes, false, &|| true), None);
    }

    #[test]
    fn a_scan_for_warm_caches_stops_where_listing_does_not_wait() {
        // Just written, every directory is in the caches: listing them never waits on a disk.
        let d = tempfile::tempdir().unwrap();
        let dirs = WARM_DIRECTORIES_TO_STOP as usize * 2;
        for i in 0..dirs {
            let dir = d.path().join(format!("{i:03}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("f"), b"x").unwrap();
        }
        let (sources, none) = ([d.path().to_path_buf()], PathFilter::default());
        let listed_all = Some((dirs as u64, dirs as u64));
        let totals = scan_ahead(&sources, 1, ScanPurpose::Totals, &none, false, &|| false);
        assert_eq!(totals, listed_all, "a scan for totals lists everything");
        if blocking_waits_of_this_thread().is_some() {
            let warm = scan_ahead(&sources, 1, ScanPurpose::WarmCaches, &none, false, &|| false);
            assert_eq!(warm, None, "warm listings stop a scan that only warms the caches");
        }
    }

    #[test]
    fn no_more_directories_are_held_open_than_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let open = OpenDirs::default();
        let held: Vec<_> = (0..MAX_OPEN_DIRS).map(|_| open.open(dir.path()).unwrap()).collect();
        assert!(open.open(dir.path()).is_none(), "one past the cap");
        drop(held);
        assert!(open.open(dir.path()).is_some(), "released ones make room");
        // A file is not a directory to open files relative to.
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(open.open(&dir.path().join("f")).is_none());
    }

    #[test]
    fn source_paths_are_normalised_and_nested_ones_dropped() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("b")).unwrap();
        let got = absolute_source_paths(&[a.join("b"), a.join("b/../b/."), a.clone()]).unwrap();
        assert_eq!(got, vec![a.clone()]);
        assert!(absolute_source_paths(&[d.path().join("missing")]).is_err());
        let root = build_virtual_root(&got);
        assert_eq!(root.children.len(), 1);
    }
}
