//! Pack files: many sealed blobs in one storage object, followed by a sealed table of contents.
//!
//! ```text
//! header(8, kind=Pack) | key mode(1) | blob... | sealed table | table length (u32 LE)
//! ```
//! The table repeats what the index says about the pack, so a lost index can be rebuilt from
//! the packs alone. Format version 2 compresses it column by column (types, ids, gaps, lengths),
//! 36 bytes per blob instead of 45. See `docs/FORMAT.md`, "Pack files".

use crate::backend::{Backend, FileType, Upload};
use crate::blob::{self, BlobType, Compression, MAX_BLOB_LEN};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, ObjectKind, Reader};
use crate::id::Id;

/// Blobs sealed with the repository data key.
pub const KEY_MODE_REPOSITORY: u8 = 0;
/// Blobs sealed with a write-only client's run key; its envelope follows the mode byte.
pub const KEY_MODE_WRITER: u8 = 1;
/// Rows of 45-byte entries (format version 1).
const TABLE_VERSION_ROWS: u8 = 1;
/// The same fields, compressed column by column (format version 2).
const TABLE_VERSION_COLUMNS: u8 = 2;
const TABLE_ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
const TABLE_AAD: &[u8] = b"aeon pack table";
/// Offset of the first blob in a key-mode-0 pack.
pub const FIRST_BLOB_OFFSET: u32 = HEADER_LEN as u32 + 1;

/// Where a blob sits in a pack, as the pack table and the index record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub blob_type: BlobType,
    pub id: Id,
    /// Offset of the sealed blob from the start of the pack file.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
}

impl PackEntry {
    /// The 45-byte encoding shared by pack tables and index files.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.blob_type as u8);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    /// Reads one entry; `container` names the structure for the error message.
    pub fn read(r: &mut Reader<'_>, container: &str) -> Result<PackEntry> {
        let blob_type = BlobType::from_u8(r.u8()?)
            .ok_or_else(|| r.error(format!("unknown blob type in {container}")))?;
        Ok(PackEntry {
            blob_type,
            id: Id(r.array()?),
            offset: r.u32()?,
            length: r.u32()?,
            raw_len: r.u32()?,
        })
    }
}

/// Small pieces of a streamed pack are gathered up to this size, so that storage sees large
/// writes.
const STAGE_LEN: usize = 1 << 20;
/// Pieces at least this large go to storage as they are: gathering them first copied every
/// byte of a large-file backup once more in the packer, the one stage that cannot run in
/// parallel, for no fewer system calls worth counting (one per 64 KiB at the least).
const DIRECT_WRITE_LEN: usize = 64 << 10;

/// Where a pack's bytes go while it fills.
enum Sink {
    /// Built whole in memory, to be stored with one write.
    Memory(Vec<u8>),
    /// Streamed to storage as it fills, hashed on the way.
    Stream { upload: Box<dyn Upload>, staged: Vec<u8>, hasher: Box<blake3::Hasher> },
}

/// A finished pack's bytes: in memory, or in an upload waiting for its name.
pub enum PackBody {
    Bytes(Vec<u8>),
    Streamed(Box<dyn Upload>),
}

impl PackBody {
    /// Stores the pack durably as `name`; gives back a memory pack's buffer for reuse.
    pub fn store(
        self,
        backend: &dyn Backend,
        name: &str,
        placement: Option<usize>,
    ) -> (Result<()>, Option<Vec<u8>>) {
        match self {
            PackBody::Bytes(bytes) => {
                let written = match placement {
                    Some(slot) => backend.write_placed(FileType::Pack, name, &bytes, slot),
                    None => backend.write(FileType::Pack, name, &bytes),
                };
                (written, Some(bytes))
            }
            PackBody::Streamed(upload) => (upload.finish(name), None),
        }
    }
}

/// A pack ready to be stored under its id.
pub struct FinishedPack {
    pub id: Id,
    pub size: u64,
    pub entries: Vec<PackEntry>,
    pub body: PackBody,
}

