//! Integrity checks.
//!
//! Structure (always): every index file decrypts; every indexed pack exists with the size the
//! index records; every recovery point decrypts; every tree they reach decrypts, and every blob
//! a tree names is indexed. With `read_data`: every pack is read whole, its BLAKE3 compared with
//! its name, its table compared with the index, and every blob decrypted and verified.
//! Problems are collected, not fatal, and each names the object and the recovery points hit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{Backend, FileType, ObjectInfo};
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack;
use crate::progress::Progress;
use crate::repository::state::Locked;
use crate::repository::{Repository, UnreadableObjects};
use crate::snapshot::SnapshotEntry;
use crate::tree::{NodeKind, Tree};

pub mod scrub;

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub read_data: bool,
    pub threads: usize,
    /// Read only these packs' data (implies reading data).
    pub subset: Option<scrub::Subset>,
    /// Read the next slice of a rolling scrub (of `subset`'s size, or a seventh of the data),
    /// and record where it stopped.
    pub scrub: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            read_data: false,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            subset: None,
            scrub: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged object, e.g. `pack 3fa2…` or `recovery point 81c0…`.
    pub object: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// Notes that need no repair (e.g. packs left by an interrupted backup).
    pub notes: Vec<String>,
    /// Full ids of recovery points that reference damaged or missing data.
    pub affected_snapshots: Vec<String>,
    pub snapshots: usize,
    pub packs: usize,
    pub blobs: usize,
    pub trees_checked: usize,
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Packs found missing or damaged, by name.
    pub damaged_packs: Vec<String>,
    /// Where a rolling scrub stands after this check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrub: Option<scrub::ScrubState>,
    /// Bytes of live packs in all (to set `bytes_read` against).
    pub data_bytes: u64,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { object: object.into(), message: message.into() });
    }
}

/// The bytes of packs hinted to storage while the key is derived: about what a disk delivers
/// in the time Argon2id takes.
const EARLY_PREFETCH_BYTES: u64 = 48 << 20;

/// The packs of a repository, listed before it is open, and the first of them (in the order
/// `check` reads them) hinted to storage: the disk works while the key is derived, when a
/// cold check would otherwise not have begun reading. Hand it to [`check_after_listing`].
pub struct EarlyPackRead {
    location: String,
    thread: Option<JoinHandle<Result<Vec<ObjectInfo>>>>,
}

impl EarlyPackRead {
    pub fn start(backend: Arc<dyn Backend>) -> EarlyPackRead {
        let location = backend.location();
        // Only a head start: a check without it is as thorough, so a failed spawn is ignored.
        let thread = std::thread::Builder::new()
            .name("early-packs".into())
            .spawn(move || {
                let mut packs = backend.list(FileType::Pack)?;
                packs.sort_by(|a, b| a.name.cmp(&b.name));
                let mut hinted = 0;
                for p in &packs {
                    if hinted >= EARLY_PREFETCH_BYTES {
                        break;
                    }
                    backend.prefetch(FileType::Pack, &p.name, 0, 0);
                    hinted += p.size;
                }
                Ok(packs)
            })
            .ok();
        EarlyPackRead { location, thread }
    }

    /// The listing, if it was made of the storage `repo` reads (a repository whose config names
    /// several locations reads through all of them, and is listed afresh).
    fn listing_of(mut self, repo: &Repository) -> Option<Result<Vec<ObjectInfo>>> {
        if self.location != repo.backend().location() {
            return None;
        }
        self.thread.take()?.join().ok()
    }
}

/// Checks `repo`; loads its index itself. Only failures to reach storage at all are `Err`.
pub fn check(
    repo: Repository<Locked>,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    check_after_listing(repo, opts, progress, None)
}

