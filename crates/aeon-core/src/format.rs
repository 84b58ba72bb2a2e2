//! The 8-byte header that starts every stored object, and little binary helpers shared by the
//! decoders. See `docs/FORMAT.md`, "Object header".

use crate::error::{Error, Result};

pub const MAGIC: [u8; 4] = *b"AEON";
/// The repository format version `init` writes, and the newest this library reads. A
/// repository keeps the version it was created with (its config's header holds it), and every
/// object written into it carries that version, so older clients keep working on older
/// repositories. Version 2 stores 16-byte nonces and compressed pack tables; version 3 draws the
/// chunker's gear table from a secret and binds each pack table to its pack's content.
pub const FORMAT_VERSION: u8 = 3;
pub const HEADER_LEN: usize = 8;

/// What a stored object is. The numbers are part of the format; reserved kinds are listed so
/// that no later version reuses them for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Config = 1,
    KeySlot = 2,
    Pack = 3,
    Index = 4,
    Snapshot = 5,
    /// Lock objects (concurrent writers, prune).
    Lock = 6,
    /// Reserved: hash-chained audit-log records.
    Audit = 7,
    /// Reserved: Reed-Solomon parity over packs.
    Parity = 8,
    /// Reserved: the list of storage locations of a multi-location repository.
    Locations = 9,
    /// A recovery point's labels, changed after it was taken (`labels/`).
    Labels = 10,
    /// Where the rolling scrub stopped (`scrub/`).
    ScrubState = 11,
}

impl ObjectKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        use ObjectKind::*;
        Some(match v {
            1 => Config,
            2 => KeySlot,
            3 => Pack,
            4 => Index,
            5 => Snapshot,
            6 => Lock,
            7 => Audit,
            8 => Parity,
            9 => Locations,
            10 => Labels,
            11 => ScrubState,
            _ => return None,
        })
    }
}

/// Whether pack tables and index files of this format version hold their entries in columns
/// (`pack::write_entry_columns`) rather than in rows.
pub const fn entry_columns(version: u8) -> bool {
    version >= 2
}

/// Whether the chunker's gear table is a PRF of a repository secret (else a seeded public one).
pub const fn keyed_gear(version: u8) -> bool {
    version >= 3
}

/// Whether a pack table's associated data includes the hash of the pack bytes before it, so
/// that a table copied onto other bytes does not open.
pub const fn table_bound_to_content(version: u8) -> bool {
    version >= 3
}

pub fn header(kind: ObjectKind, version: u8) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], version, kind as u8, 0, 0]
}

/// Header flag (byte 6): a write-only client's envelope follows the header (index files,
/// recovery points, audit records; packs say so by their key mode instead).
pub const FLAG_ENVELOPE: u8 = 1;
/// Header flag (byte 6) of index files: the ids of the packs it condemns follow in the clear,
/// for write-only clients, which cannot read the sealed condemnations (FORMAT.md §8).
pub const FLAG_CLEAR_CONDEMNED: u8 = 2;
/// A write-only run's envelope: the writer's key fingerprint and an X-Wing ciphertext.
pub const ENVELOPE_LEN: usize = 32 + x_wing::CIPHERTEXT_SIZE;

/// The bytes that start an object of `kind` sealed with `cipher`: the header, and the
/// envelope when the cipher is a write-only run's (flag [`FLAG_ENVELOPE`]).
pub fn prefix(kind: ObjectKind, cipher: &crate::crypto::Cipher) -> Vec<u8> {
    let mut out = header(kind, cipher.format_version()).to_vec();
    if let Some(envelope) = cipher.envelope() {
        out[6] |= FLAG_ENVELOPE;
        out.extend_from_slice(envelope);
    }
    out
}

/// The envelope of an object that carries one (header flag [`FLAG_ENVELOPE`]); `None` for one
/// sealed with the repository's key. Call before choosing the cipher to open it with.
pub fn envelope_of<'a>(data: &'a [u8], what: &str) -> Result<Option<&'a [u8]>> {
    if data.len() < HEADER_LEN || data[..4] != MAGIC {
        return Err(Error::corrupt(what, "missing AEON magic number"));
    }
    if data[6] & FLAG_ENVELOPE == 0 {
        return Ok(None);
    }
    data.get(HEADER_LEN..HEADER_LEN + ENVELOPE_LEN)
        .map(Some)
        .ok_or_else(|| Error::corrupt(what, "truncated in its write-only envelope"))
}

/// Checks the header of an object sealed with `cipher` (and written by [`prefix`]): kind,
/// version, flags among `allowed_flags` and the envelope, which must be the cipher's. Returns
/// the length of the prefix (the header and any envelope), which the sealed part's associated
/// data starts with.
pub fn check_prefix(
    data: &[u8],
    expected: ObjectKind,
    cipher: &crate::crypto::Cipher,
    allowed_flags: u8,
    what: &str,
) -> Result<usize> {
    let mut plain = data.get(..HEADER_LEN).unwrap_or(data).to_vec();
    if plain.len() == HEADER_LEN {
        if plain[6] & !(allowed_flags | FLAG_ENVELOPE) != 0 {
            return Err(Error::corrupt(what, "unknown header flags"));
        }
        plain[6] = 0;
    }
    check_header_of(&plain, expected, cipher.format_version(), what)?;
    let envelope = envelope_of(data, what)?;
    if envelope != cipher.envelope() {
        return Err(Error::corrupt(what, "sealed to another key than the one opening it"));
    }
    Ok(HEADER_LEN + envelope.map_or(0, <[u8]>::len))
}