/// Accumulates sealed blobs, in memory or streamed to storage, until the pack is finished.
pub struct PackWriter {
    sink: Sink,
    len: usize,
    entries: Vec<PackEntry>,
    raw_bytes: u64,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    /// A writer of a pack of the newest format version, in memory.
    pub fn new() -> PackWriter {
        PackWriter::starting(Sink::Memory(Vec::new()), &pack_head(format::FORMAT_VERSION, None))
    }

    /// A writer that builds its pack in `buf` (cleared first), reusing its allocation.
    pub fn with_buffer(mut buf: Vec<u8>, cipher: &Cipher) -> PackWriter {
        buf.clear();
        PackWriter::starting(Sink::Memory(buf), &head_for(cipher))
    }

    /// A writer whose buffer holds a pack of about `pack_size` bytes without growing (growing
    /// copies the pack so far, and doubling would leave half the buffer unused).
    pub fn with_capacity(pack_size: usize, cipher: &Cipher) -> PackWriter {
        // Only the pages written count against memory; the cap keeps huge pack sizes from
        // asking for more address space than a strict overcommit policy grants.
        let expected = pack_size.min(256 << 20);
        PackWriter::with_buffer(Vec::with_capacity(expected + expected / 4), cipher)
    }

    /// A writer that streams its pack to `upload`: no pack is held in memory.
    pub fn streaming(upload: Box<dyn Upload>, cipher: &Cipher) -> PackWriter {
        PackWriter::starting(
            Sink::Stream { upload, staged: Vec::with_capacity(STAGE_LEN), hasher: Box::default() },
            &head_for(cipher),
        )
    }

    fn starting(sink: Sink, head: &[u8]) -> PackWriter {
        let mut w = PackWriter { sink, len: 0, entries: Vec::new(), raw_bytes: 0 };
        // Cannot fail: a stream's first bytes are only staged.
        let _ = w.append(head);
        w
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::Memory(buf) => buf.extend_from_slice(data),
            Sink::Stream { upload, staged, hasher } => {
                if staged.len() + data.len() > STAGE_LEN || data.len() >= DIRECT_WRITE_LEN {
                    flush_staged(upload.as_mut(), staged, hasher)?;
                }
                if data.len() >= DIRECT_WRITE_LEN {
                    hasher.update(data);
                    upload.write(data)?;
                } else {
                    staged.extend_from_slice(data);
                }
            }
        }
        self.len += data.len();
        Ok(())
    }

    pub fn add(&mut self, blob_type: BlobType, id: Id, sealed: &[u8], raw_len: u32) -> Result<()> {
        let offset = u32::try_from(self.len)
            .map_err(|_| Error::InvalidInput("pack exceeds 4 GiB".into()))?;
        let length = u32::try_from(sealed.len())
            .map_err(|_| Error::InvalidInput("blob exceeds 4 GiB".into()))?;
        self.append(sealed)?;
        self.entries.push(PackEntry { blob_type, id, offset, length, raw_len });
        self.raw_bytes += raw_len as u64;
        Ok(())
    }

    pub fn size(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Appends the sealed table and returns the finished pack, ready to store. `cipher` must
    /// be of the format version the writer was made for.
    pub fn finish(mut self, cipher: &Cipher) -> Result<FinishedPack> {
        let table = if format::entry_columns(cipher.format_version()) {
            encode_table_columns(&self.entries)
        } else {
            encode_table_rows(&self.entries)
        };
        let aad = match format::table_bound_to_content(cipher.format_version()) {
            true => table_aad(Some(&self.body_hash()?)),
            false => table_aad(None),
        };
        let mut tail = Vec::new();
        cipher.seal_into(&aad, &table, &mut tail)?;
        let table_len = tail.len() as u32;
        tail.extend_from_slice(&table_len.to_le_bytes());
        self.append(&tail)?;
        let (id, body) = match self.sink {
            Sink::Memory(buf) => (Id::of_stored_bytes(&buf), PackBody::Bytes(buf)),
            Sink::Stream { mut upload, mut staged, mut hasher } => {
                flush_staged(upload.as_mut(), &mut staged, &mut hasher)?;
                (Id(*hasher.finalize().as_bytes()), PackBody::Streamed(upload))
            }
        };
        Ok(FinishedPack { id, size: self.len as u64, entries: self.entries, body })
    }
}