/// [`check`], with the packs listed (and the first hinted) by `early` before `repo` was opened.
pub fn check_after_listing(
    repo: Repository<Locked>,
    opts: &CheckOptions,
    progress: &dyn Progress,
    early: Option<EarlyPackRead>,
) -> Result<CheckReport> {
    repo.refuse_write_only("a check reads what others wrote")?;
    let mut report = CheckReport::default();
    let mut scrub_record = None;
    for slot in repo.backend().list(FileType::Key)? {
        if let Some(mode) = repo.backend().readable_by_others(FileType::Key, &slot.name) {
            report.notes.push(format!(
                "warning: key slot {} is readable by other users (mode {mode:04o}): whoever can \
                 copy it can guess the password offline; `chmod 600` it and `chmod 700` its folders",
                slot.name
            ));
        }
    }
    let (repo, unreadable) = repo.load_index_tolerant()?;
    for (name, e) in unreadable {
        report.problem(error_object(&e, &format!("index file {name}")), error_message(&e));
    }
    let repo = &repo;
    let index = repo.index();

    // Blob ids known to be unreadable: every blob of a damaged pack, and every missing blob.
    let mut bad_blobs: HashSet<Id> = HashSet::new();
    let mut bad_packs: HashSet<u32> = HashSet::new();

    let (listing, listed_before_index) = match early.and_then(|e| e.listing_of(repo)) {
        Some(listing) => (listing?, true),
        None => (repo.backend().list(FileType::Pack)?, false),
    };
    let mut stored: HashMap<String, u64> = listing.into_iter().map(|o| (o.name, o.size)).collect();
    if listed_before_index {
        // A backup or prune that finished between the listing and the index load has indexed
        // packs the listing cannot show: each is looked up before it is called missing.
        for p in index.packs() {
            let name = p.id.to_hex();
            if !stored.contains_key(&name)
                && let Some(size) = repo.backend().stat(FileType::Pack, &name)?
            {
                stored.insert(name, size);
            }
        }
    }
    let (mut pending, mut pending_bytes) = (0usize, 0u64);
    for (n, p) in index.packs().iter().enumerate() {
        if p.condemned {
            pending += 1;
            pending_bytes += p.size;
        }
        match stored.get(&p.id.to_hex()) {
            // Prune may delete a condemned pack at any time; only a recovery point that still
            // needs one of its blobs makes its absence a problem (found by the tree walk).
            None if p.condemned => {
                bad_packs.insert(n as u32);
            }
            None => {
                report.problem(format!("pack {}", p.id), "missing from storage");
                bad_packs.insert(n as u32);
            }
            Some(&size) if size != p.size => {
                let how = if size < p.size { "truncated" } else { "larger than recorded" };
                report.problem(
                    format!("pack {}", p.id),
                    format!("{how}: {size} bytes on storage, {} in the index", p.size),
                );
                bad_packs.insert(n as u32);
            }
            Some(_) => {}
        }
    }
    let unindexed = stored
        .keys()
        .filter(|k| k.parse::<Id>().map_or(true, |id| index.pack_number(&id).is_none()))
        .count();
    if unindexed > 0 {
        report.notes.push(format!(
            "{unindexed} pack(s) not in any index (left by an interrupted backup or prune, or \
             being written by a running backup; `aeon prune` adopts or removes them)"
        ));
    }
    if pending > 0 {
        report.notes.push(format!(
            "{pending} pack(s), {pending_bytes} bytes, await deletion by a later prune"
        ));
    }
    report.packs = index.packs().len() - pending;
    report.blobs = index.blob_count();

    // The trees are walked while the packs are read: the walk is mostly waiting for storage,
    // the reading mostly computing. Reading verifies every tree blob anyway, so it also keeps
    // what the walk needs of each (its subtrees and its own problems), and the walk, once the
    // reading is done, reads no tree twice; meanwhile only the recovery points are listed.
    // That needs reading to find nothing bad: the walk must then name the recovery points
    // that reach damage, and is done again (or, with packs missing from the start, at once)
    // with every tree loaded.
    // Which packs' data is read: all, a subset, or a scrub's next slice.
    let read_data = opts.read_data || opts.subset.is_some() || opts.scrub;
    let candidates: Vec<u32> =
        (0..index.packs().len() as u32).filter(|p| !bad_packs.contains(p)).collect();
    report.data_bytes = candidates.iter().map(|&p| index.pack(p).size).sum();
    let only: Option<HashSet<u32>> = match (opts.scrub, opts.subset) {
        (true, subset) => {
            let (state, old) = scrub::load_state(repo)?;
            let bytes = match subset {
                Some(scrub::Subset::Bytes(b)) => b,
                Some(scrub::Subset::Percent(p)) => {
                    (report.data_bytes as f64 * p / 100.0).ceil() as u64
                }
                Some(scrub::Subset::Part { m, .. }) => report.data_bytes.div_ceil(m as u64),
                None => report.data_bytes.div_ceil(7),
            };
            let now = chrono::Local::now().fixed_offset();
            let (slice, next) = scrub::next_slice(index, &candidates, state.as_ref(), bytes, now);
            scrub_record = Some((next, old));
            Some(slice)
        }
        (false, Some(subset)) => Some(scrub::select(index, &candidates, subset)),
        (false, None) => None,
    };
    let known_bad = blobs_of_packs(repo, &bad_packs);
    let summarise = read_data && only.is_none() && known_bad.is_empty();
    let (walked, read_found_damage) = std::thread::scope(|s| {
        // The walk recurses once per tree level: a thread with a deep stack (see MAX_DEPTH).
        let walker = (!summarise).then(|| {
            let walk = || check_snapshots(repo, repo.list_snapshots(), &known_bad, None);
            crate::parallel::spawn_deep(s, "check-walk", walk)
        });
        let lister = summarise.then(|| s.spawn(|| repo.list_snapshots()));
        let bad_before = bad_packs.len();
        let summaries = if read_data {
            let (report, bad_packs, bad_blobs) = (&mut report, &mut bad_packs, &mut bad_blobs);
            read_all_packs(
                repo,
                opts,
                only.as_ref(),
                progress,
                report,
                bad_packs,
                bad_blobs,
                summarise,
            )
        } else {
            TreeSummaries::new()
        };
        let damaged = bad_packs.len() > bad_before || !bad_blobs.is_empty();
        let walked = match (walker, lister) {
            (Some(Ok(walker)), _) => Some(join(walker)),
            (Some(Err(e)), _) => Some(Err(Error::io("a thread for check's walk", e))),
            (None, Some(lister)) if !damaged => {
                Some(check_snapshots(repo, join(lister), &known_bad, Some(&summaries)))
            }
            _ => None,
        };
        (walked, damaged)
    });
    let walked = match walked {
        Some(walked) if !read_found_damage => walked?,
        _ => {
            bad_blobs.extend(blobs_of_packs(repo, &bad_packs));
            check_snapshots(repo, repo.list_snapshots(), &bad_blobs, None)?
        }
    };
    report.problems.extend(walked.problems);
    report.snapshots = walked.snapshots;
    report.trees_checked = walked.trees_checked;
    report.affected_snapshots = walked.affected_snapshots;
    let mut damaged: Vec<String> = bad_packs
        .iter()
        .filter(|&&p| !index.pack(p).condemned)
        .map(|&p| index.pack(p).id.to_hex())
        .chain(std::mem::take(&mut report.damaged_packs))
        .collect();
    damaged.sort();
    damaged.dedup();
    report.damaged_packs = damaged;
    if let Some((state, old)) = scrub_record {
        // Recorded whatever was found: the next scrub goes on; damage is reported (and repaired)
        // now, not found again.
        scrub::save_state(repo, &state, &old)?;
        report.scrub = Some(state);
    }
    let mut event = crate::audit::Event::new("check")
        .figure("problems", report.problems.len() as f64)
        .figure("packs_read", report.packs_read as f64)
        .figure("bytes_read", report.bytes_read as f64);
    if !report.is_ok() {
        event.failure = Some(format!("{} problem(s)", report.problems.len()));
    }
    if opts.read_data {
        event = event.arg("read-data");
    }
    repo.audit(event);
    Ok(report)
}

