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
//! read: their content list is taken from the parent.

mod walk;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, FixedOffset};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::blob::{self, BlobType, Compression};
use crate::chunker::{Chunker, ChunkerParams, chunk_slice};
use crate::direct_read::DirectReader;
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::id::Id;
use crate::metadata::{OwnerNames, SparseReader};
use crate::progress::Progress;
use crate::repository::{Packer, PackerStats, Repository};
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{Node, NodeKind, RawName, Timestamp, Tree};

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
}

impl BackupOptions {
    pub fn new(paths: Vec<PathBuf>) -> BackupOptions {
        BackupOptions {
            paths,
            hostname: String::new(),
            username: String::new(),
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
        }
    }
}

#[derive(Debug)]
pub struct BackupResult {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    /// Items that could not be backed up; the recovery point was still written without them.
    pub warnings: Vec<String>,
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
}

struct FileJob {
    path: PathBuf,
    /// What `lstat` said before reading: compared afterwards to detect changes during the read.
    before: FileState,
    sparse: bool,
    done: Sender<Option<FileOutcome>>,
}

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
    File(Node, Receiver<Option<FileOutcome>>),
    LeaveDir(Node, Option<Id>),
}

struct ChunkJob {
    id: Id,
    data: Vec<u8>,
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
    counters: Counters,
    owners: OwnerNames,
    opts: &'a BackupOptions,
    /// Readers inside a file larger than one chunk (each holds an 8 MiB chunker buffer): at
    /// most one per compressor, so that many readers cost memory only for small files.
    large_files: Slots,
}

