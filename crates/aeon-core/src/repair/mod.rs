//! `aeon repair`: finds every missing, truncated or damaged object and heals what it can.
//!
//! Finding needs no key: every object but the config and locks is named by the BLAKE3 of its
//! bytes, and the heads of parity objects (readable without the key) say which packs must
//! exist. Healing, in order: rebuild from the object's parity group, or from its copy in
//! `parity/`; then copy from another location of a multi-location repository. What is left is
//! lost: with the key, the recovery points and files that need it are named. Then packs that
//! have no parity yet (written before parity was on, or by a backup that failed before sealing
//! its last group) are protected, and missing copies of small objects written.

pub mod index;
pub mod snapshots;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::parity::{self, ParityListing, REPLICATED, replica_name};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::state::Locked;

/// The kinds whose objects are named by their hash, hence checkable without the key.
pub const CONTENT_NAMED: [FileType; 7] = [
    FileType::Key,
    FileType::Audit,
    FileType::Pack,
    FileType::Index,
    FileType::Snapshot,
    FileType::Label,
    FileType::Parity,
];

#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Find and plan only: nothing is written or removed.
    pub dry_run: bool,
    pub threads: usize,
}

/// One object found wrong, and what was (or would be) done about it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub location: String,
    /// `pack`, `index`, `snapshots`, `labels`, `keys`, `parity`, or `location` (one that did
    /// not answer: `name` is its URL).
    pub kind: &'static str,
    pub name: String,
    /// `missing`, `truncated`, `damaged`, `unprotected`, `leftover`.
    pub problem: String,
    /// What was done, or would be with --dry-run (`rebuilt from parity group …`, `restored
    /// from its copy`, `copied from <location>`, `protected`), or why nothing can be.
    pub action: String,
    /// Healed (false: planned only, or impossible).
    pub healed: bool,
    /// Nothing can rebuild it.
    pub lost: bool,
}

/// A recovery point that needs lost data.
#[derive(Debug, Clone, Serialize)]
pub struct AffectedPoint {
    pub snapshot: String,
    pub time: String,
    /// Paths whose content (or, for directories, listing) is lost.
    pub files: Vec<String>,
    /// The recovery point object itself is lost.
    pub whole: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    pub objects_checked: u64,
    pub bytes_read: u64,
    pub findings: Vec<Finding>,
    pub affected: Vec<AffectedPoint>,
    pub packs_protected: u64,
    pub parity_bytes_written: u64,
    pub copies_written: u64,
}

impl RepairReport {
    pub fn lost(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.lost)
    }
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.healed)
    }
    /// Locations that did not answer, so were not repaired.
    pub fn unreachable(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind == "location")
    }
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Pack => "pack",
        other => other.dir(),
    }
}

/// Every content-named object of one storage, read and hashed.
#[derive(Debug, Default)]
pub struct Scan {
    pub listed: BTreeMap<(FileType, String), u64>,
    /// Objects that do not hash to their name or cannot be read, with why.
    pub damaged: BTreeMap<(FileType, String), String>,
    pub bytes_read: u64,
}

/// Reads every content-named object of `storage` whole and compares it with its name.
pub fn scan(storage: &dyn Backend, threads: usize, progress: &dyn Progress) -> Result<Scan> {
    let mut all: Vec<(FileType, ObjectInfo)> = Vec::new();
    for t in CONTENT_NAMED {
        all.extend(storage.list(t)?.into_iter().map(|o| (t, o)));
    }
    progress.set_total(all.len() as u64, all.iter().map(|(_, o)| o.size).sum());
    let damaged = Mutex::new(BTreeMap::new());
    let bytes = AtomicU64::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::io("repair's reading threads", std::io::Error::other(e)))?;
    pool.install(|| {
        all.par_iter().for_each(|(t, o)| {
            // A name that is not a hash (e.g. a copy in parity/) is checked against its original's.
            let expected = match (t, parity::ParityName::parse(&o.name)) {
                (FileType::Parity, Some(parity::ParityName::Replica { name, .. })) => name,
                _ => o.name.clone(),
            };
            let why = match storage.read(*t, &o.name) {
                Ok(data) => {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    (Id::of_stored_bytes(&data).to_hex() != expected)
                        .then(|| format!("{} bytes that do not hash to its name", data.len()))
                }
                Err(Error::ObjectNotFound { .. }) => None, // Removed meanwhile.
                Err(e) => Some(format!("unreadable: {e}")),
            };
            if let Some(why) = why {
                damaged.lock().unwrap_or_else(|p| p.into_inner()).insert((*t, o.name.clone()), why);
            }
            progress.add(1, o.size);
        })
    });
    Ok(Scan {
        listed: all.into_iter().map(|(t, o)| ((t, o.name), o.size)).collect(),
        damaged: damaged.into_inner().unwrap_or_else(|p| p.into_inner()),
        bytes_read: bytes.into_inner(),
    })
}