/// Every blob stored in one of `packs`.
fn blobs_of_packs(repo: &Repository, packs: &HashSet<u32>) -> HashSet<Id> {
    if packs.is_empty() {
        return HashSet::new();
    }
    let index = repo.index();
    index
        .blobs()
        .chain(index.condemned_blobs())
        .filter(|(_, loc)| packs.contains(&loc.pack))
        .map(|(id, _)| id)
        .collect()
}

/// A scoped thread's result, its panic passed on.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The recovery points' part of a check: each decrypts, its trees decrypt and name only indexed
/// blobs; those reaching one of `bad_blobs` are listed as affected. A tree in `summaries` was
/// verified by pack reading with no bad blobs known, and is not loaded again.
fn check_snapshots(
    repo: &Repository,
    listed: Result<(Vec<SnapshotEntry>, UnreadableObjects)>,
    bad_blobs: &HashSet<Id>,
    summaries: Option<&TreeSummaries>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let (snapshots, unreadable) = listed?;
    for (name, e) in unreadable {
        report.problem(format!("recovery point {name}"), error_message(&e));
    }
    for (name, e) in repo.load_labels()?.unreadable {
        report.problem(format!("label record {name}"), error_message(&e));
    }
    report.snapshots = snapshots.len();
    let mut walk = Walk { repo, bad_blobs, summaries, verdict: HashMap::new(), report };
    let mut affected = Vec::new();
    for s in &snapshots {
        if walk.tree_is_bad(&s.snapshot.tree, 0) {
            affected.push(s.id.to_hex());
        }
    }
    walk.report.trees_checked = walk.verdict.len();
    walk.report.affected_snapshots = affected;
    Ok(walk.report)
}

