//! Pack files: many sealed blobs in one storage object, followed by a sealed table of contents.
//!
//! ```text
//! header(8, kind=Pack) | key mode(1) | blob... | sealed table | table length (u32 LE)
//! ```
//! The table repeats what the index says about the pack, so a lost index can be rebuilt from
//! the packs alone. See `docs/FORMAT.md`, "Pack files".

use crate::backend::{Backend, FileType, Upload};
use crate::blob::{BlobType, MAX_BLOB_LEN};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, ObjectKind, Reader};
use crate::id::Id;

/// Blobs sealed with the repository data key. Mode 1 (sealed to a public key, for write-only
/// clients) is reserved.
pub const KEY_MODE_REPOSITORY: u8 = 0;
const TABLE_VERSION: u8 = 1;
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

/// Pieces of a streamed pack are gathered up to this size, so that storage sees large writes.
const STAGE_LEN: usize = 1 << 20;

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
    pub fn store(self, backend: &dyn Backend, name: &str) -> (Result<()>, Option<Vec<u8>>) {
        match self {
            PackBody::Bytes(bytes) => (backend.write(FileType::Pack, name, &bytes), Some(bytes)),
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
    pub fn new() -> PackWriter {
        PackWriter::with_buffer(Vec::new())
    }

    /// A writer that builds its pack in `buf` (cleared first), reusing its allocation.
    pub fn with_buffer(mut buf: Vec<u8>) -> PackWriter {
        buf.clear();
        PackWriter::starting(Sink::Memory(buf))
    }

    /// A writer whose buffer holds a pack of about `pack_size` bytes without growing (growing
    /// copies the pack so far, and doubling would leave half the buffer unused).
    pub fn with_capacity(pack_size: usize) -> PackWriter {
        // Only the pages written count against memory; the cap keeps huge pack sizes from
        // asking for more address space than a strict overcommit policy grants.
        let expected = pack_size.min(256 << 20);
        PackWriter::with_buffer(Vec::with_capacity(expected + expected / 4))
    }

    /// A writer that streams its pack to `upload`: no pack is held in memory.
    pub fn streaming(upload: Box<dyn Upload>) -> PackWriter {
        PackWriter::starting(Sink::Stream {
            upload,
            staged: Vec::with_capacity(STAGE_LEN),
            hasher: Box::default(),
        })
    }

    fn starting(sink: Sink) -> PackWriter {
        let mut w = PackWriter { sink, len: 0, entries: Vec::new(), raw_bytes: 0 };
        let mut head = format::header(ObjectKind::Pack).to_vec();
        head.push(KEY_MODE_REPOSITORY);
        // Cannot fail: a stream's first bytes are only staged.
        let _ = w.append(&head);
        w
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::Memory(buf) => buf.extend_from_slice(data),
            Sink::Stream { upload, staged, hasher } => {
                if staged.len() + data.len() > STAGE_LEN {
                    flush_staged(upload.as_mut(), staged, hasher)?;
                }
                if data.len() >= STAGE_LEN {
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

    /// Appends the sealed table and returns the finished pack, ready to store.
    pub fn finish(mut self, cipher: &Cipher) -> Result<FinishedPack> {
        let mut tail = Vec::new();
        cipher.seal_into(TABLE_AAD, &encode_table(&self.entries), &mut tail)?;
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

fn encode_table(entries: &[PackEntry]) -> Vec<u8> {
    let mut t = Vec::with_capacity(5 + entries.len() * TABLE_ENTRY_LEN);
    t.push(TABLE_VERSION);
    t.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        e.write(&mut t);
    }
    t
}

/// Decodes a plaintext pack table, checking every entry lies inside a pack of `pack_len` bytes.
pub fn decode_table(table: &[u8], pack_len: u64, what: &str) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(table, what);
    if r.u8()? != TABLE_VERSION {
        return Err(r.error("unknown pack table version"));
    }
    let count = r.u32()? as usize;
    if count.saturating_mul(TABLE_ENTRY_LEN) != table.len() - 5 {
        return Err(r.error("pack table length does not match its entry count"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let e = PackEntry::read(&mut r, "pack table")?;
        if (e.offset as u64 + e.length as u64) > pack_len
            || e.offset < FIRST_BLOB_OFFSET
            || e.raw_len > MAX_BLOB_LEN
        {
            return Err(r.error(format!("entry for blob {} lies outside the pack", e.id)));
        }
        entries.push(e);
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
    let body = format::check_header(head, ObjectKind::Pack, what)?;
    let mut r = Reader::new(body, what);
    let mode = r.u8()?;
    if mode != KEY_MODE_REPOSITORY {
        return Err(r.error(format!("pack key mode {mode} is not supported by this version")));
    }
    let table = cipher.open(TABLE_AAD, sealed, what)?;
    decode_table(&table, table_start, what)
}

/// Reads the table of a whole pack file held in memory.
pub fn read_table(cipher: &Cipher, pack: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    let body = format::check_header(pack, ObjectKind::Pack, what)?;
    let mut r = Reader::new(body, what);
    let mode = r.u8()?;
    if mode != KEY_MODE_REPOSITORY {
        return Err(r.error(format!("pack key mode {mode} is not supported by this version")));
    }
    if pack.len() < FIRST_BLOB_OFFSET as usize + 4 {
        return Err(Error::corrupt(what, "too short to hold a pack table"));
    }
    let len_pos = pack.len() - 4;
    let table_len = u32::from_le_bytes(pack[len_pos..].try_into().expect("4 bytes")) as usize;
    let table_start =
        len_pos
            .checked_sub(table_len)
            .filter(|&s| s >= FIRST_BLOB_OFFSET as usize)
            .ok_or_else(|| Error::corrupt(what, "pack table length points outside the pack"))?;
    let table = cipher.open(TABLE_AAD, &pack[table_start..len_pos], what)?;
    decode_table(&table, table_start as u64, what)
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
        let cipher = Cipher::new(&Key::random().unwrap());
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new(), String::new())));
        let mut w = PackWriter::streaming(Box::new(Recorder(seen.clone())));
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
        // Header, eight blobs and table reach storage in fewer writes: small pieces are gathered.
        assert_eq!(pieces.len(), 7, "{pieces:?}");
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20)) {
            let cipher = Cipher::new(&Key::random().unwrap());
            let mut w = PackWriter::new();
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
            let cipher = Cipher::new(&Key([1; 32]));
            let _ = read_table(&cipher, &data, "p");
            let _ = decode_table(&data, 1000, "p");
        }
    }

    #[test]
    fn truncated_pack_is_an_error() {
        let cipher = Cipher::new(&Key::random().unwrap());
        let mut w = PackWriter::new();
        w.add(BlobType::Data, Id::ZERO, b"abc", 3).unwrap();
        let (bytes, _, _) = in_memory(w.finish(&cipher).unwrap());
        for cut in [0, 5, 12, bytes.len() - 1] {
            assert!(read_table(&cipher, &bytes[..cut], "p").is_err());
        }
    }
}
