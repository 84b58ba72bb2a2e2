//! The index: which pack holds each blob, and where.
//!
//! On storage it is a set of index files (`index/<id>`), each describing some packs; in memory
//! it is one map from blob id to a compact [`BlobLocation`].

use std::collections::HashMap;

use crate::blob::{self, BlobType, Compression};
use crate::crypto::Cipher;
use crate::error::Result;
use crate::format::{self, ObjectKind, Reader};
use crate::id::Id;
use crate::pack::PackEntry;

/// Plaintext encoding 1: supersedes and packs. Encoding 2 adds condemned packs (written by
/// prune only, so that older versions of Aeon refuse such a file instead of ignoring the
/// condemnation and handing condemned blobs to new backups). Encodings 3 and 4 are 1 and 2 with
/// each pack's entries in columns (format version 2), which compress better.
const INDEX_VERSION: u8 = 1;
const INDEX_VERSION_CONDEMNED: u8 = 2;
const INDEX_VERSION_COLUMNS: u8 = 3;
const INDEX_VERSION_COLUMNS_CONDEMNED: u8 = 4;
/// Most bytes an index file may claim to decompress to (1 GiB: about 20 million blobs).
const MAX_INDEX_PLAINTEXT: u32 = 1 << 30;

/// One pack as an index file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: Id,
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

/// Packs that prune found unused and will delete once nobody can still refer to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condemnation {
    /// When prune condemned them (Unix seconds; for reports only, never for decisions).
    pub at: i64,
    /// The locks that existed once this condemnation was visible: when none of them is left,
    /// the packs may go. `None`: prune stopped before listing them, so the next prune waits
    /// for every lock it finds.
    pub wait_for: Option<Vec<Id>>,
    /// The packs, with their entries, so that a pack still needed can be put back.
    pub packs: Vec<IndexPack>,
}

/// The content of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files whose content this one replaces (written by prune; empty from backup).
    pub supersedes: Vec<Id>,
    pub packs: Vec<IndexPack>,
    /// Written by prune only: packs awaiting deletion. They take precedence over any index
    /// file that lists the same pack as live.
    pub condemned: Vec<Condemnation>,
}

fn encode_pack(plain: &mut Vec<u8>, p: &IndexPack, columns: bool) {
    plain.extend_from_slice(&p.id.0);
    plain.extend_from_slice(&p.size.to_le_bytes());
    if columns {
        crate::pack::write_entry_columns(&p.blobs, plain);
        return;
    }
    plain.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
    for b in &p.blobs {
        b.write(plain);
    }
}

fn decode_packs(r: &mut Reader<'_>, plain_len: usize, columns: bool) -> Result<Vec<IndexPack>> {
    let npacks = r.u32()? as usize;
    let mut packs = Vec::with_capacity(npacks.min(plain_len / 44));
    for _ in 0..npacks {
        let id = Id(r.array()?);
        let size = r.u64()?;
        let blobs = if columns {
            crate::pack::read_entry_columns(r, "index")?
        } else {
            let nblobs = r.u32()? as usize;
            let mut blobs = Vec::with_capacity(nblobs.min(plain_len / 45));
            for _ in 0..nblobs {
                blobs.push(PackEntry::read(r, "index")?);
            }
            blobs
        };
        if let Some(e) = blobs.iter().find(|e| e.offset as u64 + e.length as u64 > size) {
            return Err(r.error(format!("blob {} lies beyond the end of pack {id}", e.id)));
        }
        packs.push(IndexPack { id, size, blobs });
    }
    Ok(packs)
}

