//! The master key set and the key slots that wrap it.
//!
//! A repository has one [`MasterKey`] (random, made at `init`). Each key slot stores it sealed
//! under a key-encryption key: for a password slot, Argon2id of the password. Slot types are a
//! byte in the format so that key-file slots and hybrid post-quantum public-key slots
//! (ML-KEM-768 + X25519) can be added without touching existing ones.

pub mod files;
pub mod manage;
pub mod slot;
pub mod write_only;

use zeroize::{Zeroize, ZeroizeOnDrop};

pub use files::{KeyFileSecret, KeyMaterial, PublicKey, SecretKey};
pub use slot::{Access, Credential, KeySlot, NewSlot, SlotNotes, SlotType, Unlocked};

use crate::crypto::{Cipher, IdHasher, KEY_LEN, Key, fill_random};
use crate::error::{Error, Result};
use crate::format::Reader;

/// The secrets of a repository. Everything a reader or writer needs, nothing else.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// AEAD key for blobs, pack tables, index files, snapshots and the config.
    pub data_key: Key,
    /// BLAKE3 key of blob ids.
    pub id_key: Key,
    /// Seed of the content-defined chunker's gear table.
    pub chunker_seed: u64,
}

const MASTER_KEY_ENCODING_VERSION: u8 = 1;
/// BLAKE3 key-derivation context of the chunker's secret (format version 3).
const GEAR_SECRET_CONTEXT: &str = "aeon 2026-12-07 chunker gear table secret";
const MASTER_KEY_LEN: usize = 1 + KEY_LEN + KEY_LEN + 8;

impl MasterKey {
    pub fn random() -> Result<MasterKey> {
        let mut seed = [0u8; 8];
        fill_random(&mut seed)?;
        Ok(MasterKey {
            data_key: Key::random()?,
            id_key: Key::random()?,
            chunker_seed: u64::from_le_bytes(seed),
        })
    }

    /// The cipher of a repository of this format version.
    pub fn cipher(&self, format_version: u8) -> Cipher {
        Cipher::for_format(&self.data_key, format_version)
    }

    pub fn id_hasher(&self) -> IdHasher {
        IdHasher::new(&self.id_key)
    }

    /// The chunker's gear table in a repository of this format version: from version 3 a PRF
    /// of a secret derived from the id key (docs/FORMAT.md §3), before it the seeded public one.
    pub fn gear(&self, format_version: u8) -> crate::chunker::Gear {
        if crate::format::keyed_gear(format_version) {
            let secret =
                zeroize::Zeroizing::new(blake3::derive_key(GEAR_SECRET_CONTEXT, &self.id_key.0));
            crate::chunker::Gear::from_secret(&secret)
        } else {
            crate::chunker::Gear::from_seed(self.chunker_seed)
        }
    }

    pub(crate) fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(MASTER_KEY_LEN));
        out.push(MASTER_KEY_ENCODING_VERSION);
        out.extend_from_slice(&self.data_key.0);
        out.extend_from_slice(&self.id_key.0);
        out.extend_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<MasterKey> {
        let mut r = Reader::new(data, "master key");
        if r.u8()? != MASTER_KEY_ENCODING_VERSION || data.len() != MASTER_KEY_LEN {
            return Err(r.error("unknown master key encoding"));
        }
        Ok(MasterKey { data_key: Key(r.array()?), id_key: Key(r.array()?), chunker_seed: r.u64()? })
    }
}

/// Argon2id cost parameters, stored in each password slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 46 MiB, 4 passes, 4 lanes. RFC 9106's tuning procedure (fix the memory budget, then add
    /// passes up to the time budget), with the memory set so that a whole command stays below
    /// restic's 57 MiB; it is OWASP's first Argon2id setting (46 MiB, 1 pass) with four times its
    /// passes. Per guess ([`KdfParams::attack_cost`]), against restic's default scrypt (N=2^15,
    /// r=8, p calibrated to 5-7 on the development machine): area-time 16,928 MiB² against
    /// 10,240-14,336; memory traffic 368 MiB against 320-448 (the comparison with the earlier
    /// default of 64 MiB and 3 passes is in bench/results/HISTORY.md). Lanes are filled on all
    /// cores; they do not change an attacker's cost.
    fn default() -> Self {
        KdfParams { memory_kib: 46 * 1024, iterations: 4, parallelism: 4 }
    }
}

