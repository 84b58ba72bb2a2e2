//! Backup: turns directory trees into blobs, trees and a recovery point.
//!
//! The pipeline, with a bounded queue between every stage so memory stays flat:
//!
//! ```text
//! walker ──files──▶ readers (read, chunk, hash, dedup) ──new chunks──▶ compressors (zstd, seal)
//!    │                    │ content ids                                        │ sealed blobs
//!    └──entries──▶ finisher (assembles trees in order) ──tree blobs──▶ packer ◀─┘ (packs, index)
//! ```
//! Files unchanged since the parent recovery point (same size, mtime, ctime, inode) are not
//! read: their content list is taken from the parent. The bytes of new chunks between the
//! readers and the packer are held to a budget (`IN_FLIGHT_BYTES`), whatever the chunks' sizes.
//! Small files and small chunks travel in batches (`FileBatch`, `ChunkBatcher`): on two cores,
//! a message per file spent a fifth of the CPU on wake-ups and context switches.

mod budget;
mod parent;
mod prepare;
mod walk;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use crossbeam_channel::{Receiver, Sender, bounded};

use self::budget::Budget;
use crate::blob::{self, BlobType, Compression};
use crate::chunker::{Chunker, ChunkerParams, Gear, chunk_slice};
use crate::direct_io::ReadAhead;
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::id::Id;
use crate::metadata::{OwnerNames, SparseReader};
use crate::progress::Progress;
use crate::repository::{Packer, PackerStats, Repository};
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree};

pub use prepare::{ParentChoice, Prepared, prepare, report_missed_writes};
pub use walk::{EarlyScan, absolute_source_paths, node_from_metadata};

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub hostname: String,
    pub username: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub kind: Option<String>,
    /// Overrides the repository's default compression for this backup.
    pub compression: Option<Compression>,
    /// The recovery point to compare against; `None` means no parent (read everything).
    pub parent: Option<Id>,
    /// Time recorded in the recovery point (default: now).
    pub time: Option<DateTime<FixedOffset>>,
    /// Worker threads for compression; four times as many read files.
    pub threads: usize,
    /// Walk the sources once ahead of the backup to report totals (for an ETA).
    pub scan_totals: bool,
    /// Paths matching these patterns are left out (with everything below them).
    pub excludes: PathFilter,
    /// Directories holding a file of one of these names keep only that file.
    pub exclude_if_present: Vec<String>,
    /// Directories with a valid CACHEDIR.TAG keep only the tag (<https://bford.info/cachedir/>).
    pub exclude_caches: bool,
    /// Files larger than this many bytes are left out.
    pub exclude_larger_than: Option<u64>,
    /// Do not descend into directories on another file system than their source path.
    pub one_file_system: bool,
    /// Mark the new recovery point protected: `forget` never removes it.
    pub protect: bool,
    /// With a quota set: the bytes the repository occupied when the backup began.
    pub quota_used: Option<u64>,
    /// The only paths that may have changed since the parent (continuous protection): any
    /// directory none of them is in or below is carried over from the parent unlisted.
    pub changed: Option<ChangedPaths>,
}

/// Paths that changed since the parent recovery point, as a file-system watcher saw them.
#[derive(Debug, Clone, Default)]
pub struct ChangedPaths {
    paths: Vec<PathBuf>,
}

impl ChangedPaths {
    pub fn new(mut paths: Vec<PathBuf>) -> ChangedPaths {
        paths.sort();
        paths.dedup();
        ChangedPaths { paths }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether something at or below `path` may have changed: a changed path is `path`, lies
    /// below it, or is a directory above it (whose whole contents then count as changed).
    pub fn touches(&self, path: &std::path::Path) -> bool {
        // The first changed path not before `path` in order is `path` or one below it, if any.
        let at = self.paths.partition_point(|p| p.as_path() < path);
        if self.paths.get(at).is_some_and(|p| p.starts_with(path)) {
            return true;
        }
        path.ancestors()
            .skip(1)
            .any(|a| self.paths.binary_search_by(|p| p.as_path().cmp(a)).is_ok())
    }
}

impl BackupOptions {
    /// What the scan ahead of this backup's walk, if it runs, is for.
    fn scan_purpose(&self) -> walk::ScanPurpose {
        if self.scan_totals { walk::ScanPurpose::Totals } else { walk::ScanPurpose::WarmCaches }
    }

    pub fn new(paths: Vec<PathBuf>) -> BackupOptions {
        BackupOptions {
            paths,
            hostname: crate::lock::this_host(),
            username: std::env::var("USER").unwrap_or_default(),
            tags: Vec::new(),
            description: None,
            category: None,
            kind: None,
            compression: None,
            parent: None,
            time: None,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            scan_totals: false,
            excludes: PathFilter::default(),
            exclude_if_present: Vec::new(),
            exclude_caches: false,
            exclude_larger_than: None,
            one_file_system: false,
            protect: false,
            quota_used: None,
            changed: None,
        }
    }
}

#[derive(Debug)]
pub struct BackupResult {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    /// Items that could not be backed up; the recovery point was still written without them.
    pub warnings: Vec<String>,
    /// Things left out by design, worth a line (e.g. the contents of /proc).
    pub notes: Vec<String>,
    pub packer: PackerStats,
}

/// Threads listing directories ahead of the walker ([`walk::scan_ahead`]): more than the cores,
/// since they mostly wait for the disk.
const SCAN_THREADS: usize = 4;

/// Files up to this size are read whole into a reader's reused buffer and cut in place; larger
/// ones are streamed (their chunker allocates an 8 MiB buffer, which is negligible per such file).
const WHOLE_READ_LIMIT: u64 = 16 << 20;

/// What a reader learned about one file.
struct FileOutcome {
    content: Vec<Id>,
    size_read: u64,
    /// Read from the open file: the walker leaves them to the reader, which needs no path lookup.
    xattrs: Vec<crate::tree::Xattr>,
}

struct FileJob {
    path: PathBuf,
    /// The directory the file was listed in, open: the file is opened relative to it, which
    /// saves looking up every component of its path again (and cannot land in a directory
    /// renamed meanwhile).
    dir: Option<Arc<File>>,
    /// What `lstat` said before reading: compared afterwards to detect changes during the read.
    before: FileState,
    sparse: bool,
    /// Counted as new (else as changed): a file that cannot be read is uncounted again.
    is_new: bool,
}

/// Files for one reader to read in turn, and where their outcomes go (in the same order, `None`
/// for a file skipped with a warning). Small files travel in batches: a channel message and a
/// wake-up of the finisher per file cost a fifth of a backup of 200,000 small files.
struct FileBatch {
    files: Vec<FileJob>,
    done: Sender<Vec<Option<FileOutcome>>>,
}

/// A batch of files is handed to the readers once it holds this many files or bytes.
const FILE_BATCH_FILES: usize = 64;
const FILE_BATCH_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    size: u64,
    mtime: Timestamp,
    ctime: Option<Timestamp>,
}

