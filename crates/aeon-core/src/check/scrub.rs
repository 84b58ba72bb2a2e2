//! Reading part of the data per check: fixed subsets (`--read-data-subset 1/7`, `10%`, `2GiB`)
//! and the rolling scrub (`--scrub`), which goes on where the last one stopped, so that a
//! daily scrub reads everything in a week (as ZFS scrubs and Proxmox verify jobs do).
//!
//! The scrub's position is kept in the repository (`scrub/<id>`, kind 11), so that any client
//! goes on from it: a sealed CBOR record; a writer writes a new one and removes the older ones.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::{self, ObjectKind};
use crate::id::Id;
use crate::index::Index;
use crate::repository::Repository;
use crate::repository::state::Guarded;

/// Which packs a check reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Part `n` (1-based) of `m`: packs whose id falls in that m-th of the id space. The parts
    /// are the same on every run, so checking 1/7 to 7/7 on seven days covers everything.
    Part { n: u32, m: u32 },
    /// About this share of the data, in percent, packs picked at random.
    Percent(f64),
    /// About this many bytes, packs picked at random.
    Bytes(u64),
}

impl std::str::FromStr for Subset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subset> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "--read-data-subset {s}: {why} (use N/M such as 1/7, a percentage such as 10%, or a size such as 2GiB)"
            ))
        };
        let s = s.trim();
        if let Some((n, m)) = s.split_once('/') {
            let (n, m): (u32, u32) = (
                n.parse().map_err(|_| bad("not a number"))?,
                m.parse().map_err(|_| bad("not a number"))?,
            );
            if m == 0 || n == 0 || n > m {
                return Err(bad("N must be 1 to M"));
            }
            return Ok(Subset::Part { n, m });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a number"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("the percentage must be above 0 and at most 100"));
            }
            return Ok(Subset::Percent(p));
        }
        parse_size(s).map(Subset::Bytes).ok_or_else(|| bad("not a size"))
    }
}

/// `2GiB`, `500M`, `1.5T`, `4096`: powers of 1024.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let v = num * mult as f64;
    (v >= 1.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// The part of an id space an id falls in: its first four bytes scaled to 0..m.
fn part_of(id: &Id, m: u32) -> u32 {
    let head = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
    ((head as u64 * m as u64) >> 32) as u32
}

/// The packs (by index number) a subset selects among `candidates`.
pub fn select(index: &Index, candidates: &[u32], subset: Subset) -> HashSet<u32> {
    match subset {
        Subset::Part { n, m } => {
            candidates.iter().copied().filter(|&p| part_of(&index.pack(p).id, m) == n - 1).collect()
        }
        Subset::Percent(pct) => {
            let total: u64 = candidates.iter().map(|&p| index.pack(p).size).sum();
            random_until(index, candidates, (total as f64 * pct / 100.0).ceil() as u64)
        }
        Subset::Bytes(b) => random_until(index, candidates, b),
    }
}

fn random_until(index: &Index, candidates: &[u32], bytes: u64) -> HashSet<u32> {
    let mut order: Vec<(u64, u32)> = candidates
        .iter()
        .map(|&p| {
            let mut r = [0u8; 8];
            let _ = getrandom::fill(&mut r);
            (u64::from_le_bytes(r), p)
        })
        .collect();
    order.sort_unstable();
    let mut taken = HashSet::new();
    let mut sum = 0;
    for (_, p) in order {
        if sum >= bytes {
            break;
        }
        sum += index.pack(p).size;
        taken.insert(p);
    }
    taken
}

/// Where the rolling scrub stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScrubState {
    /// When this record was written.
    pub time: DateTime<FixedOffset>,
    /// The next scrub starts at the first pack whose id is at least this.
    #[serde(with = "serde_bytes")]
    pub next: Vec<u8>,
    /// When the pass now under way started, and the bytes it has read so far.
    pub pass_started: DateTime<FixedOffset>,
    pub pass_bytes: u64,
    /// When the last full pass over all data ended (absent: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_pass: Option<DateTime<FixedOffset>>,
}

