//! Reading the groups in `parity/`, and the three things done to them: rebuilding lost objects,
//! protecting packs stored without parity, and taking packs out before prune deletes them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::writer::{GroupWriter, ParityStats, add_share};
use super::{GroupId, Member, ParityName, Scheme, ShardHeader, head_len};
use crate::backend::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Object, Result};
use crate::id::Id;

/// Bytes of every object of a group read at once when rebuilding: a 10+2 rebuild holds 12 of
/// these, whatever the pack size.
const SLAB: u64 = 4 << 20;

/// A parity object of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRef {
    pub name: String,
    pub size: u64,
}

/// A group as its newest complete generation describes it.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: GroupId,
    pub generation: u32,
    pub scheme: Scheme,
    pub length: u64,
    pub members: Vec<Option<Member>>,
    /// Its parity objects by shard index (`None`: not on storage).
    pub shards: Vec<Option<ShardRef>>,
    /// The format version its objects carry.
    pub format_version: u8,
}

impl Group {
    pub fn head(&self, index: u8) -> ShardHeader {
        ShardHeader {
            group: self.id,
            generation: self.generation,
            scheme: self.scheme,
            index,
            length: self.length,
            members: self.members.clone(),
        }
    }

    pub fn packs(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().flatten()
    }
}

/// Everything `parity/` holds.
#[derive(Debug, Default)]
pub struct ParityListing {
    pub groups: Vec<Group>,
    /// Parity objects of generations no longer in force (a prune stopped between writing a
    /// group's new generation and removing the old one, or a backup while sealing): safe to
    /// remove.
    pub leftovers: Vec<String>,
    /// Parity objects whose head cannot be read or disagrees with its group: (name, why).
    pub unreadable: Vec<(String, String)>,
    /// Copies of small objects: (kind, original) → (copy number, size).
    pub replicas: BTreeMap<(FileType, String), Vec<(u8, u64)>>,
    /// Names in `parity/` that are neither.
    pub unknown: Vec<String>,
    /// Bytes of all parity objects and copies.
    pub bytes: u64,
}

impl ParityListing {
    /// Lists `parity/` and reads the head of every parity object not in `distrust` (objects
    /// known to be damaged, whose heads prove nothing).
    pub fn read(backend: &dyn Backend, distrust: &HashSet<String>) -> Result<ParityListing> {
        let listing = backend.list(FileType::Parity)?;
        ParityListing::from_listing(backend, &listing, distrust)
    }

    pub fn from_listing(
        backend: &dyn Backend,
        listing: &[ObjectInfo],
        distrust: &HashSet<String>,
    ) -> Result<ParityListing> {
        let mut out = ParityListing {
            replicas: super::replicas::list_replicas(listing),
            bytes: listing.iter().map(|o| o.size).sum(),
            ..Default::default()
        };
        let shards: Vec<&ObjectInfo> = listing
            .iter()
            .filter(|o| matches!(ParityName::parse(&o.name), Some(ParityName::Shard(_))))
            .collect();
        out.unknown = listing
            .iter()
            .filter(|o| ParityName::parse(&o.name).is_none())
            .map(|o| o.name.clone())
            .collect();
        let heads: Vec<(ShardRef, Result<(ShardHeader, u8)>)> = shards
            .par_iter()
            .filter(|o| !distrust.contains(&o.name))
            .map(|o| {
                (
                    ShardRef { name: o.name.clone(), size: o.size },
                    read_head(backend, &o.name, o.size),
                )
            })
            .collect();
        // (group, generation) → heads
        let mut by_group: HashMap<GroupId, BTreeMap<u32, Vec<HeadRead>>> = HashMap::new();
        for (r, head) in heads {
            match head {
                Ok((h, version)) => by_group
                    .entry(h.group)
                    .or_default()
                    .entry(h.generation)
                    .or_default()
                    .push((r, h, version)),
                Err(e) => out.unreadable.push((r.name, e.to_string())),
            }
        }
        for (gid, generations) in by_group {
            let complete = |shards: &Vec<HeadRead>| {
                let m = shards[0].1.scheme.parity as usize;
                let seen: HashSet<u8> = shards.iter().map(|s| s.1.index).collect();
                seen.len() == m
            };
            let in_force = generations
                .iter()
                .rev()
                .find(|(_, s)| complete(s))
                .or_else(|| generations.iter().next_back())
                .map(|(g, _)| *g);
            for (generation, shards) in generations {
                if Some(generation) != in_force {
                    out.leftovers.extend(shards.into_iter().map(|s| s.0.name));
                    continue;
                }
                let first = &shards[0].1;
                let mut g = Group {
                    id: gid,
                    generation,
                    scheme: first.scheme,
                    length: first.length,
                    members: first.members.clone(),
                    shards: vec![None; first.scheme.parity as usize],
                    format_version: shards[0].2,
                };
                for (r, h, _) in shards {
                    let agrees =
                        h.scheme == g.scheme && h.length == g.length && h.members == g.members;
                    match &mut g.shards[h.index as usize] {
                        slot @ None if agrees => *slot = Some(r),
                        // Two objects for one shard: the same bytes cannot have two names, so one
                        // of them is not what its group wrote.
                        _ => out.unreadable.push((
                            r.name,
                            "disagrees with the other parity objects of its group".into(),
                        )),
                    }
                }
                out.groups.push(g);
            }
        }
        out.groups.sort_by_key(|g| g.id);
        Ok(out)
    }

