//! Large sequential reads and writes that bypass the page cache (`O_DIRECT`).
//!
//! A buffered read from a cold cache makes the kernel allocate, account and later reclaim a page
//! for every 4 KiB. On the virtual machines backups often run on, that costs more CPU than
//! decrypting the data (figures in bench/results/HISTORY.md, "Measurements behind the code").
//! Direct reads also leave the machine's working set in the cache instead of replacing it with
//! data read once. Aeon uses them for source files above 16 MiB, read front to back; not for
//! small files, which read direct are slower (each read waits for the disk, without
//! read-ahead), nor for packs, which a check reads as fast with the kernel's read-ahead.
//!
//! Where the file system refuses direct I/O (tmpfs, some FUSE and network file systems), or a
//! read is refused for its alignment, the reader falls back to ordinary reads of the same file:
//! the bytes returned are the same either way.
//!
//! Writes of packs to a local repository go direct for the same reason: a buffered write copies
//! every byte into a page the kernel allocates for it, then writes it back and reclaims it. On
//! the development machine that copy was a quarter of a large-file backup's CPU (perf: 24% in
//! `copy_folio_from_iter_atomic`, all of it in the packer, the one stage that cannot run in
//! parallel).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

mod read;
mod write;

pub use read::{DirectReader, ReadAhead};
pub use write::WriteBehind;

/// Bytes asked of the kernel per read or handed to it per write (smaller writes were slower).
const BLOCK: usize = 1 << 20;
/// Alignment of the buffer, offsets and lengths of direct reads and writes: the largest logical
/// block size of common devices.
const ALIGN: usize = 4096;

/// Blocks a [`BlockPool`] keeps at most.
const POOL_BLOCKS: usize = 8;

/// Aligned buffers of `BLOCK` bytes kept for reuse: a fresh one costs 256 page faults and the
/// kernel's zeroing of every page, as much as copying the data in. One pool serves the many
/// packs of a backup in turn, so a few blocks serve them all.
#[derive(Default)]
pub struct BlockPool {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl BlockPool {
    /// A buffer of `BLOCK + ALIGN` bytes (so that an aligned `BLOCK` fits in it).
    fn take(&self) -> Vec<u8> {
        let reused = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| vec![0u8; BLOCK + ALIGN])
    }

    /// Keeps `buf` for the next [`BlockPool::take`] unless the pool is full.
    fn give(&self, buf: Vec<u8>) {
        if buf.len() != BLOCK + ALIGN {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < POOL_BLOCKS {
            spare.push(buf);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Turns `O_DIRECT` on or off for an open file; false if the file system refuses it.
fn set_direct(file: &File, on: bool) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor owned by `file`, which is open; F_GETFL/F_SETFL touch only
    // the descriptor's status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let wanted = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
        libc::fcntl(fd, libc::F_SETFL, wanted) == 0
    }
}
