//! Restore: recreates files from a recovery point, exactly.
//!
//! 1. Plan (no disk access): walk the trees, apply include/exclude patterns, and decide what
//!    each entry needs given what is already in the target (`--overwrite`).
//! 2. Structure: remove what is in the way, create directories, symlinks, special files, and
//!    empty files of the right length (their holes are the sparse parts).
//! 3. Data: workers take one pack at a time, read its needed blobs in coalesced ranges, verify
//!    each blob, and write it with positional writes. Unverified bytes are never written, and
//!    all-zero blobs are not written at all, which recreates holes.
//! 4. Hard links, then metadata: owner (by name unless `--numeric-owner`), mode, extended
//!    attributes and ACLs, times; directories after their contents, deepest first.
//! 5. Optionally, verification: every restored file is read back and hashed.
//!
//! Nothing is ever written through a symlink: anything that is not a directory where the
//! recovery point has a directory is removed first, files are created with `O_EXCL|O_NOFOLLOW`,
//! and names that could step outside their directory are refused.

mod plan;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::backend::FileType;
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::id::Id;
use crate::metadata::OwnerNames;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Timestamp};

use plan::{Action, Planned};

/// Gap between two needed blobs of a pack below which one read covers both.
const COALESCE_GAP: u64 = 256 * 1024;

/// What to do with a file that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Rewrite every file.
    Always,
    /// Rewrite files whose type, size or modification time differ (metadata is always set).
    #[default]
    IfChanged,
    /// Leave existing entries untouched.
    Never,
}