impl IndexFile {
    pub fn encode(&self, cipher: &Cipher) -> Result<Vec<u8>> {
        let plain = self.plaintext(format::entry_columns(cipher.format_version()));
        let mut payload = (plain.len() as u32).to_le_bytes().to_vec();
        blob::encode_payload(Compression::default(), &plain, &mut payload);
        let mut out = format::prefix(ObjectKind::Index, cipher);
        // Write-only clients cannot read condemnations: where they may write, the condemned
        // packs are named in the clear too, so that they never deduplicate against them.
        if cipher.opens_envelopes() && !self.condemned.is_empty() {
            out[6] |= format::FLAG_CLEAR_CONDEMNED;
            let ids: Vec<&Id> =
                self.condemned.iter().flat_map(|c| &c.packs).map(|p| &p.id).collect();
            out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                out.extend_from_slice(&id.0);
            }
        }
        let aad = out.clone();
        cipher.seal_into(&aad, &payload, &mut out)?;
        Ok(out)
    }

    /// The plaintext [`IndexFile::decode_plaintext`] reads (also a write-only client's local
    /// record of what it wrote).
    pub fn plaintext(&self, columns: bool) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.push(match (columns, self.condemned.is_empty()) {
            (false, true) => INDEX_VERSION,
            (false, false) => INDEX_VERSION_CONDEMNED,
            (true, true) => INDEX_VERSION_COLUMNS,
            (true, false) => INDEX_VERSION_COLUMNS_CONDEMNED,
        });
        plain.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            plain.extend_from_slice(&id.0);
        }
        plain.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            encode_pack(&mut plain, p, columns);
        }
        if !self.condemned.is_empty() {
            plain.extend_from_slice(&(self.condemned.len() as u32).to_le_bytes());
            for c in &self.condemned {
                plain.extend_from_slice(&c.at.to_le_bytes());
                match &c.wait_for {
                    None => plain.push(0),
                    Some(locks) => {
                        plain.push(1);
                        plain.extend_from_slice(&(locks.len() as u32).to_le_bytes());
                        for l in locks {
                            plain.extend_from_slice(&l.0);
                        }
                    }
                }
                plain.extend_from_slice(&(c.packs.len() as u32).to_le_bytes());
                for p in &c.packs {
                    encode_pack(&mut plain, p, columns);
                }
            }
        }
        plain
    }

    /// The packs an index file condemns in the clear (header flag 2; FORMAT.md §8): what a
    /// write-only client, which cannot open the file, must not deduplicate against.
    pub fn clear_condemned(data: &[u8], what: &str) -> Result<Vec<Id>> {
        Ok(Self::clear_part(data, what)?.1)
    }

    /// Where the sealed part of an index file starts, and the packs it condemns in the clear.
    fn clear_part(data: &[u8], what: &str) -> Result<(usize, Vec<Id>)> {
        let envelope = format::envelope_of(data, what)?;
        let mut at = format::HEADER_LEN + envelope.map_or(0, <[u8]>::len);
        let mut ids = Vec::new();
        if data[6] & format::FLAG_CLEAR_CONDEMNED != 0 {
            let mut r = Reader::new(data.get(at..).unwrap_or_default(), what);
            let n = r.u32()? as usize;
            for _ in 0..n.min(data.len() / 32) {
                ids.push(Id(r.array()?));
            }
            if ids.len() != n {
                return Err(r.error("clear condemned list longer than the file"));
            }
            at += r.position();
        }
        Ok((at, ids))
    }

    pub fn decode(cipher: &Cipher, data: &[u8], what: &str) -> Result<IndexFile> {
        let cipher = cipher.for_object(data, what)?;
        format::check_prefix(data, ObjectKind::Index, &cipher, format::FLAG_CLEAR_CONDEMNED, what)?;
        let (at, _) = Self::clear_part(data, what)?;
        let payload = cipher.open(&data[..at], &data[at..], what)?;
        let mut r = Reader::new(&payload, what);
        let raw_len = r.u32()?;
        if raw_len > MAX_INDEX_PLAINTEXT {
            return Err(r.error("implausible index size"));
        }
        let plain = blob::decode_payload(r.rest(), raw_len, what)?;
        Self::decode_plaintext(&plain, what)
    }

    /// Decodes the plaintext table (public for the fuzz targets).
    pub fn decode_plaintext(plain: &[u8], what: &str) -> Result<IndexFile> {
        let mut r = Reader::new(plain, what);
        let (columns, has_condemned) = match r.u8()? {
            INDEX_VERSION => (false, false),
            INDEX_VERSION_CONDEMNED => (false, true),
            INDEX_VERSION_COLUMNS => (true, false),
            INDEX_VERSION_COLUMNS_CONDEMNED => (true, true),
            _ => return Err(r.error("unknown index encoding version")),
        };
        let n = r.u32()? as usize;
        let mut supersedes = Vec::with_capacity(n.min(plain.len() / 32));
        for _ in 0..n {
            supersedes.push(Id(r.array()?));
        }
        let packs = decode_packs(&mut r, plain.len(), columns)?;
        let mut condemned = Vec::new();
        if has_condemned {
            let n = r.u32()? as usize;
            for _ in 0..n.min(plain.len() / 13) {
                let at = r.i64()?;
                let wait_for = match r.u8()? {
                    0 => None,
                    1 => {
                        let nlocks = r.u32()? as usize;
                        let mut locks = Vec::with_capacity(nlocks.min(plain.len() / 32));
                        for _ in 0..nlocks {
                            locks.push(Id(r.array()?));
                        }
                        Some(locks)
                    }
                    _ => return Err(r.error("invalid lock list marker in index")),
                };
                let packs = decode_packs(&mut r, plain.len(), columns)?;
                condemned.push(Condemnation { at, wait_for, packs });
            }
            if condemned.len() != n {
                return Err(r.error("condemnation count exceeds the index size"));
            }
        }
        if !r.is_empty() {
            return Err(r.error("trailing bytes after index"));
        }
        Ok(IndexFile { supersedes, packs, condemned })
    }
}

