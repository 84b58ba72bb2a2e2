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
//! Nothing is ever written outside the target, even while someone races the restore: every
//! entry is reached through descriptors below the target without crossing a symlink (see
//! `beneath`), files are created with `O_EXCL|O_NOFOLLOW` and reopened for their data only if
//! they are still the same inode, and names that could step outside their directory are
//! refused by the plan.

mod beneath;
mod plan;

pub use plan::refused_entries;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::backend::FileType;
use crate::blob::{self, BlobType};
use crate::error::{Error, Object, Result};
use crate::filter::PathFilter;
use crate::id::Id;
use crate::metadata::OwnerNames;
use crate::parallel::run_parallel;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Timestamp};

use beneath::{Beneath, EntryMetadata, Inode};
use plan::Action;

/// Gap between two needed blobs of a pack below which one read covers both.
const COALESCE_GAP: u64 = 256 * 1024;
/// Longest single read from a pack.
const MAX_READ: u64 = 4 * 1024 * 1024;

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
    /// Files and bytes to expect, when known beforehand (a whole recovery point's summary);
    /// otherwise the progress totals grow as the plan is made, batch by batch.
    pub expected_totals: Option<(u64, u64)>,
    /// Recreate what gives privileges when root restores: setuid and setgid bits, device nodes,
    /// and the `security.capability` and `trusted.*` extended attributes. Off
    /// (`--no-privileged`) for a recovery point another host may have written.
    pub privileged: bool,
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
            expected_totals: None,
            privileged: true,
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
    /// The target's file system filled up: the restore stopped at this error (the only one
    /// reported for it), keeping what was complete and removing what was not.
    pub no_space: Option<String>,
}

impl RestoreSummary {
    /// Adds what another part of the same restore counted and met.
    fn absorb(&mut self, other: RestoreSummary) {
        self.files += other.files;
        self.files_unchanged += other.files_unchanged;
        self.dirs += other.dirs;
        self.links += other.links;
        self.hardlinks += other.hardlinks;
        self.special += other.special;
        self.deleted += other.deleted;
        self.bytes += other.bytes;
        self.bytes_verified += other.bytes_verified;
        self.no_space = self.no_space.take().or(other.no_space);
        self.errors.extend(other.errors);
        self.integrity_errors += other.integrity_errors;
        self.notes.extend(other.notes);
    }
}

/// Why a file was not completed.
const FAILED_DATA: u8 = 1;
const FAILED_TARGET: u8 = 2;

/// A regular file whose data is written by this restore.
struct FileJob {
    path: PathBuf,
    node: Node,
    /// The file this restore created, which alone may receive the data.
    inode: Inode,
    /// 0, or why it failed: its stored data ([`FAILED_DATA`]) or writing it ([`FAILED_TARGET`]).
    failed: AtomicU8,
    /// A file of one blob: the writer of that blob also sets its metadata, through the file it
    /// has open, instead of a later pass looking the path up for each attribute. (Creating it
    /// there too was tried: creations in one directory on several threads contend for its lock,
    /// and ext4 spins on it, 7% of a restore's CPU; they stay in the serial structure phase.)
    one_blob: bool,
}

/// What setting a restored entry's metadata needs besides the entry.
#[derive(Clone, Copy)]
struct MetadataRules<'a> {
    /// Owners are set only by root.
    root: bool,
    numeric_owner: bool,
    owners: &'a OwnerNames,
    /// See [`RestoreOptions::privileged`].
    privileged: bool,
    beneath: &'a Beneath,
    /// Without root: this process's (uid, gid), which every entry gets, and how many entries
    /// belonged to others and how many of those lost setuid/setgid bits (reported once).
    unprivileged: Option<(u32, u32, &'a ForeignOwners)>,
}

/// What a restore without root met: entries owned by others, and set-id bits it cleared.
#[derive(Default)]
struct ForeignOwners {
    entries: AtomicU64,
    setid_cleared: AtomicU64,
}
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
    let started = std::time::Instant::now();
    let result =
        restore_in_batches(repo, node, node_path, target, opts, progress, plan::BATCH_WEIGHT);
    let mut event = crate::audit::Event::new("restore")
        .arg(node_path)
        .arg(target.display().to_string())
        .outcome(&result)
        .figure("seconds", started.elapsed().as_secs_f64());
    if let Ok(s) = &result {
        event = event.figure("files", s.files as f64).figure("bytes", s.bytes as f64);
    }
    repo.audit(event);
    result
}