impl std::str::FromStr for Overwrite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "never" => Ok(Overwrite::Never),
            _ => Err(Error::InvalidInput(format!(
                "invalid --overwrite {s:?}: use always, if-changed or never"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub threads: usize,
    pub overwrite: Overwrite,
    /// Remove entries in restored directories that the recovery point does not have.
    pub delete: bool,
    /// Restore only paths matching these patterns (and the directories leading to them).
    pub includes: PathFilter,
    /// Leave out paths matching these patterns.
    pub excludes: PathFilter,
    /// Set owners by number only, ignoring recorded user and group names.
    pub numeric_owner: bool,
    /// Read every restored file back and check it against the stored ids.
    pub verify: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            overwrite: Overwrite::default(),
            delete: false,
            includes: PathFilter::default(),
            excludes: PathFilter::default(),
            numeric_owner: false,
            verify: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct RestoreSummary {
    pub files: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub links: u64,
    pub hardlinks: u64,
    pub special: u64,
    pub deleted: u64,
    pub bytes: u64,
    pub bytes_verified: u64,
    /// One message per item that could not be restored exactly.
    pub errors: Vec<String>,
    /// Files left out because their stored data was missing or failed verification.
    pub integrity_errors: u64,
    /// Things worth knowing that are not errors (e.g. sockets are recorded, not recreated).
    pub notes: Vec<String>,
}

/// A regular file whose data is written by this restore.
struct FileJob {
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Restores `node` (a directory's contents, or one entry) into `target`. `node_path` is the
/// node's path inside the recovery point, which include and exclude patterns are matched on.
pub fn restore(
    repo: &Repository,
    node: &Node,
    node_path: &str,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let Planned { actions, deletions, mut summary } =
        plan::plan(repo, node, node_path, target, opts)?;

    // Structure, in pre-order so that parents exist before children.
    for path in &deletions {
        match remove_existing(path) {
            Ok(()) => summary.deleted += 1,
            Err(e) => summary.errors.push(e.to_string()),
        }
    }
    let mut files = Vec::new();
    let mut hardlinks = Vec::new();
    let mut finish = Vec::new();
    for action in actions {
        let made = match &action {
            Action::Dir { path, existed, .. } => create_dir(path, *existed),
            Action::File { path, node, write_data, existed } => {
                if *write_data {
                    create_file(path, node.size, *existed).map(|()| {
                        files.push(FileJob {
                            path: path.clone(),
                            node: node.clone(),
                            failed: AtomicBool::new(false),
                        })
                    })
                } else {
                    summary.files_unchanged += 1;
                    Ok(())
                }
            }
            Action::HardLink { .. } => Ok(()),
            Action::Symlink { path, node } => create_symlink(path, node),
            Action::Special { path, node } => create_special(path, node),
        };
        match made {
            Ok(()) => match action {
                Action::HardLink { path, primary } => hardlinks.push((path, primary)),
                Action::Dir { path, node, .. } => {
                    summary.dirs += 1;
                    finish.push((path, node));
                }
                Action::Symlink { path, node } => {
                    summary.links += 1;
                    finish.push((path, node));
                }
                Action::Special { path, node } => {
                    summary.special += 1;
                    finish.push((path, node));
                }
                Action::File { path, node, write_data, .. } => {
                    if !write_data {
                        finish.push((path, node));
                    }
                }
            },
            Err(e) => summary.errors.push(e.to_string()),
        }
    }

    // Restoring a directory's contents makes the target a copy of that directory, so it takes
    // the directory's own metadata too (the virtual root above the sources has none).
    if node.kind == NodeKind::Dir && !node.name.0.is_empty() {
        finish.push((target.to_path_buf(), node.clone()));
    }

    write_data(repo, &files, opts, progress, &mut summary);

    for (path, primary) in &hardlinks {
        let linked = remove_existing(path)
            .and_then(|()| fs::hard_link(primary, path).map_err(|e| Error::io(path, e)));
        match linked {
            Ok(()) => summary.hardlinks += 1,
            Err(e) => summary.errors.push(e.to_string()),
        }
    }

    let owners = OwnerNames::default();
    let root = is_root();
    let mut finished_files = Vec::new();
    for f in &files {
        if f.failed.load(Ordering::Relaxed) {
            summary.integrity_errors += 1;
            // Never leave a file with content that could not be verified.
            let _ = fs::remove_file(&f.path);
            continue;
        }
        summary.files += 1;
        finished_files.push((f.path.clone(), f.node.clone()));
    }
    // Files and links first; then directories, deepest first, so that setting a directory's
    // times and (possibly read-only) mode comes after everything inside it is done.
    finish
        .sort_by_key(|(p, n)| (n.kind == NodeKind::Dir, std::cmp::Reverse(p.components().count())));
    let first_dir =
        finish.iter().position(|(_, n)| n.kind == NodeKind::Dir).unwrap_or(finish.len());
    let (not_dirs, dirs) = finish.split_at(first_dir);
    // Files and links are independent of each other: their metadata goes on in parallel (a
    // few system calls each, 200,000 files are seconds of them).
    let apply = |(path, node): &(PathBuf, Node)| {
        apply_metadata(path, node, root, opts.numeric_owner, &owners).err().map(|e| e.to_string())
    };
    let items: Vec<&(PathBuf, Node)> = finished_files.iter().chain(not_dirs).collect();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Some(e) = apply(item) {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                    }
                }
            });
        }
    });
    summary.errors.extend(failures.into_inner().unwrap_or_else(|p| p.into_inner()));
    summary.errors.extend(dirs.iter().filter_map(apply));

    if opts.verify {
        verify_files(repo, &files, opts.threads, &mut summary);
    }
    Ok(summary)
}

fn write_data(
    repo: &Repository,
    files: &[FileJob],
    opts: &RestoreOptions,
    progress: &dyn Progress,
    summary: &mut RestoreSummary,
) {
    // Map blobs to where they go, grouped by pack.
    let index = repo.index();
    let mut by_pack: HashMap<u32, HashMap<Id, BlobPlan>> = HashMap::new();
    let mut total_bytes = 0u64;
    for (i, f) in files.iter().enumerate() {
        let mut offset = 0u64;
        for id in &f.node.content {
            let Some(loc) = index.get_readable(id) else {
                summary.errors.push(format!("{}: blob {id} is not in the index", f.path.display()));
                f.failed.store(true, Ordering::Relaxed);
                break;
            };
            let plan = by_pack.entry(loc.pack).or_default().entry(*id).or_insert(BlobPlan {
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
    let written = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, blobs)) = packs.get(i) else { break };
                    restore_pack(repo, *pack, blobs, files, &errors, &written, progress);
                }
            });
        }
    });
    summary.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    summary.bytes = written.load(Ordering::Relaxed);
}

