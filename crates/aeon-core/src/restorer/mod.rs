//! Restore: recreates files from a recovery point.
//!
//! 1. Plan: walk the trees, create directories, links and empty files, and map every blob to
//!    the places it must be written.
//! 2. Data: workers take one pack at a time, read its needed blobs in coalesced ranges, verify
//!    each blob, and write it with positional writes. Unverified bytes are never written.
//! 3. Metadata: owners, modes and times, directories after their contents, deepest first.
//!
//! A file whose data cannot be verified is removed rather than left with wrong content, and is
//! reported; the rest of the restore goes on.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::backend::FileType;
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Timestamp};

/// Gap between two needed blobs of a pack below which one read covers both.
const COALESCE_GAP: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub threads: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

#[derive(Debug, Default)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    /// One message per item that could not be restored exactly.
    pub errors: Vec<String>,
    /// Files left out because their stored data was missing or failed verification.
    pub integrity_errors: u64,
}

struct FilePlan {
    path: PathBuf,
    node: Node,
    failed: AtomicBool,
}

/// One place a blob's plaintext goes.
#[derive(Clone, Copy)]
struct Target {
    file: usize,
    offset: u64,
}

struct BlobPlan {
    id: Id,
    offset: u32,
    length: u32,
    raw_len: u32,
    targets: Vec<Target>,
}

/// Refuses names that would step outside their directory: a crafted tree must not write
/// anywhere but below the target.
fn safe_name(node: &Node) -> Result<&std::ffi::OsStr> {
    let n = &node.name.0;
    if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
        return Err(Error::corrupt(
            "tree",
            format!(
                "unsafe file name {:?} in recovery point",
                node.name.to_string_lossy()
            ),
        ));
    }
    Ok(node.name.as_os_str())
}

struct Planner<'a> {
    repo: &'a Repository,
    files: Vec<FilePlan>,
    dirs: Vec<(PathBuf, Node)>,
    links: Vec<(PathBuf, Node)>,
    summary: RestoreSummary,
}

impl Planner<'_> {
    fn plan_dir(&mut self, subtree: &Id, dir: &Path) -> Result<()> {
        let tree = self.repo.load_tree(subtree)?;
        let mut seen = std::collections::HashSet::new();
        for node in tree.nodes {
            let name = safe_name(&node)?;
            if !seen.insert(node.name.0.clone()) {
                return Err(Error::corrupt(
                    "tree",
                    format!("duplicate name {:?}", node.name),
                ));
            }
            let path = dir.join(name);
            self.plan_node(node, path)?;
        }
        Ok(())
    }

    fn plan_node(&mut self, node: Node, path: PathBuf) -> Result<()> {
        match node.kind {
            NodeKind::Dir => {
                create_dir(&path)?;
                if let Some(sub) = node.subtree {
                    self.plan_dir(&sub, &path)?;
                }
                self.summary.dirs += 1;
                self.dirs.push((path, node));
            }
            NodeKind::File => {
                self.files.push(FilePlan {
                    path,
                    node,
                    failed: AtomicBool::new(false),
                });
            }
            NodeKind::Symlink => {
                let target = node.target.clone().unwrap_or_default();
                remove_existing(&path)?;
                std::os::unix::fs::symlink(target.as_os_str(), &path)
                    .map_err(|e| Error::io(&path, e))?;
                self.summary.links += 1;
                self.links.push((path, node));
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev | NodeKind::Socket => {
                // Special files come with the fidelity work; say so rather than skip silently.
                self.summary.errors.push(format!(
                    "{}: {:?} not restored by this version",
                    path.display(),
                    node.kind
                ));
            }
        }
        Ok(())
    }
}

fn create_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            remove_existing(path)?;
            fs::create_dir(path).map_err(|e| Error::io(path, e))
        }
        Err(_) => fs::create_dir(path).map_err(|e| Error::io(path, e)),
    }
}

/// Removes a non-directory in the way of what the restore must create.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path).map_err(|e| Error::io(path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}

/// Creates or truncates a regular file without following a symlink in its place.
fn create_file(path: &Path, size: u64) -> Result<()> {
    remove_existing(path)?;
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(size).map_err(|e| Error::io(path, e))
}

