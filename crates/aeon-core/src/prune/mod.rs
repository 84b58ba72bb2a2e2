//! Garbage collection that never deletes data someone still needs.
//!
//! # The protocol
//! Backups never wait for prune, and prune never waits for backups: they coordinate through
//! locks (see [`crate::lock`]) and a two-phase deletion recorded in the index.
//!
//! 1. Prune takes the exclusive lock, lists the packs on storage, then judges the locks, then
//!    loads the index and every recovery point and marks every blob they reach.
//! 2. Packs with no used blob are *condemned*; packs with more than `max_unused` unused bytes
//!    are *repacked* (their used blobs copied into new packs, verified) and then condemned.
//!    The new index lists live packs as usual and the condemned ones in a condemnation record:
//!    from the moment it is written, no new backup reuses their blobs (a backup takes its lock
//!    before it loads the index, and skips unchanged files whose blobs are not live).
//! 3. Prune then lists the locks. Every lock it sees belongs to a process that may have loaded
//!    the index before the condemnation, and may yet write a recovery point that refers to a
//!    condemned blob. The record names those locks (`wait_for`).
//! 4. When none of those locks is left (this run, if there were none, or with `--wait`; else a
//!    later prune), prune reloads the recovery points: a condemned pack that one of them needs
//!    is put back; the rest are deleted, and a new index without them replaces the record.
//!
//! Packs that no index names (left by a killed backup or prune) are adopted only when no other
//! process holds a lock: listed before the locks were judged, they cannot belong to a process
//! still running, and every recovery point that could need them was written before its lock
//! went away, so it is seen. A crash at any point leaves either the old index or the new one in
//! force (the new one supersedes the old, which is removed last), and the next prune finishes
//! what was left: superseded index files, pending deletions, orphaned packs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::FileType;
use crate::blob;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Condemnation, IndexFile, IndexPack};
use crate::lock::{self, Liveness, LockKind};
use crate::pack::PackEntry;
use crate::progress::{Notice, Progress};
use crate::repository::state::{Indexed, Locked, Open};
use crate::repository::{IndexState, Repository};
use crate::snapshot::SnapshotEntry;

/// Packs per index file written by prune: keeps every file far below the decoder's size limit.
const PACKS_PER_INDEX_FILE: usize = 4096;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack a pack when more than this fraction of its bytes is unused (0.0 to 1.0).
    pub max_unused: f64,
    pub dry_run: bool,
    /// Wait up to this long for the processes that hold back deletions.
    pub wait: Option<Duration>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { max_unused: 0.2, dry_run: false, wait: None }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    pub packs_before: usize,
    pub bytes_before: u64,
    pub packs_deleted: usize,
    pub bytes_freed: u64,
    pub packs_repacked: usize,
    pub blobs_repacked: u64,
    pub bytes_written: u64,
    /// Packs condemned and left for a later prune (someone may still refer to them).
    pub packs_pending: usize,
    pub bytes_pending: u64,
    pub packs_restored: usize,
    /// Packs the index named that storage does not have.
    pub packs_missing: usize,
    pub orphan_packs_adopted: usize,
    pub orphan_bytes_adopted: u64,
    pub index_files_removed: usize,
    /// Partial uploads of killed writers (older than an hour) removed.
    pub leftovers_removed: u64,
    /// Label records of recovery points that are gone (a forget stopped between the two).
    pub label_records_removed: usize,
    /// Parity groups rewritten because packs of theirs were deleted.
    pub parity_groups_updated: u64,
    /// Packs without parity (a backup failed before sealing their group) now protected.
    pub packs_protected: u64,
    /// Processes whose locks hold back deletion.
    pub waiting_for: Vec<String>,
    pub messages: Vec<String>,
}

/// One pack as prune sees it.
struct PackState {
    id: Id,
    size: u64,
    blobs: Vec<PackEntry>,
    fate: Fate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    /// Condemned now: goes into the new condemnation record.
    Condemn,
    /// Condemned earlier and still held back: carried into the new record as it was.
    StillCondemned(usize),
    Delete,
    /// Named by the index but not on storage: nothing is read from it, and the new index
    /// leaves it out (an index rolled back or copied from elsewhere is not trusted).
    Gone,
}

