//! Content-defined chunking with FastCDC (2020), its gear table a repository secret so that
//! chunk boundaries (and therefore chunk sizes) do not fingerprint known files.
//!
//! Format version 3 draws the whole 256-entry gear table from a PRF (keyed BLAKE3 in XOF mode)
//! of a 256-bit repository secret: nothing about it is public. Versions 1 and 2 XOR a 64-bit
//! seed into fastcdc's public table, which known cut points can reveal (as for restic's, Borg's
//! and bupstash's chunkers); their repositories keep cutting that way, for deduplication.

use std::io::Read;
use std::sync::Arc;

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Chunk size bounds, stored in the repository config so that every writer cuts alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 256 KiB / 512 KiB / 8 MiB: see the README's "Why these defaults" for the measurements.
    /// Repositories keep the bounds they were created with (the config stores them).
    fn default() -> Self {
        ChunkerParams { min_size: 256 * 1024, avg_size: 512 * 1024, max_size: 8 * 1024 * 1024 }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) =
            (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt("config", format!("invalid chunker parameters {self:?}")))
        }
    }
}

/// A repository's gear table (and its left-shifted twin, as FastCDC 2020 uses both): what
/// makes its cut points its own. Cheap to clone.
#[derive(Clone)]
pub struct Gear(Arc<GearTables>);

struct GearTables {
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

impl Gear {
    /// Format versions 1 and 2: fastcdc's public table with `seed` XORed into every entry.
    pub fn from_seed(seed: u64) -> Gear {
        let (gear, gear_ls) = get_gear_with_seed(seed);
        let mut t = GearTables { gear: [0; 256], gear_ls: [0; 256] };
        t.gear.copy_from_slice(&gear);
        t.gear_ls.copy_from_slice(&gear_ls);
        Gear(Arc::new(t))
    }

    /// Format version 3: entry i is bytes 8i..8i+8 (little-endian) of the BLAKE3 XOF output
    /// keyed with `secret` over the input `aeon gear table`.
    pub fn from_secret(secret: &[u8; 32]) -> Gear {
        let mut bytes = [0u8; 256 * 8];
        let mut hasher = blake3::Hasher::new_keyed(secret);
        hasher.update(b"aeon gear table");
        hasher.finalize_xof().fill(&mut bytes);
        let mut t = GearTables { gear: [0; 256], gear_ls: [0; 256] };
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            t.gear[i] = v;
            t.gear_ls[i] = v << 1;
        }
        Gear(Arc::new(t))
    }

    /// Where the chunk that starts at `data[0]` ends (all of `data` when it holds no cut).
    fn cut(&self, data: &[u8], p: ChunkerParams) -> usize {
        let (mask_s, mask_l) = select_masks(p.avg_size as usize, Normalization::Level1);
        let t = &self.0;
        cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &t.gear,
            &t.gear_ls,
        )
        .1
    }
}

/// Splits data already in memory: the same cut points as [`Chunker`] on the same bytes, with
/// no buffer of its own (so nothing to allocate and zero per file).
pub fn chunk_slice<'a>(
    data: &'a [u8],
    params: ChunkerParams,
    gear: &'a Gear,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, after) = rest.split_at(gear.cut(rest, params).clamp(1, rest.len()));
        rest = after;
        Some(chunk)
    })
}

/// Splits a stream into chunks through a window of `max_size` bytes: the same cut points as
/// [`chunk_slice`] on the same bytes, with memory for one window.
///
/// Written here rather than taken from fastcdc's `StreamCDC`, which moves its whole buffer to
/// the front after every chunk: with 1 MiB chunks in an 8 MiB buffer, each byte was copied
/// about seven times (6% of a large-file backup's CPU). Here only the unfinished chunk at the
/// end of the window moves when it is refilled.
pub struct Chunker<R: Read> {
    source: R,
    params: ChunkerParams,
    gear: Gear,
    /// `max_size` bytes once the first chunk is asked for, zeroed once: reads go straight into
    /// it. (Filled through `read_to_end` instead, its spare capacity was zeroed before every
    /// refill, 1.5% of a large-file backup's CPU.)
    window: Vec<u8>,
    /// Where the next chunk starts in `window`.
    start: usize,
    /// How much of `window` holds data.
    end: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(source: R, params: ChunkerParams, gear: Gear) -> Self {
        Chunker { source, params, gear, window: Vec::new(), start: 0, end: 0, eof: false }
    }