impl PackWriter {
    /// BLAKE3 of every byte written so far (a streamed pack's staged bytes go out first).
    fn body_hash(&mut self) -> Result<[u8; 32]> {
        Ok(match &mut self.sink {
            Sink::Memory(buf) => *blake3::hash(buf).as_bytes(),
            Sink::Stream { upload, staged, hasher } => {
                flush_staged(upload.as_mut(), staged, hasher)?;
                *hasher.clone().finalize().as_bytes()
            }
        })
    }
}

/// The bytes before a pack's first blob: header, key mode, and a write-only run's envelope.
fn pack_head(format_version: u8, envelope: Option<&[u8]>) -> Vec<u8> {
    let mut head = format::header(ObjectKind::Pack, format_version).to_vec();
    match envelope {
        None => head.push(KEY_MODE_REPOSITORY),
        Some(envelope) => {
            head.push(KEY_MODE_WRITER);
            head.extend_from_slice(envelope);
        }
    }
    head
}

fn head_for(cipher: &Cipher) -> Vec<u8> {
    pack_head(cipher.format_version(), cipher.envelope())
}

/// The envelope of a pack sealed by a write-only run (key mode 1), from its first bytes; `None`
/// for a pack sealed with the repository key.
pub fn envelope_of<'a>(head: &'a [u8], what: &str) -> Result<Option<&'a [u8]>> {
    let body = format::check_header(head, ObjectKind::Pack, what)?;
    match body.first() {
        Some(&KEY_MODE_REPOSITORY) => Ok(None),
        Some(&KEY_MODE_WRITER) => body
            .get(1..1 + format::ENVELOPE_LEN)
            .map(Some)
            .ok_or_else(|| Error::corrupt(what, "truncated in its write-only envelope")),
        Some(mode) => Err(Error::corrupt(
            what,
            format!("pack key mode {mode} is not supported by this version"),
        )),
        None => Err(Error::corrupt(what, "no key mode")),
    }
}

/// Where the first blob of a pack with this envelope starts.
pub fn first_blob_offset(envelope: Option<&[u8]>) -> usize {
    FIRST_BLOB_OFFSET as usize + envelope.map_or(0, <[u8]>::len)
}

/// The cipher and hasher that open the blobs of the pack starting with `head`: the
/// repository's, or those of the write-only run its envelope names.
pub fn keys_for<'a>(
    cipher: &'a Cipher,
    hasher: &'a crate::crypto::IdHasher,
    head: &[u8],
    what: &str,
) -> Result<(std::borrow::Cow<'a, Cipher>, std::borrow::Cow<'a, crate::crypto::IdHasher>)> {
    use std::borrow::Cow;
    match envelope_of(head, what)? {
        None => Ok((Cow::Borrowed(cipher), Cow::Borrowed(hasher))),
        Some(envelope) if Some(envelope) == cipher.envelope() => {
            Ok((Cow::Borrowed(cipher), Cow::Borrowed(hasher)))
        }
        Some(envelope) => {
            let (c, h) = cipher.open_envelope(envelope, what)?;
            Ok((Cow::Owned(c), Cow::Owned(h)))
        }
    }
}

/// The associated data of a pack table: from format version 3 bound to the pack's bytes before
/// the table (`body_hash`), so that a table copied onto other bytes does not open.
fn table_aad(body_hash: Option<&[u8; 32]>) -> Vec<u8> {
    let mut aad = TABLE_AAD.to_vec();
    if let Some(h) = body_hash {
        aad.extend_from_slice(h);
    }
    aad
}

fn flush_staged(
    upload: &mut dyn Upload,
    staged: &mut Vec<u8>,
    hasher: &mut blake3::Hasher,
) -> Result<()> {
    if !staged.is_empty() {
        hasher.update(staged);
        upload.write(staged)?;
        staged.clear();
    }
    Ok(())
}

fn encode_table_rows(entries: &[PackEntry]) -> Vec<u8> {
    let mut t = Vec::with_capacity(5 + entries.len() * TABLE_ENTRY_LEN);
    t.push(TABLE_VERSION_ROWS);
    t.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        e.write(&mut t);
    }
    t
}

