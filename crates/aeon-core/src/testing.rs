//! Test support for programs that embed the engine, and for its own tests and fuzz targets:
//! storage that fails on purpose. Built with the `testing` feature.
//!
//! [`FaultyBackend`] wraps any backend (usually a [`MemoryBackend`](crate::backend::MemoryBackend))
//! and injects what real storage and real machines do: a write that fails, a write torn in the
//! middle, a write reported done whose rename was lost, a listing that is slow, and a crash: from
//! a chosen storage call on, every call fails, as if the process had been killed there. Dropping
//! every handle then reopening over the same storage is the model of kill -9 and restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};

/// What goes wrong, and when (calls and writes are counted from 1, over all threads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The nth write fails; nothing is stored.
    FailWrite(u64),
    /// The nth write stores only the first half of the object and fails (storage that does
    /// not write atomically, then a crash).
    TearWrite(u64),
    /// The nth write reports success, but the object never appears (a rename lost in a crash
    /// of storage that had acknowledged it).
    LoseWrite(u64),
    /// Every storage call from the nth on fails: the process is dead from there.
    CrashAtCall(u64),
    /// Every listing takes this long (racing operations get their chance).
    DelayList(Duration),
}

/// A backend that injects [`Fault`]s into `inner`.
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Vec<Fault>,
    calls: AtomicU64,
    writes: AtomicU64,
    crashed: AtomicBool,
}

fn injected(what: &str) -> Error {
    Error::storage("faulty storage", format!("injected {what}"))
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>, faults: Vec<Fault>) -> FaultyBackend {
        FaultyBackend {
            inner,
            faults,
            calls: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    /// Whether the injected crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Storage calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a call; fails if the process is "dead".
    fn call(&self) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let crash_now = self.faults.iter().any(|f| matches!(f, Fault::CrashAtCall(at) if n >= *at));
        if crash_now {
            self.crashed.store(true, Ordering::SeqCst);
        }
        match self.crashed() {
            true => Err(injected("crash")),
            false => Ok(()),
        }
    }
}

impl Backend for FaultyBackend {
    fn location(&self) -> String {
        format!("faulty {}", self.inner.location())
    }

    fn create(&self) -> Result<()> {
        self.call()?;
        self.inner.create()
    }

    fn location_exists(&self) -> Result<bool> {
        self.call()?;
        self.inner.location_exists()
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        self.call()?;
        self.inner.stat(t, name)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.call()?;
        self.inner.read(t, name)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.call()?;
        self.inner.read_range(t, name, offset, length)
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.call()?;
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        for f in &self.faults {
            match f {
                Fault::FailWrite(at) if *at == n => return Err(injected("write failure")),
                Fault::TearWrite(at) if *at == n => {
                    self.inner.write(t, name, &data[..data.len() / 2])?;
                    return Err(injected("torn write"));
                }
                Fault::LoseWrite(at) if *at == n => return Ok(()),
                _ => {}
            }
        }
        self.inner.write(t, name, data)
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        self.call()?;
        for f in &self.faults {
            if let Fault::DelayList(d) = f {
                std::thread::sleep(*d);
            }
        }
        self.inner.list(t)
    }

    fn modified(&self, t: FileType, name: &str) -> Result<Vec<Option<std::time::SystemTime>>> {
        self.call()?;
        self.inner.modified(t, name)
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.call()?;
        self.inner.remove(t, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn faults_happen_where_they_are_put() {
        let store = Arc::new(MemoryBackend::new());
        let b = FaultyBackend::new(
            store.clone(),
            vec![
                Fault::FailWrite(1),
                Fault::TearWrite(2),
                Fault::LoseWrite(3),
                Fault::CrashAtCall(6),
            ],
        );
        assert!(b.write(FileType::Index, "a", b"aaaa").is_err());
        assert_eq!(store.stat(FileType::Index, "a").unwrap(), None);
        assert!(b.write(FileType::Index, "b", b"bbbb").is_err());
        assert_eq!(store.read(FileType::Index, "b").unwrap(), b"bb");
        b.write(FileType::Index, "c", b"cccc").unwrap();
        assert_eq!(store.stat(FileType::Index, "c").unwrap(), None);
        b.write(FileType::Index, "d", b"dddd").unwrap();
        assert_eq!(b.list(FileType::Index).unwrap().len(), 2);
        assert!(b.read(FileType::Index, "d").is_err() && b.crashed());
        assert!(b.list(FileType::Index).is_err(), "dead from the crash on");
    }
}