fn error_object(e: &Error, fallback: &str) -> String {
    match e {
        Error::Corrupt { object, .. } => object.to_string(),
        _ => fallback.to_string(),
    }
}

fn error_message(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

const GONE: &str = "missing from storage";

#[allow(clippy::too_many_arguments)]
fn read_all_packs(
    repo: &Repository,
    opts: &CheckOptions,
    only: Option<&HashSet<u32>>,
    progress: &dyn Progress,
    report: &mut CheckReport,
    bad_packs: &mut HashSet<u32>,
    bad_blobs: &mut HashSet<Id>,
    summarise: bool,
) -> TreeSummaries {
    let index = repo.index();
    // In name order (an id orders as its hex name), as [`EarlyPackRead`] hinted them.
    let mut todo: Vec<u32> = (0..index.packs().len() as u32)
        .filter(|p| !bad_packs.contains(p) && only.is_none_or(|o| o.contains(p)))
        .collect();
    todo.sort_by_key(|&p| index.pack(p).id);
    let mut expected: HashMap<u32, Vec<(Id, crate::index::BlobLocation)>> = HashMap::new();
    for (id, loc) in index.blobs().chain(index.condemned_blobs()) {
        expected.entry(loc.pack).or_default().push((id, loc));
    }
    let total: u64 = todo.iter().map(|&p| index.pack(p).size).sum();
    progress.set_total(todo.len() as u64, total);
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let found = Mutex::new(Vec::<(u32, Option<Id>, String)>::new());
    let summaries = Mutex::new(TreeSummaries::new());
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                let mut buf = Vec::new();
                let mut trees = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&p) = todo.get(i) else { break };
                    let info = index.pack(p);
                    // Reading a pack leaves the core idle; while it verifies this one, the pack a
                    // worker will take next arrives (cheaper than more workers, which would
                    // each hold a pack in memory).
                    let ahead = todo.get(i + opts.threads.max(1)).map(|&a| index.pack(a).id);
                    let mut problems = verify_pack(
                        repo,
                        info.id,
                        ahead,
                        expected.get(&p).map(Vec::as_slice).unwrap_or(&[]),
                        &mut buf,
                        summarise.then_some(&mut trees),
                    );
                    if !trees.is_empty() {
                        let mut all = summaries.lock().unwrap_or_else(|e| e.into_inner());
                        all.extend(trees.drain(..));
                    }
                    if info.condemned
                        && problems.iter().any(|(b, m)| b.is_none() && m.contains(GONE))
                    {
                        // Deleted by a prune running meanwhile: it was garbage.
                        problems.clear();
                    }
                    bytes.fetch_add(info.size, Ordering::Relaxed);
                    progress.add(1, info.size);
                    if !problems.is_empty() {
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        f.extend(problems.into_iter().map(|(blob, msg)| (p, blob, msg)));
                    }
                }
            });
        }
    });
    report.packs_read = todo.len() as u64;
    report.bytes_read = bytes.load(Ordering::Relaxed);
    for (p, blob, msg) in found.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let pack_id = index.pack(p).id;
        report.damaged_packs.push(pack_id.to_hex());
        match blob {
            Some(b) => {
                bad_blobs.insert(b);
                report.problem(format!("pack {pack_id}"), format!("blob {b}: {msg}"));
            }
            None => {
                bad_packs.insert(p);
                report.problem(format!("pack {pack_id}"), msg);
            }
        }
    }
    summaries.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Reads one pack whole into `data` and verifies it; returns (blob, message) per problem,
