//! A new file written front to back on a thread of its own, direct where the file system
//! allows: [`WriteBehind`].

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::{ALIGN, BLOCK, BlockPool, set_direct};

/// Blocks queued for the writing thread besides the one it is writing. A direct write returns
/// only once the device has the data: without a queue, the writer's caller would wait for the
/// disk block after block.
const BLOCKS_BEHIND: usize = 1;

/// Writes a file from its start through a thread that does the system calls, so that the
/// caller goes on while the device writes. Bytes are gathered into aligned blocks of `BLOCK`
/// bytes and written with `O_DIRECT`; the last block is padded to the alignment and the file
/// cut back to its length. Where the file system refuses direct I/O, or refuses a write for its
/// alignment, the rest is written the ordinary way: the file's bytes are the same either way.
///
/// Nothing is durable until [`WriteBehind::finish`] has returned the file and the caller has
/// synced it (direct writes skip the page cache, not the device's own cache, nor the metadata).
pub struct WriteBehind {
    current: Block,
    sink: Sink,
    pool: Arc<BlockPool>,
}

/// An aligned block: `len` bytes of data at `buf[offset..]`.
struct Block {
    buf: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Block {
    fn from_pool(pool: &BlockPool) -> Block {
        let buf = pool.take();
        let offset = buf.as_ptr().align_offset(ALIGN);
        Block { buf, offset, len: 0 }
    }

    /// A block without a buffer, standing in for one taken.
    fn none() -> Block {
        Block { buf: Vec::new(), offset: 0, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.offset..self.offset + self.len]
    }
}

enum Sink {
    Thread {
        /// Full blocks, then at most one partial one, the last; closed at the end.
        blocks: Option<crossbeam_channel::Sender<Block>>,
        /// Written blocks, handed back for reuse.
        spare: crossbeam_channel::Receiver<Block>,
        thread: Option<std::thread::JoinHandle<io::Result<File>>>,
    },
    /// The thread could not be started: written in line.
    Inline(FileSink),
    Finished,
}

/// The file and how it is being written.
struct FileSink {
    file: File,
    direct: bool,
    /// Bytes of data written (the file may hold up to `ALIGN - 1` bytes of padding more).
    written: u64,
}

impl FileSink {
    fn new(file: File) -> FileSink {
        let direct = set_direct(&file, true);
        FileSink { file, direct, written: 0 }
    }

    /// Writes a block: every block but the last is full, so direct writes stay aligned.
    fn write_block(&mut self, block: &mut Block) -> io::Result<()> {
        let len = block.len;
        if self.direct {
            let padded = len.next_multiple_of(ALIGN);
            block.buf[block.offset + len..block.offset + padded].fill(0);
            let done = self.write_direct(&block.buf[block.offset..block.offset + padded])?;
            if done >= len {
                self.written += len as u64;
                if padded > len {
                    // The last block: the padding goes (the file was new, so nothing is lost),
                    // and the position comes back to the end of the data.
                    self.file.set_len(self.written)?;
                    self.file.seek(SeekFrom::Start(self.written))?;
                }
                return Ok(());
            }
            // Refused part way (alignment, or a short write): the rest goes the ordinary way,
            // from where the file's position is.
            self.written += done as u64;
            self.direct = false;
            set_direct(&self.file, false);
            self.file.write_all(&block.data()[done..])?;
            self.written += (len - done) as u64;
            return Ok(());
        }
        self.file.write_all(block.data())?;
        self.written += len as u64;
        Ok(())
    }

    /// Writes `data` (aligned) direct; how many bytes went, which may fall short of all of them
    /// when the kernel refuses the alignment or writes less (a full disk reports on the next
    /// ordinary write).
    fn write_direct(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            // SAFETY: `rest` is valid for reads of its length for the duration of the call, and
            // the descriptor belongs to `self.file`, which is open.
            let n = unsafe { libc::write(self.file.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
                if done % ALIGN != 0 {
                    return Ok(done);
                }
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                _ if n == 0 => return Ok(done),
                Some(libc::EINVAL) => return Ok(done),
                _ => return Err(e),
            }
        }
        Ok(done)
    }

    /// The file, switched back to ordinary writes.
    fn into_file(self) -> File {
        if self.direct {
            set_direct(&self.file, false);
        }
        self.file
    }
}

impl WriteBehind {
    /// Starts writing `file`, which must be new (empty, at position 0). Blocks come from and go
    /// back to `pool`.
    pub fn new(file: File, pool: Arc<BlockPool>) -> WriteBehind {
        let (block_tx, blocks) = crossbeam_channel::bounded::<Block>(BLOCKS_BEHIND);
        let (spare_tx, spare) = crossbeam_channel::bounded::<Block>(BLOCKS_BEHIND + 2);
        // Handed over once the thread runs, so that the file stays ours if it cannot start.
        let (file_tx, file_rx) = crossbeam_channel::bounded::<File>(1);
        let spawned = std::thread::Builder::new().name("write-behind".into()).spawn(move || {
            let file = file_rx.recv().map_err(|_| io::Error::other("no file to write"))?;
            let mut sink = FileSink::new(file);
            for mut block in blocks {
                sink.write_block(&mut block)?;
                let _ = spare_tx.try_send(block);
            }
            Ok(sink.into_file())
        });
        let sink = match spawned {
            Ok(thread) => match file_tx.send(file) {
                Ok(()) => Sink::Thread { blocks: Some(block_tx), spare, thread: Some(thread) },
                Err(returned) => Sink::Inline(FileSink::new(returned.into_inner())),
            },
            Err(_) => Sink::Inline(FileSink::new(file)),
        };
        WriteBehind { current: Block::from_pool(&pool), sink, pool }
    }

