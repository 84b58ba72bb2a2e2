//! One repository striped over N locations with parity across them (`--layout stripe`): each
//! pack is stored in one location only, the location of its slot in its parity group, and each
//! parity shard in its own location, so a K+M group spreads over K+M = N locations and losing
//! any M of them loses nothing, at (K+M)/K times the space instead of N times for mirroring.
//! Small objects (config, key slots, index files, recovery points, labels, locks) are mirrored
//! in every location.
//!
//! Slot *i* of every group lives in location *i*, shard *j* in location K + *j* (a fixed
//! assignment, as RAID 4: simple to reason about and to rebuild). A location that fails is marked
//! down; while at most M are down, writes meant for them are skipped (the group's parity still
//! covers the data: a degraded write), reads of their packs are rebuilt from the others, and
//! listings include every pack a group vouches for, so nothing (prune included) takes such a pack
//! for gone. `aeon repair` writes what a location lacks once it is back or replaced.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::mirror::is_location_failure;
use super::{Backend, FileType, MirrorBackend, ObjectInfo};
use crate::error::{Error, Result};
use crate::parity::{ParityListing, ParityName, Scheme, groups};

/// Packs rebuilt from parity kept for the reads that follow (a restore reads a pack's blobs
/// one range at a time).
const REBUILT_KEPT: usize = 4;