/// `None` for the pack as a whole. With `trees`, the tree blobs verified are summarised into it
/// (for packs laid out as writers store them; the walk loads any other tree itself).
///
/// Every byte is checked. When the table's blobs lie back to back from the first blob offset to
/// the table, each byte is covered by an authenticated box (blobs, table) or by parsing
/// (header, key mode, table length), so when all of them verify the pack is exactly what its
/// writer stored, and hashing it whole to compare with its name would only repeat the work
/// (a fifth of a full check's CPU on large files). Any other layout, or any failure, falls
/// back to that hash.
fn verify_pack(
    repo: &Repository,
    pack_id: Id,
    ahead: Option<Id>,
    expected: &[(Id, crate::index::BlobLocation)],
    data: &mut Vec<u8>,
    trees: Option<&mut Vec<(Id, TreeSummary)>>,
) -> Vec<(Option<Id>, String)> {
    let name = pack_id.to_hex();
    match repo.backend().read_into(FileType::Pack, &name, data) {
        Ok(()) => {}
        Err(Error::ObjectNotFound { .. }) => return vec![(None, GONE.to_string())],
        Err(e) => return vec![(None, format!("unreadable: {}", error_message(&e)))],
    }
    if let Some(ahead) = ahead {
        repo.backend().prefetch(FileType::Pack, &ahead.to_hex(), 0, 0);
    }
    let what = format!("pack {pack_id}");
    let table = pack::read_table(repo.cipher(), data, &what);
    if let Ok(table) = &table
        && let Some(problems) =
            verify_tiled_pack(repo, table, expected, data, trees, ahead.is_none())
    {
        if problems.is_empty() {
            return problems;
        }
        // Damage: name the pack as a whole too if its bytes no longer match its name (the
        // buffer now holds decrypted blobs, so the pack is read again for that).
        let mut out = Vec::new();
        match repo.backend().read_into(FileType::Pack, &name, data) {
            Ok(()) if Id::of_stored_bytes(data) == pack_id => {}
            Ok(()) => out.push((None, NAME_MISMATCH.to_string())),
            Err(e) => out.push((None, format!("unreadable: {}", error_message(&e)))),
        }
        out.extend(problems);
        return out;
    }
    let mut out = Vec::new();
    if Id::of_stored_bytes(data) != pack_id {
        out.push((None, NAME_MISMATCH.to_string()));
    }
    let table = match table {
        Ok(t) => Some(t),
        Err(e) => {
            out.push((None, format!("pack table: {}", error_message(&e))));
            None
        }
    };
    if let Some(table) = &table {
        let in_table: HashMap<Id, &pack::PackEntry> = table.iter().map(|e| (e.id, e)).collect();
        for (id, loc) in expected {
            match in_table.get(id) {
                Some(e) if e.offset == loc.offset && e.length == loc.length => {}
                _ => out.push((Some(*id), DISAGREE.to_string())),
            }
        }
    }
    let head = data.get(..pack::first_blob_offset(None) + crate::format::ENVELOPE_LEN);
    let keys = repo
        .pack_keys_of(head.unwrap_or(data), &what)
        .map(|(c, h)| (c.into_owned(), h.into_owned()));
    for (id, loc) in expected {
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.length as usize);
        // Decrypted where it lies: the pack's own hash and table were checked above.
        let Some(sealed) = data.get_mut(start..end) else {
            out.push((Some(*id), "lies beyond the end of the pack".to_string()));
            continue;
        };
        let (cipher, hasher) = match &keys {
            Ok(keys) => (&keys.0, &keys.1),
            Err(e) => {
                out.push((Some(*id), error_message(e)));
                continue;
            }
        };
        if let Err(e) =
            blob::verify_blob_in_place(cipher, hasher, loc.blob_type, id, sealed, loc.raw_len)
        {
            out.push((Some(*id), error_message(&e)));
        }
    }
    out
}

const NAME_MISMATCH: &str = "content does not match its name (the pack is damaged)";
const DISAGREE: &str = "index and pack table disagree";