/// Where a blob is stored, as lookups return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub blob_type: BlobType,
}

/// One index entry as held in memory: 48 bytes (id 32, pack 4, offset 4, length 4, and the
/// plaintext length with the blob type in its top bit, which a 1 GiB limit leaves free).
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Id,
    pack: u32,
    offset: u32,
    length: u32,
    raw_len_and_type: u32,
}

const TREE_BIT: u32 = 1 << 31;

impl Entry {
    fn new(id: Id, loc: BlobLocation) -> Entry {
        let tree = if loc.blob_type == BlobType::Tree { TREE_BIT } else { 0 };
        Entry {
            id,
            pack: loc.pack,
            offset: loc.offset,
            length: loc.length,
            raw_len_and_type: loc.raw_len | tree,
        }
    }

    fn location(&self) -> BlobLocation {
        BlobLocation {
            pack: self.pack,
            offset: self.offset,
            length: self.length,
            raw_len: self.raw_len_and_type & !TREE_BIT,
            blob_type: if self.raw_len_and_type & TREE_BIT != 0 {
                BlobType::Tree
            } else {
                BlobType::Data
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    pub id: Id,
    pub size: u64,
    /// Awaiting deletion by prune: its blobs may be read but never reused by a new backup.
    pub condemned: bool,
}

/// The in-memory index of a repository.
///
/// Loaded entries live in one sorted vector (48 bytes per blob, binary search): at 10 million
/// blobs that is under 0.5 GB, where a hash map needs nearly twice as much. Entries added since
/// the last [`Index::seal`] wait, unsorted, in `pending` (searched linearly: call `seal` after
/// loading). Blobs of condemned packs are kept apart: [`Index::get`] and [`Index::contains`]
/// (what backups deduplicate against) never return them; [`Index::get_readable`] does.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<Id, u32>,
    sorted: Vec<Entry>,
    /// `sorted[buckets[p]..buckets[p + 1]]` holds the ids whose first `bucket_bits` bits are
    /// `p`: ids are uniformly random, so a lookup searches a handful of entries instead of
    /// the whole vector (23 comparisons at 10 million blobs, each a likely cache miss). Costs
    /// under one byte per blob.
    buckets: Vec<u32>,
    bucket_bits: u32,
    pending: Vec<Entry>,
    condemned: Vec<Entry>,
    /// Set when a pack was condemned after some of its entries were added as live.
    purge_needed: bool,
}

impl Index {
    fn pack_number_for(&mut self, id: Id, size: u64) -> u32 {
        *self.pack_numbers.entry(id).or_insert_with(|| {
            self.packs.push(PackInfo { id, size, condemned: false });
            (self.packs.len() - 1) as u32
        })
    }

    fn entries_of(n: u32, pack: &IndexPack) -> impl Iterator<Item = Entry> + '_ {
        pack.blobs.iter().map(move |b| {
            let loc = BlobLocation {
                pack: n,
                offset: b.offset,
                length: b.length,
                raw_len: b.raw_len,
                blob_type: b.blob_type,
            };
            Entry::new(b.id, loc)
        })
    }

    /// Adds a live pack. If the pack is (or later becomes) condemned, its entries stay out of
    /// the live lookup.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let n = self.pack_number_for(pack.id, pack.size);
        if self.packs[n as usize].condemned {
            return;
        }
        self.pending.extend(Self::entries_of(n, pack));
    }