pub struct StripeBackend {
    mirror: Arc<MirrorBackend>,
    scheme: Scheme,
    /// Whether reads of packs a location cannot give are rebuilt (off for repair's own view).
    reconstruct: bool,
    listing: Mutex<Option<Arc<ParityListing>>>,
    rebuilt: Mutex<VecDeque<(String, Arc<Vec<u8>>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StripeBackend {
    /// Striping over `mirror`'s locations, which must number `scheme.data + scheme.parity`.
    pub fn new(mirror: Arc<MirrorBackend>, scheme: Scheme) -> Result<StripeBackend> {
        let n = mirror.locations().len();
        if n != scheme.data as usize + scheme.parity as usize {
            return Err(Error::InvalidInput(format!(
                "a stripe with parity {scheme} needs {} locations; the repository has {n}",
                scheme.data as usize + scheme.parity as usize
            )));
        }
        Ok(StripeBackend {
            mirror,
            scheme,
            reconstruct: true,
            listing: Mutex::new(None),
            rebuilt: Mutex::new(VecDeque::new()),
        })
    }

    /// The same storage with no reads rebuilt from parity: what each location really holds
    /// (repair's view).
    pub fn raw(&self) -> StripeBackend {
        StripeBackend {
            mirror: self.mirror.clone(),
            scheme: self.scheme,
            reconstruct: false,
            listing: Mutex::new(None),
            rebuilt: Mutex::new(VecDeque::new()),
        }
    }

    pub fn mirror(&self) -> &Arc<MirrorBackend> {
        &self.mirror
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The groups, read once per process (and again when a pack is not found in them).
    fn groups(&self, refresh: bool) -> Result<Arc<ParityListing>> {
        let mut cached = lock(&self.listing);
        if let Some(l) = cached.as_ref().filter(|_| !refresh) {
            return Ok(l.clone());
        }
        let l = Arc::new(ParityListing::read(self.mirror.as_ref(), &HashSet::new())?);
        *cached = Some(l.clone());
        Ok(l)
    }

    /// The slot of `pack` in its group, if a group holds it.
    fn slot_of(&self, pack: &str) -> Result<Option<usize>> {
        for refresh in [false, true] {
            let listing = self.groups(refresh)?;
            for g in &listing.groups {
                if let Some(i) =
                    g.members.iter().position(|m| m.is_some_and(|m| m.pack.to_hex() == pack))
                {
                    return Ok(Some(i));
                }
            }
        }
        Ok(None)
    }

    /// Writes to location `i` only; a location that is down misses the write, which is fine
    /// while no more than M locations are down (the group's parity covers it).
    fn write_to(&self, i: usize, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let l = &self.mirror.locations()[i % self.mirror.locations().len()];
        let result = if l.is_down() {
            Err(Error::storage(l.url.clone(), "down"))
        } else {
            l.backend.write(t, name, data)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_location_failure(&e) => {
                l.mark_down(&e);
                self.mirror.note_missed(i, t, name);
                let down = self.mirror.locations().iter().filter(|l| l.is_down()).count();
                if down > self.scheme.parity as usize {
                    return Err(Error::storage(
                        l.url.clone(),
                        format!(
                            "{down} of the stripe's locations are down, more than its {} parity can cover",
                            self.scheme.parity
                        ),
                    ));
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A pack no location can give, rebuilt from its group (and kept for the reads that follow).
    fn rebuilt_pack(&self, name: &str, why: Error) -> Result<Arc<Vec<u8>>> {
        if let Some((_, d)) = lock(&self.rebuilt).iter().find(|(n, _)| n == name) {
            return Ok(d.clone());
        }
        if !self.reconstruct {
            return Err(why);
        }
        for refresh in [false, true] {
            let listing = self.groups(refresh)?;
            for g in &listing.groups {
                let Some(i) =
                    g.members.iter().position(|m| m.is_some_and(|m| m.pack.to_hex() == name))
                else {
                    continue;
                };
                let r = groups::rebuild(self.mirror.as_ref(), g, &[i], &[])?;
                let bytes = Arc::new(r.into_iter().next().map(|r| r.bytes).unwrap_or_default());
                let mut kept = lock(&self.rebuilt);
                kept.push_back((name.to_string(), bytes.clone()));
                while kept.len() > REBUILT_KEPT {
                    kept.pop_front();
                }
                return Ok(bytes);
            }
        }
        Err(why)
    }

    fn range(data: &[u8], name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let end =
            offset.checked_add(length).filter(|&e| e <= data.len() as u64).ok_or_else(|| {
                Error::corrupt(
                    format!("pack {name}"),
                    format!("{length} bytes at {offset} past its end"),
                )
            })?;
        Ok(data[offset as usize..end as usize].to_vec())
    }

    /// Per location, and for the groups: what is where and how much redundancy is left.
    pub fn status(&self) -> Result<StripeStatus> {
        let mut locations = Vec::new();
        let mut held: Vec<HashSet<String>> = Vec::new();
        for l in self.mirror.locations() {
            let mut names = HashSet::new();
            let (mut packs, mut parity, mut bytes, mut error) = (0, 0, 0, None);
            for t in [FileType::Pack, FileType::Parity] {
                match l.backend.list(t) {
                    Ok(v) => {
                        for o in v {
                            bytes += o.size;
                            if t == FileType::Pack {
                                packs += 1
                            } else {
                                parity += 1
                            }
                            names.insert(o.name);
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            locations.push(StripeLocation {
                location: l.url.clone(),
                reachable: error.is_none(),
                error,
                packs,
                parity_objects: parity,
                bytes,
            });
            held.push(names);
        }
        let listing = self.groups(true)?;
        let k = self.scheme.data as usize;
        let mut st =
            StripeStatus { scheme: self.scheme.to_string(), locations, ..Default::default() };
        let mut least = self.scheme.parity as i64;
        for g in &listing.groups {
            let mut missing = 0;
            for (i, m) in g.members.iter().enumerate() {
                if let Some(m) = m
                    && !held.get(i).is_some_and(|h| h.contains(&m.pack.to_hex()))
                {
                    missing += 1;
                }
            }
            for (j, s) in g.shards.iter().enumerate() {
                if !s.as_ref().is_some_and(|s| held.get(k + j).is_some_and(|h| h.contains(&s.name)))
                {
                    missing += 1;
                }
            }
            st.groups += 1;
            match missing {
                0 => st.complete += 1,
                n if n <= g.scheme.parity as usize => st.degraded += 1,
                _ => st.lost += 1,
            }
            least = least.min(g.scheme.parity as i64 - missing as i64);
        }
        // Packs no group covers (their parity's location was away when they were written).
        let covered = listing.group_of_pack();
        for names in held.iter().take(k) {
            st.unprotected += names
                .iter()
                .filter(|n| n.parse::<crate::id::Id>().is_ok_and(|id| !covered.contains_key(&id)))
                .filter(|n| !listing.replicas.keys().any(|(_, r)| r == *n))
                .count();
        }
        if st.unprotected > 0 {
            least = least.min(0);
        }
        st.redundancy_left = least.max(-1);
        Ok(st)
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct StripeLocation {
    pub location: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub packs: usize,
    pub parity_objects: usize,
    pub bytes: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct StripeStatus {
    pub scheme: String,
    pub locations: Vec<StripeLocation>,
    pub groups: usize,
    /// Groups with every object in place, with some missing but rebuildable, and beyond repair.
    pub complete: usize,
    pub degraded: usize,
    pub lost: usize,
    /// Packs in no group: their parity could not be written (`aeon repair` protects them).
    pub unprotected: usize,
    /// How many more locations could be lost now without losing data (-1: data is lost).
    pub redundancy_left: i64,
}

impl Backend for StripeBackend {
    crate::forward_backend!(mirror: location, create, location_exists, foreign_contents, modified,
        readable_by_others, remove, remove_leftovers);

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        match self.mirror.stat(t, name)? {
            Some(n) => Ok(Some(n)),
            None if t == FileType::Pack && self.reconstruct => {
                let listing = self.groups(false)?;
                Ok(listing
                    .groups
                    .iter()
                    .flat_map(|g| g.packs())
                    .find(|m| m.pack.to_hex() == name)
                    .map(|m| m.size))
            }
            None => Ok(None),
        }
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        match self.mirror.read(t, name) {
            Err(e) if t == FileType::Pack => Ok(self.rebuilt_pack(name, e)?.to_vec()),
            other => other,
        }
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        match self.mirror.read_range(t, name, offset, length) {
            Err(e) if t == FileType::Pack => {
                Self::range(&self.rebuilt_pack(name, e)?, name, offset, length)
            }
            other => other,
        }
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        match (t, ParityName::parse(name)) {
            (FileType::Pack, _) => {
                let slot = self.slot_of(name)?.unwrap_or(0);
                self.write_to(slot, t, name, data)
            }
            (FileType::Parity, Some(ParityName::Shard(_))) if data.len() > 12 => {
                self.write_to(self.scheme.data as usize + data[12] as usize, t, name, data)
            }
            _ => self.mirror.write(t, name, data),
        }
    }

    fn write_placed(&self, t: FileType, name: &str, data: &[u8], placement: usize) -> Result<()> {
        match t {
            FileType::Pack => self.write_to(placement, t, name, data),
            _ => self.write(t, name, data),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let mut listed = self.mirror.list(t)?;
        if t == FileType::Pack && self.reconstruct {
            // Packs a group vouches for are there, rebuilt on reading, even while their own
            // location is away: nothing may take them for gone.
            let have: HashSet<String> = listed.iter().map(|o| o.name.clone()).collect();
            let listing = self.groups(true)?;
            let mut extra: HashMap<String, u64> = HashMap::new();
            for m in listing.groups.iter().flat_map(|g| g.packs()) {
                let name = m.pack.to_hex();
                if !have.contains(&name) {
                    extra.insert(name, m.size);
                }
            }
            listed.extend(extra.into_iter().map(|(name, size)| ObjectInfo { name, size }));
            listed.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(listed)
    }
}