fn restore_in_batches(
    repo: &Repository,
    node: &Node,
    node_path: &str,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    batch_weight: usize,
) -> Result<RestoreSummary> {
    let beneath = &Beneath::open(target)?;
    if let Some((files, bytes)) = opts.expected_totals {
        progress.set_total(files, bytes);
    }
    let owners = OwnerNames::default();
    let no_space = AtomicBool::new(false);
    let no_space = &no_space;
    let foreign_owners = ForeignOwners::default();
    let mut run = Run {
        repo,
        opts,
        progress,
        summary: RestoreSummary::default(),
        owners: &owners,
        root: is_root(),
        planned: (0, 0),
        beneath,
        failed_primaries: HashMap::new(),
        no_space,
        foreign_owners: &foreign_owners,
    };
    // The plan and the structure of the next batch are made while the writers fill the files
    // of this one. Both are serial (the entries of a directory are created one at a time
    // anyway) and would otherwise leave a core idle.
    let (tx, rx) = crossbeam_channel::bounded::<Prepared>(1);
    let prepare = move || {
        let mut dirs = Vec::new();
        let mut failed_dirs = Vec::new();
        let planned = plan::plan(repo, node, node_path, target, opts, batch_weight, &mut |b| {
            let prepared = make_structure(b, beneath, opts, no_space, &mut dirs, &mut failed_dirs);
            // Fails only if the receiving side is unwinding from a panic.
            let _ = tx.send(prepared);
        });
        (planned, dirs)
    };
    let (planned, mut dirs) = std::thread::scope(|s| -> Result<_> {
        let preparer = crate::parallel::spawn_deep(s, "restore-plan", prepare)
            .map_err(|e| Error::io(target, e))?;
        for prepared in &rx {
            run.complete(prepared);
        }
        Ok(preparer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })?;
    planned?;

    // Restoring a directory's contents makes the target a copy of that directory, metadata
    // included (an in-place restore of /etc gives /etc its recorded mode and times). The whole
    // point's virtual root above the sources (named `/`, which no entry can be) has none to
    // give: the target keeps its own, so a restore into `/` or a home never changes their
    // owner, mode or times.
    if node.kind == NodeKind::Dir && crate::tree::is_safe_name(&node.name.0) {
        dirs.push((target.to_path_buf(), node.clone()));
    }
    // Directories last, deepest first: their times and (possibly read-only) modes are set
    // after everything inside them is done.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in &dirs {
        if let Err(e) = apply_metadata(path, node, &run.rules()) {
            run.summary.errors.push(e.to_string());
        }
    }
    let foreign = foreign_owners.entries.load(Ordering::Relaxed);
    if foreign > 0 {
        let cleared = foreign_owners.setid_cleared.load(Ordering::Relaxed);
        run.summary.notes.push(format!(
            "{foreign} entries belong to other users in the recovery point; without root they \
             are owned by you{}",
            if cleared > 0 {
                format!(", and {cleared} of them had their setuid/setgid bits cleared")
            } else {
                String::new()
            }
        ));
    }
    Ok(run.summary)
}

/// One restore under way: what is kept from batch to batch.
struct Run<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    summary: RestoreSummary,
    owners: &'a OwnerNames,
    root: bool,
    /// Files and bytes planned so far, the progress totals when none were given.
    planned: (u64, u64),
    beneath: &'a Beneath,
    /// Multiply linked files that failed, with how: their other names are not linked to them.
    failed_primaries: HashMap<PathBuf, u8>,
    /// Set at the first "no space left": nothing more is attempted.
    no_space: &'a AtomicBool,
    foreign_owners: &'a ForeignOwners,
}

/// One batch of the plan whose structure exists: what is left is its data, hard links and
/// metadata.
struct Prepared {
    files: Vec<FileJob>,
    /// (link, primary) pairs.
    hardlinks: Vec<(PathBuf, PathBuf)>,
    /// Entries complete but for their metadata: unchanged files, symlinks, special files.
    finish: Vec<(PathBuf, Node)>,
    /// What making the structure counted and met.
    summary: RestoreSummary,
}