    /// Adds a pack that awaits deletion.
    pub fn add_condemned_pack(&mut self, pack: &IndexPack) {
        let n = self.pack_number_for(pack.id, pack.size);
        if self.packs[n as usize].condemned {
            return;
        }
        self.packs[n as usize].condemned = true;
        self.purge_needed = true;
        self.condemned.extend(Self::entries_of(n, pack));
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for c in &file.condemned {
            for p in &c.packs {
                self.add_condemned_pack(p);
            }
        }
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    /// Moves pending entries into the sorted vector (call after loading). A blob stored in
    /// several packs keeps the location that was added first.
    pub fn seal(&mut self) {
        let purged = self.purge_needed;
        if purged {
            let packs = &self.packs;
            self.sorted.retain(|e| !packs[e.pack as usize].condemned);
            self.pending.retain(|e| !packs[e.pack as usize].condemned);
            self.condemned.sort_by_key(|e| e.id);
            self.purge_needed = false;
        }
        if self.pending.is_empty() {
            if purged {
                self.rebuild_buckets();
            }
            return;
        }
        if self.sorted.is_empty() {
            self.sorted = std::mem::take(&mut self.pending);
        } else {
            self.sorted.reserve_exact(self.pending.len());
            self.sorted.append(&mut self.pending);
        }
        // Stable: among equal ids the earlier entry stays first and survives the dedup.
        self.sorted.sort_by_key(|e| e.id);
        self.sorted.dedup_by(|later, earlier| later.id == earlier.id);
        self.sorted.shrink_to_fit();
        self.pending = Vec::new();
        self.rebuild_buckets();
    }

    fn rebuild_buckets(&mut self) {
        let n = self.sorted.len();
        // About four to eight entries per bucket.
        self.bucket_bits = if n < 64 { 0 } else { (n.ilog2() - 2).min(24) };
        let count = 1usize << self.bucket_bits;
        let mut buckets = Vec::with_capacity(count + 1);
        let mut at = 0usize;
        for p in 0..count {
            while at < n && self.bucket_of(&self.sorted[at].id) < p {
                at += 1;
            }
            buckets.push(at as u32);
        }
        buckets.push(n as u32);
        self.buckets = buckets;
    }

    fn bucket_of(&self, id: &Id) -> usize {
        if self.bucket_bits == 0 {
            return 0;
        }
        let prefix = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
        (prefix >> (32 - self.bucket_bits)) as usize
    }

    fn find_pending(&self, id: &Id) -> Option<&Entry> {
        self.pending.iter().find(|e| e.id == *id)
    }

    fn find_sorted(&self, id: &Id) -> Option<&Entry> {
        let b = self.bucket_of(id);
        let (start, end) = match (self.buckets.get(b), self.buckets.get(b + 1)) {
            (Some(&s), Some(&e)) => (s as usize, e as usize),
            _ => (0, self.sorted.len()),
        };
        let slice = &self.sorted[start..end];
        slice.binary_search_by(|e| e.id.cmp(id)).ok().map(|i| &slice[i])
    }

    /// Takes the blobs of every pack for which `present` is false out of what backups may reuse
    /// (they stay readable, as a condemned pack's). Returns those packs. For packs that an index
    /// names but storage does not have: a rolled-back index or a stale mirror must never make a
    /// backup skip storing data.
    pub fn distrust_packs(&mut self, mut present: impl FnMut(&Id) -> bool) -> Vec<Id> {
        let mut distrusted = Vec::new();
        for p in self.packs.iter_mut().filter(|p| !p.condemned) {
            if !present(&p.id) {
                p.condemned = true;
                distrusted.push(p.id);
            }
        }
        if distrusted.is_empty() {
            return distrusted;
        }
        let packs = &self.packs;
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.sorted)
            .into_iter()
            .chain(std::mem::take(&mut self.pending))
            .partition(|e| packs[e.pack as usize].condemned);
        self.condemned.extend(gone);
        self.condemned.sort_by_key(|e| e.id);
        // In their order of addition, so that `seal` keeps the first present copy.
        self.pending = kept;
        self.seal();
        distrusted
    }

