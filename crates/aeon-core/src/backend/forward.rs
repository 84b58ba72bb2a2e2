//! Forwarding for backend wrappers (rate limits, fault injection, caches): a wrapper names the
//! methods it passes through unchanged and writes out only the ones it changes.

/// Implements the named [`Backend`](crate::backend::Backend) methods of a wrapper by calling
/// the same method of its field `$inner`. Use inside `impl Backend for Wrapper { … }`:
///
/// ```
/// use std::sync::Arc;
/// use aeon_core::backend::{Backend, FileType, MemoryBackend};
///
/// /// Counts reads; everything else passes through.
/// struct Counting { inner: Arc<dyn Backend>, reads: std::sync::atomic::AtomicU64 }
///
/// impl Backend for Counting {
///     aeon_core::forward_backend!(inner: location, create, location_exists, stat, read_range,
///         write, list, modified, remove);
///     fn read(&self, t: FileType, name: &str) -> aeon_core::Result<Vec<u8>> {
///         self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         self.inner.read(t, name)
///     }
/// }
/// let b = Counting { inner: Arc::new(MemoryBackend::new()), reads: Default::default() };
/// b.write(FileType::Index, "a", b"x").unwrap();
/// assert_eq!(b.read(FileType::Index, "a").unwrap(), b"x");
/// ```
#[macro_export]
macro_rules! forward_backend {
    ($inner:ident: $($method:ident),+ $(,)?) => {
        $( $crate::forward_backend!(@one $inner $method); )+
    };
    (@one $inner:ident location) => {
        fn location(&self) -> String { self.$inner.location() }
    };
    (@one $inner:ident create) => {
        fn create(&self) -> $crate::Result<()> { self.$inner.create() }
    };
    (@one $inner:ident location_exists) => {
        fn location_exists(&self) -> $crate::Result<bool> { self.$inner.location_exists() }
    };
    (@one $inner:ident foreign_contents) => {
        fn foreign_contents(&self) -> $crate::Result<Option<String>> {
            self.$inner.foreign_contents()
        }
    };
    (@one $inner:ident stat) => {
        fn stat(&self, t: $crate::backend::FileType, name: &str) -> $crate::Result<Option<u64>> {
            self.$inner.stat(t, name)
        }
    };
    (@one $inner:ident read) => {
        fn read(&self, t: $crate::backend::FileType, name: &str) -> $crate::Result<Vec<u8>> {
            self.$inner.read(t, name)
        }
    };
    (@one $inner:ident read_range) => {
        fn read_range(
            &self,
            t: $crate::backend::FileType,
            name: &str,
            offset: u64,
            length: u64,
        ) -> $crate::Result<Vec<u8>> {
            self.$inner.read_range(t, name, offset, length)
        }
    };
    (@one $inner:ident read_into) => {
        fn read_into(
            &self,
            t: $crate::backend::FileType,
            name: &str,
            buf: &mut Vec<u8>,
        ) -> $crate::Result<()> {
            self.$inner.read_into(t, name, buf)
        }
    };
    (@one $inner:ident read_range_into) => {
        fn read_range_into(
            &self,
            t: $crate::backend::FileType,
            name: &str,
            offset: u64,
            length: u64,
            buf: &mut Vec<u8>,
        ) -> $crate::Result<()> {
            self.$inner.read_range_into(t, name, offset, length, buf)
        }
    };
    (@one $inner:ident prefetch) => {
        fn prefetch(&self, t: $crate::backend::FileType, name: &str, offset: u64, length: u64) {
            self.$inner.prefetch(t, name, offset, length)
        }
    };
    (@one $inner:ident write) => {
        fn write(&self, t: $crate::backend::FileType, name: &str, data: &[u8]) -> $crate::Result<()> {
            self.$inner.write(t, name, data)
        }
    };
    (@one $inner:ident write_placed) => {
        fn write_placed(
            &self,
            t: $crate::backend::FileType,
            name: &str,
            data: &[u8],
            placement: usize,
        ) -> $crate::Result<()> {
            self.$inner.write_placed(t, name, data, placement)
        }
    };
    (@one $inner:ident start_upload) => {
        fn start_upload(
            &self,
            t: $crate::backend::FileType,
        ) -> $crate::Result<Option<Box<dyn $crate::backend::Upload>>> {
            self.$inner.start_upload(t)
        }
    };
    (@one $inner:ident list) => {
        fn list(&self, t: $crate::backend::FileType) -> $crate::Result<Vec<$crate::backend::ObjectInfo>> {
            self.$inner.list(t)
        }
    };
    (@one $inner:ident modified) => {
        fn modified(
            &self,
            t: $crate::backend::FileType,
            name: &str,
        ) -> $crate::Result<Vec<Option<std::time::SystemTime>>> {
            self.$inner.modified(t, name)
        }
    };
    (@one $inner:ident remove) => {
        fn remove(&self, t: $crate::backend::FileType, name: &str) -> $crate::Result<()> {
            self.$inner.remove(t, name)
        }
    };
    (@one $inner:ident readable_by_others) => {
        fn readable_by_others(&self, t: $crate::backend::FileType, name: &str) -> Option<u32> {
            self.$inner.readable_by_others(t, name)
        }
    };
    (@one $inner:ident remove_leftovers) => {
        fn remove_leftovers(&self, older_than: std::time::Duration) -> $crate::Result<u64> {
            self.$inner.remove_leftovers(older_than)
        }
    };
}