impl FileState {
    fn of(node: &Node) -> FileState {
        FileState { size: node.size, mtime: node.mtime, ctime: node.ctime }
    }
}

/// Messages from the walker to the finisher, in depth-first order.
enum Item {
    EnterDir,
    Node(Node),
    /// A file being read. The first file of each [`FileBatch`] carries where the outcomes of
    /// the whole batch arrive; the files after it take theirs in turn.
    File(Node, Option<Receiver<Vec<Option<FileOutcome>>>>),
    LeaveDir(Node, Option<Id>),
}

struct ChunkJob {
    id: Id,
    data: Vec<u8>,
}

/// New chunks gathered for the compressors: small chunks travel together, since a message per
/// chunk of a small file cost more in wake-ups than compressing it. Each chunk is charged to
/// the backup's bytes in flight before it is copied out of the file.
struct ChunkBatcher<'s> {
    tx: Sender<Vec<ChunkJob>>,
    jobs: Vec<ChunkJob>,
    bytes: usize,
    in_flight: &'s Budget,
}

/// A batch of chunks is sent once it holds this many bytes or chunks.
const CHUNK_BATCH_BYTES: usize = 256 << 10;
const CHUNK_BATCH_CHUNKS: usize = 64;

/// New chunks' bytes between the readers and the packer, at most: what bounds a backup's memory
/// whatever the files' and chunks' sizes. A chunk larger than this (up to the chunker's maximum)
/// waits until it is alone in flight.
const IN_FLIGHT_BYTES: usize = 8 << 20;

impl<'s> ChunkBatcher<'s> {
    fn new(tx: Sender<Vec<ChunkJob>>, in_flight: &'s Budget) -> ChunkBatcher<'s> {
        ChunkBatcher { tx, jobs: Vec::new(), bytes: 0, in_flight }
    }

    /// Queues a chunk once the bytes in flight allow it; false if the backup is stopping.
    fn push(&mut self, id: Id, data: Cow<'_, [u8]>) -> bool {
        if !self.in_flight.try_acquire(data.len()) {
            // Everything this batcher holds goes on first: the bytes it was charged are then
            // all on their way to the packer, which releases them (waiting with them held here
            // could wait for ever).
            if !self.flush() || !self.in_flight.acquire(data.len()) {
                return false;
            }
        }
        self.bytes += data.len();
        self.jobs.push(ChunkJob { id, data: data.into_owned() });
        if self.bytes >= CHUNK_BATCH_BYTES || self.jobs.len() >= CHUNK_BATCH_CHUNKS {
            return self.flush();
        }
        true
    }

    /// Sends what is queued; false if the compressors have stopped.
    fn flush(&mut self) -> bool {
        self.bytes = 0;
        self.jobs.is_empty() || self.tx.send(std::mem::take(&mut self.jobs)).is_ok()
    }
}

struct SealedBlob {
    blob_type: BlobType,
    id: Id,
    sealed: Vec<u8>,
    raw_len: u32,
}

/// State shared by every stage of one backup.
struct Shared<'a> {
    repo: &'a Repository,
    progress: &'a dyn Progress,
    compression: Compression,
    /// Blobs this backup has already queued for storage.
    queued: Mutex<HashSet<Id>>,
    abort: AtomicBool,
    walked: AtomicBool,
    fatal: Mutex<Option<Error>>,
    warnings: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
    counters: Counters,
    owners: OwnerNames,
    opts: &'a BackupOptions,
    /// Readers inside a file larger than one chunk (each holds an 8 MiB chunker buffer): at
    /// most one per compressor, so that many readers cost memory only for small files.
    large_files: Budget,
    /// Bytes of new chunks between the readers and the packer (copied out of a file, queued,
    /// being compressed, sealed and queued for the packer), against [`IN_FLIGHT_BYTES`].
    in_flight: Budget,
    /// Files held open by the readers ahead of their turn, against [`READ_AHEAD_OPEN_FILES`].
    opened_ahead: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unchanged: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
    errors: AtomicU64,
}

impl<'a> Shared<'a> {
    fn new(repo: &'a Repository, opts: &'a BackupOptions, progress: &'a dyn Progress) -> Self {
        Shared {
            repo,
            progress,
            compression: opts.compression.unwrap_or(repo.settings().compression),
            queued: Mutex::new(HashSet::new()),
            abort: AtomicBool::new(false),
            walked: AtomicBool::new(false),
            fatal: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            counters: Counters::default(),
            owners: OwnerNames::default(),
            opts,
            large_files: Budget::new(opts.threads),
            in_flight: Budget::new(IN_FLIGHT_BYTES),
            opened_ahead: AtomicUsize::new(0),
        }
    }

    fn fail(&self, e: Error) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
        drop(f);
        self.stop();
    }

    /// Stops every stage: they see [`Shared::aborted`], and those waiting on a budget wake.
    fn stop(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.large_files.close();
        self.in_flight.close();
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The walker has finished (or the backup is failing): scanning ahead is of no more use.
    fn walk_done(&self) -> bool {
        self.walked.load(Ordering::Relaxed) || self.aborted()
    }

    fn note(&self, message: String) {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).push(message);
    }

    fn warn(&self, message: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.progress.warn(&message);
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).push(message);
    }

    /// True if the blob must be stored: not in the repository and not queued by this backup.
    fn claim(&self, id: &Id) -> bool {
        !self.repo.index().contains(id)
            && self.queued.lock().unwrap_or_else(|p| p.into_inner()).insert(*id)
    }
}

/// Backs up `opts.paths` into `repo` (whose index must be loaded) and writes a recovery point.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    backup_after_scan(repo, opts, progress, None)
}