/// Heals one storage from its own parity and copies. Returns the findings and the objects
/// still lost there.
pub fn heal_storage(
    storage: &dyn Backend,
    location: &str,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Finding>, Scan)> {
    let scan = scan(storage, opts.threads, progress)?;
    let mut findings = Vec::new();
    let finding =
        |t: FileType, name: &str, problem: String, action: String, healed: bool, lost: bool| {
            Finding {
                location: location.to_string(),
                kind: kind_name(t),
                name: name.to_string(),
                problem,
                action,
                healed,
                lost,
            }
        };
    let distrust: HashSet<String> = scan
        .damaged
        .keys()
        .filter(|(t, _)| *t == FileType::Parity)
        .map(|(_, n)| n.clone())
        .collect();
    let parity_listing: Vec<ObjectInfo> = scan
        .listed
        .iter()
        .filter(|((t, n), _)| *t == FileType::Parity && !distrust.contains(n))
        .map(|((_, n), s)| ObjectInfo { name: n.clone(), size: *s })
        .collect();
    let listing = ParityListing::from_listing(storage, &parity_listing, &HashSet::new())?;
    let mut handled: HashSet<(FileType, String)> = HashSet::new();
    // A listed shard whose head could not be read (a server answering badly just after a
    // restart, say) hides its group: repair cannot say that group is whole.
    for (name, why) in &listing.unreadable {
        if !scan.damaged.contains_key(&(FileType::Parity, name.clone())) {
            handled.insert((FileType::Parity, name.clone()));
            findings.push(finding(
                FileType::Parity,
                name,
                format!("unreadable ({why})"),
                "its group was not examined: run `aeon repair` again once it reads".into(),
                false,
                false,
            ));
        }
    }
    // A damaged parity object's head is not trusted, but where it still names a shard its group
    // lacks, the finding can name the object itself.
    let mut damaged_shards: HashMap<(parity::GroupId, u32, u8), String> = HashMap::new();
    // Groups known only from damaged heads, with the (shard, object) each damaged head claims.
    type Candidate = (parity::Group, Vec<(usize, String)>);
    let mut candidates: BTreeMap<(parity::GroupId, u32), Candidate> = BTreeMap::new();
    for name in &distrust {
        let size = scan.listed.get(&(FileType::Parity, name.clone())).copied().unwrap_or(0);
        let want = (parity::head_len(parity::MAX_DATA) as u64).min(size);
        if let Ok(bytes) = storage.read_range(FileType::Parity, name, 0, want)
            && bytes.len() > parity::FIXED_HEAD_LEN
            && let Ok(k) =
                parity::ShardHeader::slots_announced(&bytes[..parity::FIXED_HEAD_LEN], name)
            && bytes.len() >= parity::head_len(k)
        {
            // The length check would refuse a truncated object: decode against the head's own.
            let head = &bytes[..parity::head_len(k)];
            let length = u64::from_le_bytes(head[33..41].try_into().unwrap_or_default());
            if let Ok(h) =
                parity::ShardHeader::decode(head, parity::head_len(k) as u64 + length, name)
            {
                damaged_shards.insert((h.group, h.generation, h.index), name.clone());
                // A group no intact object describes: its damaged heads are candidates, proven
                // (or not) by rebuilding the damaged object to the same name.
                if !listing.groups.iter().any(|g| g.id == h.group) {
                    let entry = candidates.entry((h.group, h.generation)).or_insert_with(|| {
                        (
                            parity::Group {
                                id: h.group,
                                generation: h.generation,
                                scheme: h.scheme,
                                length: h.length,
                                members: h.members.clone(),
                                shards: vec![None; h.scheme.parity as usize],
                                format_version: bytes[4],
                            },
                            Vec::new(),
                        )
                    });
                    if entry.0.members == h.members && entry.0.length == h.length {
                        entry.1.push((h.index as usize, name.clone()));
                    }
                }
            }
        }
    }
    let pack_problem = |name: &str, expected: u64| -> Option<String> {
        match (
            scan.listed.get(&(FileType::Pack, name.to_string())),
            scan.damaged.get(&(FileType::Pack, name.to_string())),
        ) {
            (None, _) => Some("missing".into()),
            (Some(&size), Some(_)) if size < expected => {
                Some(format!("truncated ({size} of {expected} bytes)"))
            }
            (Some(_), Some(why)) => Some(format!("damaged ({why})")),
            (Some(&size), None) if size != expected => {
                Some(format!("{size} bytes where its group says {expected}"))
            }
            _ => None,
        }
    };
    let all_groups =
        listing.groups.iter().map(|g| (g.clone(), Vec::new())).chain(candidates.into_values());
    for (g, verify) in all_groups {
        let g = &g;
        if !verify.is_empty() {
            // Only what its rebuild proves: the damaged objects come back under their names.
            let members_intact =
                g.packs().all(|m| pack_problem(&m.pack.to_hex(), m.size).is_none());
            let all: Vec<usize> = (0..g.scheme.parity as usize).collect();
            let proven = members_intact
                && parity::groups::rebuild(storage, g, &[], &all).is_ok_and(|rebuilt| {
                    verify.iter().all(|(j, name)| rebuilt.get(*j).is_some_and(|r| r.name == *name))
                });
            if !proven {
                continue;
            }
        }
        let gname = hex::encode(&g.id[..6]);
        let mut lost_members = Vec::new();
        let mut problems = Vec::new();
        for (i, m) in g.members.iter().enumerate() {
            let Some(m) = m else { continue };
            if let Some(p) = pack_problem(&m.pack.to_hex(), m.size) {
                lost_members.push(i);
                problems.push((FileType::Pack, m.pack.to_hex(), p));
            }
        }
        let lost_shards: Vec<usize> =
            (0..g.shards.len()).filter(|&j| g.shards[j].is_none()).collect();
        for &j in &lost_shards {
            match damaged_shards.get(&(g.id, g.generation, j as u8)) {
                Some(name) => problems.push((
                    FileType::Parity,
                    name.clone(),
                    format!("damaged (parity shard {j} of group {gname})"),
                )),
                None => problems.push((
                    FileType::Parity,
                    format!("shard {j} of group {gname}"),
                    "missing".into(),
                )),
            }
        }
        if problems.is_empty() {
            continue;
        }
        let can = lost_members.len() + lost_shards.len() <= g.scheme.parity as usize;
        let outcome = match (can, opts.dry_run) {
            (true, false) => parity::groups::rebuild(storage, g, &lost_members, &lost_shards)
                .and_then(|rebuilt| {
                    for r in &rebuilt {
                        storage.write(r.kind, &r.name, &r.bytes)?;
                    }
                    Ok(rebuilt.into_iter().map(|r| (r.kind, r.name)).collect::<Vec<_>>())
                }),
            _ => Ok(Vec::new()),
        };
        for (t, name, problem) in problems {
            handled.insert((t, name.clone()));
            let f = match (&outcome, can, opts.dry_run) {
                (_, false, _) => finding(
                    t,
                    &name,
                    problem,
                    format!(
                        "cannot be rebuilt: group {gname} ({}) lost {} of its objects, more than its {} parity shards",
                        g.scheme,
                        lost_members.len() + lost_shards.len(),
                        g.scheme.parity
                    ),
                    false,
                    true,
                ),
                (_, true, true) => finding(
                    t,
                    &name,
                    problem,
                    format!("would be rebuilt from parity group {gname}"),
                    false,
                    false,
                ),
                (Ok(_), true, false) => finding(
                    t,
                    &name,
                    problem,
                    format!("rebuilt from parity group {gname}"),
                    true,
                    false,
                ),
                (Err(e), true, false) => finding(
                    t,
                    &name,
                    problem,
                    format!("rebuild from parity group {gname} failed: {e}"),
                    false,
                    true,
                ),
            };
            findings.push(f);
        }
    }
    // Damaged parity objects a rebuild wrote over (a rebuilt shard has its original's name).
    for name in distrust.iter().filter(|_| !opts.dry_run) {
        if let Ok(data) = storage.read(FileType::Parity, name)
            && Id::of_stored_bytes(&data).to_hex() == *name
        {
            handled.insert((FileType::Parity, name.clone()));
        }
    }
    // Small objects: restore from a copy, or rewrite a missing or damaged copy.
    let mut originals: BTreeMap<(FileType, String), bool> = BTreeMap::new(); // → intact
    for (t, n) in scan.listed.keys() {
        if REPLICATED.contains(t) {
            originals.insert((*t, n.clone()), !scan.damaged.contains_key(&(*t, n.clone())));
        }
    }
    for (kind, name) in listing.replicas.keys() {
        originals.entry((*kind, name.clone())).or_insert(false);
    }
    for ((t, name), intact) in originals {
        let copies: Vec<(u8, bool)> = listing
            .replicas
            .get(&(t, name.clone()))
            .map(|v| {
                v.iter()
                    .map(|(n, _)| {
                        (
                            *n,
                            !scan
                                .damaged
                                .contains_key(&(FileType::Parity, replica_name(t, &name, *n))),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let good_copy = copies.iter().find(|(_, ok)| *ok).map(|(n, _)| *n);
        if !intact {
            let problem =
                if scan.listed.contains_key(&(t, name.clone())) { "damaged" } else { "missing" };
            handled.insert((t, name.clone()));
            let f = match (good_copy, opts.dry_run) {
                (Some(n), true) => finding(
                    t,
                    &name,
                    problem.into(),
                    format!("would be restored from copy {n}"),
                    false,
                    false,
                ),
                (Some(n), false) => {
                    let done = storage
                        .read(FileType::Parity, &replica_name(t, &name, n))
                        .and_then(|d| storage.write(t, &name, &d));
                    match done {
                        Ok(()) => finding(
                            t,
                            &name,
                            problem.into(),
                            format!("restored from copy {n}"),
                            true,
                            false,
                        ),
                        Err(e) => finding(
                            t,
                            &name,
                            problem.into(),
                            format!("restoring from copy {n} failed: {e}"),
                            false,
                            true,
                        ),
                    }
                }
                (None, _) => finding(
                    t,
                    &name,
                    problem.into(),
                    "no intact copy in parity/".into(),
                    false,
                    true,
                ),
            };
            findings.push(f);
        }
        // Damaged copies are rewritten from the original (or the good copy).
        for (n, ok) in copies.iter().copied().filter(|(_, ok)| !ok) {
            let _ = ok;
            let copy = replica_name(t, &name, n);
            handled.insert((FileType::Parity, copy.clone()));
            let source = if intact {
                Some((t, name.clone()))
            } else {
                good_copy.map(|g| (FileType::Parity, replica_name(t, &name, g)))
            };
            let f = match (source, opts.dry_run) {
                (Some(_), true) => finding(
                    FileType::Parity,
                    &copy,
                    "damaged".into(),
                    "would be rewritten".into(),
                    false,
                    false,
                ),
                (Some((st, sn)), false) => match storage
                    .read(st, &sn)
                    .and_then(|d| storage.write(FileType::Parity, &copy, &d))
                {
                    Ok(()) => finding(
                        FileType::Parity,
                        &copy,
                        "damaged".into(),
                        "rewritten".into(),
                        true,
                        false,
                    ),
                    Err(e) => finding(
                        FileType::Parity,
                        &copy,
                        "damaged".into(),
                        format!("rewriting failed: {e}"),
                        false,
                        false,
                    ),
                },
                (None, _) => finding(
                    FileType::Parity,
                    &copy,
                    "damaged".into(),
                    "removed: nothing to rewrite it from".into(),
                    !opts.dry_run
                        && parity::replicas::remove_if_present(storage, FileType::Parity, &copy)
                            .is_ok(),
                    false,
                ),
            };
            findings.push(f);
        }
    }
    // Whatever else is damaged: nothing here can rebuild it.
    for ((t, name), why) in &scan.damaged {
        if handled.contains(&(*t, name.clone())) {
            continue;
        }
        if *t == FileType::Parity {
            // A damaged parity object that no rebuild replaced: its group is unknown (its head is
            // not to be trusted) and whatever it held is rebuilt from the packs by protection.
            let f = finding(
                *t,
                name,
                format!("damaged ({why})"),
                if opts.dry_run {
                    "would be removed (its packs get new parity)".into()
                } else {
                    "removed (its packs get new parity)".into()
                },
                false,
                false,
            );
            if !opts.dry_run {
                parity::replicas::remove_if_present(storage, FileType::Parity, name)?;
            }
            findings.push(Finding { healed: !opts.dry_run, ..f });
            continue;
        }
        findings.push(finding(
            *t,
            name,
            format!("damaged ({why})"),
            "not covered by parity".into(),
            false,
            true,
        ));
    }
    Ok((findings, scan))
}

/// Repairs a repository: heals every location, then across locations, then protects what has
/// no parity yet, and names what is lost.
pub fn repair(
    repo: Repository<Locked>,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let mut report = RepairReport { dry_run: opts.dry_run, ..Default::default() };
    let stores: Vec<(String, std::sync::Arc<dyn Backend>)> = match (repo.stripe(), repo.mirror()) {
        // A stripe is healed as a whole: each pack has one place, which its group names.
        (Some(s), _) => {
            vec![(s.location(), std::sync::Arc::new(s.raw()) as std::sync::Arc<dyn Backend>)]
        }
        (None, Some(m)) => {
            m.locations().iter().map(|l| (l.url.clone(), l.backend.clone())).collect()
        }
        (None, None) => vec![(repo.storage().location(), repo.storage().clone())],
    };
    let mut unreachable: Vec<(String, String)> = Vec::new();
    for (url, store) in &stores {
        let down = repo.mirror().and_then(|m| m.locations().iter().find(|l| l.url == *url));
        if let Some(l) = down.filter(|l| l.is_down()) {
            // Found away already (opening the repository): not waited on a second time.
            unreachable.push((url.clone(), l.why_down().unwrap_or_else(|| "no answer".into())));
            continue;
        }
        match heal_storage(store.as_ref(), url, opts, progress) {
            Ok((findings, scan)) => {
                report.objects_checked += scan.listed.len() as u64;
                report.bytes_read += scan.bytes_read;
                report.findings.extend(findings);
            }
            // One mirror location away: the others are still healed, and it is named below.
            Err(e) if stores.len() > 1 && crate::backend::is_location_failure(&e) => {
                // Marked down, so the steps below do not wait on it again.
                if let Some(l) =
                    repo.mirror().and_then(|m| m.locations().iter().find(|l| l.url == *url))
                {
                    l.mark_down(&e);
                }
                unreachable.push((url.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    let mirror = match repo.stripe() {
        Some(s) => Some(s.mirror().as_ref()),
        None => repo.mirror(),
    };
    if let Some(m) = mirror {
        // What a location could not rebuild itself comes from another location's good copy
        // (in a stripe: the small objects every location holds).
        let cross = match repo.stripe() {
            Some(_) => crate::locations::cross_check_of(
                m,
                !opts.dry_run,
                &crate::locations::STRIPE_MIRRORED,
            )?,
            None => crate::locations::cross_check(m, !opts.dry_run)?,
        };
        let healed: HashSet<(String, String, String)> = cross
            .healed
            .iter()
            .map(|(l, o)| (l.clone(), o.kind.to_string(), o.name.clone()))
            .collect();
        for (loc, o) in cross.missing.iter().chain(&cross.damaged) {
            let kind = if o.kind == "data" { "pack" } else { o.kind };
            let done = healed.contains(&(loc.clone(), o.kind.to_string(), o.name.clone()));
            if let Some(f) = report
                .findings
                .iter_mut()
                .find(|f| f.location == *loc && f.kind == kind && f.name == o.name)
            {
                if done {
                    f.action = "copied from another location".into();
                    f.healed = true;
                    f.lost = false;
                } else if opts.dry_run && !cross.lost.iter().any(|l| l.name == o.name) && f.lost {
                    f.action = "would be copied from another location".into();
                    f.lost = false;
                }
            } else {
                report.findings.push(Finding {
                    location: loc.clone(),
                    kind,
                    name: o.name.clone(),
                    problem: "missing or damaged".into(),
                    action: if done {
                        "copied from another location".into()
                    } else if opts.dry_run {
                        "would be copied from another location".into()
                    } else {
                        "could not be copied".into()
                    },
                    healed: done,
                    lost: false,
                });
            }
        }
    }
    let (repo, _unreadable_index) = repo.load_index_tolerant()?;
    if !opts.dry_run && repo.settings().parity.is_some() {
        let protected = parity::manage::protect_all(&repo, progress)?;
        report.packs_protected = protected.packs_protected;
        report.parity_bytes_written = protected.parity_bytes;
        report.copies_written = protected.copies_written;
    }
    // A location that did not answer was neither examined nor healed: saying "no damage" would
    // be a lie (in a stripe, its parity shards are what names the packs the others lack).
    let locations = match repo.stripe() {
        Some(s) => Some(s.mirror().locations()),
        None => repo.mirror().map(|m| m.locations()),
    };
    for l in locations.unwrap_or_default().iter().filter(|l| l.is_down()) {
        if !unreachable.iter().any(|(url, _)| *url == l.url) {
            unreachable.push((l.url.clone(), l.why_down().unwrap_or_else(|| "no answer".into())));
        }
    }
    for (url, why) in unreachable {
        report.findings.push(Finding {
            location: url.clone(),
            kind: "location",
            name: url,
            problem: format!("unreachable ({why})"),
            action: "not examined: run `aeon repair` again once it answers".into(),
            healed: false,
            lost: false,
        });
    }
    let lost_packs: HashSet<Id> = report
        .findings
        .iter()
        .filter(|f| f.lost && f.kind == "pack")
        .filter_map(|f| f.name.parse().ok())
        .collect();
    let lost_points: HashSet<String> = report
        .findings
        .iter()
        .filter(|f| f.lost && f.kind == "snapshots")
        .map(|f| f.name.clone())
        .collect();
    if !lost_packs.is_empty() || !lost_points.is_empty() {
        report.affected = affected_points(&repo, &lost_packs, &lost_points)?;
    }
    if !opts.dry_run {
        let healed = report.findings.iter().filter(|f| f.healed).count();
        let mut event = crate::audit::Event::new("repair")
            .figure("healed", healed as f64)
            .figure("lost", report.lost().count() as f64);
        if report.lost().next().is_some() {
            event.failure = Some(format!("{} object(s) cannot be rebuilt", report.lost().count()));
        }
        repo.audit(event);
    }
    Ok(report)
}

/// The recovery points that need a lost pack's blobs or are lost themselves, with the paths
/// whose data or listing is gone.
pub fn affected_points(
    repo: &Repository,
    lost_packs: &HashSet<Id>,
    lost_points: &HashSet<String>,
) -> Result<Vec<AffectedPoint>> {
    let index = repo.index();
    let mut lost_blobs: HashSet<Id> = HashSet::new();
    for (n, p) in index.packs().iter().enumerate() {
        if lost_packs.contains(&p.id) {
            lost_blobs.extend(index.blobs_in_pack(n as u32).into_iter().map(|(id, _)| id));
        }
    }
    let mut out = Vec::new();
    for name in lost_points {
        out.push(AffectedPoint {
            snapshot: name.clone(),
            time: String::new(),
            files: Vec::new(),
            whole: true,
        });
    }
    let (points, _) = repo.list_snapshots()?;
    let mut memo = HashMap::new();
    for p in points {
        let files = lost_below(repo, &p.snapshot.tree, &lost_blobs, &mut memo, 0)
            .unwrap_or_else(|| std::rc::Rc::new(vec![String::new()]));
        if !files.is_empty() {
            out.push(AffectedPoint {
                snapshot: p.id.to_hex(),
                time: p.snapshot.time.to_rfc3339(),
                files: files.iter().map(|f| format!("/{f}")).collect(),
                whole: false,
            });
        }
    }
    Ok(out)
}

/// Paths below tree `id` (relative, `/`-separated) that need a lost blob: files whose content
/// does, and directories whose listing is lost (suffixed `/`). `None`: the tree itself is lost.
fn lost_below(
    repo: &Repository,
    id: &Id,
    lost: &HashSet<Id>,
    memo: &mut HashMap<Id, Option<std::rc::Rc<Vec<String>>>>,
    depth: usize,
) -> Option<std::rc::Rc<Vec<String>>> {
    if let Some(v) = memo.get(id) {
        return v.clone();
    }
    let tree = if lost.contains(id) || depth >= crate::tree::MAX_DEPTH {
        None
    } else {
        repo.load_tree(id).ok()
    };
    let result = tree.map(|tree| {
        let mut out = Vec::new();
        for node in &tree.nodes {
            let name = node.name.to_string_lossy();
            match (&node.kind, &node.subtree) {
                (crate::tree::NodeKind::Dir, Some(sub)) => {
                    match lost_below(repo, sub, lost, memo, depth + 1) {
                        None => out.push(format!("{name}/")),
                        Some(v) => out.extend(v.iter().map(|p| format!("{name}/{p}"))),
                    }
                }
                _ if node.content.iter().any(|b| lost.contains(b)) => out.push(name),
                _ => {}
            }
        }
        std::rc::Rc::new(out)
    });
    memo.insert(*id, result.clone());
    result
}

/// Restores key slots from their copies in `parity/`, before the repository is opened (a
/// password cannot open a damaged slot, and repair needs the key for everything else). Needs
/// no key and no lock: a slot is named by its hash, so only its exact bytes are written back.
/// Returns the slots restored.
pub fn restore_key_slots(storage: &dyn Backend) -> Result<Vec<String>> {
    let listing = storage.list(FileType::Parity)?;
    let copies = parity::replicas::list_replicas(&listing);
    let mut restored = Vec::new();
    for ((t, name), numbers) in copies {
        if t != FileType::Key {
            continue;
        }
        let intact = |data: &[u8]| Id::of_stored_bytes(data).to_hex() == name;
        match storage.read(FileType::Key, &name) {
            Ok(d) if intact(&d) => continue,
            Ok(_) | Err(Error::ObjectNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        for (n, _) in numbers {
            if let Ok(d) = storage.read(FileType::Parity, &replica_name(t, &name, n))
                && intact(&d)
            {
                storage.write(FileType::Key, &name, &d)?;
                restored.push(name.clone());
                break;
            }
        }
    }
    Ok(restored)
}

/// Rebuilds the packs named in `damaged` (found by a check or scrub) from their parity groups,
/// without reading the rest of the repository. Each rebuilt pack is accepted only if it hashes
/// to its name. Packs in no group, or in a group that lost too much, are reported lost.
pub fn rebuild_packs(storage: &dyn Backend, damaged: &[String]) -> Result<Vec<Finding>> {
    let listing = ParityListing::read(storage, &HashSet::new())?;
    let wanted: HashSet<&str> = damaged.iter().map(String::as_str).collect();
    let mut findings = Vec::new();
    let mut covered = HashSet::new();
    for g in &listing.groups {
        let lost: Vec<usize> = (0..g.members.len())
            .filter(|&i| g.members[i].is_some_and(|m| wanted.contains(m.pack.to_hex().as_str())))
            .collect();
        if lost.is_empty() {
            continue;
        }
        let missing_shards: Vec<usize> =
            (0..g.shards.len()).filter(|&j| g.shards[j].is_none()).collect();
        let gname = hex::encode(&g.id[..6]);
        let outcome =
            parity::groups::rebuild(storage, g, &lost, &missing_shards).and_then(|rebuilt| {
                for r in &rebuilt {
                    storage.write(r.kind, &r.name, &r.bytes)?;
                }
                Ok(())
            });
        for &i in &lost {
            let Some(m) = g.members[i] else { continue };
            covered.insert(m.pack.to_hex());
            let (action, healed) = match &outcome {
                Ok(()) => (format!("rebuilt from parity group {gname}"), true),
                Err(e) => (format!("cannot be rebuilt: {e}"), false),
            };
            findings.push(Finding {
                location: storage.location(),
                kind: "pack",
                name: m.pack.to_hex(),
                problem: "damaged or missing".into(),
                action,
                healed,
                lost: !healed,
            });
        }
    }
    for name in damaged.iter().filter(|n| !covered.contains(*n)) {
        findings.push(Finding {
            location: storage.location(),
            kind: "pack",
            name: name.clone(),
            problem: "damaged or missing".into(),
            action: "in no parity group".into(),
            healed: false,
            lost: true,
        });
    }
    Ok(findings)
}
