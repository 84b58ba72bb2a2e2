//! Parity computed while packs are written: each pack's bytes are multiplied into the group's
//! M parity shards as they stream out, so a backup holds M shards in memory, never K packs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use reed_solomon_erasure::galois_8::ReedSolomon;

use super::{GroupId, Member, Scheme, ShardHeader};
use crate::backend::{Backend, FileType};
use crate::error::{Error, Result};
use crate::id::Id;

/// Bytes multiplied in one step (bounds the scratch memory of slot 0, see [`add_share`]).
const STEP: usize = 1 << 20;

/// What a writer has sealed.
#[derive(Debug, Default, Clone, Copy)]
pub struct ParityStats {
    pub groups_sealed: u64,
    pub parity_objects: u64,
    pub parity_bytes: u64,
}

/// Seals the packs written through it into groups, each protected by its parity shards.
pub struct GroupWriter {
    scheme: Scheme,
    backend: Arc<dyn Backend>,
    format_version: u8,
    /// Bytes each shard is expected to reach (the pack size), reserved at once: growing a
    /// shard by doubling would hold up to twice its size.
    shard_capacity: usize,
    codec: ReedSolomon,
    /// The group taking new packs, until its K slots are handed out.
    filling: Mutex<Option<Arc<Mutex<OpenGroup>>>>,
    /// Packs whose group's parity is durable.
    sealed: Mutex<HashSet<Id>>,
    /// Groups given up (a pack of theirs failed): their packs stay unprotected.
    abandoned: Mutex<HashSet<Id>>,
    stats: Mutex<ParityStats>,
}

struct OpenGroup {
    id: GroupId,
    assigned: usize,
    finished: usize,
    members: Vec<Option<Member>>,
    shards: Vec<Vec<u8>>,
    poisoned: bool,
}