fn restore_pack(
    repo: &Repository,
    pack: u32,
    blobs: &[BlobPlan],
    files: &[FileJob],
    errors: &Mutex<Vec<String>>,
    written: &AtomicU64,
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
            .read_range(FileType::Pack, &pack_id.to_hex(), range_start, range_end - range_start)
            .map_err(|e| match e {
                Error::ObjectNotFound { .. } => {
                    Error::corrupt(format!("pack {pack_id}"), "missing from storage")
                }
                Error::Corrupt { reason, .. } => Error::corrupt(format!("pack {pack_id}"), reason),
                other => other,
            });
        let mut data = match read {
            Ok(d) => d,
            Err(e) if repo.backend().replicas() > 1 => {
                // Another location may have a good copy: fetch blob by blob from there.
                let _ = e;
                Vec::new()
            }
            Err(e) => {
                blobs[start..end].iter().for_each(|b| fail(b, &e));
                start = end;
                continue;
            }
        };
        for b in &blobs[start..end] {
            let at = (b.offset as u64 - range_start) as usize;
            let sealed = data.get_mut(at..at + b.length as usize).unwrap_or(&mut []);
            let opened = blob::open_blob_in_place(
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
            let opened = match opened {
                Err(e) if repo.backend().replicas() > 1 => {
                    repo.read_blob(BlobType::Data, &b.id).map(Cow::Owned).map_err(|_| e)
                }
                other => other,
            };
            let plain = match opened {
                Ok(p) => p,
                Err(e) => {
                    fail(b, &e);
                    continue;
                }
            };
            for t in &b.targets {
                let f = &files[t.file];
                if f.failed.load(Ordering::Relaxed) {
                    continue;
                }
                let result = write_at(&f.path, t.offset, &plain);
                match result {
                    Err(e) => fail(b, &e),
                    Ok(()) => {
                        written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                        progress.add(0, plain.len() as u64);
                    }
                }
            }
        }
        start = end;
    }
}

fn verify_files(
    repo: &Repository,
    files: &[FileJob],
    threads: usize,
    summary: &mut RestoreSummary,
) {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let bytes = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    if f.failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    match verify_file(repo, &f.path, &f.node) {
                        Ok(n) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.integrity_errors += errors.len() as u64;
    summary.errors.extend(errors);
    summary.bytes_verified = bytes.load(Ordering::Relaxed);
}

/// Reads a restored file back and checks each stretch against its blob id.
fn verify_file(repo: &Repository, path: &Path, node: &Node) -> std::result::Result<u64, String> {
    let fail = |why: String| format!("{}: verification failed: {why}", path.display());
    // O_NOATIME: reading back must not change the access time just restored.
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .map_err(|e| fail(e.to_string()))?;
    let mut total = 0u64;
    let mut buf = Vec::new();
    for id in &node.content {
        let loc =
            repo.index().get_readable(id).ok_or_else(|| fail(format!("blob {id} not indexed")))?;
        buf.resize(loc.raw_len as usize, 0);
        f.read_exact(&mut buf).map_err(|e| fail(format!("{e} at byte {total}")))?;
        if repo.hasher().hash(&buf) != *id {
            return Err(fail(format!(
                "content differs at bytes {total}..{}",
                total + buf.len() as u64
            )));
        }
        total += buf.len() as u64;
    }
    let mut extra = [0u8; 1];
    if f.read(&mut extra).map_err(|e| fail(e.to_string()))? != 0 {
        return Err(fail(format!("longer than the recorded {total} bytes")));
    }
    Ok(total)
}

/// Creates a directory; `existed`: the plan found something at `path` (else it is not looked at).
fn create_dir(path: &Path, existed: bool) -> Result<()> {
    if !existed {
        return fs::create_dir(path).map_err(|e| Error::io(path, e));
    }
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            remove_existing(path)?;
            fs::create_dir(path).map_err(|e| Error::io(path, e))
        }
        Err(_) => fs::create_dir(path).map_err(|e| Error::io(path, e)),
    }
}

