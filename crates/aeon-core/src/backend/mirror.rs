//! One repository over several storage locations, mirrored: every object is written to every
//! location; reads come from the fastest healthy one and fall back to the others on an error or
//! a damaged copy.
//!
//! A location that fails (after its own retries) is marked down for the rest of the process and
//! skipped, so a backup still completes on the others; what it lacks is found again by comparing
//! listings (`aeon locations status`) and filled in by `aeon locations sync`. Deleting (forget,
//! prune) needs every location: an object deleted while a location was away would come back
//! from it at the next sync.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use crate::id::Id;

pub struct Location {
    pub url: String,
    pub backend: Arc<dyn Backend>,
    down: AtomicBool,
    /// Smoothed latency of reads in microseconds (0: not measured yet).
    latency_us: AtomicU64,
    why_down: Mutex<Option<String>>,
}

impl Location {
    pub fn new(url: String, backend: Arc<dyn Backend>) -> Location {
        Location {
            url,
            backend,
            down: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            why_down: Mutex::new(None),
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub fn why_down(&self) -> Option<String> {
        self.why_down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn mark_down(&self, e: &Error) {
        self.down.store(true, Ordering::Relaxed);
        let mut w = self.why_down.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_none() {
            *w = Some(e.to_string());
        }
    }

    fn record_latency(&self, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.latency_us.store(new.max(1), Ordering::Relaxed);
    }
}

/// True for failures of the location (unreachable, refused, full), as opposed to answers about
/// the object (missing, damaged).
pub(crate) fn is_location_failure(e: &Error) -> bool {
    matches!(e, Error::Storage { .. })
}

/// Objects named by the BLAKE3 of their bytes, whose copies can be checked on read.
fn content_named(t: FileType) -> bool {
    matches!(
        t,
        FileType::Pack
            | FileType::Index
            | FileType::Snapshot
            | FileType::Key
            | FileType::Label
            | FileType::Audit
    )
}

pub struct MirrorBackend {
    locations: Vec<Location>,
    /// Objects that could not be written to some location in this process: (location, kind, name).
    missed: Mutex<Vec<(usize, FileType, String)>>,
}

impl MirrorBackend {
    pub fn new(locations: Vec<Location>) -> MirrorBackend {
        MirrorBackend { locations, missed: Mutex::new(Vec::new()) }
    }

    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    /// Writes that some location missed, per location index.
    pub fn missed_writes(&self) -> Vec<(usize, FileType, String)> {
        self.missed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that location `i` missed a write (striped storage writes some objects to one
    /// location only, see `backend::stripe`).
    pub(crate) fn note_missed(&self, i: usize, t: FileType, name: &str) {
        self.missed.lock().unwrap_or_else(|p| p.into_inner()).push((i, t, name.into()));
    }

    /// How many copies of each object there are: one per location.
    pub fn copies(&self) -> usize {
        self.locations.len()
    }

    /// `read_range` from one copy, 0 being the preferred (fastest healthy) location's.
    pub fn read_range_of_copy(
        &self,
        replica: usize,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        // Copies in read order: replica 0 is the preferred one.
        let order = self.read_order();
        let l = order.get(replica).ok_or_else(|| Error::InvalidInput("no such copy".into()))?;
        l.backend.read_range(t, name, offset, length)
    }

    fn read_order(&self) -> Vec<&Location> {
        let mut v: Vec<&Location> = self.locations.iter().collect();
        v.sort_by_key(|l| (l.is_down(), l.latency_us.load(Ordering::Relaxed)));
        v
    }

    /// Runs `op` on the locations in read order until one answers; location failures mark the
    /// location down and move on; "not found" moves on too (a location may lack an object).
    fn first<T>(&self, mut op: impl FnMut(&Location) -> Result<T>) -> Result<T> {
        let mut first_err = None;
        for l in self.read_order() {
            let started = Instant::now();
            match op(l) {
                Ok(v) => {
                    l.record_latency(started);
                    return Ok(v);
                }
                Err(e) => {
                    if is_location_failure(&e) {
                        l.mark_down(&e);
                    }
                    // Prefer reporting "not found" or damage over a location failure.
                    let better = match &first_err {
                        None => true,
                        Some(prev) => is_location_failure(prev) && !is_location_failure(&e),
                    };
                    if better {
                        first_err = Some(e);
                    }
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::InvalidInput("no storage location".into())))
    }

    /// Applies `op` to every location that is up. Fails only if no location succeeded.
    fn all(&self, t: FileType, name: &str, op: impl Fn(&dyn Backend) -> Result<()>) -> Result<()> {
        let mut ok = 0;
        let mut first_err = None;
        for (i, l) in self.locations.iter().enumerate() {
            if l.is_down() {
                self.missed.lock().unwrap_or_else(|p| p.into_inner()).push((i, t, name.into()));
                continue;
            }
            match op(l.backend.as_ref()) {
                Ok(()) => ok += 1,
                Err(e) => {
                    l.mark_down(&e);
                    self.missed.lock().unwrap_or_else(|p| p.into_inner()).push((i, t, name.into()));
                    first_err.get_or_insert(e);
                }
            }
        }
        match (ok, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl Backend for MirrorBackend {
    fn location(&self) -> String {
        self.locations.iter().map(|l| l.url.as_str()).collect::<Vec<_>>().join(" + ")
    }

    fn create(&self) -> Result<()> {
        for l in &self.locations {
            l.backend.create()?;
        }
        Ok(())
    }

    fn location_exists(&self) -> Result<bool> {
        self.first(|l| l.backend.location_exists())
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        for l in self.read_order() {
            match l.backend.stat(t, name) {
                Ok(Some(n)) => return Ok(Some(n)),
                Ok(None) => {}
                Err(e) if is_location_failure(&e) => l.mark_down(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn modified(&self, t: FileType, name: &str) -> Result<Vec<Option<std::time::SystemTime>>> {
        // In the configured order, one entry per location: each compared only with itself.
        let mut out = Vec::with_capacity(self.locations.len());
        let mut found = false;
        for l in &self.locations {
            if l.is_down() {
                out.push(None);
                continue;
            }
            let time = match l.backend.modified(t, name) {
                Ok(v) => {
                    found = true;
                    v.into_iter().next().flatten()
                }
                Err(e) => {
                    if is_location_failure(&e) {
                        l.mark_down(&e);
                    }
                    None
                }
            };
            out.push(time);
        }
        if !found {
            return Err(Error::ObjectNotFound {
                kind: "object",
                id: format!("{} {name}", t.dir()),
            });
        }
        Ok(out)
    }

    fn readable_by_others(&self, t: FileType, name: &str) -> Option<u32> {
        self.locations.iter().find_map(|l| l.backend.readable_by_others(t, name))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.first(|l| {
            let data = l.backend.read(t, name)?;
            if content_named(t) && Id::of_stored_bytes(&data).to_hex() != name {
                return Err(Error::corrupt(
                    format!("{} {name} at {}", t.dir(), l.url),
                    "content does not match its name",
                ));
            }
            Ok(data)
        })
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.first(|l| l.backend.read_range(t, name, offset, length))
    }

    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        // Each location's own: a local one reads into the caller's buffer instead of a fresh one.
        self.first(|l| l.backend.read_range_into(t, name, offset, length, buf))
    }

    fn prefetch(&self, t: FileType, name: &str, offset: u64, length: u64) {
        // To the location the read will most likely go to: the first in read order.
        if let Some(l) = self.read_order().first().filter(|l| !l.is_down()) {
            l.backend.prefetch(t, name, offset, length);
        }
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.all(t, name, |b| b.write(t, name, data))
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let mut all: Vec<ObjectInfo> = Vec::new();
        let mut any = false;
        let mut first_err = None;
        for l in self.locations.iter().filter(|l| !l.is_down()) {
            match l.backend.list(t) {
                Ok(v) => {
                    any = true;
                    all.extend(v);
                }
                Err(e) => {
                    if is_location_failure(&e) {
                        l.mark_down(&e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        if !any && let Some(e) = first_err {
            return Err(e);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name).then(b.size.cmp(&a.size)));
        all.dedup_by(|a, b| a.name == b.name);
        Ok(all)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        if t == FileType::Lock {
            // A lock left where it could not be removed goes stale and is cleaned up later.
            let mut found = false;
            for l in self.locations.iter().filter(|l| !l.is_down()) {
                found |= l.backend.remove(t, name).is_ok();
            }
            return if found {
                Ok(())
            } else {
                Err(Error::ObjectNotFound { kind: "lock", id: name.into() })
            };
        }
        if let Some(l) = self.locations.iter().find(|l| l.is_down()) {
            return Err(Error::storage(
                l.url.clone(),
                "unreachable; deleting needs every location (run `aeon locations status`, then \
                 retry when it is back)",
            ));
        }
        let mut found = false;
        for l in &self.locations {
            match l.backend.remove(t, name) {
                Ok(()) => found = true,
                Err(Error::ObjectNotFound { .. }) => {}
                Err(e) => {
                    if is_location_failure(&e) {
                        l.mark_down(&e);
                    }
                    return Err(e);
                }
            }
        }
        if found { Ok(()) } else { Err(Error::ObjectNotFound { kind: "object", id: name.into() }) }
    }

    fn remove_leftovers(&self, older_than: std::time::Duration) -> Result<u64> {
        let mut n = 0;
        for l in self.locations.iter().filter(|l| !l.is_down()) {
            n += l.backend.remove_leftovers(older_than)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    /// A local location that records the hints and reads it is given.
    struct Recording {
        inner: LocalBackend,
        calls: Mutex<Vec<String>>,
    }

    impl Recording {
        fn new(dir: &std::path::Path) -> Arc<Recording> {
            let inner = LocalBackend::new(dir);
            inner.create().unwrap();
            Arc::new(Recording { inner, calls: Mutex::new(Vec::new()) })
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl Backend for Recording {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<()> {
            self.inner.create()
        }
        fn location_exists(&self) -> Result<bool> {
            self.inner.location_exists()
        }
        fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
            self.inner.stat(t, name)
        }
        fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
            self.inner.read(t, name)
        }
        fn read_range(&self, t: FileType, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
            self.calls.lock().unwrap().push(format!("read_range {name} {o} {l}"));
            self.inner.read_range(t, name, o, l)
        }
        fn read_range_into(
            &self,
            t: FileType,
            name: &str,
            o: u64,
            l: u64,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            self.calls.lock().unwrap().push(format!("read_range_into {name} {o} {l}"));
            self.inner.read_range_into(t, name, o, l, buf)
        }
        fn prefetch(&self, t: FileType, name: &str, o: u64, l: u64) {
            self.calls.lock().unwrap().push(format!("prefetch {name} {o} {l}"));
            self.inner.prefetch(t, name, o, l)
        }
        fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
            self.inner.write(t, name, data)
        }
        fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
            self.inner.list(t)
        }
        fn remove(&self, t: FileType, name: &str) -> Result<()> {
            self.inner.remove(t, name)
        }
    }

    #[test]
    fn hints_and_buffered_reads_go_to_the_preferred_healthy_location() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Recording::new(&dir.path().join("a")), Recording::new(&dir.path().join("b")));
        let mirror = MirrorBackend::new(vec![
            Location::new("a".into(), a.clone()),
            Location::new("b".into(), b.clone()),
        ]);
        mirror.write(FileType::Snapshot, "s", b"0123456789").unwrap();
        mirror.prefetch(FileType::Snapshot, "s", 2, 4);
        let mut buf = vec![9; 100];
        mirror.read_range_into(FileType::Snapshot, "s", 2, 4, &mut buf).unwrap();
        assert_eq!(buf, b"2345");
        assert_eq!(a.take(), ["prefetch s 2 4", "read_range_into s 2 4"]);
        assert!(b.take().is_empty());
        // With the preferred one down, both go to the other.
        mirror.locations[0].mark_down(&Error::InvalidInput("gone".into()));
        mirror.prefetch(FileType::Snapshot, "s", 0, 0);
        mirror.read_range_into(FileType::Snapshot, "s", 0, 3, &mut buf).unwrap();
        assert_eq!(buf, b"012");
        assert!(a.take().is_empty());
        assert_eq!(b.take(), ["prefetch s 0 0", "read_range_into s 0 3"]);
    }
}