/// The scrub's record newest in time, with the names of all records (the older ones are
/// removed once a new one is written). A record that does not open is skipped: the scrub then
/// starts over, which costs time, never coverage.
pub fn load_state<S: Guarded>(repo: &Repository<S>) -> Result<(Option<ScrubState>, Vec<String>)> {
    let mut best: Option<ScrubState> = None;
    let mut names = Vec::new();
    for o in repo.backend().list(FileType::Scrub)? {
        names.push(o.name.clone());
        if o.size > 4096 {
            continue;
        }
        let Ok(data) = repo.backend().read(FileType::Scrub, &o.name) else { continue };
        let what = format!("scrub record {}", o.name);
        let opened =
            format::check_header_of(&data, ObjectKind::ScrubState, repo.format_version(), &what)
                .and_then(|_| {
                    repo.cipher().open(
                        &data[..format::HEADER_LEN],
                        &data[format::HEADER_LEN..],
                        &what,
                    )
                })
                .and_then(|plain| format::from_cbor::<ScrubState>(&plain, &what));
        if let Ok(s) = opened
            && best.as_ref().is_none_or(|b| s.time > b.time)
        {
            best = Some(s);
        }
    }
    Ok((best, names))
}

/// Writes `state` and removes the records it replaces.
pub fn save_state<S: Guarded>(
    repo: &Repository<S>,
    state: &ScrubState,
    old: &[String],
) -> Result<()> {
    repo.ensure_lock_held()?;
    let header = format::header(ObjectKind::ScrubState, repo.format_version());
    let mut data = header.to_vec();
    repo.cipher().seal_into(&header, &format::to_cbor(state), &mut data)?;
    let name = Id::of_stored_bytes(&data).to_hex();
    repo.backend().write(FileType::Scrub, &name, &data)?;
    for o in old.iter().filter(|o| **o != name) {
        match repo.backend().remove(FileType::Scrub, o) {
            Ok(()) | Err(Error::ObjectNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The slice a scrub reads: packs in id order from `state.next` on, wrapping at the end, until
/// `bytes` are covered (at least one pack). Returns the packs, the new state, and whether the
/// slice finished a full pass.
pub fn next_slice(
    index: &Index,
    candidates: &[u32],
    state: Option<&ScrubState>,
    bytes: u64,
    now: DateTime<FixedOffset>,
) -> (HashSet<u32>, ScrubState) {
    let mut order: Vec<u32> = candidates.to_vec();
    order.sort_by_key(|&p| index.pack(p).id);
    let start_at = state.map_or(Vec::new(), |s| s.next.clone());
    let first = order
        .iter()
        .position(|&p| index.pack(p).id.0.as_slice() >= start_at.as_slice())
        .unwrap_or(order.len());
    let mut st = state.cloned().unwrap_or(ScrubState {
        time: now,
        next: Vec::new(),
        pass_started: now,
        pass_bytes: 0,
        last_full_pass: None,
    });
    st.time = now;
    let mut taken = HashSet::new();
    let mut sum = 0u64;
    let total: u64 = order.iter().map(|&p| index.pack(p).size).sum();
    let mut i = first;
    while !order.is_empty() && taken.len() < order.len() && (sum < bytes || taken.is_empty()) {
        if i == order.len() {
            // The end of the id space: a pass is complete once it has read as much as there is.
            i = 0;
            if st.pass_bytes + sum >= total {
                st.last_full_pass = Some(now);
            }
            st.pass_started = now;
            st.pass_bytes = 0;
            sum = 0;
            continue;
        }
        let p = order[i];
        sum += index.pack(p).size;
        taken.insert(p);
        i += 1;
    }
    st.pass_bytes += sum;
    st.next = match order.get(i) {
        Some(&p) => index.pack(p).id.0.to_vec(),
        None => vec![0xff; 33], // past every id: the next slice starts a new pass
    };
    (taken, st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_read_as_written_and_refuse_nonsense() {
        assert_eq!("1/7".parse::<Subset>().unwrap(), Subset::Part { n: 1, m: 7 });
        assert_eq!("10%".parse::<Subset>().unwrap(), Subset::Percent(10.0));
        assert_eq!("2GiB".parse::<Subset>().unwrap(), Subset::Bytes(2 << 30));
        assert_eq!("500M".parse::<Subset>().unwrap(), Subset::Bytes(500 << 20));
        for bad in ["0/7", "8/7", "1/0", "0%", "101%", "x", "-5", "2XB", ""] {
            assert!(bad.parse::<Subset>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_parts_cover_every_id_once() {
        let mut rng = 7u64;
        for _ in 0..2000 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&rng.to_be_bytes());
            let p = part_of(&Id(id), 7);
            assert!(p < 7);
        }
        assert_eq!(part_of(&Id([0xff; 32]), 7), 6);
        assert_eq!(part_of(&Id([0; 32]), 7), 0);
    }
}