/// What prune will do, decided under its exclusive lock (which the plan holds until it is
/// carried out or dropped): [`PrunePlan::report`] tells it, [`PrunePlan::execute`] does it.
pub struct PrunePlan {
    repo: Repository<Indexed>,
    opts: PruneOptions,
    report: PruneReport,
    own_lock: Option<Id>,
    packs: Vec<PackState>,
    chosen: HashMap<Id, usize>,
    used_bytes: Vec<u64>,
    alone: bool,
    state: IndexState,
    group_clear: Vec<bool>,
    snapshots: Vec<SnapshotEntry>,
    visited: HashSet<Id>,
}

/// Runs prune on `repo`: [`plan`], then [`PrunePlan::execute`] (a dry run only plans).
pub fn prune(
    repo: Repository<Open>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let plan = plan(repo, opts)?;
    if opts.dry_run {
        return Ok(plan.report());
    }
    plan.execute(progress)
}

/// Takes the exclusive lock and decides what to delete and repack; nothing is changed.
pub fn plan(repo: Repository<Open>, opts: &PruneOptions) -> Result<PrunePlan> {
    let mut report = PruneReport { dry_run: opts.dry_run, ..Default::default() };
    let (repo, messages) = repo.lock_reporting(LockKind::Exclusive, "prune")?;
    report.messages.extend(messages);
    let own_lock = repo.held_lock().map(|l| l.id());

    // Order matters (see the module documentation): packs, then locks, then index and points.
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|o| o.name.parse::<Id>().ok().map(|id| (id, o.size)))
        .collect();
    let judged = repo.judge_locks()?;
    report.messages.extend(lock::remove_stale(repo.backend().as_ref(), &judged)?);
    // Holders, not objects: an append-only writer's lock is a series of objects.
    let live_locks: HashSet<Id> = judged
        .iter()
        .filter(|l| l.liveness == Liveness::Live && Some(l.id) != own_lock)
        .map(|l| l.holder())
        .collect();
    let (repo, snapshots, visited, used) = load_and_mark(repo)?;
    let state = repo.index_state().clone();
    report.snapshots = snapshots.len();

    // Every pack: live, condemned earlier, and (when nobody else works) unindexed.
    let index = repo.index();
    let mut packs: Vec<PackState> = index
        .packs()
        .iter()
        .map(|p| PackState { id: p.id, size: p.size, blobs: Vec::new(), fate: Fate::Keep })
        .collect();
    for (id, l) in index.blobs().chain(index.condemned_blobs()) {
        packs[l.pack as usize].blobs.push(PackEntry {
            blob_type: l.blob_type,
            id,
            offset: l.offset,
            length: l.length,
            raw_len: l.raw_len,
        });
    }
    let mut number: HashMap<Id, usize> = packs.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    if live_locks.is_empty() {
        let mut orphans: Vec<_> =
            stored.iter().filter(|(id, _)| !number.contains_key(id)).collect();
        orphans.sort();
        for (id, &size) in orphans {
            match repo.read_pack_table(&id.to_hex(), size) {
                Ok(p) => {
                    report.orphan_packs_adopted += 1;
                    report.orphan_bytes_adopted += size;
                    number.insert(p.id, packs.len());
                    packs.push(PackState { id: p.id, size, blobs: p.blobs, fate: Fate::Keep });
                }
                Err(e) => report.messages.push(format!(
                    "left unindexed pack {id} alone: its table cannot be read ({e})"
                )),
            }
        }
    }
    report.packs_before = packs.len();
    report.bytes_before = packs.iter().map(|p| p.size).sum();

    // Condemnations whose waiting is over: their packs go, unless a recovery point needs them.
    let mut group_clear = Vec::new();
    for (g, c) in state.condemnations.iter().enumerate() {
        let clear = match &c.wait_for {
            Some(locks) => locks.iter().all(|l| !live_locks.contains(l)),
            None => live_locks.is_empty(),
        };
        group_clear.push(clear);
        for pid in &c.packs {
            if let Some(&i) = number.get(pid) {
                packs[i].fate = if clear { Fate::Delete } else { Fate::StillCondemned(g) };
            }
        }
    }

    // Packs the index names that storage does not have, as loading the index found them.
    for id in &state.missing_packs {
        if let Some(&i) = number.get(id) {
            packs[i].fate = Fate::Gone;
            report.packs_missing += 1;
            report.messages.push(format!(
                "pack {id} is named by the index but not on storage: left out of the new index"
            ));
        }
    }

    // Where each used blob will be read from: a live copy first, then a pack condemned earlier
    // (which must then come back).
    let mut chosen: HashMap<Id, usize> = HashMap::with_capacity(used.len());
    let mut used_bytes = vec![0u64; packs.len()];
    for pass in [false, true] {
        for (i, p) in packs.iter().enumerate() {
            let condemned = matches!(p.fate, Fate::Delete | Fate::StillCondemned(_));
            if condemned != pass || p.fate == Fate::Gone {
                continue;
            }
            for b in &p.blobs {
                if used.contains(&b.id)
                    && let std::collections::hash_map::Entry::Vacant(v) = chosen.entry(b.id)
                {
                    v.insert(i);
                    used_bytes[i] += b.length as u64;
                }
            }
        }
    }
    if let Some(missing) = used.iter().find(|id| !chosen.contains_key(id)) {
        return Err(Error::corrupt(
            format!("blob {missing}"),
            "a recovery point needs it but no pack holds it; prune changes nothing until \
             `aeon check` is clean",
        ));
    }
    for (i, p) in packs.iter_mut().enumerate() {
        match p.fate {
            Fate::Delete if used_bytes[i] > 0 => {
                report.packs_restored += 1;
                p.fate = Fate::Keep;
            }
            Fate::StillCondemned(_) | Fate::Delete | Fate::Gone => continue,
            _ => {}
        }
        let blob_bytes: u64 = p.blobs.iter().map(|b| b.length as u64).sum();
        let unused = blob_bytes.saturating_sub(used_bytes[i]);
        p.fate = if used_bytes[i] == 0 {
            Fate::Condemn
        } else if blob_bytes > 0 && unused as f64 / p.size as f64 > opts.max_unused {
            Fate::Repack
        } else {
            Fate::Keep
        };
    }
    for m in &report.messages {
        repo.notify(Notice::note(m.clone()));
    }
    Ok(PrunePlan {
        alone: live_locks.is_empty(),
        repo,
        opts: opts.clone(),
        report,
        own_lock,
        packs,
        chosen,
        used_bytes,
        state,
        group_clear,
        snapshots,
        visited,
    })
}