/// Removes whatever is at `path` (never following a symlink).
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {
            make_writable_tree(path);
            fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}

/// Read-only directories (restored from an earlier run) must be writable to be emptied.
fn make_writable_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                make_writable_tree(&e.path());
            }
        }
    }
}

/// Creates a regular file of `size` bytes (all holes) without following a symlink in its place;
/// `existed`: the plan found something at `path` to remove first.
fn create_file(path: &Path, size: u64, existed: bool) -> Result<()> {
    if existed {
        remove_existing(path)?;
    }
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(size).map_err(|e| Error::io(path, e))
}

fn create_symlink(path: &Path, node: &Node) -> Result<()> {
    let target = node.target.clone().unwrap_or_default();
    if let Ok(existing) = fs::read_link(path)
        && existing.as_os_str() == target.as_os_str()
    {
        return Ok(());
    }
    remove_existing(path)?;
    std::os::unix::fs::symlink(target.as_os_str(), path).map_err(|e| Error::io(path, e))
}

fn create_special(path: &Path, node: &Node) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    remove_existing(path)?;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidInput(format!("{}: NUL in path", path.display())))?;
    let mode = (node.mode & 0o7777) as libc::mode_t;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe {
        match node.kind {
            NodeKind::Fifo => libc::mkfifo(c.as_ptr(), mode),
            NodeKind::Chardev => {
                libc::mknod(c.as_ptr(), libc::S_IFCHR | mode, node.rdev.unwrap_or(0) as libc::dev_t)
            }
            NodeKind::Blockdev => {
                libc::mknod(c.as_ptr(), libc::S_IFBLK | mode, node.rdev.unwrap_or(0) as libc::dev_t)
            }
            _ => return Ok(()),
        }
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) { " (devices need root)" } else { "" };
        return Err(Error::InvalidInput(format!("{}: {e}{hint}", path.display())));
    }
    Ok(())
}

/// Block size below which zero runs are written rather than skipped.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset`, skipping all-zero 4 KiB blocks: files are created empty at their
/// full length, so the zeros are already there, as holes. This is what recreates sparse files.
fn write_at(path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    if data.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut run_start: Option<usize> = None;
    for (i, block) in data.chunks(HOLE_BLOCK).enumerate() {
        let at = i * HOLE_BLOCK;
        let zero = block.len() == HOLE_BLOCK && block.iter().all(|&b| b == 0);
        match (zero, run_start) {
            (false, None) => run_start = Some(at),
            (true, Some(start)) => {
                f.write_all_at(&data[start..at], offset + start as u64)
                    .map_err(|e| Error::io(path, e))?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        f.write_all_at(&data[start..], offset + start as u64).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

fn to_filetime(t: Timestamp) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(t.0, t.1)
}

/// Sets owner (when root), mode (not on symlinks), extended attributes and times, never
/// following a symlink. Owner comes first because chown clears setuid and setgid bits.
fn apply_metadata(
    path: &Path,
    node: &Node,
    is_root: bool,
    numeric_owner: bool,
    owners: &OwnerNames,
) -> Result<()> {
    if is_root {
        let (mut uid, mut gid) = (node.uid, node.gid);
        if !numeric_owner {
            uid = node.user.as_deref().and_then(|u| owners.uid(u)).unwrap_or(uid);
            gid = node.group.as_deref().and_then(|g| owners.gid(g)).unwrap_or(gid);
        }
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| Error::io(path, e))?;
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode))
            .map_err(|e| Error::io(path, e))?;
    }
    if node.kind != NodeKind::Symlink || !node.xattrs.is_empty() {
        crate::metadata::write_xattrs(path, &node.xattrs).map_err(|e| {
            Error::InvalidInput(format!("{}: extended attributes: {e}", path.display()))
        })?;
    }
    let mtime = to_filetime(node.mtime);
    let atime = node.atime.map(to_filetime).unwrap_or(mtime);
    filetime::set_symlink_file_times(path, atime, mtime).map_err(|e| Error::io(path, e))
}