/// Restores `node` (a directory's contents, or one file) into `target`.
pub fn restore(
    repo: &Repository,
    node: &Node,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let mut planner = Planner {
        repo,
        files: Vec::new(),
        dirs: Vec::new(),
        links: Vec::new(),
        summary: RestoreSummary::default(),
    };
    match node.kind {
        NodeKind::Dir => {
            if let Some(sub) = node.subtree {
                planner.plan_dir(&sub, target)?;
            }
        }
        _ => {
            let name = safe_name(node)?;
            planner.plan_node(node.clone(), target.join(name))?;
        }
    }
    let Planner {
        files,
        mut dirs,
        links,
        mut summary,
        ..
    } = planner;

    // Map blobs to where they go, grouped by pack.
    let index = repo.index();
    let mut by_pack: HashMap<u32, HashMap<Id, BlobPlan>> = HashMap::new();
    let mut total_bytes = 0u64;
    for (i, f) in files.iter().enumerate() {
        create_file(&f.path, f.node.size)?;
        let mut offset = 0u64;
        for id in &f.node.content {
            let Some(loc) = index.get(id) else {
                summary.errors.push(format!(
                    "{}: blob {id} is not in the index",
                    f.path.display()
                ));
                f.failed.store(true, Ordering::Relaxed);
                break;
            };
            let plan = by_pack
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert(BlobPlan {
                    id: *id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_len: loc.raw_len,
                    targets: Vec::new(),
                });
            plan.targets.push(Target { file: i, offset });
            offset += loc.raw_len as u64;
        }
        total_bytes += offset;
    }
    progress.set_total(files.len() as u64, total_bytes);

    let mut packs: Vec<(u32, Vec<BlobPlan>)> = by_pack
        .into_iter()
        .map(|(p, blobs)| {
            let mut v: Vec<BlobPlan> = blobs.into_values().collect();
            v.sort_by_key(|b| b.offset);
            (p, v)
        })
        .collect();
    packs.sort_by_key(|(p, _)| index.pack(*p).id);

    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let written = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, blobs)) = packs.get(i) else {
                        break;
                    };
                    restore_pack(repo, *pack, blobs, &files, &errors, &written, progress);
                }
            });
        }
    });
    summary
        .errors
        .extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    summary.bytes = written.load(Ordering::Relaxed);

    let is_root = unsafe_is_root();
    for f in &files {
        if f.failed.load(Ordering::Relaxed) {
            summary.integrity_errors += 1;
            // Never leave a file with content that could not be verified.
            let _ = fs::remove_file(&f.path);
            continue;
        }
        summary.files += 1;
        if let Err(e) = apply_metadata(&f.path, &f.node, is_root) {
            summary.errors.push(e.to_string());
        }
    }
    for (path, node) in &links {
        if let Err(e) = apply_metadata(path, node, is_root) {
            summary.errors.push(e.to_string());
        }
    }
    // Deepest directories first, so setting a parent's time comes after its children change.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &dirs {
        if let Err(e) = apply_metadata(path, node, is_root) {
            summary.errors.push(e.to_string());
        }
    }
    if node.kind == NodeKind::Dir && node.subtree.is_some() && !node.name.0.is_empty() {
        let _ = apply_metadata(target, node, is_root);
    }
    Ok(summary)
}

fn restore_pack(
    repo: &Repository,
    pack: u32,
    blobs: &[BlobPlan],
    files: &[FilePlan],
    errors: &Mutex<Vec<String>>,
    written: &std::sync::atomic::AtomicU64,
    progress: &dyn Progress,
) {
    let pack_id = repo.index().pack(pack).id;
    let fail = |b: &BlobPlan, e: &Error| {
        let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
        for t in &b.targets {
            let f = &files[t.file];
            if !f.failed.swap(true, Ordering::Relaxed) {
                errs.push(format!("{}: {e}", f.path.display()));
            }
        }
    };
    let mut start = 0;
    while start < blobs.len() {
        // Extend the read while the next blob is close enough to share it.
        let mut end = start + 1;
        while end < blobs.len() {
            let prev_end = blobs[end - 1].offset as u64 + blobs[end - 1].length as u64;
            if blobs[end].offset as u64 > prev_end + COALESCE_GAP {
                break;
            }
            end += 1;
        }
        let range_start = blobs[start].offset as u64;
        let range_end = blobs[start..end]
            .iter()
            .map(|b| b.offset as u64 + b.length as u64)
            .max()
            .unwrap_or(range_start);
        let read = repo
            .backend()
            .read_range(
                FileType::Pack,
                &pack_id.to_hex(),
                range_start,
                range_end - range_start,
            )
            .map_err(|e| match e {
                Error::ObjectNotFound { .. } => {
                    Error::corrupt(format!("pack {pack_id}"), "missing from storage")
                }
                Error::Corrupt { reason, .. } => Error::corrupt(format!("pack {pack_id}"), reason),
                other => other,
            });
        match read {
            Err(e) => blobs[start..end].iter().for_each(|b| fail(b, &e)),
            Ok(data) => {
                for b in &blobs[start..end] {
                    let at = (b.offset as u64 - range_start) as usize;
                    let sealed = &data[at..at + b.length as usize];
                    let opened = blob::open_blob(
                        repo.cipher(),
                        repo.hasher(),
                        BlobType::Data,
                        &b.id,
                        sealed,
                        b.raw_len,
                    )
                    .map_err(|e| match e {
                        Error::Corrupt { what, reason } => {
                            Error::corrupt(format!("{what} in pack {pack_id}"), reason)
                        }
                        other => other,
                    });
                    match opened {
                        Err(e) => fail(b, &e),
                        Ok(plain) => {
                            for t in &b.targets {
                                let f = &files[t.file];
                                if f.failed.load(Ordering::Relaxed) {
                                    continue;
                                }
                                if let Err(e) = write_at(&f.path, t.offset, &plain) {
                                    fail(b, &e);
                                } else {
                                    written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                                    progress.add(0, plain.len() as u64);
                                }
                            }
                        }
                    }
                }
            }
        }
        start = end;
    }
}

fn write_at(path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all_at(data, offset).map_err(|e| Error::io(path, e))
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn to_filetime(t: Timestamp) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(t.0, t.1)
}

/// Sets owner (when root), mode (not on symlinks) and times, without following symlinks.
fn apply_metadata(path: &Path, node: &Node, is_root: bool) -> Result<()> {
    if is_root {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
            .map_err(|e| Error::io(path, e))?;
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode))
            .map_err(|e| Error::io(path, e))?;
    }
    let mtime = to_filetime(node.mtime);
    let atime = node.atime.map(to_filetime).unwrap_or(mtime);
    filetime::set_symlink_file_times(path, atime, mtime).map_err(|e| Error::io(path, e))
}
