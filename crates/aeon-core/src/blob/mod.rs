//! Blobs: the unit of deduplication. A blob is a chunk of file data or a serialised directory
//! tree. Stored form: a sealed box whose plaintext is `codec byte || payload`, with the blob type
//! and id as associated data so that a blob cannot be passed off as another.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::crypto::{Cipher, IdHasher};
use crate::error::{Error, Result};
use crate::id::Id;

/// Largest plaintext blob a reader will allocate for; larger claims are corruption.
pub const MAX_BLOB_LEN: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum BlobType {
    Data = 1,
    Tree = 2,
}

impl BlobType {
    pub fn from_u8(v: u8) -> Option<BlobType> {
        match v {
            1 => Some(BlobType::Data),
            2 => Some(BlobType::Tree),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// Compression of a blob's payload. The codec byte is part of the format: new codecs take new
/// numbers and old readers refuse them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
    Lz4,
}

pub const CODEC_NONE: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;
pub const CODEC_LZ4: u8 = 2;

/// zstd level 3: see the README's "Why these defaults" for the measured trade-off.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Lz4 => f.write_str("lz4"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "invalid compression {s:?}; use zstd, zstd:LEVEL (1-22), lz4 or none"
            ))
        };
        match s {
            "none" | "off" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" | "auto" => Ok(Compression::default()),
            _ => {
                let level = s.strip_prefix("zstd:").ok_or_else(bad)?;
                let level: i32 = level.parse().map_err(|_| bad())?;
                if (1..=22).contains(&level) { Ok(Compression::Zstd(level)) } else { Err(bad()) }
            }
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Blobs shorter than this are compressed at zstd level 1 when the level asked for is a fast one
/// (3 or less). Below 16 KiB zstd takes its parameters from a table for small inputs, in which
/// level 1 compresses as well as level 3 for a third less CPU: 200,000 small files stored 1%
/// smaller (285.8 against 288.6 MB) with 2.4 instead of 3.6 CPU-s; the source-tree set stayed
/// within the chunk seed's noise (238.8-239.1 against 238.9 MB) with 5-10% less CPU. Higher
/// levels are kept as asked: whoever chose one wants the smallest repository.
const SMALL_BLOB_LEN: usize = 16 * 1024;
const FAST_LEVEL_MAX: i32 = 3;

/// Chunks at least this long are probed before zstd compresses them: [`Codec::worth_compressing`].
const PROBE_MIN_LEN: usize = 64 * 1024;
/// The probe compresses this many evenly spaced samples of this length...
const PROBE_SAMPLES: usize = 8;
const PROBE_SAMPLE_LEN: usize = 4 * 1024;
/// ...and compresses the chunk only if they shrink to at most this many hundredths.
const PROBE_WORTH_PERCENT: usize = 98;

thread_local! {
    /// zstd contexts cost more to set up than compressing a small blob takes: each thread keeps
    /// its own, with a scratch buffer that is reused instead of zeroed per blob.
    static CODEC: RefCell<Codec> = RefCell::new(Codec::default());
}

#[derive(Default)]
struct Codec {
    /// One compressor per level in use (the probe's level 1 and the configured one).
    compressors: Vec<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    scratch: Vec<u8>,
    /// Plaintext of blobs verified and not kept (see [`verify_blob_in_place`]).
    plain: Vec<u8>,
    /// The probe's input (samples of a chunk) and output.
    samples: Vec<u8>,
    probe: Vec<u8>,
}

impl Codec {
    fn with<R>(f: impl FnOnce(&mut Codec) -> R) -> R {
        CODEC.with(|c| match c.try_borrow_mut() {
            Ok(mut codec) => f(&mut codec),
            // Only reachable through re-entrance, which nothing here does; stay correct anyway.
            Err(_) => f(&mut Codec::default()),
        })
    }

    /// zstd-compresses `data` into the scratch buffer (or the probe's); `None` if zstd failed.
    fn zstd_into(&mut self, level: i32, data: &[u8], into_probe: bool) -> Option<usize> {
        let i = match self.compressors.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                self.compressors.push((level, zstd::bulk::Compressor::new(level).ok()?));
                self.compressors.len() - 1
            }
        };
        let out = if into_probe { &mut self.probe } else { &mut self.scratch };
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        // Written into the reserved capacity: no zero-filling of a buffer zstd overwrites.
        self.compressors[i].1.compress_to_buffer(data, out).ok()
    }

    /// Whether zstd is worth running on a large chunk: compresses a few samples of it fast.
    /// Random, encrypted or already compressed data (media, archives) is then stored as it is
    /// without paying for a full zstd pass that would not shrink it; data with any structure
    /// in its samples is compressed whole.
    fn worth_compressing(&mut self, data: &[u8]) -> bool {
        if data.len() < PROBE_MIN_LEN {
            return true;
        }
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        let step = data.len() / PROBE_SAMPLES;
        for i in 0..PROBE_SAMPLES {
            samples.extend_from_slice(&data[i * step..i * step + PROBE_SAMPLE_LEN.min(step)]);
        }
        let worth = match self.zstd_into(1, &samples, true) {
            Some(n) => n * 100 <= samples.len() * PROBE_WORTH_PERCENT,
            None => true,
        };
        self.samples = samples;
        worth
    }

    /// `(codec, payload)` for `data`: compressed into the scratch buffer, or `data` itself when
    /// the codec would not make it smaller (so incompressible data costs nothing to read back).
    fn compress<'a>(&'a mut self, compression: Compression, data: &'a [u8]) -> (u8, &'a [u8]) {
        match compression {
            Compression::None => {}
            Compression::Zstd(level) => {
                let small = data.len() < SMALL_BLOB_LEN && level <= FAST_LEVEL_MAX;
                let level = if small { 1 } else { level };
                if self.worth_compressing(data)
                    && let Some(n) = self.zstd_into(level, data, false)
                    && n < data.len()
                {
                    return (CODEC_ZSTD, &self.scratch[..n]);
                }
            }
            Compression::Lz4 => {
                let bound = lz4_flex::block::get_maximum_output_size(data.len());
                if self.scratch.len() < bound {
                    self.scratch.resize(bound, 0);
                }
                if let Ok(n) = lz4_flex::block::compress_into(data, &mut self.scratch[..bound])
                    && n < data.len()
                {
                    return (CODEC_LZ4, &self.scratch[..n]);
                }
            }
        }
        (CODEC_NONE, data)
    }

    fn zstd_decompress(&mut self, body: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.zstd_decompress_into(body, raw_len, &mut out)?;
        Ok(out)
    }

    /// Decompresses into `out`, replacing what it held; a body that would decompress to more
    /// than `raw_len` bytes is an error.
    fn zstd_decompress_into(
        &mut self,
        body: &[u8],
        raw_len: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let d = match &mut self.decompressor {
            Some(d) => d,
            None => self.decompressor.insert(zstd::bulk::Decompressor::new()?),
        };
        out.clear();
        out.reserve(raw_len);
        // Written into the reserved capacity: no zero-filling of bytes about to be overwritten.
        d.decompress_to_buffer(body, out)?;
        Ok(())
    }
}

