//! Turning parity on and off, and what it covers (`aeon parity set | show | off`).

use std::collections::HashSet;

use serde::Serialize;

use super::{ParityListing, REPLICATED, Scheme, groups};
use crate::backend::{FileType, ObjectInfo};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::state::Guarded;

/// What parity covers now.
#[derive(Debug, Default, Serialize)]
pub struct ParityStatus {
    /// `K+M`, or absent when parity is off.
    pub scheme: Option<String>,
    pub groups: usize,
    /// Groups whose parity objects are all on storage.
    pub complete_groups: usize,
    pub packs: usize,
    pub packs_protected: usize,
    pub pack_bytes: u64,
    pub parity_bytes: u64,
    /// Copies of small objects, and how many small objects lack some.
    pub copies: usize,
    pub objects_without_copies: usize,
    /// Parity bytes per byte of pack, in percent.
    pub overhead_percent: f64,
    /// Objects of generations no longer in force, and heads that cannot be read.
    pub leftovers: usize,
    pub unreadable: usize,
}

/// What parity covers in `repo` (reads the head of every parity object).
pub fn status(repo: &Repository) -> Result<ParityStatus> {
    let storage = repo.storage();
    let listing = ParityListing::read(storage.as_ref(), &HashSet::new())?;
    let covered = listing.group_of_pack();
    let packs: Vec<_> = repo.index().packs().iter().filter(|p| !p.condemned).collect();
    let mut st = ParityStatus {
        scheme: repo.settings().parity.map(|s| s.to_string()),
        groups: listing.groups.len(),
        complete_groups: listing.complete_groups(),
        packs: packs.len(),
        packs_protected: packs.iter().filter(|p| covered.contains_key(&p.id)).count(),
        pack_bytes: packs.iter().map(|p| p.size).sum(),
        parity_bytes: listing.bytes,
        copies: listing.replicas.values().map(Vec::len).sum(),
        leftovers: listing.leftovers.len(),
        unreadable: listing.unreadable.len(),
        ..Default::default()
    };
    if let Some(scheme) = repo.settings().parity {
        for t in REPLICATED {
            for o in storage.list(t)? {
                let have = listing.replicas.get(&(t, o.name.clone())).map_or(0, Vec::len);
                if have < scheme.parity as usize {
                    st.objects_without_copies += 1;
                }
            }
        }
    }
    if st.pack_bytes > 0 {
        st.overhead_percent = st.parity_bytes as f64 * 100.0 / st.pack_bytes as f64;
    }
    Ok(st)
}

/// What turning parity on (or protecting what lacks it) did.
#[derive(Debug, Default, Serialize)]
pub struct ProtectReport {
    pub packs_protected: u64,
    pub parity_bytes: u64,
    pub groups: u64,
    pub copies_written: u64,
    /// Packs that did not hash to their name: never protected (`aeon repair` names them).
    pub damaged_packs: Vec<String>,
    pub leftovers_removed: u64,
    /// Sparse groups whose packs went into new groups.
    pub groups_merged: u64,
}

/// Sets the scheme and protects everything stored: packs without a group get new groups,
/// small objects their copies. With another scheme than before, existing groups stay as they
/// are (they keep protecting their packs); only new groups use the new one.
pub fn enable<S: Guarded>(repo: &mut Repository<S>, scheme: Scheme) -> Result<()> {
    if repo.stripe().is_some() && repo.settings().parity != Some(scheme) {
        return Err(crate::error::Error::InvalidInput(format!(
            "a striped repository keeps the parity it was made with ({}): its packs are placed by it",
            repo.settings().parity.map_or(String::new(), |s| s.to_string())
        )));
    }
    repo.update_settings(|s| s.parity = Some(scheme))
}