/// Makes one batch's structure in tree order (parents exist before children, here or in an
/// earlier batch): deletions, directories, empty files at their full length, symlinks and
/// special files. The directories made are added to `dirs`, whose metadata comes last; those
/// that could not be made to `failed_dirs`, whose contents are skipped with one message.
fn make_structure(
    batch: plan::Batch,
    beneath: &Beneath,
    opts: &RestoreOptions,
    no_space: &AtomicBool,
    dirs: &mut Vec<(PathBuf, Node)>,
    failed_dirs: &mut Vec<PathBuf>,
) -> Prepared {
    let mut summary =
        RestoreSummary { errors: batch.errors, notes: batch.notes, ..Default::default() };
    let (mut files, mut hardlinks, mut finish) = (Vec::new(), Vec::new(), Vec::new());
    if no_space.load(Ordering::Relaxed) {
        return Prepared { files, hardlinks, finish, summary };
    }
    for path in &batch.deletions {
        match beneath.remove(path) {
            Ok(()) => summary.deleted += 1,
            Err(e) => summary.errors.push(e.to_string()),
        }
    }
    for action in batch.actions {
        if no_space.load(Ordering::Relaxed) {
            break;
        }
        if failed_dirs.iter().any(|d| action.path().starts_with(d)) {
            continue;
        }
        let made = match action {
            Action::Dir { path, node, existed } => match beneath.create_dir(&path, existed) {
                Ok(()) => {
                    summary.dirs += 1;
                    dirs.push((path, node));
                    Ok(())
                }
                Err(e) if e.is_storage_full() => {
                    summary.no_space = first_no_space(no_space, &e);
                    break;
                }
                Err(e) => {
                    summary.errors.push(format!("{e} (its contents were not restored)"));
                    failed_dirs.push(path);
                    continue;
                }
            },
            Action::File { path, node, write_data: true, existed } => {
                beneath.create_file(&path, node.size, existed).map(|inode| {
                    let one_blob = node.content.len() == 1;
                    let failed = AtomicU8::new(0);
                    files.push(FileJob { path, node, inode, failed, one_blob })
                })
            }
            Action::File { path, node, write_data: false, .. } => {
                summary.files_unchanged += 1;
                finish.push((path, node));
                Ok(())
            }
            Action::HardLink { path, primary } => {
                hardlinks.push((path, primary));
                Ok(())
            }
            Action::Symlink { path, node } => {
                let target = node.target.clone().unwrap_or_default();
                beneath.create_symlink(&path, target.as_os_str()).map(|()| {
                    summary.links += 1;
                    finish.push((path, node));
                })
            }
            Action::Special { path, node }
                if !opts.privileged
                    && matches!(node.kind, NodeKind::Chardev | NodeKind::Blockdev) =>
            {
                summary.notes.push(format!(
                    "{}: device node not recreated (--no-privileged)",
                    path.display()
                ));
                Ok(())
            }
            Action::Special { path, node } => create_special(beneath, &path, &node).map(|()| {
                summary.special += 1;
                finish.push((path, node));
            }),
        };
        match made {
            Err(e) if e.is_storage_full() => summary.no_space = first_no_space(no_space, &e),
            Err(e) => summary.errors.push(e.to_string()),
            Ok(()) => {}
        }
    }
    Prepared { files, hardlinks, finish, summary }
}

/// The message of the first "no space left" of the restore, which stops it (`None` for later
/// ones: they are the same news).
fn first_no_space(flag: &AtomicBool, e: &Error) -> Option<String> {
    (!flag.swap(true, Ordering::Relaxed)).then(|| e.to_string())
}

impl<'a> Run<'a> {
    /// Completes one batch whose structure exists: data, hard links, then the metadata of all
    /// but directories.
    fn complete(&mut self, batch: Prepared) {
        let Prepared { files, hardlinks, finish, summary } = batch;
        self.summary.absorb(summary);
        self.write_data(&files);
        let rules = self.rules();
        let summary = &mut self.summary;

        // Failed files go before any link is made to them: a link must never keep a
        // half-written file alive under another name.
        for f in &files {
            match f.failed.load(Ordering::Relaxed) {
                0 => summary.files += 1,
                failure => {
                    if failure == FAILED_DATA {
                        summary.integrity_errors += 1;
                    }
                    // Never leave a file with content that could not be verified.
                    self.beneath.remove_file(&f.path);
                }
            }
        }
        // Kept for the whole restore: a file's other names may come in a later batch.
        for f in files.iter().filter(|f| f.node.links > 1) {
            let failure = f.failed.load(Ordering::Relaxed);
            if failure != 0 {
                self.failed_primaries.insert(f.path.clone(), failure);
            }
        }
        for (path, primary) in hardlinks.iter().filter(|_| !self.no_space.load(Ordering::Relaxed)) {
            if let Some(&failure) = self.failed_primaries.get(primary) {
                // Another name of the same damaged file: not restored either, and counted.
                if failure == FAILED_DATA {
                    summary.integrity_errors += 1;
                }
                summary.errors.push(format!(
                    "{}: not restored: it is another name of {}, whose data {}",
                    path.display(),
                    primary.display(),
                    if failure == FAILED_DATA {
                        "failed verification"
                    } else {
                        "could not be written"
                    }
                ));
                continue;
            }
            match self.beneath.hard_link(primary, path) {
                Ok(()) => summary.hardlinks += 1,
                Err(e) => summary.errors.push(e.to_string()),
            }
        }
        // Files and links are independent of each other: their metadata goes on in parallel
        // (a few system calls each, 200,000 files are seconds of them).
        let items: Vec<(&Path, &Node)> = files
            .iter()
            .filter(|f| !f.one_blob && f.failed.load(Ordering::Relaxed) == 0)
            .map(|f| (f.path.as_path(), &f.node))
            .chain(finish.iter().map(|(p, n)| (p.as_path(), n)))
            .collect();
        let failures = run_parallel(self.opts.threads, &items, |_: &mut (), _, (path, node)| {
            apply_metadata(path, node, &rules).err().map(|e| e.to_string())
        });
        summary.errors.extend(failures);

        if self.opts.verify {
            verify_files(self.repo, self.beneath, &files, self.opts.threads, summary);
        }
    }

