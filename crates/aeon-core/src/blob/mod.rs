//! Blobs: the unit of deduplication. A blob is a chunk of file data or a serialised directory
//! tree. Stored form: a sealed box whose plaintext is `codec byte || payload`, with the blob type
//! and id as associated data so that a blob cannot be passed off as another.

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

/// Compresses `data` into `out` as `codec || payload`. Falls back to no compression when the
/// codec does not make the data smaller, so incompressible data costs nothing to read back.
pub fn encode_payload(compression: Compression, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    match compression {
        Compression::None => {}
        Compression::Zstd(level) => {
            out.push(CODEC_ZSTD);
            let bound = zstd::zstd_safe::compress_bound(data.len());
            out.reserve(bound);
            let spare = out.len();
            out.resize(spare + bound, 0);
            match zstd::bulk::compress_to_buffer(data, &mut out[spare..], level) {
                Ok(n) if n < data.len() => {
                    out.truncate(spare + n);
                    return;
                }
                _ => out.truncate(start),
            }
        }
        Compression::Lz4 => {
            out.push(CODEC_LZ4);
            let bound = lz4_flex::block::get_maximum_output_size(data.len());
            let spare = out.len();
            out.resize(spare + bound, 0);
            match lz4_flex::block::compress_into(data, &mut out[spare..]) {
                Ok(n) if n < data.len() => {
                    out.truncate(spare + n);
                    return;
                }
                _ => out.truncate(start),
            }
        }
    }
    out.push(CODEC_NONE);
    out.extend_from_slice(data);
}

/// Inverse of [`encode_payload`]; `raw_len` is the plaintext length recorded in the index.
pub fn decode_payload(payload: &[u8], raw_len: u32, what: &str) -> Result<Vec<u8>> {
    let (&codec, body) =
        payload.split_first().ok_or_else(|| Error::corrupt(what, "empty blob payload"))?;
    if raw_len > MAX_BLOB_LEN {
        return Err(Error::corrupt(what, format!("implausible blob length {raw_len}")));
    }
    let raw_len = raw_len as usize;
    let out = match codec {
        CODEC_NONE => body.to_vec(),
        CODEC_ZSTD => zstd::bulk::decompress(body, raw_len)
            .map_err(|e| Error::corrupt(what, format!("zstd: {e}")))?,
        CODEC_LZ4 => lz4_flex::block::decompress(body, raw_len)
            .map_err(|e| Error::corrupt(what, format!("lz4: {e}")))?,
        other => {
            return Err(Error::corrupt(what, format!("unknown compression codec {other}")));
        }
    };
    if out.len() != raw_len {
        return Err(Error::corrupt(
            what,
            format!("decompressed to {} bytes, index says {raw_len}", out.len()),
        ));
    }
    Ok(out)
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
    let mut payload = Vec::with_capacity(data.len() / 2 + 64);
    encode_payload(compression, data, &mut payload);
    cipher.seal(&blob_aad(blob_type, id), &payload)
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
    let payload = cipher.open(&blob_aad(blob_type, id), sealed, &what)?;
    let data = decode_payload(&payload, raw_len, &what)?;
    if hasher.hash(&data) != *id {
        return Err(Error::corrupt(what, "content does not match its id"));
    }
    Ok(data)
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
        fn decode_payload_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200), n in 0u32..10_000) {
            let _ = decode_payload(&p, n, "t");
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
    fn compression_spec_parsing() {
        assert_eq!("zstd:9".parse::<Compression>().unwrap(), Compression::Zstd(9));
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert!("zstd:99".parse::<Compression>().is_err());
        assert!("gzip".parse::<Compression>().is_err());
    }
}