/// Compresses `data` into `out` as `codec || payload`. Falls back to no compression when the
/// codec does not make the data smaller, so incompressible data costs nothing to read back.
pub fn encode_payload(compression: Compression, data: &[u8], out: &mut Vec<u8>) {
    Codec::with(|c| {
        let (codec, payload) = c.compress(compression, data);
        out.push(codec);
        out.extend_from_slice(payload);
    })
}

/// Inverse of [`encode_payload`]; `raw_len` is the plaintext length recorded in the index.
pub fn decode_payload(payload: &[u8], raw_len: u32, what: &str) -> Result<Vec<u8>> {
    let (&codec, body) =
        payload.split_first().ok_or_else(|| Error::corrupt(what, "empty blob payload"))?;
    Ok(decode_body(codec, body, raw_len, what)?.into_owned())
}

/// The plaintext of a payload body; borrowed when it was stored uncompressed.
fn decode_body<'a>(codec: u8, body: &'a [u8], raw_len: u32, what: &str) -> Result<Cow<'a, [u8]>> {
    if raw_len > MAX_BLOB_LEN {
        return Err(Error::corrupt(what, format!("implausible blob length {raw_len}")));
    }
    let out = match codec {
        CODEC_NONE => Cow::Borrowed(body),
        CODEC_ZSTD => Cow::Owned(
            Codec::with(|c| c.zstd_decompress(body, raw_len as usize))
                .map_err(|e| Error::corrupt(what, format!("zstd: {e}")))?,
        ),
        CODEC_LZ4 => Cow::Owned(
            lz4_flex::block::decompress(body, raw_len as usize)
                .map_err(|e| Error::corrupt(what, format!("lz4: {e}")))?,
        ),
        other => {
            return Err(Error::corrupt(what, format!("unknown compression codec {other}")));
        }
    };
    check_decoded_len(out.len(), raw_len, what)?;
    Ok(out)
}