    /// Where a live blob is: what backups may reuse.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.find_sorted(id).or_else(|| self.find_pending(id)).map(Entry::location)
    }

    /// Where a blob can be read: live, or else in a pack awaiting deletion (a recovery point
    /// written while prune ran may refer to it; the next prune puts such packs back).
    pub fn get_readable(&self, id: &Id) -> Option<BlobLocation> {
        self.get(id).or_else(|| {
            let i = self.condemned.binary_search_by(|e| e.id.cmp(id)).ok()?;
            Some(self.condemned[i].location())
        })
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.find_sorted(id).is_some() || self.find_pending(id).is_some()
    }

    pub fn pack(&self, n: u32) -> PackInfo {
        self.packs[n as usize]
    }

    pub fn pack_number(&self, id: &Id) -> Option<u32> {
        self.pack_numbers.get(id).copied()
    }

    /// Every pack, live and condemned.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Live blobs.
    pub fn blob_count(&self) -> usize {
        self.sorted.len() + self.pending.len()
    }

    /// Every live blob.
    pub fn blobs(&self) -> impl Iterator<Item = (Id, BlobLocation)> + '_ {
        self.sorted.iter().chain(&self.pending).map(|e| (e.id, e.location()))
    }

    /// Every blob of condemned packs.
    pub fn condemned_blobs(&self) -> impl Iterator<Item = (Id, BlobLocation)> + '_ {
        self.condemned.iter().map(|e| (e.id, e.location()))
    }

    /// Every blob recorded for pack number `n` (live or condemned), in offset order.
    pub fn blobs_in_pack(&self, n: u32) -> Vec<(Id, BlobLocation)> {
        let mut v: Vec<_> = if self.packs[n as usize].condemned {
            self.condemned_blobs().filter(|(_, l)| l.pack == n).collect()
        } else {
            self.blobs().filter(|(_, l)| l.pack == n).collect()
        };
        v.sort_by_key(|(_, l)| l.offset);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = PackEntry> {
        (any::<[u8; 32]>(), 9u32..1000, 0u32..1000, any::<u32>(), any::<bool>()).prop_map(
            |(id, offset, length, raw_len, tree)| PackEntry {
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                id: Id(id),
                offset,
                length,
                raw_len,
            },
        )
    }

    proptest! {
        #[test]
        fn index_file_round_trip(
            packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(arb_entry(), 0..10)), 0..5),
            sup in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            cond in any::<bool>(),
            version in 1u8..=crate::format::FORMAT_VERSION,
        ) {
            let f = IndexFile {
                supersedes: sup.into_iter().map(Id).collect(),
                packs: packs.into_iter().map(|(id, blobs)| IndexPack { id: Id(id), size: 2000, blobs }).collect(),
                condemned: if cond {
                    vec![Condemnation { at: 1_700_000_000, wait_for: Some(vec![Id([5; 32])]), packs: vec![IndexPack { id: Id([6; 32]), size: 9, blobs: vec![] }] },
                         Condemnation { at: -1, wait_for: None, packs: vec![] }]
                } else { vec![] },
            };
            let cipher = Cipher::for_format(&Key::random().unwrap(), version);
            let bytes = f.encode(&cipher).unwrap();
            prop_assert_eq!(bytes[4], version);
            prop_assert_eq!(IndexFile::decode(&cipher, &bytes, "i").unwrap(), f);
        }

        #[test]
        fn decode_plaintext_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode_plaintext(&data, "i");
        }
    }

    #[test]
    fn in_memory_index_lookup() {
        let e = PackEntry {
            blob_type: BlobType::Data,
            id: Id([1; 32]),
            offset: 9,
            length: 5,
            raw_len: 3,
        };
        let mut idx = Index::default();
        idx.add_pack(&IndexPack { id: Id([2; 32]), size: 100, blobs: vec![e] });
        let loc = idx.get(&Id([1; 32])).unwrap();
        assert_eq!(idx.pack(loc.pack).id, Id([2; 32]));
        assert_eq!(idx.blobs_in_pack(loc.pack).len(), 1);
        assert!(!idx.contains(&Id([3; 32])));
        idx.seal();
        assert_eq!(idx.get(&Id([1; 32])), Some(loc));
        // After sealing, new entries are found too, and a known id keeps its first location.
        let tree = PackEntry {
            blob_type: BlobType::Tree,
            id: Id([9; 32]),
            offset: 30,
            length: 5,
            raw_len: (1 << 30) - 1,
        };
        idx.add_pack(&IndexPack {
            id: Id([4; 32]),
            size: 100,
            blobs: vec![tree, PackEntry { offset: 50, ..e }],
        });
        assert_eq!(idx.get(&Id([9; 32])).unwrap().blob_type, BlobType::Tree);
        assert_eq!(idx.get(&Id([9; 32])).unwrap().raw_len, (1 << 30) - 1);
        assert_eq!(idx.get(&Id([1; 32])).unwrap().offset, 9);
        idx.seal();
        assert_eq!(idx.blob_count(), 2);
        assert_eq!(idx.get(&Id([9; 32])).unwrap().pack, 1);
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_id_is_found_through_its_bucket(
            ids in proptest::collection::hash_set(any::<[u8; 32]>(), 0..3000),
            absent in any::<[u8; 32]>(),
        ) {
            let blobs: Vec<PackEntry> = ids.iter().enumerate().map(|(i, id)| PackEntry {
                blob_type: BlobType::Data,
                id: Id(*id),
                offset: 9 + i as u32,
                length: 1,
                raw_len: 1,
            }).collect();
            let mut idx = Index::default();
            idx.add_pack(&IndexPack { id: Id([0; 32]), size: 1 << 20, blobs: blobs.clone() });
            idx.seal();
            for b in &blobs {
                prop_assert_eq!(idx.get(&b.id).map(|l| l.offset), Some(b.offset));
            }
            prop_assert_eq!(idx.contains(&Id(absent)), ids.contains(&absent));
        }
    }
}