/// [`backup`], continuing the scan ahead that `early` began before the repository was open
/// (it must have been started with the same options).
pub fn backup_after_scan(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
    early: Option<EarlyScan>,
) -> Result<BackupResult> {
    let start = chrono::Local::now().fixed_offset();
    let sources = absolute_source_paths(&opts.paths)?;
    let parent_tree = match opts.parent {
        Some(id) => Some(repo.load_snapshot(&id)?.tree),
        None => None,
    };
    let shared = Shared::new(repo, opts, progress);
    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = bounded::<FileBatch>(64);
    let (item_tx, item_rx) = bounded::<Vec<Item>>(16);
    let (chunk_tx, chunk_rx) = bounded::<Vec<ChunkJob>>(threads * 2);
    let (blob_tx, blob_rx) = bounded::<Vec<SealedBlob>>(threads * 2);

    let parent_trees = &parent::ParentTrees::default();
    // With the changed paths known, the walk visits only what leads to them: reading the whole
    // parent or scanning the whole source ahead would cost what it saves.
    let partial = opts.changed.is_some() && parent_tree.is_some();
    let (root, packer_stats) = std::thread::scope(|s| {
        let shared = &shared;
        if let Some(root) = parent_tree.filter(|_| !partial) {
            spawn_stage(s, "parent-trees", move || parent_trees.read_ahead(repo, root));
        }
        // With a parent, most files are skipped unread and the walk is the backup's pace: a scan
        // ahead warms the caches it reads. The same scan gives a progress bar its totals.
        let mut stop_early_scan = None;
        if !partial && (opts.scan_totals || parent_tree.is_some()) {
            stop_early_scan = early.as_ref().map(EarlyScan::stopper);
            let sources = &sources;
            let (excludes, one_fs) = (&opts.excludes, opts.one_file_system);
            spawn_stage(s, "scan-ahead", move || {
                let totals = match early {
                    Some(scan) => scan.totals(),
                    None => {
                        let stop = || shared.walk_done();
                        let purpose = opts.scan_purpose();
                        walk::scan_ahead(sources, SCAN_THREADS, purpose, excludes, one_fs, &stop)
                    }
                };
                if let (true, Some((files, bytes))) = (opts.scan_totals, totals) {
                    shared.progress.set_total(files, bytes);
                }
            });
        } else {
            // Without a parent every file is read, and the readers keep the disk busy enough.
            drop(early);
        }
        let packer = spawn_storage_stages(s, shared, threads, &chunk_rx, &blob_tx, &blob_rx);
        // Reading many small files waits on the kernel more than on the CPU: more readers than
        // cores keep the compressors fed.
        for _ in 0..(threads * 4).min(32) {
            let job_rx = job_rx.clone();
            let chunk_tx = chunk_tx.clone();
            spawn_stage(s, "reader", move || run_reader(shared, job_rx, chunk_tx));
        }
        let finisher = spawn_stage(s, "finisher", {
            let blob_tx = blob_tx.clone();
            move || run_finisher(shared, item_rx, blob_tx)
        });
        drop((chunk_tx, blob_tx, job_rx, chunk_rx, blob_rx));

        {
            let _stop_reading_parent = parent::CloseOnDrop(parent_trees);
            let ahead = parent_tree.filter(|_| !partial).map(|_| parent_trees);
            walk::Walker::new(shared, job_tx, item_tx, ahead).run(&sources, parent_tree.as_ref());
        }
        shared.walked.store(true, Ordering::Relaxed);
        if let Some(stop) = stop_early_scan {
            stop.store(true, Ordering::Relaxed);
        }

        let root = finisher.join().unwrap_or(None);
        let stats = packer.join().unwrap_or_default();
        (root, stats)
    });

    let paths = sources.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    commit(shared, root, packer_stats, start, paths, &mut || Ok(()))
}

/// Backs up one stream (stdin, a command's output) as the file `/NAME` of a new recovery
/// point, reading it once and holding only a few chunks in memory. `check_source` runs after
/// the stream ends and before the recovery point is written: if it fails (the command exited
/// non-zero), no recovery point is written and its error is returned.
pub fn backup_stream(
    repo: &Repository,
    opts: &BackupOptions,
    name: &str,
    source: &mut dyn Read,
    check_source: &mut dyn FnMut() -> Result<()>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let start = chrono::Local::now().fixed_offset();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::InvalidInput(format!("invalid stream file name {name:?}")));
    }
    let shared = Shared::new(repo, opts, progress);
    let threads = opts.threads.max(1);
    let (chunk_tx, chunk_rx) = bounded::<Vec<ChunkJob>>(threads * 2);
    let (blob_tx, blob_rx) = bounded::<Vec<SealedBlob>>(threads * 2);
    let (root, packer_stats) = std::thread::scope(|s| {
        let shared = &shared;
        let packer = spawn_storage_stages(s, shared, threads, &chunk_rx, &blob_tx, &blob_rx);
        drop((chunk_rx, blob_rx));
        let root = stream_tree(shared, name, source, chunk_tx, &blob_tx);
        drop(blob_tx);
        let stats = packer.join().unwrap_or_default();
        (root, stats)
    });
    commit(shared, root, packer_stats, start, vec![format!("/{name}")], check_source)
}

/// Reads and chunks the stream, then stores the one-file root tree; `None` if it failed.
fn stream_tree(
    shared: &Shared,
    name: &str,
    source: &mut dyn Read,
    chunks: Sender<Vec<ChunkJob>>,
    blobs: &Sender<Vec<SealedBlob>>,
) -> Option<Id> {
    let repo = shared.repo;
    let mut chunks = ChunkBatcher::new(chunks, &shared.in_flight);
    let mut node = Node::new(RawName(name.as_bytes().to_vec()), NodeKind::File);
    for c in Chunker::new(source, repo.settings().chunker, repo.gear().clone()) {
        let data = match c {
            Ok(d) => d,
            Err(e) => {
                shared.fail(Error::InvalidInput(format!("reading the stream: {e}")));
                return None;
            }
        };
        let id = repo.hasher().hash(&data);
        node.size += data.len() as u64;
        shared.progress.add(0, data.len() as u64);
        node.content.push(id);
        if shared.claim(&id) && !chunks.push(id, Cow::Owned(data)) {
            return None;
        }
    }
    if !chunks.flush() {
        return None;
    }
    drop(chunks);
    let now = chrono::Utc::now();
    node.mode = 0o600;
    node.uid = unsafe_free_uid();
    node.gid = unsafe_free_gid();
    node.user = shared.owners.user(node.uid);
    node.group = shared.owners.group(node.gid);
    node.mtime = Timestamp(now.timestamp(), now.timestamp_subsec_nanos());
    let c = &shared.counters;
    c.files_new.fetch_add(1, Ordering::Relaxed);
    c.bytes_read.fetch_add(node.size, Ordering::Relaxed);
    c.total_bytes.fetch_add(node.size, Ordering::Relaxed);
    c.dirs_new.fetch_add(1, Ordering::Relaxed);
    let (bytes, id) = encode_tree(shared, &Tree { nodes: vec![node] });
    if !store_tree(shared, id, &bytes, blobs) {
        return None;
    }
    Some(id)
}

fn encode_tree(shared: &Shared, tree: &Tree) -> (Vec<u8>, Id) {
    let bytes = tree.encode();
    let id = shared.repo.hasher().hash(&bytes);
    (bytes, id)
}

/// Queues a tree blob for storage unless the repository or this backup already has it.
/// Returns false if the backup is failing (the caller stops).
fn store_tree(shared: &Shared, id: Id, bytes: &[u8], blobs: &Sender<Vec<SealedBlob>>) -> bool {
    if !shared.claim(&id) {
        return true;
    }
    match blob::seal_blob(shared.repo.cipher(), BlobType::Tree, &id, bytes, shared.compression) {
        Ok(sealed) => {
            let raw_len = bytes.len() as u32;
            blobs.send(vec![SealedBlob { blob_type: BlobType::Tree, id, sealed, raw_len }]).is_ok()
        }
        Err(e) => {
            shared.fail(e);
            false
        }
    }
}