/// A counting semaphore.
struct Slots {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), freed: std::sync::Condvar::new() }
    }
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
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
            counters: Counters::default(),
            owners: OwnerNames::default(),
            opts,
            large_files: Slots::new(opts.threads),
        }
    }

    fn fail(&self, e: Error) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The walker has finished (or the backup is failing): scanning ahead is of no more use.
    fn walk_done(&self) -> bool {
        self.walked.load(Ordering::Relaxed) || self.aborted()
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
    let (job_tx, job_rx) = bounded::<FileJob>(256);
    let (item_tx, item_rx) = bounded::<Vec<Item>>(16);
    let (chunk_tx, chunk_rx) = bounded::<ChunkJob>(threads * 2);
    let (blob_tx, blob_rx) = bounded::<SealedBlob>(threads * 2);

    let (root, packer_stats) = std::thread::scope(|s| {
        let shared = &shared;
        // With a parent, most files are skipped unread and the walk is the backup's pace: a scan
        // ahead warms the caches it reads. The same scan gives a progress bar its totals.
        let mut stop_early_scan = None;
        if opts.scan_totals || parent_tree.is_some() {
            stop_early_scan = early.as_ref().map(EarlyScan::stopper);
            let sources = &sources;
            let (excludes, one_fs) = (&opts.excludes, opts.one_file_system);
            s.spawn(move || {
                let totals = match early {
                    Some(scan) => scan.totals(),
                    None => {
                        let stop = || shared.walk_done();
                        walk::scan_ahead(sources, SCAN_THREADS, excludes, one_fs, &stop)
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
        // cores keep the compressors fed (200,000 small files: 16 s with 2 readers, 8.5 s with 8).
        for _ in 0..(threads * 4).min(32) {
            let job_rx = job_rx.clone();
            let chunk_tx = chunk_tx.clone();
            s.spawn(move || run_reader(shared, job_rx, chunk_tx));
        }
        let finisher = s.spawn({
            let blob_tx = blob_tx.clone();
            move || run_finisher(shared, item_rx, blob_tx)
        });
        drop((chunk_tx, blob_tx, job_rx, chunk_rx, blob_rx));

        let walker = walk::Walker::new(shared, job_tx, item_tx);
        walker.run(&sources, parent_tree.as_ref());
        drop(walker);
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
    let (chunk_tx, chunk_rx) = bounded::<ChunkJob>(threads * 2);
    let (blob_tx, blob_rx) = bounded::<SealedBlob>(threads * 2);
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
    chunks: Sender<ChunkJob>,
    blobs: &Sender<SealedBlob>,
) -> Option<Id> {
    let repo = shared.repo;
    let mut node = Node::new(RawName(name.as_bytes().to_vec()), NodeKind::File);
    for c in Chunker::new(source, repo.settings().chunker, repo.chunker_seed()) {
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
        if shared.claim(&id) && chunks.send(ChunkJob { id, data }).is_err() {
            return None;
        }
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
fn store_tree(shared: &Shared, id: Id, bytes: &[u8], blobs: &Sender<SealedBlob>) -> bool {
    if !shared.claim(&id) {
        return true;
    }
    match blob::seal_blob(shared.repo.cipher(), BlobType::Tree, &id, bytes, shared.compression) {
        Ok(sealed) => {
            let raw_len = bytes.len() as u32;
            blobs.send(SealedBlob { blob_type: BlobType::Tree, id, sealed, raw_len }).is_ok()
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
    chunk_rx: &Receiver<ChunkJob>,
    blob_tx: &Sender<SealedBlob>,
    blob_rx: &Receiver<SealedBlob>,
) -> std::thread::ScopedJoinHandle<'scope, PackerStats> {
    let packer = s.spawn({
        let blob_rx = blob_rx.clone();
        move || run_packer(shared, blob_rx)
    });
    for _ in 0..threads {
        let chunk_rx = chunk_rx.clone();
        let blob_tx = blob_tx.clone();
        s.spawn(move || run_compressor(shared, chunk_rx, blob_tx));
    }
    packer
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
    };
    // Written last: every blob it references is already durable and indexed.
    let snapshot_id = repo.save_snapshot(&snapshot)?;
    let warnings = shared.warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(BackupResult { snapshot_id, snapshot, warnings, packer: packer_stats })
}

fn unsafe_free_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}
fn unsafe_free_gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

fn run_packer(shared: &Shared, rx: Receiver<SealedBlob>) -> PackerStats {
    let mut packer = shared.repo.packer_within_quota(shared.opts.quota_used);
    // A failed backup still records the packs it completed, so that the next one reuses them.
    let abandon = |packer: Packer| packer.abandon().unwrap_or_default();
    for b in rx.iter() {
        if let Err(e) = packer.add(b.blob_type, b.id, &b.sealed, b.raw_len) {
            shared.fail(e);
            return abandon(packer);
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

fn run_compressor(shared: &Shared, rx: Receiver<ChunkJob>, tx: Sender<SealedBlob>) {
    let cipher = shared.repo.cipher();
    for job in rx.iter() {
        if shared.aborted() {
            return;
        }
        match blob::seal_blob(cipher, BlobType::Data, &job.id, &job.data, shared.compression) {
            Ok(sealed) => {
                let b = SealedBlob {
                    blob_type: BlobType::Data,
                    id: job.id,
                    sealed,
                    raw_len: job.data.len() as u32,
                };
                if tx.send(b).is_err() {
                    return;
                }
            }
            Err(e) => return shared.fail(e),
        }
    }
}

fn open_source(path: &std::path::Path) -> std::io::Result<File> {
    // O_NOATIME keeps the backup from touching access times; only the owner (or root) may ask.
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

fn run_reader(shared: &Shared, rx: Receiver<FileJob>, chunks: Sender<ChunkJob>) {
    let params = shared.repo.settings().chunker;
    let seed = shared.repo.chunker_seed();
    let hasher = shared.repo.hasher();
    // Holes and zero runs give the same all-zero chunks again and again: hash them once.
    let mut zero_ids: HashMap<usize, Id> = HashMap::new();
    let mut buffer: Vec<u8> = Vec::new();
    for job in rx.iter() {
        if shared.aborted() {
            return;
        }
        let mut content = Vec::new();
        let mut size_read = 0u64;
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
            if shared.claim(&id) {
                return chunks.send(ChunkJob { id, data: data.to_vec() }).is_ok();
            }
            true
        };
        let result = (|| -> std::io::Result<(bool, File)> {
            let size_hint = job.before.size;
            let large = size_hint > params.min_size as u64;
            let _slot = large.then(|| shared.large_files.acquire());
            let mut file = open_source(&job.path)?;
            if job.sparse || size_hint > WHOLE_READ_LIMIT {
                // Huge or sparse: stream it through the chunker's own buffer.
                let complete = if job.sparse {
                    stream_chunks(
                        &mut SparseReader::new(file.try_clone()?, size_hint),
                        &mut handle,
                        params,
                        seed,
                    )?
                } else {
                    let mut direct = DirectReader::new(file);
                    let complete = stream_chunks(&mut direct, &mut handle, params, seed)?;
                    file = direct.into_inner();
                    complete
                };
                return Ok((complete, file));
            }
            // Read it whole, then cut it in place. Small files reuse this reader's buffer; a
            // large one gets its own, freed afterwards, so that idle readers hold no big buffers.
            if large {
                buffer = Vec::with_capacity(size_hint as usize + 1);
            } else {
                buffer.clear();
            }
            (&mut file).take(WHOLE_READ_LIMIT + 1).read_to_end(&mut buffer)?;
            if buffer.len() as u64 > WHOLE_READ_LIMIT {
                // It grew past the limit since it was listed: stream the rest after what we have.
                let rest = std::mem::take(&mut buffer);
                let mut rest = std::io::Cursor::new(rest).chain(&mut file);
                let complete = stream_chunks(&mut rest, &mut handle, params, seed)?;
                return Ok((complete, file));
            }
            if buffer.len() as u64 <= params.min_size as u64 {
                if !buffer.is_empty() && !handle(&buffer) {
                    return Ok((false, file));
                }
            } else {
                for c in chunk_slice(&buffer, params, seed) {
                    if !handle(c) {
                        return Ok((false, file));
                    }
                }
            }
            Ok((true, file))
        })();
        if buffer.capacity() > params.min_size as usize * 2 {
            buffer = Vec::new();
        }
        shared.counters.bytes_read.fetch_add(size_read, Ordering::Relaxed);
        shared.progress.add(1, 0);
        match result {
            Ok((true, file)) => {
                if let Ok(md) = file.metadata() {
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
                let _ = job.done.send(Some(FileOutcome { content, size_read }));
            }
            Ok((false, _)) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                shared
                    .warn(format!("{}: vanished during the backup (skipped)", job.path.display()));
                let _ = job.done.send(None);
            }
            Err(e) => {
                shared.warn(format!("{}: {e} (file skipped)", job.path.display()));
                let _ = job.done.send(None);
            }
        }
    }
}

/// Chunks a stream, handing each chunk to `handle`; false if `handle` asked to stop.
fn stream_chunks(
    reader: &mut dyn Read,
    handle: &mut dyn FnMut(&[u8]) -> bool,
    params: ChunkerParams,
    seed: u64,
) -> std::io::Result<bool> {
    let mut chunker = Chunker::new(reader, params, seed);
    while let Some(chunk) = chunker.next_chunk() {
        if !handle(chunk?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn run_finisher(shared: &Shared, rx: Receiver<Vec<Item>>, blobs: Sender<SealedBlob>) -> Option<Id> {
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let c = &shared.counters;
    for item in rx.iter().flatten() {
        match item {
            Item::EnterDir => stack.push(Vec::new()),
            Item::Node(n) => stack.last_mut()?.push(n),
            Item::File(mut n, done) => {
                if let Ok(Some(outcome)) = done.recv() {
                    n.content = outcome.content;
                    n.size = outcome.size_read;
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