#[cfg(test)]
mod condemnation_tests {
    use super::*;

    fn entry(id: u8, offset: u32) -> PackEntry {
        PackEntry { blob_type: BlobType::Data, id: Id([id; 32]), offset, length: 5, raw_len: 3 }
    }

    #[test]
    fn condemned_packs_are_readable_but_never_reused() {
        let live = IndexPack { id: Id([1; 32]), size: 100, blobs: vec![entry(10, 9)] };
        let doomed =
            IndexPack { id: Id([2; 32]), size: 100, blobs: vec![entry(20, 9), entry(10, 20)] };
        // A backup's index file lists the doomed pack as live; prune's file condemns it.
        let backup_file = IndexFile { packs: vec![doomed.clone()], ..Default::default() };
        let prune_file = IndexFile {
            packs: vec![live],
            condemned: vec![Condemnation { at: 0, wait_for: None, packs: vec![doomed] }],
            ..Default::default()
        };
        for order in [[&backup_file, &prune_file], [&prune_file, &backup_file]] {
            let mut idx = Index::default();
            for f in order {
                idx.add_file(f);
            }
            idx.seal();
            assert!(!idx.contains(&Id([20; 32])));
            assert_eq!(idx.get(&Id([20; 32])), None);
            let r = idx.get_readable(&Id([20; 32])).unwrap();
            assert!(idx.pack(r.pack).condemned);
            // A blob also stored in a live pack is found there.
            let l = idx.get(&Id([10; 32])).unwrap();
            assert_eq!(idx.pack(l.pack).id, Id([1; 32]));
            assert_eq!(idx.blob_count(), 1);
            let n = idx.pack_number(&Id([2; 32])).unwrap();
            assert_eq!(idx.blobs_in_pack(n).len(), 2);
        }
    }
}

#[cfg(test)]
mod distrust_tests {
    use super::*;
    use crate::blob::BlobType;
    use crate::pack::PackEntry;

    fn pack(id: u8, blobs: &[u8]) -> IndexPack {
        let blobs = blobs
            .iter()
            .enumerate()
            .map(|(i, &b)| PackEntry {
                blob_type: BlobType::Data,
                id: Id([b; 32]),
                offset: 9 + 100 * i as u32,
                length: 100,
                raw_len: 60,
            })
            .collect();
        IndexPack { id: Id([id; 32]), size: 1000, blobs }
    }

    #[test]
    fn a_missing_pack_is_never_reused_and_a_present_copy_wins() {
        let mut idx = Index::default();
        idx.add_pack(&pack(1, &[10, 11]));
        idx.add_pack(&pack(2, &[11, 12]));
        let gone = idx.distrust_packs(|p| *p != Id([1; 32]));
        assert_eq!(gone, vec![Id([1; 32])]);
        idx.seal();
        assert!(idx.get(&Id([10; 32])).is_none(), "only in the missing pack");
        assert!(idx.get_readable(&Id([10; 32])).is_some());
        let copy = idx.get(&Id([11; 32])).expect("the present copy");
        assert_eq!(idx.pack(copy.pack).id, Id([2; 32]));
        assert!(idx.get(&Id([12; 32])).is_some());
    }
}