    /// Every pack some group covers, with its group's position in [`ParityListing::groups`].
    pub fn group_of_pack(&self) -> HashMap<Id, usize> {
        let mut out = HashMap::new();
        for (n, g) in self.groups.iter().enumerate() {
            for m in g.packs() {
                out.insert(m.pack, n);
            }
        }
        out
    }

    /// Groups whose parity is complete on storage.
    pub fn complete_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.shards.iter().all(Option::is_some)).count()
    }
}

/// A parity object, its head, and the format version it carries.
type HeadRead = (ShardRef, ShardHeader, u8);

/// Reads and decodes the head of one parity object; also gives the format version it carries.
fn read_head(backend: &dyn Backend, name: &str, size: u64) -> Result<(ShardHeader, u8)> {
    let what = format!("parity object {name}");
    let want = (head_len(super::MAX_DATA) as u64).min(size);
    let bytes = backend.read_range(FileType::Parity, name, 0, want)?;
    let k = ShardHeader::slots_announced(&bytes[..bytes.len().min(super::FIXED_HEAD_LEN)], &what)?;
    let len = head_len(k);
    if bytes.len() < len {
        return Err(Error::corrupt(what, format!("{size} bytes, shorter than its head")));
    }
    let h = ShardHeader::decode(&bytes[..len], size, &what)?;
    Ok((h, bytes[4]))
}