fn check_decoded_len(len: usize, raw_len: u32, what: &str) -> Result<()> {
    if len != raw_len as usize {
        return Err(Error::corrupt(
            what,
            format!("decompressed to {len} bytes, index says {raw_len}"),
        ));
    }
    Ok(())
}

/// The associated data that binds a sealed blob to its type and id.
pub fn blob_aad(blob_type: BlobType, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = blob_type as u8;
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Compresses and encrypts a blob whose id is already known.
pub fn seal_blob(
    cipher: &Cipher,
    blob_type: BlobType,
    id: &Id,
    data: &[u8],
    compression: Compression,
) -> Result<Vec<u8>> {
    Codec::with(|c| {
        let (codec, payload) = c.compress(compression, data);
        let mut sealed = Vec::with_capacity(cipher.overhead() + 1 + payload.len());
        cipher.seal_appended(&blob_aad(blob_type, id), &mut sealed, |plain| {
            plain.push(codec);
            plain.extend_from_slice(payload);
        })?;
        Ok(sealed)
    })
}

/// Decrypts, decompresses and verifies a blob: the result is exactly the data whose keyed
/// hash is `id`, or an error naming what failed.
pub fn open_blob(
    cipher: &Cipher,
    hasher: &IdHasher,
    blob_type: BlobType,
    id: &Id,
    sealed: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>> {
    let what = format!("{} blob {}", blob_type.name(), id);
    let mut payload = cipher.open(&blob_aad(blob_type, id), sealed, &what)?;
    let data = match payload.first() {
        Some(&CODEC_NONE) => {
            // Stored as it is: drop the codec byte in place rather than copy the rest.
            payload.remove(0);
            decode_body(CODEC_NONE, &payload, raw_len, &what)?;
            payload
        }
        _ => decode_payload(&payload, raw_len, &what)?,
    };
    verify_id(hasher, id, &data, &what)?;
    Ok(data)
}

/// Like [`open_blob`], decrypting `sealed` where it lies (saving a copy); the plaintext
/// borrows from it when the blob was stored uncompressed.
pub fn open_blob_in_place<'a>(
    cipher: &Cipher,
    hasher: &IdHasher,
    blob_type: BlobType,
    id: &Id,
    sealed: &'a mut [u8],
    raw_len: u32,
) -> Result<Cow<'a, [u8]>> {
    let what = format!("{} blob {}", blob_type.name(), id);
    let (codec, body) = open_payload_in_place(cipher, blob_type, id, sealed, &what)?;
    let data = decode_body(codec, body, raw_len, &what)?;
    verify_id(hasher, id, &data, &what)?;
    Ok(data)
}

/// Decrypts a sealed blob where it lies; returns its codec byte and payload body.
fn open_payload_in_place<'a>(
    cipher: &Cipher,
    blob_type: BlobType,
    id: &Id,
    sealed: &'a mut [u8],
    what: &str,
) -> Result<(u8, &'a [u8])> {
    let payload = cipher.open_in_place(&blob_aad(blob_type, id), sealed, what)?;
    let (&codec, body) =
        payload.split_first().ok_or_else(|| Error::corrupt(what, "empty blob payload"))?;
    Ok((codec, body))
}

/// The largest plaintext buffer a thread keeps between blobs (larger blobs are rare).
const KEEP_PLAIN_CAPACITY: usize = 16 << 20;

/// Verifies a sealed blob where it lies, exactly as [`open_blob_in_place`] does, without keeping
/// its plaintext: a compressed blob is decompressed into a buffer this thread reuses. Checking
/// every blob otherwise paid an allocation, page faults and zero pages for each one (11% of a
/// full check's CPU on large files).
pub fn verify_blob_in_place(
    cipher: &Cipher,
    hasher: &IdHasher,
    blob_type: BlobType,
    id: &Id,
    sealed: &mut [u8],
    raw_len: u32,
) -> Result<()> {
    verify_blob_in_place_then(cipher, hasher, blob_type, id, sealed, raw_len, |_| ())
}