/// Seals parity groups over indexed packs that no group covers, merges groups prune left at
/// most half full, writes missing copies of small objects, and removes parity objects of
/// generations no longer in force.
pub fn protect_all(repo: &Repository, progress: &dyn Progress) -> Result<ProtectReport> {
    let Some(scheme) = repo.settings().parity else { return Ok(ProtectReport::default()) };
    let storage = repo.storage();
    let listing = ParityListing::read(storage.as_ref(), &HashSet::new())?;
    if let Some(stripe) = repo.stripe() {
        return protect_stripe(repo, stripe, scheme, &listing, progress);
    }
    let covered = listing.group_of_pack();
    let mut report = ProtectReport::default();
    for name in &listing.leftovers {
        super::replicas::remove_if_present(storage.as_ref(), FileType::Parity, name)?;
        report.leftovers_removed += 1;
    }
    // Groups prune has left at most half full cost as much parity as full ones: when there
    // are two or more, their packs are sealed into new, fuller groups and the old parity goes.
    let indexed: HashSet<crate::id::Id> =
        repo.index().packs().iter().filter(|p| !p.condemned).map(|p| p.id).collect();
    // Only groups whose packs this index knows: a pack it does not (written since it was
    // read) would be left without parity.
    let sparse: Vec<&super::Group> = listing
        .groups
        .iter()
        .filter(|g| g.scheme == scheme && g.packs().count() * 2 <= scheme.data as usize)
        .filter(|g| g.packs().all(|m| indexed.contains(&m.pack)))
        .collect();
    let dissolve: Vec<&super::Group> = if sparse.len() >= 2 { sparse } else { Vec::new() };
    let regroup: HashSet<crate::id::Id> =
        dissolve.iter().flat_map(|g| g.packs().map(|m| m.pack)).collect();
    let todo: Vec<ObjectInfo> = repo
        .index()
        .packs()
        .iter()
        .filter(|p| !p.condemned && (!covered.contains_key(&p.id) || regroup.contains(&p.id)))
        .map(|p| ObjectInfo { name: p.id.to_hex(), size: p.size })
        .collect();
    progress.set_total(todo.len() as u64, todo.iter().map(|p| p.size).sum());
    if !todo.is_empty() {
        let (stats, damaged) =
            groups::protect_packs(storage.clone(), scheme, repo.format_version(), &todo, progress)?;
        report.packs_protected = (todo.len() - damaged.len()) as u64;
        report.parity_bytes = stats.parity_bytes;
        report.groups = stats.groups_sealed;
        report.damaged_packs = damaged;
    }
    // The new groups are durable: the sparse ones they replace can go.
    for g in &dissolve {
        if g.packs().all(|m| report.damaged_packs.iter().all(|d| *d != m.pack.to_hex())) {
            for s in g.shards.iter().flatten() {
                super::replicas::remove_if_present(storage.as_ref(), FileType::Parity, &s.name)?;
            }
            report.groups_merged += 1;
        }
    }
    let have: HashSet<String> = listing
        .replicas
        .iter()
        .flat_map(|((t, n), v)| v.iter().map(move |(c, _)| super::replica_name(*t, n, *c)))
        .collect();
    for t in REPLICATED {
        for o in storage.list(t)? {
            for n in 1..=scheme.parity {
                let copy = super::replica_name(t, &o.name, n);
                if have.contains(&copy) {
                    continue;
                }
                let data = storage.read(t, &o.name)?;
                if crate::id::Id::of_stored_bytes(&data).to_hex() != o.name {
                    continue; // Never copy damage.
                }
                storage.write(FileType::Parity, &copy, &data)?;
                report.copies_written += 1;
            }
        }
    }
    Ok(report)
}

/// Turns parity off and removes every parity object and copy. Returns how many were removed.
pub fn disable<S: Guarded>(repo: &mut Repository<S>) -> Result<u64> {
    if repo.stripe().is_some() {
        return Err(crate::error::Error::InvalidInput(
            "a striped repository cannot do without parity: it is what covers a lost location"
                .into(),
        ));
    }
    repo.update_settings(|s| s.parity = None)?;
    let storage = repo.storage().clone();
    let mut removed = 0;
    for o in storage.list(FileType::Parity)? {
        super::replicas::remove_if_present(storage.as_ref(), FileType::Parity, &o.name)?;
        removed += 1;
    }
    Ok(removed)
}

/// [`protect_all`] of a stripe: packs without a group (their group's parity could not be written,
/// its location being away) are grouped again without moving: slot *i* takes packs of location
/// *i* only, so that a group still spreads over every location.
fn protect_stripe(
    repo: &Repository,
    stripe: &crate::backend::StripeBackend,
    scheme: Scheme,
    listing: &ParityListing,
    progress: &dyn Progress,
) -> Result<ProtectReport> {
    let storage = repo.storage();
    let mut report = ProtectReport::default();
    for name in &listing.leftovers {
        super::replicas::remove_if_present(storage.as_ref(), FileType::Parity, name)?;
        report.leftovers_removed += 1;
    }
    let covered = listing.group_of_pack();
    let indexed: HashSet<crate::id::Id> =
        repo.index().packs().iter().filter(|p| !p.condemned).map(|p| p.id).collect();
    let locations = stripe.mirror().locations();
    let mut per_slot: Vec<Vec<crate::id::Id>> = vec![Vec::new(); scheme.data as usize];
    for (i, slot) in per_slot.iter_mut().enumerate() {
        for o in locations[i].backend.list(FileType::Pack)? {
            if let Ok(id) = o.name.parse::<crate::id::Id>()
                && indexed.contains(&id)
                && !covered.contains_key(&id)
            {
                slot.push(id);
            }
        }
    }
    while per_slot.iter().any(|q| !q.is_empty()) {
        let mut members = Vec::with_capacity(per_slot.len());
        for (i, q) in per_slot.iter_mut().enumerate() {
            members.push(match q.pop() {
                Some(id) => {
                    let bytes = locations[i].backend.read(FileType::Pack, &id.to_hex())?;
                    progress.add(1, bytes.len() as u64);
                    if crate::id::Id::of_stored_bytes(&bytes) != id {
                        report.damaged_packs.push(id.to_hex());
                        None
                    } else {
                        Some((id, bytes))
                    }
                }
                None => None,
            });
        }
        if members.iter().all(Option::is_none) {
            continue;
        }
        report.packs_protected += members.iter().flatten().count() as u64;
        report.parity_bytes +=
            super::groups::seal_group(storage.as_ref(), scheme, repo.format_version(), &members)?;
        report.groups += 1;
    }
    Ok(report)
}