    fn rules(&self) -> MetadataRules<'a> {
        MetadataRules {
            root: self.root,
            numeric_owner: self.opts.numeric_owner,
            owners: self.owners,
            privileged: self.opts.privileged,
            beneath: self.beneath,
            unprivileged: (!self.root).then(|| {
                // SAFETY: geteuid and getegid have no preconditions and cannot fail.
                let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
                (uid, gid, self.foreign_owners)
            }),
        }
    }

    fn write_data(&mut self, files: &[FileJob]) {
        let (repo, progress, rules) = (self.repo, self.progress, self.rules());
        let index = repo.index();
        let summary = &mut self.summary;
        // Map blobs to where they go, grouped by pack.
        let mut by_pack: HashMap<u32, HashMap<Id, BlobPlan>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let mut offset = 0u64;
            for id in &f.node.content {
                let Some(loc) = index.get_readable(id) else {
                    summary
                        .errors
                        .push(format!("{}: blob {id} is not in the index", f.path.display()));
                    f.failed.store(FAILED_DATA, Ordering::Relaxed);
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
            // A size that disagrees with the content would leave a zero-filled or cut file.
            if offset != f.node.size && f.failed.load(Ordering::Relaxed) == 0 {
                summary.errors.push(format!(
                    "{}: the recovery point records {} bytes, its content holds {offset}: not \
                     well formed (see `aeon check`)",
                    f.path.display(),
                    f.node.size
                ));
                f.failed.store(FAILED_DATA, Ordering::Relaxed);
            }
            self.planned.1 += offset;
        }
        self.planned.0 += files.len() as u64;
        if self.opts.expected_totals.is_none() {
            progress.set_total(self.planned.0, self.planned.1);
        }

        let mut packs: Vec<(Id, Vec<BlobPlan>)> = by_pack
            .into_iter()
            .map(|(p, blobs)| {
                let mut v: Vec<BlobPlan> = blobs.into_values().collect();
                v.sort_by_key(|b| b.offset);
                (index.pack(p).id, v)
            })
            .collect();
        packs.sort_by_key(|(id, _)| *id);
        let reads: Vec<PackRead> =
            packs.into_iter().flat_map(|(pack_id, blobs)| split_reads(pack_id, blobs)).collect();

        let errors = Mutex::new(Vec::new());
        let written = AtomicU64::new(0);
        let no_space_message = Mutex::new(None);
        let out = Output {
            files,
            errors: &errors,
            written: &written,
            progress,
            rules,
            no_space: self.no_space,
            no_space_message: &no_space_message,
        };
        let threads = self.opts.threads.max(1);
        run_parallel(self.opts.threads, &reads, |buf, i, read| {
            restore_range(repo, read, reads.get(i + threads), buf, &out);
            None::<()>
        });
        summary.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
        let message = no_space_message.into_inner().unwrap_or_else(|p| p.into_inner());
        summary.no_space = summary.no_space.take().or(message);
        summary.bytes += written.load(Ordering::Relaxed);
    }
}

/// Needed blobs of one stretch of a pack, fetched with one read.
struct PackRead {
    pack_id: Id,
    blobs: Vec<BlobPlan>,
}

impl PackRead {
    /// The bytes of the pack it reads, from its first blob to the end of its last; `None` if it
    /// reads nothing.
    fn range(&self) -> Option<(u64, u64)> {
        let start = self.blobs.first()?.offset as u64;
        let end = self.blobs.iter().map(|b| b.offset as u64 + b.length as u64).max()?;
        Some((start, end))
    }
}