/// Verifies every blob of a pack whose table entries lie back to back from the first blob to
/// the table (as writers store them); `None` if they do not, and nothing was verified. The
/// problems name index blobs that failed or that the table does not hold where the index says,
/// and the pack as a whole for a failed blob no index entry refers to.
fn verify_tiled_pack(
    repo: &Repository,
    table: &[pack::PackEntry],
    expected: &[(Id, crate::index::BlobLocation)],
    data: &mut [u8],
    mut trees: Option<&mut Vec<(Id, TreeSummary)>>,
    last: bool,
) -> Option<Vec<(Option<Id>, String)>> {
    let table_start = pack::table_start(data, "pack").ok()?;
    let (cipher, hasher) = repo.pack_keys_of(data, "pack").ok()?;
    let (cipher, hasher) = (cipher.into_owned(), hasher.into_owned());
    let first_blob = pack::first_blob_offset(pack::envelope_of(data, "pack").ok()?);
    let mut order: Vec<&pack::PackEntry> = table.iter().collect();
    order.sort_by_key(|e| e.offset);
    let mut end = first_blob;
    for e in &order {
        // A box is never empty: an empty entry would share its offset with the next one.
        if e.offset as usize != end || e.length == 0 {
            return None;
        }
        end += e.length as usize;
    }
    if end != table_start {
        return None;
    }
    // A worker's `last` pack (no other will be left for it) is verified on every core: with
    // whole packs as the unit, the last of a check ran on one core while the others idled (17
    // packs on 2 cores: a twentieth of a check of the source tree). Every pack so would cost
    // more than it gains: the pool's threads spin between blobs beside the other workers.
    let mut sealed_blobs = Vec::with_capacity(order.len());
    let mut rest = &mut data[first_blob..table_start];
    for e in &order {
        let (sealed, after) = std::mem::take(&mut rest).split_at_mut(e.length as usize);
        sealed_blobs.push((*e, sealed));
        rest = after;
    }
    let (cipher, hasher) = (&cipher, &hasher);
    let summarise = trees.is_some();
    let verify = |(e, sealed): (&pack::PackEntry, &mut [u8])| {
        let tree = summarise && e.blob_type == BlobType::Tree;
        let (kind, id, raw_len) = (e.blob_type, &e.id, e.raw_len);
        let verified =
            blob::verify_blob_in_place_then(cipher, hasher, kind, id, sealed, raw_len, |plain| {
                tree.then(|| summarise_tree(repo, id, plain)).flatten()
            });
        (e.offset, e.id, verified)
    };
    let verified: Vec<_> = if last {
        sealed_blobs.into_par_iter().with_min_len(8).map(verify).collect()
    } else {
        sealed_blobs.into_iter().map(verify).collect()
    };
    let mut failed: HashMap<u32, String> = HashMap::new();
    for (offset, id, verified) in verified {
        match (verified, trees.as_deref_mut()) {
            (Err(err), _) => {
                failed.insert(offset, error_message(&err));
            }
            (Ok(Some(summary)), Some(trees)) => trees.push((id, summary)),
            (Ok(_), _) => {}
        }
    }
    // Back to back, so each offset holds one entry.
    let at: HashMap<u32, &pack::PackEntry> = order.iter().map(|e| (e.offset, *e)).collect();
    let mut out = Vec::new();
    let mut referenced = HashSet::new();
    for (id, loc) in expected {
        let listed = at.get(&loc.offset).is_some_and(|e| e.id == *id && e.length == loc.length);
        if !listed {
            out.push((Some(*id), DISAGREE.to_string()));
        } else if let Some(msg) = failed.get(&loc.offset) {
            out.push((Some(*id), msg.clone()));
        }
        referenced.insert(loc.offset);
    }
    if failed.keys().any(|offset| !referenced.contains(offset)) {
        out.push((None, "a blob no index entry refers to fails verification".to_string()));
    }
    Some(out)
}

/// What the walk needs of a tree: the trees of its directories, and the problems it has on its
/// own (blobs it names that are not indexed, directories without a tree).
struct TreeSummary {
    subtrees: Box<[Id]>,
    problems: Vec<Problem>,
}

/// The summaries of the trees pack reading verified, by tree id.
type TreeSummaries = HashMap<Id, TreeSummary>;

/// Summarises a verified tree blob; `None` for one that does not decode, which the walk loads
/// and reports if a recovery point reaches it.
fn summarise_tree(repo: &Repository, tree_id: &Id, plain: &[u8]) -> Option<TreeSummary> {
    let tree = Tree::decode(plain, &format!("tree {tree_id}")).ok()?;
    let mut problems = Vec::new();
    let (_, subtrees) = inspect_tree(repo, tree_id, &tree, &HashSet::new(), &mut problems);
    Some(TreeSummary { subtrees: subtrees.into_boxed_slice(), problems })
}

