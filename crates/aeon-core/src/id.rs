//! 256-bit identifiers of blobs and storage objects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

pub const ID_LEN: usize = 32;

/// A 32-byte identifier. Blob ids are keyed BLAKE3 of the plaintext; storage object names are
/// unkeyed BLAKE3 of the stored bytes (see `docs/FORMAT.md`, "Identifiers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Id(pub [u8; ID_LEN]);

/// Byte order (the order of the hex names), compared as two big-endian 128-bit halves: the
/// derived comparison calls `memcmp`, whose call was most of an index lookup's time.
impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.halves().cmp(&other.halves())
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Id {
    pub const ZERO: Id = Id([0; ID_LEN]);

    fn halves(&self) -> (u128, u128) {
        let (mut high, mut low) = ([0u8; 16], [0u8; 16]);
        high.copy_from_slice(&self.0[..16]);
        low.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(high), u128::from_be_bytes(low))
    }

    /// Unkeyed BLAKE3 of `data`: the name of a storage object.
    pub fn of_stored_bytes(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        bytes.try_into().ok().map(Id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as listings show it.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidInput(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Id(out))
    }
}

// Binary formats carry the 32 raw bytes; human-readable ones (JSON) carry hex.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(D::Error::custom)
        } else {
            let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
            Id::from_slice(&b).ok_or_else(|| D::Error::custom("id must be 32 bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::of_stored_bytes(b"x");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!("zz".parse::<Id>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn ids_order_as_their_bytes_and_hex_names(a: [u8; ID_LEN], b: [u8; ID_LEN], at in 0..ID_LEN) {
            let (x, y) = (Id(a), Id(b));
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            proptest::prop_assert_eq!(x.cmp(&y), x.to_hex().cmp(&y.to_hex()));
            // Ids that differ in one byte only, wherever it is.
            let mut c = a;
            c[at] = c[at].wrapping_add(1);
            proptest::prop_assert_eq!(x.cmp(&Id(c)), a.cmp(&c));
        }
    }
}
