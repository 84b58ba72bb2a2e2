//! Content-defined chunking with FastCDC (2020), its gear table seeded per repository so that
//! chunk boundaries (and therefore chunk sizes) do not fingerprint known files.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};
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

/// Splits data already in memory: the same cut points as [`Chunker`] on the same bytes, with
/// no buffer of its own (so nothing to allocate and zero per file).
pub fn chunk_slice(data: &[u8], params: ChunkerParams, seed: u64) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::with_level_and_seed(
        data,
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
        Normalization::Level1,
        seed,
    )
    .map(move |c| &data[c.offset..c.offset + c.length])
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
    seed: u64,
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
    pub fn new(source: R, params: ChunkerParams, seed: u64) -> Self {
        Chunker { source, params, seed, window: Vec::new(), start: 0, end: 0, eof: false }
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
        let p = self.params;
        FastCDC::with_level_and_seed(
            &self.window[..self.end],
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            Normalization::Level1,
            self.seed,
        )
        .cut(self.start, remaining)
        .1
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
        Chunker::new(data, SMALL, seed).map(|c| c.unwrap()).collect()
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
            let sliced: Vec<Vec<u8>> = chunk_slice(&data, SMALL, seed).map(<[u8]>::to_vec).collect();
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
                Chunker::new(Trickle(&data), SMALL, seed).map(|c| c.unwrap()).collect();
            prop_assert_eq!(trickled, chunks(&data, seed));
        }
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams { min_size: 1, avg_size: 2, max_size: 3 }.validate().is_err());
    }
}