/// `version (2) || plaintext length (u32) || codec || payload` of the entries in columns
/// ([`write_entry_columns`]).
fn encode_table_columns(entries: &[PackEntry]) -> Vec<u8> {
    let mut columns = Vec::with_capacity(4 + entries.len() * TABLE_ENTRY_LEN);
    write_entry_columns(entries, &mut columns);
    let mut t = vec![TABLE_VERSION_COLUMNS];
    t.extend_from_slice(&(columns.len() as u32).to_le_bytes());
    blob::encode_payload(Compression::default(), &columns, &mut t);
    t
}

/// Appends `count (u32) || types || ids || gaps || sealed lengths || plaintext lengths`: types
/// one byte each, ids 32, the rest u32 little-endian. A gap is the distance from the end of the
/// previous blob (the first: from [`FIRST_BLOB_OFFSET`]); writers leave none, so that column
/// compresses to nothing, while the ids, which do not compress, are kept apart from the
/// lengths, which do. Format version 2's pack tables and index files use it.
pub fn write_entry_columns(entries: &[PackEntry], out: &mut Vec<u8>) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend(entries.iter().map(|e| e.blob_type as u8));
    for e in entries {
        out.extend_from_slice(&e.id.0);
    }
    let mut end = FIRST_BLOB_OFFSET;
    for e in entries {
        out.extend_from_slice(&e.offset.wrapping_sub(end).to_le_bytes());
        end = e.offset.wrapping_add(e.length);
    }
    for e in entries {
        out.extend_from_slice(&e.length.to_le_bytes());
    }
    for e in entries {
        out.extend_from_slice(&e.raw_len.to_le_bytes());
    }
}