/// [`verify_blob_in_place`], then `then` on the verified plaintext, lent from `sealed` or from
/// the thread's buffer: a reader that needs the content of a few blobs (check, of the trees)
/// gets it without a second decryption or a copy.
pub fn verify_blob_in_place_then<R>(
    cipher: &Cipher,
    hasher: &IdHasher,
    blob_type: BlobType,
    id: &Id,
    sealed: &mut [u8],
    raw_len: u32,
    then: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let what = format!("{} blob {}", blob_type.name(), id);
    let (codec, body) = open_payload_in_place(cipher, blob_type, id, sealed, &what)?;
    if codec != CODEC_ZSTD || raw_len > MAX_BLOB_LEN {
        let data = decode_body(codec, body, raw_len, &what)?;
        verify_id(hasher, id, &data, &what)?;
        return Ok(then(&data));
    }
    let (plain, decompressed) = Codec::with(|c| {
        let mut plain = std::mem::take(&mut c.plain);
        let decompressed = c.zstd_decompress_into(body, raw_len as usize, &mut plain);
        (plain, decompressed)
    });
    let verified = decompressed
        .map_err(|e| Error::corrupt(&what, format!("zstd: {e}")))
        .and_then(|()| check_decoded_len(plain.len(), raw_len, &what))
        .and_then(|()| verify_id(hasher, id, &plain, &what))
        .map(|()| then(&plain));
    if plain.capacity() <= KEEP_PLAIN_CAPACITY {
        Codec::with(|c| c.plain = plain);
    }
    verified
}

