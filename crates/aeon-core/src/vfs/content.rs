//! Reading files of the view: a byte range maps to blobs by their plaintext lengths (from the
//! index); blobs are read whole (each verified), kept in a cache bounded in bytes, and a
//! sequential reader has the next blobs read ahead on other threads.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::blob::BlobType;
use crate::error::{Error, Object, Result};
use crate::id::Id;
use crate::tree::Node;

use super::Vfs;

/// Decoded blobs, least recently used first out, within a byte budget.
pub(crate) struct BlobCache {
    inner: Mutex<CacheInner>,
    limit: usize,
    /// Blobs being read ahead (not read twice at once by read-ahead).
    in_flight: Mutex<HashSet<Id>>,
    /// Read-ahead threads running.
    ahead: AtomicUsize,
}

struct CacheInner {
    blobs: lru::LruCache<Id, Arc<Vec<u8>>>,
    bytes: usize,
}

impl BlobCache {
    pub(crate) fn new(limit: usize) -> BlobCache {
        BlobCache {
            inner: Mutex::new(CacheInner { blobs: lru::LruCache::unbounded(), bytes: 0 }),
            limit,
            in_flight: Mutex::default(),
            ahead: AtomicUsize::new(0),
        }
    }

    fn get(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).blobs.get(id).cloned()
    }

    fn put(&self, id: Id, data: Arc<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.bytes += data.len();
        if let Some(old) = inner.blobs.put(id, data) {
            inner.bytes -= old.len();
        }
        while inner.bytes > self.limit {
            match inner.blobs.pop_lru() {
                Some((_, old)) => inner.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// A file of the view, open for reading.
pub struct OpenFile {
    /// Each content blob with the offset of its first byte in the file.
    blobs: Vec<(Id, u64)>,
    size: u64,
    /// The blob the last read ended in: the next read continuing from it is sequential.
    last_blob: AtomicUsize,
}

impl OpenFile {
    pub(crate) fn new(vfs: &Vfs, node: &Node) -> Result<OpenFile> {
        let repo = vfs.repo();
        let mut blobs = Vec::with_capacity(node.content.len());
        let mut offset = 0u64;
        for id in &node.content {
            let location = repo.index().get(id).ok_or_else(|| Error::Corrupt {
                object: Object::Blob { blob_type: BlobType::Data, id: *id, pack: None },
                reason: "not in the index: the data of this file is missing".into(),
            })?;
            blobs.push((*id, offset));
            offset += u64::from(location.raw_len);
        }
        Ok(OpenFile { blobs, size: offset, last_blob: AtomicUsize::new(usize::MAX) })
    }

    /// The file's length (the sum of its blobs).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, vfs: &Arc<Vfs>, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(self.size.saturating_sub(offset) as usize));
        if offset >= self.size || len == 0 {
            return Ok(out);
        }
        // The blob holding `offset`: the last whose start is at or before it.
        let mut i = self.blobs.partition_point(|(_, start)| *start <= offset) - 1;
        let sequential = {
            let last = self.last_blob.load(Ordering::Relaxed);
            last == i || last.wrapping_add(1) == i
        };
        let mut at = offset;
        while out.len() < len && i < self.blobs.len() {
            let (id, start) = self.blobs[i];
            let data = blob(vfs, &id)?;
            let from = (at - start) as usize;
            let take = (len - out.len()).min(data.len().saturating_sub(from));
            out.extend_from_slice(&data[from..from + take]);
            at += take as u64;
            if from + take < data.len() {
                break;
            }
            i += 1;
        }
        let ended_in = i.min(self.blobs.len().saturating_sub(1));
        self.last_blob.store(ended_in, Ordering::Relaxed);
        if sequential {
            self.read_ahead(vfs, ended_in + 1);
        }
        Ok(out)
    }

    /// Reads blobs `from..` (up to the read-ahead count) into the cache on other threads.
    fn read_ahead(&self, vfs: &Arc<Vfs>, from: usize) {
        let cache = &vfs.blobs;
        for (id, _) in self.blobs.iter().skip(from).take(vfs.options().read_ahead) {
            if cache.ahead.load(Ordering::Relaxed) >= vfs.options().read_ahead.max(1)
                || cache.get(id).is_some()
                || !cache.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(*id)
            {
                continue;
            }
            cache.ahead.fetch_add(1, Ordering::Relaxed);
            let (vfs, id) = (vfs.clone(), *id);
            let spawned = std::thread::Builder::new().name("read-ahead".into()).spawn({
                let vfs = vfs.clone();
                move || {
                    // An error is met again, and reported, by the read that needs the blob.
                    let _ = blob(&vfs, &id);
                    vfs.blobs.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    vfs.blobs.ahead.fetch_sub(1, Ordering::Relaxed);
                }
            });
            if spawned.is_err() {
                vfs.blobs.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                vfs.blobs.ahead.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A data blob, from the cache or read (and verified) and cached.
fn blob(vfs: &Vfs, id: &Id) -> Result<Arc<Vec<u8>>> {
    if let Some(data) = vfs.blobs.get(id) {
        return Ok(data);
    }
    let data = Arc::new(vfs.repo().read_blob(BlobType::Data, id)?);
    vfs.blobs.put(*id, data.clone());
    Ok(data)
}