/// Bytes `offset..offset + len` of an object of `size` bytes, zeros past its end.
fn read_padded(
    b: &dyn Backend,
    t: FileType,
    name: &str,
    size: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>> {
    let mut out = if offset < size {
        b.read_range(t, name, offset, len.min(size - offset))?
    } else {
        Vec::new()
    };
    out.resize(len as usize, 0);
    Ok(out)
}

/// An object rebuilt, verified against its name, not yet written.
pub struct Rebuilt {
    pub kind: FileType,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Rebuilds the members in `lost_members` (slot numbers) and the shards in `lost_shards` of
/// `group` from its other objects, which must be intact. Fails, naming the group, when more
/// are lost than it has parity, and when a rebuilt pack does not hash to its name.
pub fn rebuild(
    backend: &dyn Backend,
    group: &Group,
    lost_members: &[usize],
    lost_shards: &[usize],
) -> Result<Vec<Rebuilt>> {
    let k = group.scheme.data as usize;
    let m = group.scheme.parity as usize;
    let lost_shards: Vec<usize> =
        (0..m).filter(|j| lost_shards.contains(j) || group.shards[*j].is_none()).collect();
    let gname = hex::encode(group.id);
    if lost_members.len() + lost_shards.len() > m {
        return Err(Error::corrupt(
            Object::Other(format!("parity group {gname}")),
            format!(
                "{} of its {} objects are lost, more than its {m} parity shards can rebuild",
                lost_members.len() + lost_shards.len(),
                k + m
            ),
        ));
    }
    let codec = group.scheme.codec();
    let head_bytes = head_len(group.scheme.data) as u64;
    let mut members_out: Vec<Vec<u8>> = vec![Vec::new(); lost_members.len()];
    let mut shards_out: Vec<Vec<u8>> = vec![Vec::new(); lost_shards.len()];
    let mut offset = 0;
    while offset < group.length {
        let len = SLAB.min(group.length - offset);
        let mut slab: Vec<Option<Vec<u8>>> = Vec::with_capacity(k + m);
        for (i, member) in group.members.iter().enumerate() {
            slab.push(match member {
                _ if lost_members.contains(&i) => None,
                None => Some(vec![0; len as usize]),
                Some(mm) => Some(read_padded(
                    backend,
                    FileType::Pack,
                    &mm.pack.to_hex(),
                    mm.size,
                    offset,
                    len,
                )?),
            });
        }
        for (j, shard) in group.shards.iter().enumerate() {
            slab.push(match shard {
                Some(s) if !lost_shards.contains(&j) => {
                    Some(backend.read_range(FileType::Parity, &s.name, head_bytes + offset, len)?)
                }
                _ => None,
            });
        }
        codec.reconstruct(&mut slab).map_err(|e| {
            Error::corrupt(
                Object::Other(format!("parity group {gname}")),
                format!("cannot rebuild: {e}"),
            )
        })?;
        for (out, &i) in members_out.iter_mut().zip(lost_members) {
            out.extend_from_slice(slab[i].as_deref().unwrap_or_default());
        }
        for (out, &j) in shards_out.iter_mut().zip(&lost_shards) {
            out.extend_from_slice(slab[k + j].as_deref().unwrap_or_default());
        }
        offset += len;
    }
    let mut rebuilt = Vec::new();
    for (mut bytes, &i) in members_out.into_iter().zip(lost_members) {
        let Some(mm) = group.members[i] else { continue };
        bytes.truncate(mm.size as usize);
        if Id::of_stored_bytes(&bytes) != mm.pack {
            return Err(Error::corrupt(
                Object::Pack(mm.pack.to_hex()),
                format!(
                    "rebuilt from parity group {gname}, it does not hash to its name: the group's other objects are not what was protected"
                ),
            ));
        }
        rebuilt.push(Rebuilt { kind: FileType::Pack, name: mm.pack.to_hex(), bytes });
    }
    for (bytes, &j) in shards_out.into_iter().zip(&lost_shards) {
        let object = group.head(j as u8).encode(group.format_version, &bytes);
        let name = Id::of_stored_bytes(&object).to_hex();
        rebuilt.push(Rebuilt { kind: FileType::Parity, name, bytes: object });
    }
    Ok(rebuilt)
}

/// Writes the parity objects missing from groups that hold any of `packs` (a backup killed
/// while sealing a group wrote some of its objects only). Returns how many groups it completed.
pub fn complete_groups_of(
    backend: &dyn Backend,
    listing: &ParityListing,
    packs: &HashSet<Id>,
) -> Result<usize> {
    let mut completed = 0;
    for g in &listing.groups {
        let missing: Vec<usize> = (0..g.shards.len()).filter(|&j| g.shards[j].is_none()).collect();
        if missing.is_empty() || !g.packs().any(|m| packs.contains(&m.pack)) {
            continue;
        }
        for r in rebuild(backend, g, &[], &missing)? {
            backend.write(r.kind, &r.name, &r.bytes)?;
        }
        completed += 1;
    }
    Ok(completed)
}

/// Seals one group whose slot *i* holds `members[i]` (a pack's name and bytes, already stored),
/// computed whole: for a stripe, whose packs must keep their locations' slots. Returns the bytes
/// of parity written.
pub fn seal_group(
    backend: &dyn Backend,
    scheme: Scheme,
    format_version: u8,
    members: &[Option<(Id, Vec<u8>)>],
) -> Result<u64> {
    let refs: Vec<Option<&[u8]>> =
        members.iter().map(|m| m.as_ref().map(|(_, b)| b.as_slice())).collect();
    let shards = super::writer::encode_group(scheme, &refs)?;
    let mut group = [0u8; 16];
    let _ = getrandom::fill(&mut group);
    let head = |j: usize| ShardHeader {
        group,
        generation: 0,
        scheme,
        index: j as u8,
        length: shards[0].len() as u64,
        members: members
            .iter()
            .map(|m| m.as_ref().map(|(id, b)| Member { pack: *id, size: b.len() as u64 }))
            .collect(),
    };
    let mut written = 0;
    for (j, shard) in shards.iter().enumerate() {
        let object = head(j).encode(format_version, shard);
        backend.write(FileType::Parity, &Id::of_stored_bytes(&object).to_hex(), &object)?;
        written += object.len() as u64;
    }
    Ok(written)
}

/// Seals new groups over `packs` (already stored), reading each whole and checking it against
/// its name first: damaged data is never protected, it is returned instead.
pub fn protect_packs(
    backend: Arc<dyn Backend>,
    scheme: Scheme,
    format_version: u8,
    packs: &[ObjectInfo],
    progress: &dyn crate::progress::Progress,
) -> Result<(ParityStats, Vec<String>)> {
    let largest = packs.iter().map(|p| p.size).max().unwrap_or(0) as usize;
    let writer = GroupWriter::new(scheme, backend.clone(), format_version, largest);
    let mut damaged = Vec::new();
    for p in packs {
        let data = match backend.read(FileType::Pack, &p.name) {
            Ok(d) => d,
            Err(Error::ObjectNotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        progress.add(1, data.len() as u64);
        if Id::of_stored_bytes(&data).to_hex() != p.name {
            damaged.push(p.name.clone());
            continue;
        }
        let mut slot = writer.begin();
        slot.feed(&data);
        slot.finish(Id::of_stored_bytes(&data))?;
    }
    writer.seal_filling()?;
    Ok((writer.stats(), damaged))
}

/// Takes the packs in `slots` out of `group` (prune, before deleting them): their shares are
/// subtracted from its parity, written as the next generation, and the old generation removed.
/// A group left with no pack has its parity removed. Packs to take out that are damaged or
/// gone are rebuilt first (their shares must be subtracted exactly).
pub fn take_out(backend: &dyn Backend, group: &Group, slots: &[usize]) -> Result<()> {
    let m = group.scheme.parity as usize;
    let remaining: Vec<&Member> = group
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| !slots.contains(i))
        .filter_map(|(_, mm)| mm.as_ref())
        .collect();
    let old: Vec<&ShardRef> = group.shards.iter().flatten().collect();
    if remaining.is_empty() {
        for s in old {
            super::replicas::remove_if_present(backend, FileType::Parity, &s.name)?;
        }
        return Ok(());
    }
    // Every shard and every pack taken out, intact (rebuilt where not).
    let mut lost_members = Vec::new();
    let mut packs: HashMap<usize, Vec<u8>> = HashMap::new();
    for &i in slots {
        let Some(mm) = group.members[i] else { continue };
        match backend.read(FileType::Pack, &mm.pack.to_hex()) {
            Ok(d) if Id::of_stored_bytes(&d) == mm.pack => {
                packs.insert(i, d);
            }
            Ok(_) | Err(Error::ObjectNotFound { .. }) => lost_members.push(i),
            Err(e) => return Err(e),
        }
    }
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; m];
    let mut lost_shards = Vec::new();
    for (j, s) in group.shards.iter().enumerate() {
        let Some(s) = s else {
            lost_shards.push(j);
            continue;
        };
        match backend.read(FileType::Parity, &s.name) {
            Ok(d) if Id::of_stored_bytes(&d).to_hex() == s.name => shards[j] = Some(d),
            Ok(_) | Err(Error::ObjectNotFound { .. }) => lost_shards.push(j),
            Err(e) => return Err(e),
        }
    }
    if !lost_members.is_empty() || !lost_shards.is_empty() {
        for r in rebuild(backend, group, &lost_members, &lost_shards)? {
            match r.kind {
                FileType::Pack => {
                    let slot = group
                        .members
                        .iter()
                        .position(|mm| mm.is_some_and(|mm| mm.pack.to_hex() == r.name));
                    if let Some(i) = slot {
                        packs.insert(i, r.bytes);
                    }
                }
                _ => {
                    let j = r.bytes[crate::format::HEADER_LEN + 4] as usize;
                    shards[j] = Some(r.bytes);
                }
            }
        }
    }
    let head = head_len(group.scheme.data);
    let codec = group.scheme.codec();
    let mut bodies: Vec<Vec<u8>> =
        shards.into_iter().map(|s| s.map(|s| s[head..].to_vec()).unwrap_or_default()).collect();
    for (&i, data) in &packs {
        // In GF(2^8) subtracting is adding.
        add_share(&codec, i, 0, data, &mut bodies);
    }
    let new_length = remaining.iter().map(|mm| mm.size).max().unwrap_or(0);
    for b in bodies.iter_mut() {
        if b[new_length as usize..].iter().any(|&x| x != 0) {
            return Err(Error::corrupt(
                Object::Other(format!("parity group {}", hex::encode(group.id))),
                "its parity does not match its packs (taking packs out left bytes past the longest remaining pack)",
            ));
        }
        b.truncate(new_length as usize);
    }
    let mut next = group.clone();
    next.generation = group
        .generation
        .checked_add(1)
        .ok_or_else(|| Error::InvalidInput("parity generation overflow".into()))?;
    next.length = new_length;
    for &i in slots {
        next.members[i] = None;
    }
    for (j, body) in bodies.iter().enumerate() {
        let object = next.head(j as u8).encode(group.format_version, body);
        backend.write(FileType::Parity, &Id::of_stored_bytes(&object).to_hex(), &object)?;
    }
    for s in old {
        super::replicas::remove_if_present(backend, FileType::Parity, &s.name)?;
    }
    Ok(())
}

/// Takes `doomed` packs out of every group that holds them, before they are deleted. Returns
/// how many groups changed.
pub fn take_out_packs(backend: &dyn Backend, doomed: &HashSet<Id>) -> Result<usize> {
    if doomed.is_empty() {
        return Ok(0);
    }
    let listing = ParityListing::read(backend, &HashSet::new())?;
    let mut changed = 0;
    for g in &listing.groups {
        let slots: Vec<usize> = g
            .members
            .iter()
            .enumerate()
            .filter(|(_, mm)| mm.is_some_and(|mm| doomed.contains(&mm.pack)))
            .map(|(i, _)| i)
            .collect();
        if !slots.is_empty() {
            take_out(backend, g, &slots)?;
            changed += 1;
        }
    }
    for name in &listing.leftovers {
        super::replicas::remove_if_present(backend, FileType::Parity, name)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::progress::NoProgress;

    fn pack(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed) ^ (i >> 5) as u8)
            .collect()
    }

    /// Stores packs and protects them as one 4+2 group; returns the storage and pack names.
    fn protected(lens: &[usize]) -> (Arc<dyn Backend>, Vec<String>) {
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let mut infos = Vec::new();
        for (n, &l) in lens.iter().enumerate() {
            let d = pack(n as u8 + 1, l);
            let name = Id::of_stored_bytes(&d).to_hex();
            store.write(FileType::Pack, &name, &d).unwrap();
            infos.push(ObjectInfo { name, size: l as u64 });
        }
        protect_packs(store.clone(), Scheme::new(4, 2).unwrap(), 3, &infos, &NoProgress).unwrap();
        (store, infos.into_iter().map(|i| i.name).collect())
    }

    #[test]
    fn every_pair_of_lost_objects_of_a_group_comes_back_bit_for_bit() {
        let (store, packs) = protected(&[9000, 70, 9001, 5]);
        let listing = ParityListing::read(store.as_ref(), &HashSet::new()).unwrap();
        assert_eq!(listing.groups.len(), 1);
        let g = &listing.groups[0];
        let objects: Vec<(FileType, String)> = packs
            .iter()
            .map(|p| (FileType::Pack, p.clone()))
            .chain(g.shards.iter().flatten().map(|s| (FileType::Parity, s.name.clone())))
            .collect();
        for a in 0..objects.len() {
            for b in a + 1..objects.len() {
                let lost_members: Vec<usize> = [a, b].into_iter().filter(|&x| x < 4).collect();
                let lost_shards: Vec<usize> =
                    [a, b].into_iter().filter(|&x| x >= 4).map(|x| x - 4).collect();
                let rebuilt = rebuild(store.as_ref(), g, &lost_members, &lost_shards).unwrap();
                assert_eq!(rebuilt.len(), 2);
                for r in rebuilt {
                    assert!(
                        objects.contains(&(r.kind, r.name.clone())),
                        "rebuilt {} under a new name",
                        r.name
                    );
                    assert_eq!(r.bytes, store.read(r.kind, &r.name).unwrap());
                }
            }
        }
        assert!(rebuild(store.as_ref(), g, &[0, 1, 2], &[]).is_err(), "three of 4+2 lost");
    }

    #[test]
    fn taking_a_pack_out_leaves_parity_that_rebuilds_the_others() {
        let (store, packs) = protected(&[9000, 70, 9001]);
        let listing = ParityListing::read(store.as_ref(), &HashSet::new()).unwrap();
        let doomed: HashSet<Id> = [packs[2].parse().unwrap()].into();
        assert_eq!(take_out_packs(store.as_ref(), &doomed).unwrap(), 1);
        let after = ParityListing::read(store.as_ref(), &HashSet::new()).unwrap();
        assert_eq!(after.groups.len(), 1);
        let g = &after.groups[0];
        assert_eq!(g.generation, listing.groups[0].generation + 1);
        assert_eq!(g.length, 9000, "the parity shrank to the longest pack left");
        assert!(after.leftovers.is_empty());
        assert_eq!(store.list(FileType::Parity).unwrap().len(), 2, "the old generation is gone");
        // Same parity as a group made of the two remaining packs from the start.
        let fresh = super::super::writer::encode_group(
            Scheme::new(4, 2).unwrap(),
            &[
                Some(&store.read(FileType::Pack, &packs[0]).unwrap()),
                Some(&store.read(FileType::Pack, &packs[1]).unwrap()),
                None,
                None,
            ],
        )
        .unwrap();
        let head = head_len(4);
        for (j, s) in g.shards.iter().enumerate() {
            assert_eq!(
                store.read(FileType::Parity, &s.as_ref().unwrap().name).unwrap()[head..],
                fresh[j][..]
            );
        }
        let rebuilt = rebuild(store.as_ref(), g, &[0, 1], &[]).unwrap();
        assert_eq!(rebuilt.len(), 2);
        // Taking out the rest removes the group.
        let doomed: HashSet<Id> = packs[..2].iter().map(|p| p.parse().unwrap()).collect();
        take_out_packs(store.as_ref(), &doomed).unwrap();
        assert!(store.list(FileType::Parity).unwrap().is_empty());
    }

    #[test]
    fn a_pack_already_damaged_is_rebuilt_before_it_is_taken_out() {
        let (store, packs) = protected(&[100, 200, 300, 400]);
        store.write(FileType::Pack, &packs[3], b"rot").unwrap();
        let doomed: HashSet<Id> = [packs[3].parse().unwrap()].into();
        take_out_packs(store.as_ref(), &doomed).unwrap();
        let g = &ParityListing::read(store.as_ref(), &HashSet::new()).unwrap().groups[0];
        let rebuilt = rebuild(store.as_ref(), g, &[0, 2], &[]).unwrap();
        assert_eq!(rebuilt[0].bytes, store.read(FileType::Pack, &packs[0]).unwrap());
    }

    #[test]
    fn hostile_heads_are_named_not_trusted() {
        let (store, _) = protected(&[100, 200]);
        store.write(FileType::Parity, &Id([5; 32]).to_hex(), b"AEON\x03\x08\0\0garbage").unwrap();
        store.write(FileType::Parity, "notes.txt", b"x").unwrap();
        let listing = ParityListing::read(store.as_ref(), &HashSet::new()).unwrap();
        assert_eq!(listing.groups.len(), 1);
        assert_eq!(listing.unreadable.len(), 1);
        assert_eq!(listing.unknown, vec!["notes.txt".to_string()]);
    }
}