/// Starts the stages every backup shares: one compressor per thread and the packer. Returns
/// the packer, whose result is the storage statistics once every blob sender is dropped.
fn spawn_storage_stages<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    shared: &'scope Shared<'env>,
    threads: usize,
    chunk_rx: &Receiver<Vec<ChunkJob>>,
    blob_tx: &Sender<Vec<SealedBlob>>,
    blob_rx: &Receiver<Vec<SealedBlob>>,
) -> std::thread::ScopedJoinHandle<'scope, PackerStats> {
    let packer = spawn_stage(s, "packer", {
        let blob_rx = blob_rx.clone();
        move || run_packer(shared, blob_rx)
    });
    for _ in 0..threads {
        let chunk_rx = chunk_rx.clone();
        let blob_tx = blob_tx.clone();
        spawn_stage(s, "compressor", move || run_compressor(shared, chunk_rx, blob_tx));
    }
    packer
}

/// A scoped thread named after its stage, so that `top -H`, perf and debuggers tell the
/// pipeline's stages apart.
fn spawn_stage<'scope, 'env, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    // As `Scope::spawn` does, a thread the system refuses ends the backup with a panic.
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(s, f)
        .unwrap_or_else(|e| panic!("cannot start the backup's {name} thread: {e}"))
}

/// Writes the recovery point once every stage is done, if nothing failed and `check_source`
/// agrees (for a command's output: that the command succeeded).
fn commit(
    shared: Shared,
    root: Option<Id>,
    packer_stats: PackerStats,
    start: DateTime<FixedOffset>,
    paths: Vec<String>,
    check_source: &mut dyn FnMut() -> Result<()>,
) -> Result<BackupResult> {
    if let Some(e) = shared.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let root = root.ok_or(Error::Cancelled)?;
    check_source()?;
    let (repo, opts) = (shared.repo, shared.opts);
    let c = &shared.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let end = chrono::Local::now().fixed_offset();
    let summary = Summary {
        files_new: load(&c.files_new),
        files_changed: load(&c.files_changed),
        files_unchanged: load(&c.files_unchanged),
        dirs_new: load(&c.dirs_new),
        dirs_changed: load(&c.dirs_changed),
        dirs_unchanged: load(&c.dirs_unchanged),
        total_files: load(&c.files_new) + load(&c.files_changed) + load(&c.files_unchanged),
        total_dirs: load(&c.dirs_new) + load(&c.dirs_changed) + load(&c.dirs_unchanged),
        bytes_read: load(&c.bytes_read),
        total_bytes: load(&c.total_bytes),
        blobs_added: packer_stats.blobs_written,
        data_added: packer_stats.raw_bytes,
        data_added_stored: packer_stats.stored_bytes,
        errors: load(&c.errors),
        backup_start: Some(start),
        backup_end: Some(end),
    };
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(start),
        tree: root,
        paths,
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        uid: unsafe_free_uid(),
        gid: unsafe_free_gid(),
        tags: opts.tags.clone(),
        parent: opts.parent,
        description: opts.description.clone(),
        category: opts.category.clone(),
        kind: opts.kind.clone(),
        program_version: format!("aeon {}", crate::VERSION),
        summary,
        protected: opts.protect,
        original: None,
        imported: None,
    };
    // Written last: every blob it references is already durable and indexed.
    let snapshot_id = repo.save_snapshot(&snapshot)?;
    let s = &snapshot.summary;
    let mut event = crate::audit::Event::new("backup")
        .added(crate::backend::FileType::Snapshot, snapshot_id)
        .figure("files", s.total_files as f64)
        .figure("bytes", s.total_bytes as f64)
        .figure("bytes_added_stored", s.data_added_stored as f64)
        .figure("errors", s.errors as f64);
    for p in &snapshot.paths {
        event = event.arg(p.clone());
    }
    repo.audit(event);
    let warnings = shared.warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    let notes = shared.notes.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(BackupResult { snapshot_id, snapshot, warnings, notes, packer: packer_stats })
}

fn unsafe_free_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}
fn unsafe_free_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

fn run_packer(shared: &Shared, rx: Receiver<Vec<SealedBlob>>) -> PackerStats {
    let mut packer = shared.repo.packer_within_quota(shared.opts.quota_used);
    // A failed backup still records the packs it completed, so that the next one reuses them.
    let abandon = |packer: Packer| packer.abandon().unwrap_or_default();
    for b in rx.iter().flatten() {
        if let Err(e) = packer.add(b.blob_type, b.id, &b.sealed, b.raw_len) {
            shared.fail(e);
            return abandon(packer);
        }
        if b.blob_type == BlobType::Data {
            // Its bytes are in the pack now (or on their way to storage in its bounded buffers).
            shared.in_flight.release(b.raw_len as usize);
        }
    }
    if shared.aborted() {
        return abandon(packer);
    }
    match packer.finish() {
        Ok(stats) => stats,
        Err(e) => {
            shared.fail(e);
            PackerStats::default()
        }
    }
}

fn run_compressor(shared: &Shared, rx: Receiver<Vec<ChunkJob>>, tx: Sender<Vec<SealedBlob>>) {
    let cipher = shared.repo.cipher();
    for jobs in rx.iter() {
        if shared.aborted() {
            return;
        }
        let mut sealed_blobs = Vec::with_capacity(jobs.len());
        for job in jobs {
            match blob::seal_blob(cipher, BlobType::Data, &job.id, &job.data, shared.compression) {
                Ok(sealed) => sealed_blobs.push(SealedBlob {
                    blob_type: BlobType::Data,
                    id: job.id,
                    sealed,
                    raw_len: job.data.len() as u32,
                }),
                Err(e) => return shared.fail(e),
            }
        }
        if tx.send(sealed_blobs).is_err() {
            return;
        }
    }
}

/// Opens a file to read: relative to its directory when that is open, by path otherwise, and
/// never through a symlink (one swapped in since the listing would put another file's content
/// under this name).
fn open_source(job: &FileJob) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags, open, openat};
    let open_with = |flags| match (&job.dir, job.path.file_name()) {
        (Some(dir), Some(name)) => openat(dir, name, flags, Mode::empty()),
        _ => open(&job.path, flags, Mode::empty()),
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    // O_NOATIME keeps the backup from touching access times; only the owner (or root) may ask.
    let fd = match open_with(flags | OFlags::NOATIME) {
        Err(rustix::io::Errno::PERM) => open_with(flags),
        other => other,
    };
    Ok(File::from(fd?))
}

/// All readers together hold at most this many files open ahead ([`OpenedAhead`]): with the
/// directories held open for them ([`walk::MAX_OPEN_DIRS`]) well inside the usual limit of
/// 1,024 descriptors.
const READ_AHEAD_OPEN_FILES: usize = 384;

/// Files up to this size are read ahead whole; the kernel's own read-ahead serves larger ones,
/// which are also read a few at a time ([`Shared::large_files`]). Reading ahead files of up to
/// 2 MiB instead made the source tree's backup no faster.
const READ_AHEAD_MAX_LEN: u64 = 256 * 1024;