    /// The next chunk, borrowed from the window until the next call.
    pub fn next_chunk(&mut self) -> Option<std::io::Result<&[u8]>> {
        let max = self.params.max_size as usize;
        let mut cut = self.cut();
        if cut == self.end && cut - self.start < max && !self.eof {
            // The chunk may go on past what the window holds: move it to the front, refill.
            if self.window.len() < max {
                self.window.resize(max, 0);
            }
            self.window.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
            cut = self.cut();
        }
        if cut == self.start {
            return None;
        }
        let chunk = &self.window[self.start..cut];
        self.start = cut;
        Some(Ok(chunk))
    }

    /// Reads until the window is full or the source ends.
    fn fill(&mut self) -> std::io::Result<()> {
        while self.end < self.window.len() {
            match self.source.read(&mut self.window[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Where the chunk starting at `start` ends, judged on the bytes the window holds.
    fn cut(&self) -> usize {
        let remaining = self.end - self.start;
        if remaining == 0 {
            return self.start;
        }
        self.start + self.gear.cut(&self.window[self.start..self.end], self.params).max(1)
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().map(|r| r.map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMALL: ChunkerParams = ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 };

    fn chunks(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        Chunker::new(data, SMALL, Gear::from_seed(seed)).map(|c| c.unwrap()).collect()
    }

    /// Cut points by fastcdc's own iterator: the seeded tables cut exactly as before.
    fn fastcdc_chunks(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        fastcdc::v2020::FastCDC::with_level_and_seed(
            data,
            256,
            1024,
            4096,
            Normalization::Level1,
            seed,
        )
        .map(|c| data[c.offset..c.offset + c.length].to_vec())
        .collect()
    }

    proptest! {
        #[test]
        fn seeded_gear_cuts_as_fastcdc_did(data in proptest::collection::vec(any::<u8>(), 0..20_000), seed: u64) {
            prop_assert_eq!(chunks(&data, seed), fastcdc_chunks(&data, seed));
        }
    }

    #[test]
    fn keyed_gear_is_a_secret_table() {
        let a = Gear::from_secret(&[1; 32]);
        let b = Gear::from_secret(&[2; 32]);
        assert_ne!(a.0.gear, b.0.gear);
        // Nothing of fastcdc's public table shows through.
        let public = Gear::from_seed(0);
        assert!(a.0.gear.iter().zip(public.0.gear.iter()).all(|(x, y)| x != y));
        assert!(a.0.gear.iter().zip(a.0.gear_ls.iter()).all(|(g, ls)| *ls == g << 1));
        let data: Vec<u8> =
            (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let cut = |g: &Gear| chunk_slice(&data, SMALL, g).map(<[u8]>::len).collect::<Vec<_>>();
        assert_ne!(cut(&a), cut(&b));
        assert_eq!(cut(&a).iter().sum::<usize>(), data.len());
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input(data in proptest::collection::vec(any::<u8>(), 0..20_000), seed: u64) {
            let cs = chunks(&data, seed);
            prop_assert_eq!(cs.concat(), data.clone());
            for (i, c) in cs.iter().enumerate() {
                prop_assert!(c.len() <= 4096);
                if i + 1 < cs.len() { prop_assert!(c.len() >= 256); }
            }
        }
    }

    #[test]
    fn seed_changes_boundaries_and_insertions_resync() {
        let data: Vec<u8> =
            (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let a = chunks(&data, 1);
        let b = chunks(&data, 2);
        assert_ne!(
            a.iter().map(Vec::len).collect::<Vec<_>>(),
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted bytes".iter().copied());
        let e = chunks(&edited, 1);
        let shared = e.iter().filter(|c| a.contains(c)).count();
        assert!(
            shared * 10 >= a.len() * 8,
            "only {shared} of {} chunks survive an insertion",
            a.len()
        );
    }

    proptest! {
        #[test]
        fn slice_and_stream_cut_alike(data in proptest::collection::vec(any::<u8>(), 0..20_000), seed: u64) {
            let streamed = chunks(&data, seed);
            let gear = Gear::from_seed(seed);
            let sliced: Vec<Vec<u8>> = chunk_slice(&data, SMALL, &gear).map(<[u8]>::to_vec).collect();
            prop_assert_eq!(streamed, sliced);
        }
    }

    /// A reader that hands out at most 7 bytes per call, as pipes and sockets may.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest! {
        #[test]
        fn short_reads_cut_alike(data in proptest::collection::vec(any::<u8>(), 0..20_000), seed: u64) {
            let trickled: Vec<Vec<u8>> =
                Chunker::new(Trickle(&data), SMALL, Gear::from_seed(seed)).map(|c| c.unwrap()).collect();
            prop_assert_eq!(trickled, chunks(&data, seed));
        }
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams { min_size: 1, avg_size: 2, max_size: 3 }.validate().is_err());
    }
}