/// A slot of a group, held by one pack while it is written.
pub struct Slot {
    writer: Arc<GroupWriter>,
    group: Arc<Mutex<OpenGroup>>,
    index: usize,
    fed: u64,
    done: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds the share of data slot `slot` (its bytes `data` at `offset`) to the parity shards.
pub(crate) fn add_share(
    codec: &ReedSolomon,
    slot: usize,
    offset: usize,
    data: &[u8],
    shards: &mut [Vec<u8>],
) {
    let end = offset + data.len();
    for s in shards.iter_mut() {
        if s.len() < end {
            s.resize(end, 0);
        }
    }
    let mut scratch: Vec<Vec<u8>> = Vec::new();
    for (n, piece) in data.chunks(STEP).enumerate() {
        let at = offset + n * STEP;
        let range = at..at + piece.len();
        if slot == 0 {
            // The codec overwrites the shards for slot 0 (it expects slots in order); the share
            // is made aside and added, so packs may finish in any order.
            scratch.resize_with(shards.len(), Vec::new);
            for s in scratch.iter_mut() {
                s.clear();
                s.resize(piece.len(), 0);
            }
            let _ = codec.encode_single_sep(0, piece, &mut scratch);
            for (s, add) in shards.iter_mut().zip(&scratch) {
                for (b, a) in s[range.clone()].iter_mut().zip(add) {
                    *b ^= *a;
                }
            }
        } else {
            let mut outs: Vec<&mut [u8]> =
                shards.iter_mut().map(|s| &mut s[range.clone()]).collect();
            // Cannot fail: the slot is within the scheme and every slice has the piece's length.
            let _ = codec.encode_single_sep(slot, piece, &mut outs);
        }
    }
}

impl GroupWriter {
    /// A writer for packs of about `pack_size` bytes.
    pub fn new(
        scheme: Scheme,
        backend: Arc<dyn Backend>,
        format_version: u8,
        pack_size: usize,
    ) -> Arc<GroupWriter> {
        Arc::new(GroupWriter {
            scheme,
            backend,
            format_version,
            // A pack passes its target by at most its last blob; a quarter more covers most.
            shard_capacity: pack_size.min(256 << 20) + pack_size.min(256 << 20) / 4,
            codec: scheme.codec(),
            filling: Mutex::new(None),
            sealed: Mutex::new(HashSet::new()),
            abandoned: Mutex::new(HashSet::new()),
            stats: Mutex::new(ParityStats::default()),
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// A slot for the next pack.
    pub fn begin(self: &Arc<Self>) -> Slot {
        let mut filling = locked(&self.filling);
        let group = match filling.as_ref() {
            Some(g) if locked(g).assigned < self.scheme.data as usize => g.clone(),
            _ => {
                let g = Arc::new(Mutex::new(OpenGroup {
                    id: random_group_id(),
                    assigned: 0,
                    finished: 0,
                    members: vec![None; self.scheme.data as usize],
                    shards: (0..self.scheme.parity)
                        .map(|_| {
                            // Each shard is stored after its object's head: room for it first.
                            let head = super::head_len(self.scheme.data);
                            let mut s = Vec::with_capacity(head + self.shard_capacity);
                            s.resize(head, 0);
                            s
                        })
                        .collect(),
                    poisoned: false,
                }));
                *filling = Some(g.clone());
                g
            }
        };
        let index = {
            let mut g = locked(&group);
            g.assigned += 1;
            g.assigned - 1
        };
        Slot { writer: self.clone(), group, index, fed: 0, done: false }
    }

    /// Whether `pack`'s group is sealed (its parity durable).
    pub fn is_sealed(&self, pack: &Id) -> bool {
        locked(&self.sealed).contains(pack)
    }

    /// Whether `pack` belongs to a group given up after a failure.
    pub fn is_abandoned(&self, pack: &Id) -> bool {
        locked(&self.abandoned).contains(pack)
    }

    pub fn stats(&self) -> ParityStats {
        *locked(&self.stats)
    }

    /// Seals the group still filling with the packs it has (its other slots stay empty). Call
    /// once every pack begun has been stored; a group with a pack still open is left unsealed.
    pub fn seal_filling(&self) -> Result<()> {
        let Some(group) = locked(&self.filling).take() else { return Ok(()) };
        let mut g = locked(&group);
        if g.finished == 0 || g.finished < g.assigned || g.poisoned {
            return Ok(());
        }
        g.assigned = self.scheme.data as usize;
        self.seal(&mut g)
    }

    fn seal(&self, g: &mut OpenGroup) -> Result<()> {
        if g.members.iter().all(Option::is_none) {
            g.poisoned = true;
            return Ok(());
        }
        let head_len = super::head_len(self.scheme.data);
        let length = g.shards.first().map_or(0, |s| s.len() - head_len) as u64;
        let mut written = 0u64;
        let members = g.members.clone();
        for (j, object) in g.shards.iter_mut().enumerate() {
            let head = ShardHeader {
                group: g.id,
                generation: 0,
                scheme: self.scheme,
                index: j as u8,
                length,
                members: members.clone(),
            };
            object[..head_len].copy_from_slice(&head.encode_head(self.format_version));
            let name = Id::of_stored_bytes(object).to_hex();
            self.backend.write(FileType::Parity, &name, object)?;
            written += object.len() as u64;
        }
        g.poisoned = true; // Sealed: nothing more may be added.
        g.shards = Vec::new();
        let mut sealed = locked(&self.sealed);
        sealed.extend(g.members.iter().flatten().map(|m| m.pack));
        let mut stats = locked(&self.stats);
        stats.groups_sealed += 1;
        stats.parity_objects += self.scheme.parity as u64;
        stats.parity_bytes += written;
        Ok(())
    }

    fn abandon(&self, g: &mut OpenGroup) {
        g.poisoned = true;
        g.shards = Vec::new();
        locked(&self.abandoned).extend(g.members.iter().flatten().map(|m| m.pack));
    }
}

impl Slot {
    /// The slot's number in its group (where striped storage puts the pack).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Adds the next bytes of the pack.
    pub fn feed(&mut self, data: &[u8]) {
        let mut g = locked(&self.group);
        if !g.poisoned {
            let at = super::head_len(self.writer.scheme.data) + self.fed as usize;
            add_share(&self.writer.codec, self.index, at, data, &mut g.shards);
        }
        self.fed += data.len() as u64;
    }

    /// The pack is durable as `pack`: records it, and seals the group if it was the last.
    pub fn finish(mut self, pack: Id) -> Result<()> {
        self.done = true;
        let mut g = locked(&self.group);
        g.members[self.index] = Some(Member { pack, size: self.fed });
        g.finished += 1;
        if g.poisoned {
            self.writer.abandon(&mut g);
            return Ok(());
        }
        if g.finished == self.writer.scheme.data as usize
            && let Err(e) = self.writer.seal(&mut g)
        {
            self.writer.abandon(&mut g);
            return Err(e);
        }
        Ok(())
    }
}

impl Slot {
    /// The slot was not used after all (its pack stayed empty): it stays an empty slot. A
    /// slot already fed cannot be released (its share is in the parity): its group is given up.
    pub fn release(mut self) {
        self.done = true;
        let mut g = locked(&self.group);
        g.finished += 1;
        let give_up = self.fed > 0
            || (g.finished == self.writer.scheme.data as usize
                && !g.poisoned
                && self.writer.seal(&mut g).is_err());
        if give_up {
            self.writer.abandon(&mut g);
        }
    }
}

impl Drop for Slot {
    /// A pack given up (its write failed, or the backup stopped): the group cannot be sealed.
    fn drop(&mut self) {
        if !self.done {
            let mut g = locked(&self.group);
            self.writer.abandon(&mut g);
        }
    }
}

fn random_group_id() -> GroupId {
    let mut id = [0u8; 16];
    // The OS generator failing leaves zeros: groups are told apart by generation and members
    // too, and a clash only merges two listings, which readers refuse (see groups.rs).
    let _ = getrandom::fill(&mut id);
    id
}

/// Parity shards of `packs` (slot i holds `packs[i]`, `None` empty), computed whole: used to
/// protect packs already stored, and by tests as the reference.
pub fn encode_group(scheme: Scheme, packs: &[Option<&[u8]>]) -> Result<Vec<Vec<u8>>> {
    if packs.len() != scheme.data as usize {
        return Err(Error::InvalidInput(format!("{} packs for a {scheme} group", packs.len())));
    }
    let codec = scheme.codec();
    let mut shards = vec![Vec::new(); scheme.parity as usize];
    let longest = packs.iter().flatten().map(|p| p.len()).max().unwrap_or(0);
    for s in shards.iter_mut() {
        s.resize(longest, 0);
    }
    for (i, p) in packs.iter().enumerate() {
        if let Some(p) = p {
            add_share(&codec, i, 0, p, &mut shards);
        }
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 7) as u8).collect()
    }

    #[test]
    fn shares_added_in_any_order_and_any_pieces_equal_the_whole_encoding() {
        let scheme = Scheme::new(4, 2).unwrap();
        let packs: Vec<Vec<u8>> = [3000usize, 5000, 1, 4097]
            .iter()
            .enumerate()
            .map(|(i, &l)| bytes(i as u8, l))
            .collect();
        let mut full: Vec<Vec<u8>> = packs
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.resize(5000, 0);
                p
            })
            .collect();
        full.extend(vec![vec![0u8; 5000]; 2]);
        scheme.codec().encode(&mut full).unwrap();
        let codec = scheme.codec();
        let mut shards = vec![Vec::new(); 2];
        for i in [2usize, 0, 3, 1] {
            for (n, piece) in packs[i].chunks(777).enumerate() {
                add_share(&codec, i, n * 777, piece, &mut shards);
            }
        }
        assert_eq!(shards, full[4..].to_vec());
        let refs: Vec<Option<&[u8]>> = packs.iter().map(|p| Some(p.as_slice())).collect();
        assert_eq!(encode_group(scheme, &refs).unwrap(), full[4..].to_vec());
    }