/// Splits a pack's needed blobs (sorted by offset) into reads: a gap under `COALESCE_GAP` is
/// read through rather than paid for with another request, and no read spans more than
/// `MAX_READ`, so that even a batch within one pack keeps every worker busy.
fn split_reads(pack_id: Id, blobs: Vec<BlobPlan>) -> Vec<PackRead> {
    let mut reads: Vec<PackRead> = Vec::new();
    let mut span = (0u64, 0u64);
    for b in blobs {
        let (start, end) = (b.offset as u64, b.offset as u64 + b.length as u64);
        match reads.last_mut() {
            Some(read) if start <= span.1 + COALESCE_GAP && end - span.0 <= MAX_READ => {
                span.1 = span.1.max(end);
                read.blobs.push(b);
            }
            _ => {
                span = (start, end);
                reads.push(PackRead { pack_id, blobs: vec![b] });
            }
        }
    }
    reads
}

/// Where the restore writers put what they read, and what they report.
struct Output<'a> {
    files: &'a [FileJob],
    errors: &'a Mutex<Vec<String>>,
    written: &'a AtomicU64,
    progress: &'a dyn Progress,
    rules: MetadataRules<'a>,
    no_space: &'a AtomicBool,
    no_space_message: &'a Mutex<Option<String>>,
}