    /// Appends `data`; an error is the first write that failed, perhaps of an earlier block.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let at = self.current.offset + self.current.len;
            let n = (BLOCK - self.current.len).min(data.len());
            self.current.buf[at..at + n].copy_from_slice(&data[..n]);
            self.current.len += n;
            data = &data[n..];
            if self.current.len == BLOCK {
                self.send_current()?;
            }
        }
        Ok(())
    }

    /// Hands the current block to the thread and starts the next one.
    fn send_current(&mut self) -> io::Result<()> {
        let next = match &self.sink {
            Sink::Thread { spare, .. } => spare.try_recv().ok(),
            Sink::Inline(_) | Sink::Finished => None,
        };
        let mut next = next.unwrap_or_else(|| Block::from_pool(&self.pool));
        next.len = 0;
        let mut block = std::mem::replace(&mut self.current, next);
        match &mut self.sink {
            Sink::Inline(sink) => {
                let written = sink.write_block(&mut block);
                self.pool.give(block.buf);
                written
            }
            Sink::Thread { blocks, thread, .. } => {
                let sent = blocks.as_ref().map(|b| b.send(block));
                if let Some(Ok(())) = sent {
                    return Ok(());
                }
                // The thread stopped: it failed, and says why when joined.
                blocks.take();
                Err(join(thread.take()).err().unwrap_or_else(stopped))
            }
            Sink::Finished => Err(stopped()),
        }
    }

    /// Writes what is left and returns the file, whose length is the bytes written, at its end.
    pub fn finish(mut self) -> io::Result<File> {
        let mut last = std::mem::replace(&mut self.current, Block::none());
        match std::mem::replace(&mut self.sink, Sink::Finished) {
            Sink::Inline(mut sink) => {
                let written = if last.len > 0 { sink.write_block(&mut last) } else { Ok(()) };
                self.pool.give(last.buf);
                written.map(|()| sink.into_file())
            }
            Sink::Thread { blocks, thread, spare } => {
                if last.len == 0 {
                    self.pool.give(std::mem::take(&mut last.buf));
                }
                // The sender goes with this statement: the thread sees the end.
                let sent = blocks.is_some_and(|tx| last.len == 0 || tx.send(last).is_ok());
                let joined = join(thread);
                for block in spare.try_iter() {
                    self.pool.give(block.buf);
                }
                match joined {
                    Ok(file) if sent => Ok(file),
                    Ok(_) => Err(stopped()),
                    Err(e) => Err(e),
                }
            }
            Sink::Finished => Err(stopped()),
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Unfinished (the caller failed or stopped): the thread ends with the channel.
        if let Sink::Thread { blocks, thread, spare } = &mut self.sink {
            blocks.take();
            let _ = join(thread.take());
            for block in spare.try_iter() {
                self.pool.give(block.buf);
            }
        }
        let current = std::mem::take(&mut self.current.buf);
        if !current.is_empty() {
            self.pool.give(current);
        }
    }
}

fn join(thread: Option<std::thread::JoinHandle<io::Result<File>>>) -> io::Result<File> {
    match thread.map(std::thread::JoinHandle::join) {
        Some(Ok(result)) => result,
        _ => Err(stopped()),
    }
}

fn stopped() -> io::Error {
    io::Error::other("the thread writing behind stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 4093) as u8).collect()
    }

    fn write_in_pieces(path: &std::path::Path, data: &[u8], piece: usize) -> File {
        let pool = Arc::new(BlockPool::default());
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).unwrap();
        let mut w = WriteBehind::new(file, pool);
        for p in data.chunks(piece.max(1)) {
            w.write(p).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn writes_exactly_the_data_whatever_its_length_and_the_write_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = pattern(len);
            for piece in [1000usize, 4096, BLOCK, 4 * BLOCK] {
                let path = dir.path().join(format!("f{len}-{piece}"));
                let file = write_in_pieces(&path, &data, piece);
                assert_eq!(file.metadata().unwrap().len(), len as u64, "length {len}");
                let mut got = Vec::new();
                File::open(&path).unwrap().read_to_end(&mut got).unwrap();
                assert!(got == data, "content differs: length {len}, writes of {piece}");
            }
        }
    }

    #[test]
    fn the_file_comes_back_for_ordinary_writes_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = write_in_pieces(&path, &pattern(BLOCK + 5), 7777);
        // Unaligned, which a descriptor still in direct mode would refuse.
        file.write_all(b"tail").unwrap();
        file.sync_all().unwrap();
        let mut want = pattern(BLOCK + 5);
        want.extend_from_slice(b"tail");
        assert!(std::fs::read(&path).unwrap() == want);
    }

    #[test]
    fn a_write_error_reaches_the_writer() {
        // A descriptor open for reading only: every write fails (EBADF), and the caller hears.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        let mut w = WriteBehind::new(File::open(&path).unwrap(), Arc::new(BlockPool::default()));
        let data = pattern(4 * BLOCK);
        let failed = w.write(&data).and_then(|()| w.finish().map(drop));
        assert_eq!(failed.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn dropped_unfinished_it_stops_its_thread_and_keeps_the_pool_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(BlockPool::default());
        for i in 0..20 {
            let path = dir.path().join(format!("f{i}"));
            let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).unwrap();
            let mut w = WriteBehind::new(file, pool.clone());
            w.write(&pattern(3 * BLOCK + 1)).unwrap();
            drop(w);
        }
        assert!(pool.len() <= super::super::POOL_BLOCKS);
    }
}