/// The files of one batch, opened before the first is read, with the kernel asked to read them
/// in. Reading small files cold waits on one small disk read after another; with the batch's
/// reads already queued, the disk works on many at once while the reader waits on one.
struct OpenedAhead<'s> {
    /// In batch order; `None` for a file left to the reader to open.
    files: Vec<Option<File>>,
    budget: &'s AtomicUsize,
}

impl<'s> OpenedAhead<'s> {
    /// Opens the small files of `jobs` while `budget` (shared by every reader) allows; one
    /// that fails to open is left to the reader, which reports why.
    fn open(jobs: &[FileJob], budget: &'s AtomicUsize) -> Self {
        let mut ahead = OpenedAhead { files: Vec::with_capacity(jobs.len()), budget };
        for job in jobs {
            let worth = !job.sparse && job.before.size > 0 && job.before.size <= READ_AHEAD_MAX_LEN;
            let file = (worth && ahead.reserve()).then(|| ahead.open_one(job)).flatten();
            ahead.files.push(file);
        }
        ahead
    }

    /// The file `i` of the batch, if it was opened ahead.
    fn take(&mut self, i: usize) -> Option<File> {
        let file = self.files.get_mut(i).and_then(Option::take);
        if file.is_some() {
            self.budget.fetch_sub(1, Ordering::Relaxed);
        }
        file
    }

