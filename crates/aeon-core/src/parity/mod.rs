//! Reed-Solomon parity over packs, and copies of the small objects, so that damaged storage heals
//! without a second full copy of the repository (docs/FORMAT.md, section 7a).
//!
//! Packs are gathered in **groups** of K slots. Each group carries M **parity shards**, stored as
//! objects `parity/<id>`: shard *j* is row *j* of a systematic Reed-Solomon code over GF(2^8)
//! applied byte by byte to the K packs, each padded with zeros to the longest (an empty slot is
//! all zeros). Any M of the K + M objects of a group can be lost and rebuilt from the others.
//! The code is linear, so a pack's share of the parity can be added (a backup, as each pack is
//! written) or taken away (prune, before it deletes a pack) without reading the rest of the group.
//!
//! Index files, recovery points, label records and key slots are small and change with every
//! backup: they are copied M times instead ([`replicas`]).
//!
//! Everything here works on stored bytes: finding damage (an object's name is the BLAKE3 of its
//! bytes) and rebuilding need no key, and a rebuilt object is accepted only if it hashes to its
//! name.

pub mod groups;
pub mod manage;
pub mod replicas;
pub mod writer;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{self, ObjectKind, Reader};
use crate::id::Id;

pub use groups::{Group, ParityListing};
pub use replicas::Replicated;
pub use writer::{GroupWriter, Slot};

/// Most data slots of a group: a group's rebuild reads up to this many packs.
pub const MAX_DATA: u8 = 64;
/// Most parity shards of a group.
pub const MAX_PARITY: u8 = 16;
/// The scheme `aeon init --parity` uses when given no numbers (see the README for the figures).
pub const DEFAULT_SCHEME: Scheme = Scheme { data: 10, parity: 2 };

/// K data slots and M parity shards per group (`10+2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheme {
    pub data: u8,
    pub parity: u8,
}

impl Scheme {
    pub fn new(data: u8, parity: u8) -> Result<Scheme> {
        if !(1..=MAX_DATA).contains(&data) || !(1..=MAX_PARITY).contains(&parity) {
            return Err(Error::InvalidInput(format!(
                "parity {data}+{parity}: a group has 1 to {MAX_DATA} packs and 1 to {MAX_PARITY} \
                 parity shards (e.g. 10+2)"
            )));
        }
        Ok(Scheme { data, parity })
    }

    /// Parity bytes per data byte of a full group.
    pub fn overhead(self) -> f64 {
        self.parity as f64 / self.data as f64
    }

    pub(crate) fn codec(self) -> reed_solomon_erasure::galois_8::ReedSolomon {
        // Cannot fail: `new` keeps both counts at least 1 and their sum far below 256.
        reed_solomon_erasure::galois_8::ReedSolomon::new(self.data as usize, self.parity as usize)
            .expect("scheme within the code's limits")
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.data, self.parity)
    }
}

impl FromStr for Scheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scheme> {
        let bad = || {
            Error::InvalidInput(format!(
                "parity `{s}`: expected DATA+PARITY, e.g. 10+2 (10 packs per group, 2 parity shards)"
            ))
        };
        let (k, m) = s.trim().split_once('+').ok_or_else(bad)?;
        let k: u8 = k.trim().parse().map_err(|_| bad())?;
        let m: u8 = m.trim().parse().map_err(|_| bad())?;
        Scheme::new(k, m)
    }
}

/// Identifies a group for its whole life, across generations.
pub type GroupId = [u8; 16];

/// One data slot of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pack: Id,
    pub size: u64,
}

/// The plaintext head of a parity object: which group, which shard, over which packs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    pub group: GroupId,
    /// Raised each time the group's membership changes (a pack taken out by prune).
    pub generation: u32,
    pub scheme: Scheme,
    /// Which parity row this object holds, 0..M.
    pub index: u8,
    /// Length of the shard: the longest member's size.
    pub length: u64,
    /// K slots; `None` is an empty slot (all zeros).
    pub members: Vec<Option<Member>>,
}