/// Restores the blobs of one read; `data`: the thread's read buffer. Once the read is in, storage
/// is asked for `ahead`, the read a worker will take next, so that it arrives while this one is
/// decrypted and written.
fn restore_range(
    repo: &Repository,
    read: &PackRead,
    ahead: Option<&PackRead>,
    data: &mut Vec<u8>,
    out: &Output,
) {
    let (files, errors, written, progress) = (out.files, out.errors, out.written, out.progress);
    let (pack_id, blobs) = (read.pack_id, &read.blobs);
    // A blob that fails fails every file it goes to; a write fails only its file.
    let fail = |b: &BlobPlan, e: &Error| {
        let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
        for t in &b.targets {
            let f = &files[t.file];
            if f.failed.swap(FAILED_DATA, Ordering::Relaxed) == 0 {
                errs.push(format!("{}: {e}", f.path.display()));
            }
        }
    };
    let fail_target = |f: &FileJob, e: &Error| {
        if f.failed.swap(FAILED_TARGET, Ordering::Relaxed) != 0 {
            return;
        }
        if !e.is_storage_full() {
            errors.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        } else if let Some(m) = first_no_space(out.no_space, e) {
            *out.no_space_message.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
        }
    };
    if out.no_space.load(Ordering::Relaxed) {
        for t in blobs.iter().flat_map(|b| &b.targets) {
            files[t.file].failed.store(FAILED_TARGET, Ordering::Relaxed);
        }
        return;
    }
    let Some((range_start, range_end)) = read.range() else { return };
    let (cipher, hasher) = match repo.pack_keys(&pack_id) {
        Ok(keys) => keys,
        Err(e) => {
            blobs.iter().for_each(|b| fail(b, &e));
            return;
        }
    };
    let read = repo
        .backend()
        .read_range_into(
            FileType::Pack,
            &pack_id.to_hex(),
            range_start,
            range_end - range_start,
            data,
        )
        .map_err(|e| match e {
            Error::ObjectNotFound { .. } => {
                Error::corrupt(Object::Pack(pack_id.to_hex()), "missing from storage")
            }
            Error::Corrupt { reason, .. } => Error::corrupt(Object::Pack(pack_id.to_hex()), reason),
            other => other,
        });
    if let Some(next) = ahead
        && let Some((start, end)) = next.range()
    {
        repo.backend().prefetch(FileType::Pack, &next.pack_id.to_hex(), start, end - start);
    }
    match read {
        Ok(()) => {}
        // Another location may have a good copy: fetch blob by blob from there.
        Err(_) if repo.copies() > 1 => data.clear(),
        Err(e) => {
            blobs.iter().for_each(|b| fail(b, &e));
            return;
        }
    };
    for b in blobs {
        let at = (b.offset as u64 - range_start) as usize;
        let sealed = data.get_mut(at..at + b.length as usize).unwrap_or(&mut []);
        let opened =
            blob::open_blob_in_place(&cipher, &hasher, BlobType::Data, &b.id, sealed, b.raw_len)
                .map_err(|e| {
                    let blob = Object::Blob { blob_type: BlobType::Data, id: b.id, pack: None };
                    match e.about(blob) {
                        Error::Corrupt { object: Object::Blob { blob_type, id, .. }, reason } => {
                            let object = Object::Blob { blob_type, id, pack: Some(pack_id) };
                            Error::Corrupt { object, reason }
                        }
                        other => other,
                    }
                });
        let opened = match opened {
            Err(e) if repo.copies() > 1 => {
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
            if out.no_space.load(Ordering::Relaxed) {
                f.failed.store(FAILED_TARGET, Ordering::Relaxed);
            }
            if f.failed.load(Ordering::Relaxed) != 0 {
                continue;
            }
            let wrote = if f.one_blob {
                write_whole_file(f, &plain, &out.rules)
            } else {
                write_at(out.rules.beneath, f, t.offset, &plain).map(|()| None)
            };
            match wrote {
                Err(e) => fail_target(f, &e),
                Ok(metadata_error) => {
                    if let Some(e) = metadata_error {
                        // The content is right: the file stays, the error is reported.
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
                    }
                    written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                    progress.add(0, plain.len() as u64);
                }
            }
        }
    }
}

fn verify_files(
    repo: &Repository,
    beneath: &Beneath,
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
                    if f.failed.load(Ordering::Relaxed) != 0 {
                        continue;
                    }
                    match verify_file(repo, beneath, f) {
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
fn verify_file(
    repo: &Repository,
    beneath: &Beneath,
    job: &FileJob,
) -> std::result::Result<u64, String> {
    let (path, node) = (&job.path, &job.node);
    let fail = |why: String| format!("{}: verification failed: {why}", path.display());
    let mut f = beneath.open_for_reading(path, job.inode).map_err(|e| fail(e.to_string()))?;
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

fn create_special(beneath: &Beneath, path: &Path, node: &Node) -> Result<()> {
    let kind = match node.kind {
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::Chardev => libc::S_IFCHR,
        NodeKind::Blockdev => libc::S_IFBLK,
        _ => return Ok(()),
    };
    beneath.create_special(path, kind, node.mode, node.rdev.unwrap_or(0))
}

/// Block size below which zero runs are written rather than skipped.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `offset`, skipping all-zero 4 KiB blocks: files are created empty at their
/// full length, so the zeros are already there, as holes. This is what recreates sparse files.
fn write_at(beneath: &Beneath, job: &FileJob, offset: u64, data: &[u8]) -> Result<()> {
    if data.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let f = beneath.open_for_data(&job.path, job.inode)?;
    write_skipping_zeros(&f, &job.path, offset, data)
}

/// Writes `data`, the whole content of the file `path` (created at its full length), and sets
/// the file's metadata, through one open file. A failed write is an error (the caller removes
/// the file); a failure to set metadata is returned inside `Ok`, as the content is right.
fn write_whole_file(job: &FileJob, data: &[u8], rules: &MetadataRules) -> Result<Option<Error>> {
    let f = rules.beneath.open_for_data(&job.path, job.inode)?;
    write_skipping_zeros(&f, &job.path, 0, data)?;
    Ok(apply_metadata_to_open_file(&f, &job.path, &job.node, rules).err())
}

fn write_skipping_zeros(f: &File, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
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

/// The owner to give a restored entry: by name where this system knows the name, unless
/// numeric owners were asked for.
fn owner_of(node: &Node, rules: &MetadataRules) -> (u32, u32) {
    let (mut uid, mut gid) = (node.uid, node.gid);
    if !rules.numeric_owner {
        uid = node.user.as_deref().and_then(|u| rules.owners.uid(u)).unwrap_or(uid);
        gid = node.group.as_deref().and_then(|g| rules.owners.gid(g)).unwrap_or(gid);
    }
    (uid, gid)
}

/// The permission bits to set: setuid and setgid only when privileges are restored, and never
/// on an entry whose owner could not be restored (it would be set-id to the restoring user).
fn mode_of(node: &Node, rules: &MetadataRules) -> u32 {
    let mode = node.mode & 0o7777;
    if !rules.privileged {
        return mode & !0o6000;
    }
    if let Some((uid, gid, foreign)) = rules.unprivileged
        && owner_of(node, rules) != (uid, gid)
    {
        foreign.entries.fetch_add(1, Ordering::Relaxed);
        if mode & 0o6000 != 0 {
            foreign.setid_cleared.fetch_add(1, Ordering::Relaxed);
            return mode & !0o6000;
        }
    }
    mode
}

/// The extended attributes to set: `security.capability` and `trusted.*` only when privileges
/// are restored.
fn xattrs_of<'n>(node: &'n Node, rules: &MetadataRules) -> Cow<'n, [crate::tree::Xattr]> {
    if rules.privileged {
        return Cow::Borrowed(&node.xattrs);
    }
    let privileged = |n: &[u8]| n == b"security.capability" || n.starts_with(b"trusted.");
    Cow::Owned(node.xattrs.iter().filter(|x| !privileged(&x.name.0)).cloned().collect())
}

fn timespec(t: Timestamp) -> rustix::fs::Timespec {
    // Nanoseconds beyond a second only come from a crafted tree; the kernel would refuse them.
    rustix::fs::Timespec { tv_sec: t.0, tv_nsec: t.1.min(999_999_999) as _ }
}

/// [`apply_metadata`] for a regular file this restore has created (so it has no extended
/// attributes to remove) and holds open.
fn apply_metadata_to_open_file(
    f: &File,
    path: &Path,
    node: &Node,
    rules: &MetadataRules,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt as _;
    if rules.root {
        let (uid, gid) = owner_of(node, rules);
        std::os::unix::fs::fchown(f, Some(uid), Some(gid)).map_err(|e| Error::io(path, e))?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode_of(node, rules)))
        .map_err(|e| Error::io(path, e))?;
    for x in xattrs_of(node, rules).iter() {
        f.set_xattr(x.name.as_os_str(), &x.value.0).map_err(|e| {
            Error::InvalidInput(format!("{}: extended attributes: {e}", path.display()))
        })?;
    }
    // Straight to futimens: the std conversion through SystemTime panics on times far out.
    let times = rustix::fs::Timestamps {
        last_access: timespec(node.atime.unwrap_or(node.mtime)),
        last_modification: timespec(node.mtime),
    };
    rustix::fs::futimens(f, &times).map_err(|e| Error::io(path, e.into()))
}

/// Sets owner (when root), mode (not on symlinks), extended attributes and times, through the
/// restore's descriptors (never following a symlink, never outside the target).
fn apply_metadata(path: &Path, node: &Node, rules: &MetadataRules) -> Result<()> {
    let xattrs = xattrs_of(node, rules);
    let meta = EntryMetadata {
        symlink: node.kind == NodeKind::Symlink,
        owner: rules.root.then(|| owner_of(node, rules)),
        mode: mode_of(node, rules),
        xattrs: &xattrs,
        atime: timespec(node.atime.unwrap_or(node.mtime)),
        mtime: timespec(node.mtime),
    };
    rules.beneath.set_metadata(path, &meta)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    use super::*;
    use crate::archiver::{self, BackupOptions};
    use crate::backend::LocalBackend;
    use crate::keys::KdfParams;
    use crate::progress::NoProgress;
    use crate::repository::InitOptions;

    /// Every entry below `root`: relative path -> (kind and content or link target, mtime).
    fn listing(root: &Path) -> BTreeMap<PathBuf, (String, i64)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let md = fs::symlink_metadata(&path).unwrap();
                let what = if md.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else if md.is_symlink() {
                    format!("link {}", fs::read_link(&path).unwrap().display())
                } else {
                    format!("file {}", String::from_utf8_lossy(&fs::read(&path).unwrap()))
                };
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), (what, md.mtime()));
            }
        }
        out
    }

    /// A tree of more entries than the smallest batches hold, with a hard link whose two names
    /// fall in different batches, a deep file alone in its directories, and an empty directory.
    fn source() -> tempfile::TempDir {
        let src = tempfile::tempdir().unwrap();
        let p = src.path();
        for d in ["a", "a/deep/x/y", "b", "empty"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        for i in 0..12 {
            fs::write(p.join(format!("a/f{i}")), format!("file {i} ").repeat(i * 50)).unwrap();
            fs::write(p.join(format!("b/g{i}")), format!("other {i}")).unwrap();
        }
        fs::write(p.join("a/deep/x/y/only"), b"deep").unwrap();
        fs::hard_link(p.join("a/f3"), p.join("b/zz-link")).unwrap();
        std::os::unix::fs::symlink("../a/f1", p.join("b/sym")).unwrap();
        for d in ["a/deep/x/y", "a/deep/x", "a/deep", "a", "b", "empty"] {
            let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
            filetime::set_file_mtime(p.join(d), t).unwrap();
        }
        src
    }

    fn backed_up(src: &Path, repo_dir: &Path) -> (Repository, Node, String) {
        let init = InitOptions {
            kdf: KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 },
            ..InitOptions::default()
        };
        let backend = Arc::new(LocalBackend::new(repo_dir));
        let repo = Repository::init(backend, b"pw", init).unwrap();
        let mut repo =
            repo.lock(crate::lock::LockKind::Shared, "test").unwrap().load_index().unwrap();
        let done =
            archiver::backup(&repo, &BackupOptions::new(vec![src.to_path_buf()]), &NoProgress)
                .unwrap();
        repo.reload_index().unwrap();
        let path = src.display().to_string();
        let node = repo.find_node(&done.snapshot.tree, &path).unwrap();
        (repo, node, path)
    }

    /// Both names of a hard-linked file whose data is lost are left out and reported, whether
    /// or not they fall in the same batch: none is left as a zero-filled file.
    #[test]
    fn every_name_of_a_file_whose_data_failed_is_left_out_and_reported() {
        let src = source();
        let work = tempfile::tempdir().unwrap();
        let (mut repo, node, path) = backed_up(src.path(), &work.path().join("repo"));
        let f3 = repo.find_node(&node.subtree.unwrap(), "a/f3").unwrap();
        for file in repo.read_index_files().unwrap() {
            let (old, mut file) = file.unwrap();
            file.packs.iter_mut().for_each(|p| p.blobs.retain(|b| b.id != f3.content[0]));
            file.supersedes = vec![old];
            repo.write_index_file(&file).unwrap();
        }
        repo.reload_index().unwrap();
        for weight in [1, 2, 3, 7, plan::BATCH_WEIGHT] {
            let target = work.path().join(format!("t{weight}"));
            let opts = RestoreOptions { verify: true, ..RestoreOptions::default() };
            let s = restore_in_batches(&repo, &node, &path, &target, &opts, &NoProgress, weight)
                .unwrap();
            assert!(!target.join("a/f3").exists() && !target.join("b/zz-link").exists());
            assert_eq!(s.integrity_errors, 2, "weight {weight}: {:?}", s.errors);
            assert!(s.errors.iter().any(|e| e.contains("zz-link")), "{:?}", s.errors);
            assert_eq!((s.files, s.hardlinks), (24, 0), "weight {weight}");
        }
    }

    #[test]
    fn batches_of_any_size_restore_the_same_tree() {
        let src = source();
        let work = tempfile::tempdir().unwrap();
        let (repo, node, path) = backed_up(src.path(), &work.path().join("repo"));
        let want = listing(src.path());
        for weight in [1, 2, 3, 7, plan::BATCH_WEIGHT] {
            let target = work.path().join(format!("t{weight}"));
            let opts = RestoreOptions::default();
            let s = restore_in_batches(&repo, &node, &path, &target, &opts, &NoProgress, weight)
                .unwrap();
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            assert_eq!((s.files, s.hardlinks, s.links, s.dirs), (25, 1, 1, 6), "weight {weight}");
            assert_eq!(listing(&target), want, "weight {weight}");
            let inode = |p: &str| fs::metadata(target.join(p)).unwrap().ino();
            assert_eq!(inode("a/f3"), inode("b/zz-link"), "weight {weight}");
        }
    }

    #[test]
    fn include_patterns_restore_only_the_directories_leading_to_matches() {
        let src = source();
        let work = tempfile::tempdir().unwrap();
        let (repo, node, path) = backed_up(src.path(), &work.path().join("repo"));
        for weight in [1, 2, plan::BATCH_WEIGHT] {
            let target = work.path().join(format!("t{weight}"));
            let opts = RestoreOptions {
                includes: PathFilter::new(&["only".into(), "g1".into()], &[]).unwrap(),
                ..RestoreOptions::default()
            };
            let s = restore_in_batches(&repo, &node, &path, &target, &opts, &NoProgress, weight)
                .unwrap();
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            let got: Vec<PathBuf> = listing(&target).into_keys().collect();
            let want: Vec<PathBuf> =
                ["a", "a/deep", "a/deep/x", "a/deep/x/y", "a/deep/x/y/only", "b", "b/g1"]
                    .iter()
                    .map(PathBuf::from)
                    .collect();
            assert_eq!(got, want, "weight {weight}");
            let mtime = fs::metadata(target.join("a/deep/x")).unwrap().mtime();
            assert_eq!(mtime, 1_600_000_000, "weight {weight}");
        }
    }

    #[test]
    fn delete_removes_only_what_the_recovery_point_lacks_across_batches() {
        let src = source();
        let work = tempfile::tempdir().unwrap();
        let (repo, node, path) = backed_up(src.path(), &work.path().join("repo"));
        let target = work.path().join("t");
        let opts = RestoreOptions { delete: true, ..RestoreOptions::default() };
        restore_in_batches(&repo, &node, &path, &target, &opts, &NoProgress, 2).unwrap();
        fs::write(target.join("a/stray"), b"x").unwrap();
        fs::create_dir_all(target.join("empty/stray-dir/sub")).unwrap();
        fs::write(target.join("b/g2"), b"changed since").unwrap();
        let s = restore_in_batches(&repo, &node, &path, &target, &opts, &NoProgress, 2).unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.deleted, 2);
        assert_eq!(listing(&target), listing(src.path()));
    }
}