/// What one password guess costs an attacker, by the two usual measures of a memory-hard
/// function: the bytes moved between memory and the core (what bounds a GPU), and that times
/// the memory held (the area-time product, what bounds custom hardware).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct AttackCost {
    pub traffic_mib: f64,
    pub area_time_mib2: f64,
}

impl AttackCost {
    /// `passes` over `memory_mib`, each writing it once and reading it once.
    fn of(memory_mib: f64, passes: u32) -> AttackCost {
        let traffic = 2.0 * memory_mib * f64::from(passes);
        AttackCost { traffic_mib: traffic, area_time_mib2: traffic * memory_mib }
    }
}

impl KdfParams {
    /// Each Argon2 pass writes every block once and reads one earlier block at random for it
    /// (the block just written is still in the cache).
    pub fn attack_cost(&self) -> AttackCost {
        AttackCost::of(f64::from(self.memory_kib) / 1024.0, self.iterations)
    }
}

/// The same measures for scrypt(N, r, p): each of the p rounds writes 128·r·N bytes in order,
/// then reads as many back at random; one round's memory is reused by the next.
pub fn scrypt_attack_cost(log_n: u32, r: u32, p: u32) -> AttackCost {
    AttackCost::of(128.0 * f64::from(r) * f64::from(1u32 << log_n) / (1024.0 * 1024.0), p)
}

/// Argon2's working memory: an anonymous mapping of its own, so that
/// - the kernel hands its pages over already zeroed, at the first touch by a lane's thread
///   (the allocator's zeroing had the command's main thread write 46 MiB before the lanes
///   started, and the kernel zero every page of it first: 4% of a cold check);
/// - it is backed by transparent huge pages where the kernel allows: filling 64 MiB through
///   4 KiB pages took 16,000 page faults, a third of a derivation's time on a virtual machine;
/// - dropping it gives the pages back to the kernel at once, which zeroes them before any
///   other use: nothing derived from the password outlives the derivation in the process,
///   without the pass that cleared it (another 46 MiB written on the main thread).
struct KdfMemory {
    map: memmap2::MmapMut,
    blocks: usize,
}

impl KdfMemory {
    fn new(blocks: usize) -> Result<KdfMemory> {
        let len = blocks
            .checked_mul(std::mem::size_of::<argon2::Block>())
            .ok_or_else(|| Error::InvalidInput("Argon2id memory too large".into()))?;
        let map = memmap2::MmapMut::map_anon(len.max(1)).map_err(|e| {
            Error::InvalidInput(format!("not enough memory for the key derivation: {e}"))
        })?;
        #[cfg(target_os = "linux")]
        // A refusal only leaves ordinary pages.
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(KdfMemory { map, blocks })
    }
}

impl AsMut<[argon2::Block]> for KdfMemory {
    fn as_mut(&mut self) -> &mut [argon2::Block] {
        // SAFETY: the mapping is page-aligned (beyond a block's 64 bytes), at least `blocks`
        // blocks long, and lives as long as the borrow of `self`; any bytes, zeroes included,
        // are a valid block (an array of u64).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_mut_ptr().cast::<argon2::Block>(),
                self.blocks,
            )
        }
    }
}