impl PrunePlan {
    /// What [`PrunePlan::execute`] would do, as its report (packs condemned now are counted as
    /// deleted when no other process holds a lock, else as pending).
    pub fn report(&self) -> PruneReport {
        let mut report = self.report.clone();
        report.dry_run = true;
        tally(&self.packs, &mut report, &self.used_bytes, self.alone);
        report
    }

    /// Carries the plan out: deletions that were safe before, repacking, the new index and
    /// condemnation record, the deletions nobody holds back, and the removal of superseded
    /// index files. Releases the lock.
    pub fn execute(self, progress: &dyn Progress) -> Result<PruneReport> {
        let PrunePlan {
            mut repo,
            opts,
            mut report,
            own_lock,
            mut packs,
            chosen,
            state,
            group_clear,
            snapshots,
            mut visited,
            ..
        } = self;
        let repo = &mut repo;
        report.dry_run = false;
        let told = report.messages.len();

        // Deletions that were already safe before this run.
        let doomed: Vec<&PackState> = packs.iter().filter(|p| p.fate == Fate::Delete).collect();
        remove_packs(repo, doomed.iter().map(|p| p.id), &mut report)?;
        for p in doomed {
            report.packs_deleted += 1;
            report.bytes_freed += p.size;
        }

        // Repack: used blobs of mostly-unused packs into new packs, verified on the way.
        repack(repo, &mut packs, &chosen, &mut report, progress)?;

        // The new index: live packs in plain files, then the small file that supersedes the old
        // ones and records the condemned packs.
        let live: Vec<IndexPack> = packs
            .iter()
            .filter(|p| p.fate == Fate::Keep)
            .map(|p| IndexPack { id: p.id, size: p.size, blobs: p.blobs.clone() })
            .collect();
        for chunk in live.chunks(PACKS_PER_INDEX_FILE) {
            repo.write_index_file(&IndexFile { packs: chunk.to_vec(), ..Default::default() })?;
        }
        let mut supersedes: Vec<Id> =
            state.active.iter().chain(&state.superseded).copied().collect();
        supersedes.sort();
        supersedes.dedup();
        let mut condemned: Vec<Condemnation> = Vec::new();
        for (g, c) in state.condemnations.iter().enumerate() {
            if group_clear[g] {
                continue;
            }
            let members: Vec<IndexPack> = packs
                .iter()
                .filter(|p| p.fate == Fate::StillCondemned(g))
                .map(|p| IndexPack { id: p.id, size: p.size, blobs: p.blobs.clone() })
                .collect();
            if !members.is_empty() {
                condemned.push(Condemnation {
                    at: c.at,
                    wait_for: c.wait_for.clone(),
                    packs: members,
                });
            }
        }
        let now = chrono::Utc::now().timestamp();
        let fresh: Vec<IndexPack> = packs
            .iter()
            .filter(|p| matches!(p.fate, Fate::Condemn | Fate::Repack))
            .map(|p| IndexPack { id: p.id, size: p.size, blobs: p.blobs.clone() })
            .collect();
        let fresh_at = condemned.len();
        if !fresh.is_empty() {
            condemned.push(Condemnation { at: now, wait_for: None, packs: fresh });
        }
        let mut record = IndexFile { supersedes, packs: Vec::new(), condemned };
        let (mut record_id, _) = repo.write_index_file(&record)?;

        // Who may have loaded the index before the record existed?
        if record.condemned.len() > fresh_at {
            let mut holders = live_holders(repo, own_lock)?;
            if let Some(limit) = opts.wait {
                let deadline = Instant::now() + limit;
                while !holders.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_secs(2).min(limit));
                    let still = live_holders(repo, own_lock)?;
                    holders.retain(|(id, _)| still.iter().any(|(s, _)| s == id));
                }
            }
            let old_record = record_id;
            if holders.is_empty() {
                // Nobody else: the condemned packs go now, but for any that a recovery point written
                // meanwhile needs (its backup finished between our reading and the record).
                let fresh_group = record.condemned.remove(fresh_at);
                let needed = mark_newer(repo, &snapshots, &mut visited)?;
                let mut doomed = Vec::new();
                for p in fresh_group.packs {
                    if p.blobs.iter().any(|b| needed.contains(&b.id)) {
                        report.packs_restored += 1;
                        record.packs.push(p);
                    } else {
                        report.packs_deleted += 1;
                        report.bytes_freed += p.size;
                        doomed.push(p.id);
                    }
                }
                remove_packs(repo, doomed, &mut report)?;
            } else {
                let ids = holders.iter().map(|(id, _)| *id).collect();
                record.condemned[fresh_at].wait_for = Some(ids);
                report.waiting_for = holders.into_iter().map(|(_, d)| d).collect();
            }
            record.supersedes.push(old_record);
            record_id = repo.write_index_file(&record)?.0;
        }
        for c in &record.condemned {
            report.packs_pending += c.packs.len();
            report.bytes_pending += c.packs.iter().map(|p| p.size).sum::<u64>();
        }

        // Old index files last (the newest record supersedes them all).
        for old in &record.supersedes {
            if *old == record_id {
                continue;
            }
            match repo.backend().remove(FileType::Index, &old.to_hex()) {
                Ok(()) => report.index_files_removed += 1,
                Err(Error::ObjectNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        report.leftovers_removed = repo.backend().remove_leftovers(LEFTOVER_AGE)?;
        report.label_records_removed = repo.remove_orphan_labels()?;
        if repo.settings().parity.is_some() {
            let protected = crate::parity::manage::protect_all(repo, &crate::progress::NoProgress)?;
            report.packs_protected = protected.packs_protected;
        }
        for m in &report.messages[told..] {
            repo.notify(Notice::note(m.clone()));
        }
        repo.audit(
            crate::audit::Event::new("prune")
                .figure("packs_deleted", report.packs_deleted as f64)
                .figure("packs_repacked", report.packs_repacked as f64)
                .figure("bytes_freed", report.bytes_freed as f64)
                .figure("bytes_written", report.bytes_written as f64),
        );
        Ok(report)
    }
}

/// Partial uploads untouched this long belong to no running writer.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Live locks other than ours, with descriptions.
fn live_holders(repo: &Repository, own: Option<Id>) -> Result<Vec<(Id, String)>> {
    Ok(repo
        .judge_locks()?
        .into_iter()
        .filter(|l| l.liveness == Liveness::Live && Some(l.id) != own)
        .map(|l| (l.holder(), l.info.describe()))
        .collect())
}

/// Deletes packs; first, when the repository has parity, takes them out of their groups (a
/// group must not count on a pack that is gone, see `parity::groups::take_out`).
fn remove_packs(
    repo: &Repository,
    ids: impl IntoIterator<Item = Id>,
    report: &mut PruneReport,
) -> Result<()> {
    let ids: Vec<Id> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(());
    }
    repo.ensure_lock_held()?;
    if repo.settings().parity.is_some() {
        let doomed: HashSet<Id> = ids.iter().copied().collect();
        report.parity_groups_updated +=
            crate::parity::groups::take_out_packs(repo.storage().as_ref(), &doomed)? as u64;
    }
    for id in ids {
        repo.ensure_lock_held()?;
        match repo.backend().remove(FileType::Pack, &id.to_hex()) {
            Ok(()) | Err(Error::ObjectNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The repository with its index, every recovery point, the trees visited and the blobs used.
type Marked = (Repository, Vec<SnapshotEntry>, HashSet<Id>, HashSet<Id>);

/// Loads the index and every recovery point, and marks every blob they reach. A recovery point
/// whose trees the index does not know yet was written after the index was read: reading the
/// index again finds them.
fn load_and_mark(repo: Repository<Locked>) -> Result<Marked> {
    let mut repo = repo.load_index()?;
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            repo.reload_index()?;
        }
        // Data only a damaged index file described looks unused: deleting it would lose it.
        if let Some((name, e)) = repo.index_state().damaged_files.first() {
            return Err(Error::corrupt(
                format!("index file {name}"),
                format!("{e}; prune needs every index file intact, and stops"),
            ));
        }
        let snapshots = readable_snapshots(&repo)?;
        let mut visited = HashSet::new();
        let mut used = HashSet::new();
        let marked = snapshots
            .iter()
            .try_for_each(|s| mark_reachable(&repo, &s.snapshot.tree, &mut visited, &mut used));
        match marked {
            Ok(()) => return Ok((repo, snapshots, visited, used)),
            Err(Error::BlobNotIndexed(_)) if attempt < 10 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Blobs reached by recovery points written since `known` was listed.
fn mark_newer(
    repo: &mut Repository,
    known: &[SnapshotEntry],
    visited: &mut HashSet<Id>,
) -> Result<HashSet<Id>> {
    let known: HashSet<Id> = known.iter().map(|s| s.id).collect();
    let mut attempt = 0;
    loop {
        let newer = readable_snapshots(repo)?;
        let mut seen = visited.clone();
        let mut needed = HashSet::new();
        let marked = newer
            .iter()
            .filter(|s| !known.contains(&s.id))
            .try_for_each(|s| mark_reachable(repo, &s.snapshot.tree, &mut seen, &mut needed));
        match marked {
            Ok(()) => {
                *visited = seen;
                return Ok(needed);
            }
            Err(Error::BlobNotIndexed(_)) if attempt < 10 => {
                attempt += 1;
                repo.reload_index()?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every recovery point; one that cannot be read stops prune, which could not know what it
/// uses.
fn readable_snapshots(repo: &Repository) -> Result<Vec<SnapshotEntry>> {
    let (snapshots, unreadable) = repo.list_snapshots()?;
    if let Some((name, e)) = unreadable.into_iter().next() {
        return Err(Error::corrupt(
            format!("recovery point {name}"),
            format!("{e}; prune cannot tell what it uses, so it changes nothing"),
        ));
    }
    Ok(snapshots)
}

/// Adds every blob reachable from `root` to `used`, reading each tree once.
pub fn mark_reachable(
    repo: &Repository,
    root: &Id,
    visited: &mut HashSet<Id>,
    used: &mut HashSet<Id>,
) -> Result<()> {
    let mut stack = vec![*root];
    while let Some(tree_id) = stack.pop() {
        used.insert(tree_id);
        if !visited.insert(tree_id) {
            continue;
        }
        let tree = repo.load_tree(&tree_id)?;
        for node in tree.nodes {
            used.extend(node.content);
            if let Some(sub) = node.subtree {
                stack.push(sub);
            }
        }
    }
    Ok(())
}

/// Copies the used blobs of every pack marked for repacking into new packs (which the packer
/// indexes). A pack whose blobs fail verification is kept as it is.
fn repack(
    repo: &Repository,
    packs: &mut [PackState],
    chosen: &HashMap<Id, usize>,
    report: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<()> {
    let targets: Vec<usize> = (0..packs.len()).filter(|&i| packs[i].fate == Fate::Repack).collect();
    if targets.is_empty() {
        return Ok(());
    }
    progress.set_total(targets.len() as u64, targets.iter().map(|&i| packs[i].size).sum());
    let mut packer = repo.packer();
    for &i in &targets {
        let p = &packs[i];
        let name = p.id.to_hex();
        let data = match repo.backend().read(FileType::Pack, &name) {
            Ok(d) if d.len() as u64 == p.size => d,
            Ok(_) | Err(_) => {
                report.messages.push(format!("kept pack {name}: it could not be read whole"));
                packs[i].fate = Fate::Keep;
                continue;
            }
        };
        // A write-only client's pack stays whole: its blobs carry its own ids, which only its
        // run's packs are read with.
        match repo.pack_keys_of(&data, &format!("pack {name}")) {
            Ok((cipher, _)) if cipher.envelope().is_none() => {}
            _ => {
                report.messages.push(format!("kept pack {name} whole: a write-only client's"));
                packs[i].fate = Fate::Keep;
                continue;
            }
        }
        let mut copied = Vec::new();
        let mut ok = true;
        for b in p.blobs.iter().filter(|b| chosen.get(&b.id) == Some(&i)) {
            // Offsets and lengths come from the index: checked, never trusted to be in range.
            let start = b.offset as usize;
            let sealed = start.checked_add(b.length as usize).and_then(|end| data.get(start..end));
            let opened = sealed.map(|sealed| {
                blob::open_blob(repo.cipher(), repo.hasher(), b.blob_type, &b.id, sealed, b.raw_len)
            });
            let Some((sealed, Ok(_))) = sealed.zip(opened) else {
                report.messages.push(format!(
                    "kept pack {name}: blob {} fails verification (run `aeon check --read-data`)",
                    b.id
                ));
                ok = false;
                break;
            };
            copied.push((b.blob_type, b.id, sealed, b.raw_len));
        }
        if !ok {
            packs[i].fate = Fate::Keep;
            continue;
        }
        for (t, id, sealed, raw_len) in copied {
            packer.add(t, id, sealed, raw_len)?;
            report.blobs_repacked += 1;
        }
        report.packs_repacked += 1;
        progress.add(1, p.size);
    }
    let stats = packer.finish()?;
    report.bytes_written += stats.stored_bytes;
    Ok(())
}

/// Fills the report of a dry run.
fn tally(packs: &[PackState], report: &mut PruneReport, used_bytes: &[u64], alone: bool) {
    for (i, p) in packs.iter().enumerate() {
        match p.fate {
            Fate::Delete => {
                report.packs_deleted += 1;
                report.bytes_freed += p.size;
            }
            Fate::Condemn | Fate::Repack if alone => {
                report.packs_deleted += 1;
                report.bytes_freed += p.size;
                if p.fate == Fate::Repack {
                    report.packs_repacked += 1;
                    report.bytes_written += used_bytes[i];
                }
            }
            Fate::Condemn | Fate::Repack | Fate::StillCondemned(_) => {
                report.packs_pending += 1;
                report.bytes_pending += p.size;
                if p.fate == Fate::Repack {
                    report.packs_repacked += 1;
                    report.bytes_written += used_bytes[i];
                }
            }
            Fate::Keep | Fate::Gone => {}
        }
    }
}