    /// Takes a descriptor from the budget; false if every one is in use.
    fn reserve(&self) -> bool {
        let taken = self.budget.fetch_add(1, Ordering::Relaxed);
        if taken >= READ_AHEAD_OPEN_FILES {
            self.budget.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Opens a file reserved for and queues its read; gives the reservation back on failure.
    fn open_one(&self, job: &FileJob) -> Option<File> {
        let Ok(file) = open_source(job) else {
            self.budget.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        // Only advice: a kernel that ignores it leaves the file to be read when its turn comes.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
        Some(file)
    }
}

impl Drop for OpenedAhead<'_> {
    fn drop(&mut self) {
        let held = self.files.iter().filter(|f| f.is_some()).count();
        self.budget.fetch_sub(held, Ordering::Relaxed);
    }
}

fn run_reader(shared: &Shared, rx: Receiver<FileBatch>, chunks: Sender<Vec<ChunkJob>>) {
    let mut reader = FileReader::new(shared, chunks);
    for batch in rx.iter() {
        let mut outcomes = Vec::with_capacity(batch.files.len());
        let mut ahead = OpenedAhead::open(&batch.files, &shared.opened_ahead);
        for (i, job) in batch.files.iter().enumerate() {
            if shared.aborted() {
                return;
            }
            let opened = ahead.take(i);
            match reader.read(job, opened) {
                ReadOutcome::Read(outcome) => outcomes.push(Some(outcome)),
                ReadOutcome::Skipped => outcomes.push(None),
                ReadOutcome::Stopping => return,
            }
        }
        // Before the outcomes: a finished batch leaves nothing of its own behind in the reader.
        if !reader.chunks.flush() {
            return;
        }
        let _ = batch.done.send(outcomes);
    }
}

/// What became of one file a reader was given.
enum ReadOutcome {
    Read(FileOutcome),
    /// It could not be read; a warning says why, and the backup goes on without it.
    Skipped,
    /// The backup is stopping (an error elsewhere): nothing more is read.
    Stopping,
}

/// One reader's state, kept from file to file.
struct FileReader<'s, 'a> {
    shared: &'s Shared<'a>,
    params: ChunkerParams,
    gear: Gear,
    /// Holes and zero runs give the same all-zero chunks again and again: hash them once.
    zero_ids: HashMap<usize, Id>,
    buffer: Vec<u8>,
    chunks: ChunkBatcher<'s>,
}

impl<'s, 'a> FileReader<'s, 'a> {
    /// A reader for the files of `shared`'s backup; their new chunks go to `chunks`.
    fn new(shared: &'s Shared<'a>, chunks: Sender<Vec<ChunkJob>>) -> Self {
        FileReader {
            shared,
            params: shared.repo.settings().chunker,
            gear: shared.repo.gear().clone(),
            zero_ids: HashMap::new(),
            buffer: Vec::new(),
            chunks: ChunkBatcher::new(chunks, &shared.in_flight),
        }
    }

    /// Reads, chunks and hashes one file (`opened`: if it was opened ahead), queueing its new
    /// chunks.
    fn read(&mut self, job: &FileJob, opened: Option<File>) -> ReadOutcome {
        let shared = self.shared;
        let (params, gear) = (self.params, self.gear.clone());
        let mut content = Vec::new();
        let mut size_read = 0u64;
        let (zero_ids, chunks, buffer) = (&mut self.zero_ids, &mut self.chunks, &mut self.buffer);
        let hasher = shared.repo.hasher();
        // Copies a chunk only when it is new: chunks already stored cost a hash and no more.
        let mut handle = |data: &[u8]| -> bool {
            let id = if data.len() >= 64 * 1024 && data.iter().all(|&b| b == 0) {
                *zero_ids.entry(data.len()).or_insert_with(|| hasher.hash(data))
            } else {
                hasher.hash(data)
            };
            size_read += data.len() as u64;
            shared.progress.add(0, data.len() as u64);
            content.push(id);
            !shared.claim(&id) || chunks.push(id, Cow::Borrowed(data))
        };
        let result = read_content(job, opened, shared, &mut handle, buffer, (params, &gear));
        if self.buffer.capacity() > params.min_size as usize * 2 {
            self.buffer = Vec::new();
        }
        shared.counters.bytes_read.fetch_add(size_read, Ordering::Relaxed);
        shared.progress.add(1, 0);
        match result {
            Ok((true, file, after)) => {
                if let Some(md) = after.or_else(|| file.metadata().ok()) {
                    let mut after = walk::node_from_metadata(b"", &md);
                    after.size = md.len();
                    let after = FileState::of(&after);
                    if after != job.before || size_read != after.size {
                        shared.warn(format!(
                            "{}: changed while being read (recorded as read: {} bytes)",
                            job.path.display(),
                            size_read
                        ));
                    }
                }
                let xattrs = match crate::metadata::read_xattrs_of(&file) {
                    Ok(x) => x,
                    Err(e) => {
                        let path = job.path.display();
                        shared.warn(format!("{path}: extended attributes not read: {e}"));
                        Vec::new()
                    }
                };
                ReadOutcome::Read(FileOutcome { content, size_read, xattrs })
            }
            Ok((false, ..)) => ReadOutcome::Stopping,
            Err(e) => {
                let c = &shared.counters;
                if job.is_new { &c.files_new } else { &c.files_changed }
                    .fetch_sub(1, Ordering::Relaxed);
                if e.kind() == std::io::ErrorKind::NotFound {
                    let path = job.path.display();
                    shared.warn(format!("{path}: vanished during the backup (skipped)"));
                } else {
                    shared.warn(format!("{}: {e} (file skipped)", job.path.display()));
                }
                ReadOutcome::Skipped
            }
        }
    }
}

/// A file read to its end: whether it was read whole (else the backup is stopping), the file,
/// and its metadata if it was taken after the read.
type ReadContent = (bool, File, Option<std::fs::Metadata>);

/// Reads one file's content and hands each chunk to `handle` (false: stop): whole into
/// `buffer` and cut in place when small, streamed through the chunker when huge or sparse.
fn read_content(
    job: &FileJob,
    opened: Option<File>,
    shared: &Shared,
    handle: &mut dyn FnMut(&[u8]) -> bool,
    buffer: &mut Vec<u8>,
    (params, gear): (ChunkerParams, &Gear),
) -> std::io::Result<ReadContent> {
    let size_hint = job.before.size;
    let large = size_hint > params.min_size as u64;
    let _slot = large.then(|| shared.large_files.hold(1));
    let mut file = match opened {
        Some(file) => file,
        None => open_source(job)?,
    };
    if job.sparse || size_hint > WHOLE_READ_LIMIT {
        // Huge or sparse: stream it through the chunker's own buffer.
        let complete = if job.sparse {
            stream_chunks(
                &mut SparseReader::new(file.try_clone()?, size_hint),
                handle,
                params,
                gear,
            )?
        } else {
            let mut ahead = ReadAhead::new(file);
            let complete = stream_chunks(&mut ahead, handle, params, gear)?;
            file = ahead.into_inner().ok_or_else(|| {
                std::io::Error::other("the thread reading ahead stopped unexpectedly")
            })?;
            complete
        };
        return Ok((complete, file, None));
    }
    // Read it whole, then cut it in place. Small files reuse this reader's buffer; a
    // large one gets its own, freed afterwards, so that idle readers hold no big buffers.
    if large {
        *buffer = Vec::with_capacity(size_hint as usize);
    } else {
        buffer.clear();
    }
    // Exactly the listed size: asking for more only to hear "end of file" was a system
    // call per file. The metadata taken next tells whether the file grew meanwhile.
    (&mut file).take(size_hint).read_to_end(buffer)?;
    let after = (buffer.len() as u64 == size_hint).then(|| file.metadata().ok()).flatten();
    if after.as_ref().is_some_and(|md| md.len() > size_hint) {
        // It grew since it was listed: read on to its end, streaming after what we have.
        let rest = std::mem::take(buffer);
        let mut rest = std::io::Cursor::new(rest).chain(&mut file);
        let complete = stream_chunks(&mut rest, handle, params, gear)?;
        return Ok((complete, file, None));
    }
    if buffer.len() as u64 <= params.min_size as u64 {
        if !buffer.is_empty() && !handle(buffer) {
            return Ok((false, file, None));
        }
    } else {
        for c in chunk_slice(buffer, params, gear) {
            if !handle(c) {
                return Ok((false, file, None));
            }
        }
    }
    Ok((true, file, after))
}

/// Chunks a stream, handing each chunk to `handle`; false if `handle` asked to stop.
fn stream_chunks(
    reader: &mut dyn Read,
    handle: &mut dyn FnMut(&[u8]) -> bool,
    params: ChunkerParams,
    gear: &Gear,
) -> std::io::Result<bool> {
    let mut chunker = Chunker::new(reader, params, gear.clone());
    while let Some(chunk) = chunker.next_chunk() {
        if !handle(chunk?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn run_finisher(
    shared: &Shared,
    rx: Receiver<Vec<Item>>,
    blobs: Sender<Vec<SealedBlob>>,
) -> Option<Id> {
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let c = &shared.counters;
    // The outcomes of the current file batch not yet taken, in the batch's order.
    let mut outcomes = std::collections::VecDeque::new();
    for item in rx.iter().flatten() {
        match item {
            Item::EnterDir => stack.push(Vec::new()),
            Item::Node(n) => stack.last_mut()?.push(n),
            Item::File(mut n, batch) => {
                if let Some(batch) = batch {
                    // A reader sends nothing only when it stops (the backup is failing, or the
                    // reader died): no recovery point may be written without these files.
                    outcomes = batch.recv().ok()?.into();
                }
                if let Some(outcome) = outcomes.pop_front().flatten() {
                    n.content = outcome.content;
                    n.size = outcome.size_read;
                    n.xattrs = outcome.xattrs;
                    c.total_bytes.fetch_add(n.size, Ordering::Relaxed);
                    stack.last_mut()?.push(n);
                }
            }
            Item::LeaveDir(mut node, parent_subtree) => {
                let mut tree = Tree { nodes: stack.pop()? };
                tree.sort();
                let (bytes, id) = encode_tree(shared, &tree);
                match parent_subtree {
                    None => c.dirs_new.fetch_add(1, Ordering::Relaxed),
                    Some(p) if p == id => c.dirs_unchanged.fetch_add(1, Ordering::Relaxed),
                    Some(_) => c.dirs_changed.fetch_add(1, Ordering::Relaxed),
                };
                if !store_tree(shared, id, &bytes, &blobs) {
                    return None;
                }
                node.subtree = Some(id);
                match stack.last_mut() {
                    Some(parent) => parent.push(node),
                    None => return Some(id),
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::keys::KdfParams;
    use crate::lock::LockKind;
    use crate::progress::NoProgress;
    use crate::repository::InitOptions;

    fn repository(dir: &Path) -> Repository {
        repository_with(dir, ChunkerParams::default())
    }

    #[test]
    fn changed_paths_touch_their_ancestors_themselves_and_what_is_below() {
        let changed = ChangedPaths::new(vec!["/src/a/b/file".into(), "/src/c".into()]);
        for touched in ["/src", "/src/a", "/src/a/b", "/src/a/b/file", "/src/c", "/src/c/d/e"] {
            assert!(changed.touches(Path::new(touched)), "{touched}");
        }
        for untouched in ["/src/a/b2", "/src/a/bb", "/src/b", "/src/a/b/file2", "/other", "/src/cc"]
        {
            assert!(!changed.touches(Path::new(untouched)), "{untouched}");
        }
    }

    /// With changed paths, an untouched directory is the parent's (unlisted), a touched one is
    /// walked: the point equals a full backup's, and the untouched one was not even listed.
    #[test]
    fn a_backup_of_changed_paths_carries_the_rest_over_from_the_parent() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = repository(&dir.path().join("repo"));
        let src = dir.path().join("src");
        for d in ["same/deep", "touched"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
        }
        std::fs::write(src.join("same/deep/f"), b"unchanged").unwrap();
        std::fs::write(src.join("touched/g"), b"before").unwrap();
        let first = backup(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
        repo.reload_index().unwrap();
        std::fs::write(src.join("touched/g"), b"after, longer").unwrap();
        // A change the watcher did not report (outside the changed paths) is not seen: the
        // contract is that every change is reported.
        std::fs::write(src.join("same/deep/f"), b"unreported").unwrap();
        let mut opts = BackupOptions::new(vec![src.clone()]);
        opts.parent = Some(first.snapshot_id);
        opts.changed = Some(ChangedPaths::new(vec![src.join("touched/g")]));
        let second = backup(&repo, &opts, &NoProgress).unwrap();
        let summary = &second.snapshot.summary;
        assert_eq!((summary.files_changed, summary.files_new), (1, 0), "{summary:?}");
        assert_eq!(summary.bytes_read, 13, "only the changed file was read: {summary:?}");
        repo.reload_index().unwrap();
        let root = repo.load_tree(&second.snapshot.tree).unwrap();
        let same_then = repo.find_node(&first.snapshot.tree, &src.join("same").to_string_lossy());
        let same_now = repo.find_node(&second.snapshot.tree, &src.join("same").to_string_lossy());
        assert_eq!(same_then.unwrap().subtree, same_now.unwrap().subtree, "carried over");
        let g = repo.find_node(&second.snapshot.tree, &src.join("touched/g").to_string_lossy());
        assert_eq!(g.unwrap().size, 13);
        assert!(!root.nodes.is_empty());
    }

    fn repository_with(dir: &Path, chunker: ChunkerParams) -> Repository {
        let init = InitOptions {
            kdf: KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 },
            chunker,
            ..InitOptions::default()
        };
        let repo = Repository::init(Arc::new(LocalBackend::new(dir)), b"pw", init).unwrap();
        repo.lock(LockKind::Shared, "test").unwrap().load_index().unwrap()
    }

    /// Checks that the node's content list gives back exactly the bytes of `path`.
    fn assert_content(repo: &Repository, node: &Node, path: &Path) {
        let mut got = Vec::new();
        for id in &node.content {
            got.extend(repo.read_blob(BlobType::Data, id).unwrap());
        }
        let want = std::fs::read(path).unwrap();
        assert!(
            got == want,
            "{}: {} bytes stored, {} on disk",
            path.display(),
            got.len(),
            want.len()
        );
        assert_eq!(node.size, want.len() as u64, "{}", path.display());
    }

    fn assert_tree(repo: &Repository, tree: &Id, dir: &Path) -> usize {
        let mut files = 0;
        for node in repo.load_tree(tree).unwrap().nodes {
            let path = dir.join(std::ffi::OsStr::from_bytes(&node.name.0));
            match node.kind {
                NodeKind::Dir => files += assert_tree(repo, &node.subtree.unwrap(), &path),
                NodeKind::File => {
                    assert_content(repo, &node, &path);
                    files += 1;
                }
                _ => {}
            }
        }
        files
    }

    /// Backs `src` up into a new repository under `work`, without warnings, and checks that
    /// the recovery point holds `files` files, each with its own content.
    fn back_up_and_check_every_file(
        work: &Path,
        src: &Path,
        files: usize,
    ) -> (Repository, BackupResult) {
        let mut repo = repository(&work.join("repo"));
        let done =
            backup(&repo, &BackupOptions::new(vec![src.to_path_buf()]), &NoProgress).unwrap();
        assert!(done.warnings.is_empty(), "{:?}", done.warnings);
        repo.reload_index().unwrap();
        let root = repo.find_node(&done.snapshot.tree, &src.display().to_string()).unwrap();
        assert_eq!(assert_tree(&repo, &root.subtree.unwrap(), src), files);
        (repo, done)
    }

    /// A file replaced by a symlink between the listing and the read is skipped with a warning,
    /// not followed: following it would store another file's content under this file's name.
    #[test]
    fn a_file_swapped_for_a_symlink_after_listing_is_skipped_not_followed() {
        let work = tempfile::tempdir().unwrap();
        let repo = repository(&work.path().join("repo"));
        let path = work.path().join("file");
        std::fs::write(&path, b"listed content").unwrap();
        let secret = work.path().join("secret");
        std::fs::write(&secret, b"someone else's content").unwrap();
        let opts = BackupOptions::new(vec![work.path().to_path_buf()]);
        let shared = Shared::new(&repo, &opts, &NoProgress);
        let (tx, _rx) = bounded(64);
        let mut reader = FileReader::new(&shared, tx);
        let md = std::fs::metadata(&path).unwrap();
        let before = FileState::of(&walk::node_from_metadata(b"file", &md));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        let dir = Some(Arc::new(File::open(work.path()).unwrap()));
        let job = FileJob { path: path.clone(), dir, before, sparse: false, is_new: true };
        let outcome = reader.read(&job, None);
        assert!(matches!(outcome, ReadOutcome::Skipped), "the symlink must not be read");
        let warnings = shared.warnings.lock().unwrap().clone();
        assert!(warnings.len() == 1 && warnings[0].contains("file skipped"), "{warnings:?}");
    }

    /// Files opened ahead are each the file of their own job, count against one budget for
    /// all readers and give it back once taken or left behind; past the budget, and when a
    /// file vanished since the listing, the reader is left to open the file itself.
    #[test]
    fn files_opened_ahead_are_their_jobs_own_and_stay_within_the_budget() {
        let work = tempfile::tempdir().unwrap();
        let jobs: Vec<FileJob> = (0..6)
            .map(|i| {
                let path = work.path().join(format!("f{i}"));
                std::fs::write(&path, format!("content of file {i}")).unwrap();
                let md = std::fs::metadata(&path).unwrap();
                let before = FileState::of(&walk::node_from_metadata(b"f", &md));
                FileJob { path, dir: None, before, sparse: false, is_new: true }
            })
            .collect();
        std::fs::remove_file(&jobs[1].path).unwrap();
        let content = |f: Option<File>| {
            let mut s = String::new();
            f.expect("opened ahead").read_to_string(&mut s).unwrap();
            s
        };

        let budget = AtomicUsize::new(0);
        let mut ahead = OpenedAhead::open(&jobs, &budget);
        assert_eq!(content(ahead.take(0)), "content of file 0");
        assert_eq!(budget.load(Ordering::Relaxed), 4, "files 2 to 5 held, the vanished one not");
        assert!(ahead.take(1).is_none(), "the vanished file is left to the reader");
        assert_eq!(content(ahead.take(2)), "content of file 2");
        drop(ahead);
        assert_eq!(budget.load(Ordering::Relaxed), 0, "files left behind give their share back");

        let budget = AtomicUsize::new(READ_AHEAD_OPEN_FILES - 2);
        let mut ahead = OpenedAhead::open(&jobs, &budget);
        let taken: Vec<bool> = (0..jobs.len()).map(|i| ahead.take(i).is_some()).collect();
        // Two to share: file 1 vanished and gave its share to file 2; files 3 on found none.
        assert_eq!(taken, [true, false, true, false, false, false]);
        assert_eq!(budget.load(Ordering::Relaxed), READ_AHEAD_OPEN_FILES - 2);
    }

    /// A reader reads the size the walk listed; a file that grew or shrank since is read to its
    /// end all the same, and reported as changed.
    #[test]
    fn a_file_that_changed_size_since_it_was_listed_is_read_to_its_end() {
        let work = tempfile::tempdir().unwrap();
        let repo = repository(&work.path().join("repo"));
        let path = work.path().join("file");
        let body: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let opts = BackupOptions::new(vec![path.clone()]);
        let shared = Shared::new(&repo, &opts, &NoProgress);
        let (tx, rx) = bounded(64);
        let mut reader = FileReader::new(&shared, tx);
        let md = std::fs::metadata(&path).unwrap();
        let listed = FileState::of(&walk::node_from_metadata(b"file", &md));
        let dir = Arc::new(File::open(work.path()).unwrap());
        for (i, size) in [0, 1000, 300_000, 699_999, 700_000, 900_000].into_iter().enumerate() {
            // Opened relative to its directory, or by its path: the same either way.
            let dir = (i % 2 == 0).then(|| dir.clone());
            let before = FileState { size, ..listed };
            let job = FileJob { path: path.clone(), dir, before, sparse: false, is_new: true };
            let ReadOutcome::Read(outcome) = reader.read(&job, None) else { panic!("not read") };
            assert_eq!(outcome.size_read, body.len() as u64, "listed as {size}");
            let warned = shared.warnings.lock().unwrap().len();
            assert_eq!(warned, usize::from(size != 700_000), "listed as {size}");
            shared.warnings.lock().unwrap().clear();
            reader.chunks.flush();
            let mut stored: HashMap<Id, Vec<u8>> = HashMap::new();
            for job in rx.try_iter().flatten() {
                stored.insert(job.id, job.data);
            }
            let mut got = Vec::new();
            for id in &outcome.content {
                // Chunks claimed by an earlier round are not sent again: chunk them alike.
                got.extend(stored.get(id).cloned().unwrap_or_else(|| {
                    chunk_slice(&body, repo.settings().chunker, repo.gear())
                        .find(|c| repo.hasher().hash(c) == *id)
                        .map(|c| c.to_vec())
                        .unwrap_or_else(|| panic!("listed as {size}: chunk {id} unknown"))
                }));
            }
            assert!(got == body, "listed as {size}: content differs");
        }
    }

    /// Files go to the readers in batches and their outcomes come back per batch: every file
    /// must still get its own content, whatever the mix of sizes, directories and batch ends.
    #[test]
    fn every_file_gets_its_own_content_across_batches() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        let mut files = 0;
        for d in 0..9 {
            // Directories of 0, 1, ... 200 files, some nested inside others.
            let dir = src.join(format!("d{d}")).join(if d % 3 == 0 { "inner" } else { "" });
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..[0, 1, 5, 63, 64, 65, 130, 200, 7][d] {
                let len = match (d + f) % 11 {
                    0 => 0,
                    1 => 1_300_000,                       // ends a batch on its own
                    2 => 300_000,                         // several chunks
                    _ => 100 + (d * 131 + f * 17) % 5000, // one small chunk
                };
                let body: Vec<u8> =
                    (0..len).map(|i| (i as u64 * 31 + (d * 1000 + f) as u64 * 7) as u8).collect();
                std::fs::write(dir.join(format!("f{f}")), body).unwrap();
                files += 1;
            }
        }
        // A huge file is streamed rather than read whole.
        let huge: Vec<u8> = (0..(WHOLE_READ_LIMIT + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("d4/huge"), huge).unwrap();
        files += 1;
        let (_, done) = back_up_and_check_every_file(work.path(), &src, files);
        assert_eq!(done.snapshot.summary.files_new, files as u64);
    }

    /// Chunks larger than the whole in-flight budget still go through (one at a time), mixed
    /// with small ones from other readers, and every file keeps its own content.
    #[test]
    fn chunks_larger_than_the_in_flight_budget_are_stored_whole() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        // Streamed (above WHOLE_READ_LIMIT) and read whole, each cut into chunks of 1-16 MiB.
        // The run of zeros has no cut point whatever the repository's chunker seed: it gives
        // chunks of the maximum size, twice the budget.
        let mut streamed = random(8 << 20);
        streamed.resize(32 << 20, 0);
        streamed.extend(random(8 << 20));
        std::fs::write(src.join("streamed"), streamed).unwrap();
        std::fs::write(src.join("whole"), random(12 << 20)).unwrap();
        for f in 0..200 {
            std::fs::write(src.join(format!("small{f}")), random(100 + f * 37)).unwrap();
        }
        let chunker = ChunkerParams { min_size: 1 << 20, avg_size: 4 << 20, max_size: 16 << 20 };
        assert!(chunker.max_size as usize > IN_FLIGHT_BYTES);
        let mut repo = repository_with(&work.path().join("repo"), chunker);
        let done = backup(&repo, &BackupOptions::new(vec![src.clone()]), &NoProgress).unwrap();
        assert!(done.warnings.is_empty(), "{:?}", done.warnings);
        repo.reload_index().unwrap();
        let root = repo.find_node(&done.snapshot.tree, &src.display().to_string()).unwrap();
        assert_eq!(assert_tree(&repo, &root.subtree.unwrap(), &src), 202);
        let largest = (repo.index().blobs())
            .filter(|(_, e)| e.blob_type == BlobType::Data)
            .map(|(_, e)| e.raw_len as usize)
            .max();
        assert!(largest > Some(IN_FLIGHT_BYTES), "largest chunk {largest:?}");
    }

    /// Files are opened relative to their open directory, and their extended attributes read
    /// from the open file; past the cap on open directories, by path. Both ways must record
    /// the same: every file's own content and attributes.
    #[test]
    fn files_in_more_directories_than_are_held_open_keep_content_and_xattrs() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        let dirs = walk::MAX_OPEN_DIRS + 40;
        for d in 0..dirs {
            let dir = src.join(format!("{:03}", d / 100)).join(format!("d{d}"));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("f");
            std::fs::write(&file, format!("file {d} ").repeat(d % 7 + 1)).unwrap();
            xattr::set(&file, "user.which", d.to_string().as_bytes()).unwrap();
        }
        let (repo, done) = back_up_and_check_every_file(work.path(), &src, dirs);
        for d in [0, walk::MAX_OPEN_DIRS - 1, walk::MAX_OPEN_DIRS, dirs - 1] {
            let path = src.join(format!("{:03}", d / 100)).join(format!("d{d}")).join("f");
            let node = repo.find_node(&done.snapshot.tree, &path.display().to_string()).unwrap();
            let recorded: Vec<_> =
                node.xattrs.iter().map(|x| (&x.name.0[..], &x.value.0[..])).collect();
            assert_eq!(recorded, vec![(&b"user.which"[..], d.to_string().as_bytes())], "{d}");
        }
    }
}