fn verify_id(hasher: &IdHasher, id: &Id, data: &[u8], what: &str) -> Result<()> {
    if hasher.hash(data) != *id {
        return Err(Error::corrupt(what, "content does not match its id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn payload_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), codec in 0u8..3) {
            let c = [Compression::None, Compression::Zstd(3), Compression::Lz4][codec as usize];
            let mut p = Vec::new();
            encode_payload(c, &data, &mut p);
            prop_assert_eq!(decode_payload(&p, data.len() as u32, "t").unwrap(), data);
        }

        #[test]
        fn verifying_in_place_agrees_with_opening(
            data in proptest::collection::vec(0u8..4, 0..300_000),
            codec in 0u8..3,
            damage in proptest::option::of(any::<proptest::sample::Index>()),
            wrong_len in any::<bool>(),
        ) {
            let c = [Compression::None, Compression::Zstd(3), Compression::Lz4][codec as usize];
            let cipher = Cipher::new(&Key([5; 32]));
            let hasher = IdHasher::new(&Key([6; 32]));
            let id = hasher.hash(&data);
            let mut sealed = seal_blob(&cipher, BlobType::Data, &id, &data, c).unwrap();
            if let Some(i) = damage {
                let at = i.index(sealed.len());
                sealed[at] ^= 1;
            }
            let raw_len = data.len() as u32 + u32::from(wrong_len);
            let (mut a, mut b) = (sealed.clone(), sealed);
            let opened = open_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut a, raw_len);
            let verified = verify_blob_in_place_then(&cipher, &hasher, BlobType::Data, &id, &mut b, raw_len, <[u8]>::to_vec);
            prop_assert_eq!(opened.is_ok(), verified.is_ok());
            prop_assert_eq!(verified.is_ok(), damage.is_none() && !wrong_len);
            if let Ok(lent) = verified {
                prop_assert_eq!(lent, data.clone());
            }
            // Twice on one thread: the reused buffer holds nothing over from the last blob.
            let mut c2 = seal_blob(&cipher, BlobType::Data, &hasher.hash(b"x"), b"x", c).unwrap();
            prop_assert!(verify_blob_in_place(&cipher, &hasher, BlobType::Data, &hasher.hash(b"x"), &mut c2, 1).is_ok());
        }

        #[test]
        fn decode_payload_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200), n in 0u32..10_000) {
            let _ = decode_payload(&p, n, "t");
        }
    }

    #[test]
    fn small_blobs_take_level_one_at_the_fast_levels_only() {
        let text: Vec<u8> = (0..12_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 97, i % 13).into_bytes())
            .collect();
        for (len, level, expected) in [
            (SMALL_BLOB_LEN - 1, 3, 1),
            (SMALL_BLOB_LEN - 1, 2, 1),
            (SMALL_BLOB_LEN - 1, 19, 19),
            (SMALL_BLOB_LEN, 3, 3),
            (4 * SMALL_BLOB_LEN, 3, 3),
        ] {
            let data = &text[..len];
            let mut payload = Vec::new();
            encode_payload(Compression::Zstd(level), data, &mut payload);
            let want = zstd::bulk::compress(data, expected).unwrap();
            let other = if expected == 1 { level } else { 1 };
            assert!(zstd::bulk::compress(data, other).unwrap() != want, "levels must differ here");
            assert_eq!(payload[0], CODEC_ZSTD);
            assert!(payload[1..] == want[..], "{len} bytes at level {level}");
            assert_eq!(decode_payload(&payload, len as u32, "blob").unwrap(), data);
        }
    }

    #[test]
    fn compressible_data_shrinks_and_blob_round_trips() {
        let cipher = Cipher::new(&Key::random().unwrap());
        let hasher = IdHasher::new(&Key::random().unwrap());
        let data = vec![b'a'; 100_000];
        let id = hasher.hash(&data);
        let sealed =
            seal_blob(&cipher, BlobType::Data, &id, &data, Compression::default()).unwrap();
        assert!(sealed.len() < 1000);
        let back = open_blob(&cipher, &hasher, BlobType::Data, &id, &sealed, 100_000).unwrap();
        assert_eq!(back, data);
        // The same bytes presented as a tree blob fail authentication.
        assert!(open_blob(&cipher, &hasher, BlobType::Tree, &id, &sealed, 100_000).is_err());
    }

    #[test]
    fn probe_stores_random_data_as_it_is_and_compresses_structured_data() {
        let mut random = vec![0u8; 1 << 20];
        crate::crypto::fill_random(&mut random).unwrap();
        let mut text = Vec::new();
        while text.len() < 1 << 20 {
            text.extend_from_slice(format!("line {} of some text\n", text.len()).as_bytes());
        }
        // Random data with a compressible stretch the samples hit: worth compressing.
        let mut mixed = random.clone();
        mixed[..200_000].copy_from_slice(&text[..200_000]);
        for (data, codec) in [(&random, CODEC_NONE), (&text, CODEC_ZSTD), (&mixed, CODEC_ZSTD)] {
            let mut payload = Vec::new();
            encode_payload(Compression::default(), data, &mut payload);
            assert_eq!(payload[0], codec);
            assert_eq!(&decode_payload(&payload, data.len() as u32, "t").unwrap(), data);
        }
    }

    #[test]
    fn open_in_place_matches_open_and_rejects_tampering() {
        let cipher = Cipher::new(&Key::random().unwrap());
        let hasher = IdHasher::new(&Key::random().unwrap());
        for data in [vec![7u8; 300_000], (0..300_000u32).map(|i| ((i * 7919) >> 3) as u8).collect()]
        {
            let id = hasher.hash(&data);
            for compression in [Compression::None, Compression::default(), Compression::Lz4] {
                let mut sealed =
                    seal_blob(&cipher, BlobType::Data, &id, &data, compression).unwrap();
                let n = data.len() as u32;
                assert_eq!(
                    open_blob(&cipher, &hasher, BlobType::Data, &id, &sealed, n).unwrap(),
                    data
                );
                let mut tampered = sealed.clone();
                tampered[40] ^= 1;
                let err =
                    open_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut tampered, n);
                assert!(err.unwrap_err().to_string().contains("authentication failed"));
                let opened =
                    open_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut sealed, n)
                        .unwrap();
                assert_eq!(&*opened, &data[..]);
            }
        }
    }

    #[test]
    fn compression_spec_parsing() {
        assert_eq!("zstd:9".parse::<Compression>().unwrap(), Compression::Zstd(9));
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert!("zstd:99".parse::<Compression>().is_err());
        assert!("gzip".parse::<Compression>().is_err());
    }
}
