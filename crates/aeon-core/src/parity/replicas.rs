//! Copies of the small objects (key slots, index files, recovery points, label records) in
//! `parity/`, kept in step with the originals by wrapping the repository's storage.
//!
//! Order, so that a crash never leaves a copy of something deleted (which `repair` would bring
//! back): a write stores the original, then its copies; a removal removes the copies, then the
//! original. A crash in between leaves an original without copies, which `repair` copies again.

use std::sync::Arc;

use super::{REPLICATED, replica_name};
use crate::backend::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};

pub struct Replicated {
    inner: Arc<dyn Backend>,
    copies: u8,
}

impl Replicated {
    pub fn new(inner: Arc<dyn Backend>, copies: u8) -> Replicated {
        Replicated { inner, copies }
    }

    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
}

/// Removes an object, an absent one counting as removed.
pub(crate) fn remove_if_present(b: &dyn Backend, t: FileType, name: &str) -> Result<()> {
    match b.remove(t, name) {
        Err(Error::ObjectNotFound { .. }) => Ok(()),
        other => other,
    }
}

impl Backend for Replicated {
    crate::forward_backend!(inner: location, create, location_exists, foreign_contents, stat,
        read, read_range, read_into, read_range_into, prefetch, start_upload, write_placed, list, modified,
        readable_by_others, remove_leftovers);

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.inner.write(t, name, data)?;
        if REPLICATED.contains(&t) {
            for n in 1..=self.copies {
                self.inner.write(FileType::Parity, &replica_name(t, name, n), data)?;
            }
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        if REPLICATED.contains(&t) {
            for n in 1..=self.copies {
                remove_if_present(
                    self.inner.as_ref(),
                    FileType::Parity,
                    &replica_name(t, name, n),
                )?;
            }
        }
        self.inner.remove(t, name)
    }
}

/// The copies `parity/` holds, by original: (kind, original name) → copy numbers.
pub fn list_replicas(
    listing: &[ObjectInfo],
) -> std::collections::BTreeMap<(FileType, String), Vec<(u8, u64)>> {
    let mut out: std::collections::BTreeMap<(FileType, String), Vec<(u8, u64)>> =
        Default::default();
    for o in listing {
        if let Some(super::ParityName::Replica { kind, name, n }) =
            super::ParityName::parse(&o.name)
        {
            out.entry((kind, name)).or_default().push((n, o.size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn small_objects_get_copies_that_leave_before_them() {
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let r = Replicated::new(store.clone(), 2);
        r.write(FileType::Snapshot, "ab", b"point").unwrap();
        r.write(FileType::Pack, "cd", b"pack").unwrap();
        let names: Vec<String> =
            store.list(FileType::Parity).unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(store.read(FileType::Parity, "snapshots-2-ab").unwrap(), b"point");
        r.remove(FileType::Snapshot, "ab").unwrap();
        assert!(store.list(FileType::Parity).unwrap().is_empty());
        assert!(store.stat(FileType::Snapshot, "ab").unwrap().is_none());
    }
}
