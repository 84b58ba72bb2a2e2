//! Append-only storage (`aeon backup --append-only`): nothing is deleted or replaced, so that a
//! client works with a storage credential that cannot delete (and cannot destroy what is stored
//! if it is taken over). See docs/FORMAT.md §11d.

use std::sync::Arc;

use super::{Backend, FileType};
use crate::error::{Error, Result};

/// Refuses every removal and every write over an existing object; a content-named object that
/// is already there is left as it is (its name says its bytes are the same).
pub struct AppendOnly {
    inner: Arc<dyn Backend>,
}

impl AppendOnly {
    pub fn new(inner: Arc<dyn Backend>) -> AppendOnly {
        AppendOnly { inner }
    }

    fn refuse(t: FileType, name: &str, what: &str) -> Error {
        let path =
            if t.dir().is_empty() { name.to_string() } else { format!("{}/{name}", t.dir()) };
        Error::AppendOnly(format!("{what} {path}"))
    }

    /// Whether a write of `name` may go ahead: a new object only.
    fn admit(&self, t: FileType, name: &str) -> Result<bool> {
        if t == FileType::Config {
            return Err(Self::refuse(t, name, "rewriting"));
        }
        match self.inner.stat(t, name)? {
            None => Ok(true),
            Some(_) if crate::repair::CONTENT_NAMED.contains(&t) => Ok(false),
            Some(_) => Err(Self::refuse(t, name, "overwriting")),
        }
    }
}

impl Backend for AppendOnly {
    crate::forward_backend!(inner: location, create, location_exists, foreign_contents, stat,
        read, read_range, read_into, read_range_into, prefetch, start_upload, list, modified,
        readable_by_others);

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        if self.admit(t, name)? {
            self.inner.write(t, name, data)?;
        }
        Ok(())
    }

    fn write_placed(&self, t: FileType, name: &str, data: &[u8], placement: usize) -> Result<()> {
        if self.admit(t, name)? {
            self.inner.write_placed(t, name, data, placement)?;
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        Err(Self::refuse(t, name, "deleting"))
    }

    fn remove_leftovers(&self, _older_than: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn nothing_is_deleted_or_replaced() {
        let mem = Arc::new(MemoryBackend::new());
        let b = AppendOnly::new(mem.clone());
        let name = crate::id::Id::of_stored_bytes(b"x").to_hex();
        b.write(FileType::Index, &name, b"x").unwrap();
        b.write(FileType::Index, &name, b"x").unwrap();
        assert!(matches!(b.remove(FileType::Index, &name), Err(Error::AppendOnly(_))));
        b.write(FileType::Lock, "l1", b"a").unwrap();
        let err = b.write(FileType::Lock, "l1", b"b").unwrap_err();
        assert!(err.to_string().contains("overwriting locks/l1"), "{err}");
        assert!(b.write(FileType::Config, "config", b"c").is_err());
        assert_eq!(mem.read(FileType::Lock, "l1").unwrap(), b"a");
        assert_eq!(mem.read(FileType::Index, &name).unwrap(), b"x");
    }
}