/// The problems `tree` has on its own, given the blobs known bad: whether it reaches one of
/// them or a missing blob, and its subtrees.
fn inspect_tree(
    repo: &Repository,
    tree_id: &Id,
    tree: &Tree,
    bad_blobs: &HashSet<Id>,
    problems: &mut Vec<Problem>,
) -> (bool, Vec<Id>) {
    let index = repo.index();
    let mut problem = |object: String, message: String| problems.push(Problem { object, message });
    let mut bad = bad_blobs.contains(tree_id);
    let mut subtrees = Vec::new();
    for (i, fault) in tree.faults() {
        problem(
            format!("tree {tree_id}"),
            format!("not well formed: {fault}: {:?}", tree.nodes[i].name),
        );
        bad = true;
    }
    for node in &tree.nodes {
        if node.kind == NodeKind::File {
            let mut stored_size = Some(0u64);
            for id in &node.content {
                let Some(loc) = index.get_readable(id) else {
                    problem(
                        format!("blob {id}"),
                        format!("referenced by {:?} but not in the index", node.name),
                    );
                    bad = true;
                    stored_size = None;
                    continue;
                };
                stored_size = stored_size.map(|s| s + u64::from(loc.raw_len));
                if bad_blobs.contains(id) {
                    let pack = index.pack(loc.pack);
                    if pack.condemned {
                        problem(
                            format!("blob {id}"),
                            format!(
                                "needed by {:?}, but its pack {} (awaiting deletion) is \
                                 missing or damaged",
                                node.name, pack.id
                            ),
                        );
                    }
                    bad = true;
                }
            }
            if stored_size.is_some_and(|s| s != node.size) {
                problem(
                    format!("tree {tree_id}"),
                    format!(
                        "not well formed: {:?} records {} bytes, its content holds {}",
                        node.name,
                        node.size,
                        stored_size.unwrap_or_default()
                    ),
                );
                bad = true;
            }
        }
        if let Some(sub) = node.subtree.filter(|_| node.own_fault().is_none_or(|f| !f.refused())) {
            subtrees.push(sub);
        }
    }
    (bad, subtrees)
}

/// A walk of recovery points' trees, each visited once.
struct Walk<'a> {
    repo: &'a Repository,
    bad_blobs: &'a HashSet<Id>,
    summaries: Option<&'a TreeSummaries>,
    /// Per tree: does anything below it reach a bad or missing blob?
    verdict: HashMap<Id, bool>,
    report: CheckReport,
}