    #[test]
    fn a_writer_seals_full_groups_at_once_and_the_last_partial_group_on_request() {
        let store = Arc::new(MemoryBackend::new());
        let w = GroupWriter::new(Scheme::new(2, 1).unwrap(), store.clone(), 3, 1 << 20);
        let mut ids = Vec::new();
        for n in 0..3u8 {
            let mut slot = w.begin();
            let data = bytes(n, 100 + n as usize);
            slot.feed(&data);
            let id = Id::of_stored_bytes(&data);
            ids.push(id);
            slot.finish(id).unwrap();
        }
        assert!(w.is_sealed(&ids[0]) && w.is_sealed(&ids[1]) && !w.is_sealed(&ids[2]));
        w.seal_filling().unwrap();
        assert!(w.is_sealed(&ids[2]));
        assert_eq!(store.list(FileType::Parity).unwrap().len(), 2);
        // A pack dropped unfinished gives its group up: nothing is sealed for it.
        let slot = w.begin();
        let mut other = w.begin();
        other.feed(b"x");
        drop(slot);
        let x = Id::of_stored_bytes(b"x");
        other.finish(x).unwrap();
        w.seal_filling().unwrap();
        assert!(!w.is_sealed(&x) && w.is_abandoned(&x));
        assert_eq!(store.list(FileType::Parity).unwrap().len(), 2);
    }
}

#[cfg(test)]
mod format_vector {
    use super::*;

    /// The code is part of the repository format (FORMAT.md 7a): these bytes must never change,
    /// whatever version of the Reed-Solomon crate is built.
    #[test]
    fn the_parity_of_a_known_group_is_pinned() {
        let scheme = Scheme::new(3, 2).unwrap();
        let a: Vec<u8> = (0..16).collect();
        let b: Vec<u8> = (100..116).collect();
        let c: Vec<u8> = vec![0xff, 0x01, 0x80];
        let shards = encode_group(scheme, &[Some(&a), Some(&b), Some(&c)]).unwrap();
        let hex: Vec<String> = shards.iter().map(hex::encode).collect();
        // Computed independently from FORMAT.md 7a's description (a Python script, not this
        // crate): GF(2^8) modulo 0x11D, Vandermonde rows r^c, made systematic.
        assert_eq!(hex, ["9b65e4646c6c6c6c646464647c7c7c7c", "3f062e0e5b5c55523f383136e3e4edea"]);
    }
}