impl KdfParams {
    pub(crate) fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Key> {
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(KEY_LEN))
                .map_err(|e| Error::InvalidInput(format!("invalid Argon2id parameters: {e}")))?;
        let mut memory = KdfMemory::new(params.block_count())?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Key([0u8; KEY_LEN]);
        let derived = argon.hash_password_into_with_memory(password, salt, &mut key.0, &mut memory);
        drop(memory);
        derived.map_err(|e| Error::InvalidInput(format!("key derivation failed: {e}")))?;
        Ok(key)
    }

    /// Why a reader refuses to run these parameters, if it does: a hostile slot must not
    /// exhaust memory or time. (Slots below the floor, made by older versions, still open:
    /// refusing them would lock their owners out.)
    pub fn above_ceiling(&self) -> Option<String> {
        let ceiling = KdfParams::CEILING;
        if self.memory_kib > ceiling.memory_kib
            || self.iterations > ceiling.iterations
            || self.parallelism > ceiling.parallelism
        {
            return Some(format!(
                "Argon2id cost {} above what readers run (at most {} MiB, {} passes, {} lanes)",
                self.describe(),
                ceiling.memory_kib / 1024,
                ceiling.iterations,
                ceiling.parallelism
            ));
        }
        None
    }

    /// Why a writer refuses to make a slot with these parameters: above the ceiling (no reader
    /// would open it) or below the floor (too cheap to guess).
    pub fn outside_limits(&self) -> Option<String> {
        if let Some(why) = self.above_ceiling() {
            return Some(why);
        }
        let floor = KdfParams::FLOOR;
        if self.memory_kib < floor.memory_kib || self.iterations < 1 || self.parallelism < 1 {
            return Some(format!(
                "Argon2id cost {} below the floor ({} MiB, 1 pass, 1 lane)",
                self.describe(),
                floor.memory_kib / 1024
            ));
        }
        None
    }

    fn describe(&self) -> String {
        format!("{} KiB, {} passes, {} lanes", self.memory_kib, self.iterations, self.parallelism)
    }

    /// The cheapest slot writers make.
    pub const FLOOR: KdfParams = KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 };
    /// The costliest: 2 GiB, 32 passes, 16 lanes (a hostile slot could otherwise ask for more
    /// memory than the machine has).
    pub const CEILING: KdfParams =
        KdfParams { memory_kib: 2 * 1024 * 1024, iterations: 32, parallelism: 16 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_in_our_memory_is_argon2id_as_the_crate_computes_it() {
        for (memory_kib, iterations, parallelism) in [(64, 1, 1), (2048, 2, 4), (4100, 3, 4)] {
            let p = KdfParams { memory_kib, iterations, parallelism };
            let ours = p.derive(b"password", b"some salt of 16 bytes").unwrap();
            let params = argon2::Params::new(memory_kib, iterations, parallelism, Some(KEY_LEN));
            let argon = argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                params.unwrap(),
            );
            let mut theirs = [0u8; KEY_LEN];
            argon.hash_password_into(b"password", b"some salt of 16 bytes", &mut theirs).unwrap();
            assert_eq!(
                ours.0, theirs,
                "{memory_kib} KiB, {iterations} passes, {parallelism} lanes"
            );
        }
    }

    #[test]
    fn default_cost_is_above_restics_scrypt_in_less_memory() {
        // restic 0.14 calibrates p at `init` to half a second of one core: 5 to 7 on the
        // development machine. Area-time is above it at 7, memory traffic at 5.
        let ours = KdfParams::default().attack_cost();
        let (restic, restic_slowest) = (scrypt_attack_cost(15, 8, 5), scrypt_attack_cost(15, 8, 7));
        assert!(ours.traffic_mib > restic.traffic_mib, "{ours:?} vs {restic:?}");
        assert!(ours.area_time_mib2 > restic_slowest.area_time_mib2, "{ours:?} vs {restic:?}");
        assert_eq!(restic.traffic_mib, 320.0);
        // Memory left for the rest of a command under restic's 57 MiB peak.
        assert!(KdfParams::default().memory_kib <= 46 * 1024);
        // The earlier default, for scale: within 4% of its traffic.
        let before = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 4 };
        assert!(ours.traffic_mib >= 0.95 * before.attack_cost().traffic_mib);
    }
}