impl Walk<'_> {
    fn tree_is_bad(&mut self, tree_id: &Id, depth: usize) -> bool {
        if let Some(&v) = self.verdict.get(tree_id) {
            return v;
        }
        if let Err(e) = crate::tree::ensure_depth(depth, &format_args!("tree {tree_id}")) {
            self.report.problem(error_object(&e, "tree"), error_message(&e));
            return true;
        }
        self.verdict.insert(*tree_id, false); // guards against cycles in a crafted repository
        // A summary stands for the tree only where the index still names it readable (it
        // was made from whatever pack held the blob).
        let summary = self
            .summaries
            .and_then(|s| s.get(tree_id))
            .filter(|_| self.repo.index().get_readable(tree_id).is_some());
        let (mut bad, loaded);
        let subtrees: &[Id] = match summary {
            Some(summary) => {
                self.report.problems.extend(summary.problems.iter().cloned());
                bad = !summary.problems.is_empty() || self.bad_blobs.contains(tree_id);
                &summary.subtrees
            }
            None => match self.repo.load_tree_as_stored(tree_id) {
                Ok(tree) => {
                    let problems = &mut self.report.problems;
                    (bad, loaded) =
                        inspect_tree(self.repo, tree_id, &tree, self.bad_blobs, problems);
                    &loaded
                }
                Err(e) => {
                    let object = error_object(&e, &format!("tree {tree_id}"));
                    self.report.problem(object, error_message(&e));
                    self.verdict.insert(*tree_id, true);
                    return true;
                }
            },
        };
        for sub in subtrees {
            bad |= self.tree_is_bad(sub, depth + 1);
        }
        self.verdict.insert(*tree_id, bad);
        bad
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::archiver::{BackupOptions, backup};
    use crate::backend::LocalBackend;
    use crate::keys::KdfParams;
    use crate::progress::NoProgress;
    use crate::repository::InitOptions;

    /// A new repository in `store` with a cheap key derivation, its index loaded.
    fn repository(store: &std::path::Path) -> (Arc<dyn Backend>, Repository) {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(store));
        let init = InitOptions {
            kdf: KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 },
            ..InitOptions::default()
        };
        Repository::init(backend.clone(), b"pw", init).unwrap();
        (backend.clone(), locked(&backend).load_index().unwrap())
    }

    /// The repository in `backend` opened again and locked, as `check` takes it.
    fn locked(backend: &Arc<dyn Backend>) -> Repository<Locked> {
        let repo = Repository::open(backend.clone(), b"pw").unwrap();
        repo.lock(crate::lock::LockKind::Shared, "test").unwrap()
    }

    /// Drops `blob` from every index file (each rewritten as one that supersedes it), as an
    /// index damaged by a bug would: the pack still holds the blob, but nothing can find it.
    fn forget_blob_in_index(repo: &mut Repository, blob: &Id) {
        for file in repo.read_index_files().unwrap() {
            let (old, mut file) = file.unwrap();
            for pack in &mut file.packs {
                pack.blobs.retain(|b| b.id != *blob);
            }
            file.supersedes = vec![old];
            repo.write_index_file(&file).unwrap();
        }
        repo.reload_index().unwrap();
        assert!(repo.index().get(blob).is_none());
    }

    #[test]
    fn a_tree_naming_an_unindexed_blob_is_reported_by_both_walks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, source) = (dir.path().join("repo"), dir.path().join("src"));
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("kept"), vec![7u8; 50_000]).unwrap();
        let lost: Vec<u8> = (0..80_000u32).map(|i| (i * 17 % 253) as u8).collect();
        std::fs::write(source.join("sub").join("lost"), &lost).unwrap();
        let (backend, mut repo) = repository(&store);
        let first = backup(&repo, &BackupOptions::new(vec![source.clone()]), &NoProgress).unwrap();
        // A second recovery point without the file must stay unaffected.
        std::fs::remove_file(source.join("sub").join("lost")).unwrap();
        let second = backup(&repo, &BackupOptions::new(vec![source.clone()]), &NoProgress).unwrap();
        repo.reload_index().unwrap();
        let root = first.snapshot.tree;
        let path = format!("{}/sub/lost", source.display());
        let lost_blob = repo.find_node(&root, &path).unwrap().content[0];
        forget_blob_in_index(&mut repo, &lost_blob);

        let mut reports = Vec::new();
        for read_data in [true, false] {
            let opts = CheckOptions { read_data, threads: 2, ..Default::default() };
            let report = check(locked(&backend), &opts, &NoProgress).unwrap();
            let named: Vec<_> = report
                .problems
                .iter()
                .filter(|p| p.object == format!("blob {lost_blob}"))
                .collect();
            assert_eq!(named.len(), 1, "read_data {read_data}: {:?}", report.problems);
            assert!(named[0].message.contains("\"lost\"") && named[0].message.contains("index"));
            assert_eq!(report.affected_snapshots, vec![first.snapshot_id.to_hex()]);
            assert_ne!(report.affected_snapshots, vec![second.snapshot_id.to_hex()]);
            assert!(!report.is_ok());
            reports.push((report.problems.len(), report.trees_checked, report.snapshots));
        }
        // Reading the packs found nothing wrong in them, so its walk used the summaries; it
        // must see exactly what the walk that loads every tree sees.
        assert_eq!(reports[0], reports[1]);
    }

    #[test]
    fn packs_indexed_after_the_early_listing_are_not_called_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, source) = (dir.path().join("repo"), dir.path().join("src"));
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("a"), vec![7u8; 100_000]).unwrap();
        let (backend, mut repo) = repository(&store);
        let opts = BackupOptions::new(vec![source.clone()]);
        backup(&repo, &opts, &NoProgress).unwrap();

        // Listed now; a second backup then stores a pack the listing does not have.
        let early = EarlyPackRead::start(backend.clone());
        let before = early.listing_of(&repo).unwrap().unwrap();
        std::fs::write(
            source.join("b"),
            (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        backup(&repo, &opts, &NoProgress).unwrap();
        assert!(backend.list(FileType::Pack).unwrap().len() > before.len());
        let late = EarlyPackRead {
            location: backend.location(),
            thread: Some(std::thread::spawn(move || Ok(before))),
        };

        let check_opts = CheckOptions { read_data: true, threads: 2, ..Default::default() };
        let report =
            check_after_listing(locked(&backend), &check_opts, &NoProgress, Some(late)).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.packs_read as usize, backend.list(FileType::Pack).unwrap().len());

        // A pack really gone is still found missing with an early listing.
        repo.reload_index().unwrap();
        let gone = repo.index().packs()[0].id.to_hex();
        std::fs::remove_file(store.join("data").join(&gone[..2]).join(&gone)).unwrap();
        let early = EarlyPackRead::start(backend.clone());
        let report =
            check_after_listing(locked(&backend), &check_opts, &NoProgress, Some(early)).unwrap();
        assert!(
            report.problems.iter().any(|p| p.object.contains(&gone) && p.message.contains(GONE)),
            "{:?}",
            report.problems
        );
    }
}
