//! A repository held in memory: for tests, fuzzing and programs that embed the engine and want
//! no storage at all. It keeps the promises of [`Backend`]: writes are whole and atomic, reads
//! of a range past an object's end are errors, and each object remembers when it was written
//! (lock ages are measured with that clock, as storage's own).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Backend, FileType, ObjectInfo, object_path};
use crate::error::{Error, Result};

#[derive(Default)]
struct Store {
    created: bool,
    objects: BTreeMap<String, (Arc<Vec<u8>>, SystemTime)>,
}

/// Storage in memory. Clones share the same objects (as two processes share a disk).
#[derive(Clone, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, t: FileType, name: &str) -> Result<Arc<Vec<u8>>> {
        let key = object_path(t, name);
        match self.store().objects.get(&key) {
            Some((data, _)) => Ok(data.clone()),
            None => Err(Error::ObjectNotFound { kind: "object", id: key }),
        }
    }

    /// Every object's key and size, in key order (for tests comparing states).
    pub fn keys(&self) -> Vec<(String, usize)> {
        self.store().objects.iter().map(|(k, (d, _))| (k.clone(), d.len())).collect()
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }

    fn create(&self) -> Result<()> {
        self.store().created = true;
        Ok(())
    }

    fn location_exists(&self) -> Result<bool> {
        let store = self.store();
        Ok(store.created || !store.objects.is_empty())
    }

    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>> {
        Ok(self.store().objects.get(&object_path(t, name)).map(|(d, _)| d.len() as u64))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(t, name)?.to_vec())
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let data = self.get(t, name)?;
        let range = usize::try_from(offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(length).ok()?)?;
            data.get(start..end)
        });
        range.map(<[u8]>::to_vec).ok_or_else(|| {
            Error::corrupt(
                t.object(name),
                format!("truncated: {length} bytes at offset {offset} are beyond its end"),
            )
        })
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let entry = (Arc::new(data.to_vec()), SystemTime::now());
        self.store().objects.insert(object_path(t, name), entry);
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let prefix = object_path(t, "");
        Ok(self
            .store()
            .objects
            .iter()
            .filter(|(k, _)| t != FileType::Config && k.starts_with(&prefix))
            .map(|(k, (d, _))| ObjectInfo {
                name: k.rsplit('/').next().unwrap_or(k).to_string(),
                size: d.len() as u64,
            })
            .collect())
    }

    fn modified(&self, t: FileType, name: &str) -> Result<Vec<Option<SystemTime>>> {
        let key = object_path(t, name);
        match self.store().objects.get(&key) {
            Some((_, at)) => Ok(vec![Some(*at)]),
            None => Err(Error::ObjectNotFound { kind: "object", id: key }),
        }
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let key = object_path(t, name);
        match self.store().objects.remove(&key) {
            Some(_) => Ok(()),
            None => Err(Error::ObjectNotFound { kind: "object", id: key }),
        }
    }
}