/// Reads what [`write_entry_columns`] wrote; `container` names the structure in errors.
pub fn read_entry_columns(r: &mut Reader<'_>, container: &str) -> Result<Vec<PackEntry>> {
    let count = r.u32()? as usize;
    let types = r.take(count)?;
    let ids = r.take(count * 32)?;
    let gaps = r.take(count * 4)?;
    let lengths = r.take(count * 4)?;
    let raw_lens = r.take(count * 4)?;
    let word = |column: &[u8], i: usize| {
        u32::from_le_bytes(column[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
    };
    let mut entries = Vec::with_capacity(count);
    // Wrapping, as the writer computed the gaps: any entries round-trip, and those outside the
    // pack are for the caller to refuse.
    let mut end = FIRST_BLOB_OFFSET;
    for i in 0..count {
        let blob_type = BlobType::from_u8(types[i])
            .ok_or_else(|| r.error(format!("unknown blob type in {container}")))?;
        let offset = end.wrapping_add(word(gaps, i));
        let length = word(lengths, i);
        end = offset.wrapping_add(length);
        entries.push(PackEntry {
            blob_type,
            id: Id(ids[i * 32..i * 32 + 32].try_into().expect("32 bytes")),
            offset,
            length,
            raw_len: word(raw_lens, i),
        });
    }
    Ok(entries)
}

/// Decodes a plaintext pack table of either version, checking every entry lies inside a pack
/// of `pack_len` bytes.
pub fn decode_table(table: &[u8], pack_len: u64, what: &str) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(table, what);
    let entries = match r.u8()? {
        TABLE_VERSION_ROWS => {
            let count = r.u32()? as usize;
            if count.saturating_mul(TABLE_ENTRY_LEN) != table.len() - 5 {
                return Err(r.error("pack table length does not match its entry count"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(PackEntry::read(&mut r, "pack table")?);
            }
            entries
        }
        TABLE_VERSION_COLUMNS => {
            let plain_len = r.u32()?;
            // Every blob takes at least a tag's 16 bytes of the pack: a longer table is hostile.
            if plain_len as u64 > 4 + TABLE_ENTRY_LEN as u64 * (pack_len / 16 + 1) {
                return Err(r.error("implausible pack table length"));
            }
            let columns = blob::decode_payload(r.rest(), plain_len, what)?;
            let mut c = Reader::new(&columns, what);
            let entries = read_entry_columns(&mut c, "pack table")?;
            if !c.is_empty() {
                return Err(c.error("trailing bytes after the pack table"));
            }
            entries
        }
        _ => return Err(r.error("unknown pack table version")),
    };
    for e in &entries {
        if (e.offset as u64 + e.length as u64) > pack_len
            || e.offset < FIRST_BLOB_OFFSET
            || e.raw_len > MAX_BLOB_LEN
        {
            return Err(Error::corrupt(
                what,
                format!("entry for blob {} lies outside the pack", e.id),
            ));
        }
    }
    Ok(entries)
}

/// Opens a pack table read from storage: `head` is the pack's first bytes (header and key
/// mode), `sealed` the sealed table found at `table_start`.
pub fn open_table(
    cipher: &Cipher,
    head: &[u8],
    sealed: &[u8],
    table_start: u64,
    what: &str,
) -> Result<Vec<PackEntry>> {
    format::check_header_of(head, ObjectKind::Pack, cipher.format_version(), what)?;
    if envelope_of(head, what)?.is_some() {
        return Err(Error::InvalidInput(format!(
            "{what}: a write-only client's pack table opens only with its whole pack"
        )));
    }
    if format::table_bound_to_content(cipher.format_version()) {
        return Err(Error::InvalidInput(format!(
            "{what}: a version {} pack table opens only with its whole pack (pack::read_table)",
            cipher.format_version()
        )));
    }
    let table = cipher.open(TABLE_AAD, sealed, what)?;
    decode_table(&table, table_start, what)
}

/// Reads the table of a whole pack file held in memory.
pub fn read_table(cipher: &Cipher, pack: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    format::check_header_of(pack, ObjectKind::Pack, cipher.format_version(), what)?;
    let envelope = envelope_of(pack, what)?;
    let cipher = match envelope {
        Some(envelope) if Some(envelope) != cipher.envelope() => {
            std::borrow::Cow::Owned(cipher.open_envelope(envelope, what)?.0)
        }
        _ => std::borrow::Cow::Borrowed(cipher),
    };
    let table_start = table_start(pack, what)?;
    if table_start < first_blob_offset(envelope) {
        return Err(Error::corrupt(what, "pack table length points outside the pack"));
    }
    let aad = match format::table_bound_to_content(cipher.format_version()) {
        true => table_aad(Some(blake3::hash(&pack[..table_start]).as_bytes())),
        false => table_aad(None),
    };
    let table = cipher.open(&aad, &pack[table_start..pack.len() - 4], what)?;
    decode_table(&table, table_start as u64, what)
}

/// Where the sealed table of a whole pack file starts, from the table length that ends it.
pub fn table_start(pack: &[u8], what: &str) -> Result<usize> {
    if pack.len() < FIRST_BLOB_OFFSET as usize + 4 {
        return Err(Error::corrupt(what, "too short to hold a pack table"));
    }
    let len_pos = pack.len() - 4;
    let table_len = u32::from_le_bytes(pack[len_pos..].try_into().expect("4 bytes")) as usize;
    len_pos
        .checked_sub(table_len)
        .filter(|&s| s >= FIRST_BLOB_OFFSET as usize)
        .ok_or_else(|| Error::corrupt(what, "pack table length points outside the pack"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    fn in_memory(p: FinishedPack) -> (Vec<u8>, Id, Vec<PackEntry>) {
        match p.body {
            PackBody::Bytes(bytes) => (bytes, p.id, p.entries),
            PackBody::Streamed(_) => panic!("a memory pack was streamed"),
        }
    }

    /// The bytes streamed, the length of each write, and the name finished under.
    type Recorded = (Vec<u8>, Vec<usize>, String);

    /// Records what is streamed to it, and the name it is finished under.
    struct Recorder(Arc<Mutex<Recorded>>);
    impl Upload for Recorder {
        fn write(&mut self, data: &[u8]) -> Result<()> {
            let mut r = self.0.lock().unwrap();
            r.0.extend_from_slice(data);
            r.1.push(data.len());
            Ok(())
        }
        fn finish(self: Box<Self>, name: &str) -> Result<()> {
            self.0.lock().unwrap().2 = name.to_string();
            Ok(())
        }
    }

    #[test]
    fn streamed_pack_is_a_whole_pack_written_in_large_pieces() {
        let version = format::FORMAT_VERSION;
        let cipher = Cipher::for_format(&Key::random().unwrap(), version);
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new(), String::new())));
        let mut w = PackWriter::streaming(Box::new(Recorder(seen.clone())), &cipher);
        let blobs: Vec<Vec<u8>> = [10, 3 << 20, 5, STAGE_LEN - 1, 300_000, STAGE_LEN, 7, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8 + 1; n])
            .collect();
        for (i, b) in blobs.iter().enumerate() {
            w.add(BlobType::Data, Id::of_stored_bytes(&[i as u8]), b, b.len() as u32).unwrap();
        }
        let pack = w.finish(&cipher).unwrap();
        let (id, size, entries) = (pack.id, pack.size, pack.entries.clone());
        let PackBody::Streamed(upload) = pack.body else { panic!("not streamed") };
        upload.finish(&id.to_hex()).unwrap();
        let (bytes, pieces, name) = seen.lock().unwrap().clone();
        assert_eq!((name, size), (id.to_hex(), bytes.len() as u64));
        assert_eq!(id, Id::of_stored_bytes(&bytes));
        assert_eq!(read_table(&cipher, &bytes, "p").unwrap(), entries);
        for (e, b) in entries.iter().zip(&blobs) {
            assert_eq!(&bytes[e.offset as usize..(e.offset + e.length) as usize], &b[..]);
        }
        // Header, eight blobs and table reach storage in fewer writes: small pieces are gathered
        // (the last blobs go out on their own before the table, which is sealed with their hash).
        assert_eq!(pieces.len(), 8, "{pieces:?}");
    }

    /// A forged pack: genuine sealed table of one pack after other bytes.
    #[test]
    fn a_table_copied_onto_other_bytes_does_not_open_from_version_3() {
        for version in 1..=format::FORMAT_VERSION {
            let cipher = Cipher::for_format(&Key::random().unwrap(), version);
            let mut w = PackWriter::with_buffer(Vec::new(), &cipher);
            w.add(BlobType::Data, Id([1; 32]), &[9u8; 100], 60).unwrap();
            let (bytes, _, _) = in_memory(w.finish(&cipher).unwrap());
            let mut forged = bytes.clone();
            forged[20] ^= 1;
            let copied = read_table(&cipher, &forged, "forged");
            if format::table_bound_to_content(version) {
                assert!(copied.is_err(), "version {version}");
            } else {
                assert!(copied.is_ok(), "version {version}: only v3 binds");
            }
            assert!(read_table(&cipher, &bytes, "genuine").is_ok());
        }
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20), version in 1u8..=format::FORMAT_VERSION) {
            let cipher = Cipher::for_format(&Key::random().unwrap(), version);
            let mut w = PackWriter::with_buffer(Vec::new(), &cipher);
            for (i, b) in blobs.iter().enumerate() {
                let id = Id::of_stored_bytes(&[i as u8]);
                w.add(if i % 2 == 0 { BlobType::Data } else { BlobType::Tree }, id, b, b.len() as u32 * 2).unwrap();
            }
            let (bytes, id, entries) = in_memory(w.finish(&cipher).unwrap());
            prop_assert_eq!(id, Id::of_stored_bytes(&bytes));
            let table = read_table(&cipher, &bytes, "p").unwrap();
            prop_assert_eq!(&table, &entries);
            for (e, b) in table.iter().zip(&blobs) {
                prop_assert_eq!(&bytes[e.offset as usize..(e.offset + e.length) as usize], &b[..]);
            }
        }

        #[test]
        fn read_table_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            for version in 1..=format::FORMAT_VERSION {
                let cipher = Cipher::for_format(&Key([1; 32]), version);
                let _ = read_table(&cipher, &data, "p");
            }
            let _ = decode_table(&data, 1000, "p");
        }
    }

    #[test]
    fn truncated_pack_is_an_error() {
        for version in 1..=format::FORMAT_VERSION {
            let cipher = Cipher::for_format(&Key::random().unwrap(), version);
            let mut w = PackWriter::with_buffer(Vec::new(), &cipher);
            w.add(BlobType::Data, Id::ZERO, b"abc", 3).unwrap();
            let (bytes, _, _) = in_memory(w.finish(&cipher).unwrap());
            for cut in [0, 5, 12, bytes.len() - 1] {
                assert!(read_table(&cipher, &bytes[..cut], "p").is_err());
            }
        }
    }

    /// Format version 2's table costs 36-38 bytes per blob (version 1: 45 plus the box), and a
    /// pack of one version is refused, by name, where the other is expected.
    #[test]
    fn column_table_is_smaller_and_versions_do_not_mix() {
        let key = Key::random().unwrap();
        let mut sizes = Vec::new();
        for version in 1..=format::FORMAT_VERSION {
            let cipher = Cipher::for_format(&key, version);
            let mut w = PackWriter::with_buffer(Vec::new(), &cipher);
            for i in 0..2000u32 {
                let id = Id(*blake3::hash(&i.to_le_bytes()).as_bytes());
                let len = 50 + i % 3000;
                w.add(BlobType::Data, id, &vec![7; len as usize], len * 2).unwrap();
            }
            let (bytes, _, entries) = in_memory(w.finish(&cipher).unwrap());
            assert_eq!(read_table(&cipher, &bytes, "p").unwrap(), entries);
            let table_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
            sizes.push(table_len as usize / entries.len());
            let other = Cipher::for_format(&key, 3 - version);
            let err = read_table(&other, &bytes, "p").unwrap_err().to_string();
            assert!(err.contains("format version"), "{err}");
        }
        assert_eq!(sizes[0], TABLE_ENTRY_LEN);
        assert!(sizes[1] <= 38, "{sizes:?}");
    }

    proptest! {
        /// Columns give back exactly the entries written, followed by whatever came after.
        #[test]
        fn entry_columns_round_trip(lengths in proptest::collection::vec((0u32..5000, 0u32..3, any::<bool>()), 0..50)) {
            let mut offset = FIRST_BLOB_OFFSET;
            let entries: Vec<PackEntry> = lengths.iter().enumerate().map(|(i, &(length, gap, tree))| {
                offset += gap;
                let e = PackEntry {
                    blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                    id: Id([i as u8; 32]),
                    offset,
                    length,
                    raw_len: length * 3,
                };
                offset += length;
                e
            }).collect();
            let mut out = Vec::new();
            write_entry_columns(&entries, &mut out);
            out.extend_from_slice(b"next");
            let mut r = Reader::new(&out, "t");
            prop_assert_eq!(read_entry_columns(&mut r, "t").unwrap(), entries);
            prop_assert_eq!(r.rest(), b"next");
        }
    }

    /// Hostile column tables: entries that wrap, overlap the header or name unknown types.
    #[test]
    fn column_table_rejects_entries_outside_the_pack() {
        let entry = |offset, length| PackEntry {
            blob_type: BlobType::Data,
            id: Id::ZERO,
            offset,
            length,
            raw_len: 1,
        };
        let ok = encode_table_columns(&[entry(FIRST_BLOB_OFFSET, 10), entry(19, 5)]);
        assert_eq!(decode_table(&ok, 100, "p").unwrap().len(), 2);
        assert!(decode_table(&ok, 20, "p").is_err());
        let wrapped = encode_table_columns(&[entry(FIRST_BLOB_OFFSET, u32::MAX), entry(3, 5)]);
        assert!(decode_table(&wrapped, u32::MAX as u64, "p").is_err());
        let mut bad_type = encode_table_columns(&[entry(FIRST_BLOB_OFFSET, 10)]);
        let columns_len = u32::from_le_bytes(bad_type[1..5].try_into().unwrap());
        let mut columns = blob::decode_payload(&bad_type[5..], columns_len, "p").unwrap();
        columns[4] = 9;
        bad_type.truncate(5);
        blob::encode_payload(Compression::None, &columns, &mut bad_type);
        assert!(decode_table(&bad_type, 100, "p").is_err());
    }
}