/// Like [`check_header`], for an object of a repository of format version `version`: an object
/// of another version cannot belong to it (and would not open with its cipher).
pub fn check_header_of<'a>(
    data: &'a [u8],
    expected: ObjectKind,
    version: u8,
    what: &str,
) -> Result<&'a [u8]> {
    let body = check_header(data, expected, what)?;
    if data[4] != version {
        return Err(Error::corrupt(
            what,
            format!("an object of format version {} in a version {version} repository", data[4]),
        ));
    }
    Ok(body)
}

/// Checks the header of `data` and returns the bytes after it.
///
/// A newer format version is reported as [`Error::UnsupportedVersion`] so that the user is told
/// to upgrade rather than that the data is damaged.
pub fn check_header<'a>(data: &'a [u8], expected: ObjectKind, what: &str) -> Result<&'a [u8]> {
    if data.len() < HEADER_LEN || data[..4] != MAGIC {
        return Err(Error::corrupt(what, "missing AEON magic number"));
    }
    let version = data[4];
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    if version == 0 {
        return Err(Error::corrupt(what, "format version 0 is invalid"));
    }
    if data[5] != expected as u8 {
        return Err(Error::corrupt(
            what,
            format!(
                "object kind {} where {:?} ({}) was expected",
                data[5], expected, expected as u8
            ),
        ));
    }
    if data[6] != 0 || data[7] != 0 {
        return Err(Error::corrupt(what, "unknown header flags"));
    }
    Ok(&data[HEADER_LEN..])
}

/// A bounds-checked little-endian reader: every decoder of repository data goes through it so
/// that truncated or hostile input becomes an error, never a panic.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], what: &'a str) -> Self {
        Reader { data, pos: 0, what }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            Error::corrupt(self.what, format!("truncated at byte {} (needed {n} more)", self.pos))
        })?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos..];
        self.pos = self.data.len();
        out
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.what, reason)
    }
}

/// Serialises `value` as CBOR (RFC 8949), the encoding of every structured record.
///
/// cbor4ii writes the same bytes as ciborium, the encoder of earlier releases (a property
/// test in `tree` holds it to that, so that a tree unchanged since then keeps its id), and
/// decodes three times as fast: decoding the parent's trees is on the critical path of a backup
/// with nothing changed.
pub fn to_cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Only allocation can fail writing into a Vec, and our types serialise infallibly.
    cbor4ii::serde::to_vec(Vec::new(), value).expect("CBOR serialisation into memory")
}

pub fn from_cbor<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    cbor4ii::serde::from_slice(data).map_err(|e| Error::corrupt(what, format!("invalid CBOR: {e}")))
}

/// An object that is one sealed CBOR record: `header || sealed box (AAD = header) of CBOR`
/// (recovery points, locks).
pub fn seal_record<T: serde::Serialize>(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    value: &T,
) -> Result<Vec<u8>> {
    let mut out = prefix(kind, cipher);
    let aad = out.clone();
    cipher.seal_into(&aad, &to_cbor(value), &mut out)?;
    Ok(out)
}

/// Opens an object written by [`seal_record`].
pub fn open_record<T: serde::de::DeserializeOwned>(
    cipher: &crate::crypto::Cipher,
    kind: ObjectKind,
    data: &[u8],
    what: &str,
) -> Result<T> {
    let cipher = cipher.for_object(data, what)?;
    let at = check_prefix(data, kind, &cipher, 0, what)?;
    let plain = cipher.open(&data[..at], &data[at..], what)?;
    from_cbor(&plain, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let mut h = header(ObjectKind::Index, 1).to_vec();
        h.extend_from_slice(b"body");
        assert_eq!(check_header(&h, ObjectKind::Index, "x").unwrap(), b"body");
        assert_eq!(check_header_of(&h, ObjectKind::Index, 1, "x").unwrap(), b"body");
        assert!(matches!(
            check_header_of(&h, ObjectKind::Index, 2, "x"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(check_header(&h, ObjectKind::Pack, "x"), Err(Error::Corrupt { .. })));
        h[4] = FORMAT_VERSION + 1;
        assert!(matches!(
            check_header(&h, ObjectKind::Index, "x"),
            Err(Error::UnsupportedVersion { .. })
        ));
        assert!(check_header(b"AEO", ObjectKind::Index, "x").is_err());
    }

    #[test]
    fn reader_never_panics_on_short_input() {
        let mut r = Reader::new(&[1, 2, 3], "t");
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(r.u32().is_err());
        assert!(r.take(usize::MAX).is_err());
    }
}