/// Layout version of the head of a parity object.
const LAYOUT: u8 = 1;
/// The code: Reed-Solomon over GF(2^8) as `reed-solomon-erasure` 6 builds it (FORMAT.md 7a).
const CODE_RS_GF256: u8 = 1;
/// Header, layout, code, K, M, index, group id, generation, shard length.
pub const FIXED_HEAD_LEN: usize = format::HEADER_LEN + 5 + 16 + 4 + 8;
/// Per slot: present flag, pack id, pack size.
const MEMBER_LEN: usize = 1 + 32 + 8;

impl ShardHeader {
    /// Bytes of the head: the shard follows at this offset.
    pub fn head_len(&self) -> usize {
        head_len(self.scheme.data)
    }

    pub fn encode(&self, format_version: u8, shard: &[u8]) -> Vec<u8> {
        let mut out = self.encode_head(format_version);
        out.extend_from_slice(shard);
        out
    }

    /// The head alone (the shard follows it).
    pub fn encode_head(&self, format_version: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head_len());
        out.extend_from_slice(&format::header(ObjectKind::Parity, format_version));
        out.extend_from_slice(&[
            LAYOUT,
            CODE_RS_GF256,
            self.scheme.data,
            self.scheme.parity,
            self.index,
        ]);
        out.extend_from_slice(&self.group);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        for m in &self.members {
            match m {
                Some(m) => {
                    out.push(1);
                    out.extend_from_slice(&m.pack.0);
                    out.extend_from_slice(&m.size.to_le_bytes());
                }
                None => out.extend_from_slice(&[0u8; MEMBER_LEN]),
            }
        }
        out
    }

    /// The number of data slots the fixed part of a head announces, so that a reader knows how
    /// much more to read.
    pub fn slots_announced(fixed: &[u8], what: &str) -> Result<u8> {
        let body = format::check_header(fixed, ObjectKind::Parity, what)?;
        let mut r = Reader::new(body, what);
        let (layout, code, k) = (r.u8()?, r.u8()?, r.u8()?);
        if layout != LAYOUT || code != CODE_RS_GF256 {
            return Err(r.error(format!("parity layout {layout} / code {code} is not known")));
        }
        Ok(k)
    }

    /// Decodes a head from the first [`head_len`] bytes of a parity object of `object_len`
    /// bytes.
    pub fn decode(head: &[u8], object_len: u64, what: &str) -> Result<ShardHeader> {
        let body = format::check_header(head, ObjectKind::Parity, what)?;
        let mut r = Reader::new(body, what);
        let (layout, code, k, m, index) = (r.u8()?, r.u8()?, r.u8()?, r.u8()?, r.u8()?);
        if layout != LAYOUT || code != CODE_RS_GF256 {
            return Err(r.error(format!("parity layout {layout} / code {code} is not known")));
        }
        let scheme = Scheme::new(k, m).map_err(|_| r.error(format!("a {k}+{m} group")))?;
        if index >= m {
            return Err(r.error(format!("shard {index} of a group with {m}")));
        }
        let group = r.array::<16>()?;
        let generation = r.u32()?;
        let length = r.u64()?;
        let mut members = Vec::with_capacity(k as usize);
        for _ in 0..k {
            let present = r.u8()?;
            let pack = Id(r.array::<32>()?);
            let size = r.u64()?;
            members.push(match present {
                0 => None,
                1 if size <= length => Some(Member { pack, size }),
                1 => {
                    return Err(r.error(format!("a member of {size} bytes, longer than the shard")));
                }
                other => return Err(r.error(format!("slot flag {other}"))),
            });
        }
        let h = ShardHeader { group, generation, scheme, index, length, members };
        if object_len != h.head_len() as u64 + length {
            return Err(r.error(format!(
                "{object_len} bytes where its head announces {}",
                h.head_len() as u64 + length
            )));
        }
        Ok(h)
    }

    /// The packs of the group.
    pub fn packs(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().flatten()
    }
}

/// Length of the head of a parity object of a group with `data` slots.
pub fn head_len(data: u8) -> usize {
    FIXED_HEAD_LEN + data as usize * MEMBER_LEN
}

/// Name of the `n`-th copy (1-based) of a small object, in `parity/`.
pub fn replica_name(t: crate::backend::FileType, name: &str, n: u8) -> String {
    format!("{}-{n}-{name}", t.dir())
}

/// The kinds copied instead of covered by parity.
pub const REPLICATED: [crate::backend::FileType; 5] = [
    crate::backend::FileType::Key,
    crate::backend::FileType::Audit,
    crate::backend::FileType::Index,
    crate::backend::FileType::Snapshot,
    crate::backend::FileType::Label,
];

/// What a name in `parity/` stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParityName {
    /// A parity shard, named by its hash.
    Shard(Id),
    /// Copy `n` of an object of another kind.
    Replica { kind: crate::backend::FileType, name: String, n: u8 },
}

impl ParityName {
    pub fn parse(name: &str) -> Option<ParityName> {
        if let Ok(id) = name.parse::<Id>() {
            return Some(ParityName::Shard(id));
        }
        let (dir, rest) = name.split_once('-')?;
        let (n, original) = rest.split_once('-')?;
        let kind = REPLICATED.into_iter().find(|t| t.dir() == dir)?;
        let n: u8 = n.parse().ok().filter(|&n| n >= 1)?;
        original.parse::<Id>().ok()?;
        Some(ParityName::Replica { kind, name: original.to_string(), n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_reads_as_written_and_refuses_nonsense() {
        assert_eq!("10+2".parse::<Scheme>().unwrap(), Scheme { data: 10, parity: 2 });
        assert_eq!(" 4 + 1 ".parse::<Scheme>().unwrap().to_string(), "4+1");
        for bad in ["", "10", "10+", "+2", "0+2", "10+0", "65+2", "10+17", "a+b", "10+2+1"] {
            assert!(bad.parse::<Scheme>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_head_round_trips_and_hostile_heads_are_refused() {
        let h = ShardHeader {
            group: [7; 16],
            generation: 3,
            scheme: Scheme { data: 3, parity: 2 },
            index: 1,
            length: 10,
            members: vec![
                Some(Member { pack: Id([1; 32]), size: 10 }),
                None,
                Some(Member { pack: Id([2; 32]), size: 4 }),
            ],
        };
        let bytes = h.encode(3, &[9; 10]);
        assert_eq!(bytes.len(), h.head_len() + 10);
        assert_eq!(ShardHeader::slots_announced(&bytes[..FIXED_HEAD_LEN], "p").unwrap(), 3);
        let back = ShardHeader::decode(&bytes[..h.head_len()], bytes.len() as u64, "p").unwrap();
        assert_eq!(back, h);
        // A length that disagrees with the object, a shard index past M, a member longer than
        // the shard: each refused, never trusted.
        assert!(ShardHeader::decode(&bytes[..h.head_len()], bytes.len() as u64 + 1, "p").is_err());
        let mut b = bytes.clone();
        b[format::HEADER_LEN + 4] = 2;
        assert!(ShardHeader::decode(&b[..h.head_len()], b.len() as u64, "p").is_err());
        let mut b = bytes.clone();
        let size_at = FIXED_HEAD_LEN + 1 + 32;
        b[size_at..size_at + 8].copy_from_slice(&11u64.to_le_bytes());
        assert!(ShardHeader::decode(&b[..h.head_len()], b.len() as u64, "p").is_err());
        for cut in 0..h.head_len() {
            assert!(ShardHeader::decode(&bytes[..cut], bytes.len() as u64, "p").is_err());
        }
    }

    #[test]
    fn names_in_the_parity_folder_are_told_apart() {
        let id = Id([0xab; 32]).to_hex();
        assert_eq!(ParityName::parse(&id), Some(ParityName::Shard(Id([0xab; 32]))));
        let r = replica_name(crate::backend::FileType::Snapshot, &id, 2);
        assert_eq!(
            ParityName::parse(&r),
            Some(ParityName::Replica {
                kind: crate::backend::FileType::Snapshot,
                name: id.clone(),
                n: 2
            })
        );
        for bad in ["junk", "data-1-x", "snapshots-0-aa", "snapshots-1-zz", "locks-1-"] {
            assert_eq!(ParityName::parse(bad), None, "{bad}");
        }
    }
}
