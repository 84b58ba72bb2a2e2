//! Large sequential reads that bypass the page cache: [`DirectReader`] in line, [`ReadAhead`]
//! on a thread of its own.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

use super::{ALIGN, BLOCK, set_direct};

/// Reads a file from its current position (which must be 0 or a multiple of 4 KiB for the
/// reads to go direct) to its end.
pub struct DirectReader {
    file: File,
    /// `BLOCK + ALIGN` bytes, of which the aligned `BLOCK` starting at `offset` are used.
    buf: Vec<u8>,
    offset: usize,
    /// The unread part of the block last read, relative to `offset`.
    start: usize,
    end: usize,
    direct: bool,
}

impl DirectReader {
    /// Switches `file` to direct reads where it can; falls back to ordinary reads otherwise.
    pub fn new(file: File) -> DirectReader {
        let direct = set_direct(&file, true);
        let buf = if direct { vec![0u8; BLOCK + ALIGN] } else { Vec::new() };
        let offset = buf.as_ptr().align_offset(ALIGN);
        DirectReader { file, buf, offset, start: 0, end: 0, direct }
    }

    /// The file, switched back to ordinary reads.
    pub fn into_inner(self) -> File {
        if self.direct {
            set_direct(&self.file, false);
        }
        self.file
    }

    /// Reads the next block into the buffer; returns its length (0 at the end of the file).
    fn fill(&mut self) -> io::Result<usize> {
        let block = &mut self.buf[self.offset..self.offset + BLOCK];
        read_block(&self.file, &mut self.direct, block)
    }
}

/// Reads up to a block of `file` into `block` (aligned, `BLOCK` long); its length, 0 at the end.
fn read_block(mut file: &File, direct: &mut bool, block: &mut [u8]) -> io::Result<usize> {
    if !*direct {
        return file.read(block);
    }
    loop {
        // SAFETY: `block` is valid for writes of its length for the duration of the call, and
        // the descriptor belongs to `file`, which is open.
        let n = unsafe { libc::read(file.as_raw_fd(), block.as_mut_ptr().cast(), block.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Refused for its alignment (an odd device, or a file that grew past an unaligned
            // end): the rest is read the ordinary way, from the same position.
            Some(libc::EINVAL) => {
                *direct = false;
                set_direct(file, false);
                return file.read(block);
            }
            _ => return Err(e),
        }
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if !self.direct {
                return self.file.read(out);
            }
            self.start = 0;
            self.end = self.fill()?;
            if self.end == 0 {
                return Ok(0);
            }
        }
        let n = (self.end - self.start).min(out.len());
        let from = self.offset + self.start;
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        self.start += n;
        Ok(n)
    }
}

/// Blocks a [`ReadAhead`] keeps read ahead of its consumer, besides the one being read.
const BLOCKS_AHEAD: usize = 1;

/// A direct read of a file on a thread of its own, which reads the next block while the
/// consumer chunks and hashes the last one: a direct read gets no read-ahead from the kernel,
/// so read in line it leaves the pipeline idle while it waits for the disk.
pub struct ReadAhead {
    source: Source,
    current: Block,
}

/// A buffer of `BLOCK + ALIGN` bytes holding file data at `start..end`.
#[derive(Default)]
struct Block {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

enum Source {
    Thread {
        /// Blocks in file order; an empty one is the end of the file.
        blocks: crossbeam_channel::Receiver<io::Result<Block>>,
        /// Consumed blocks, handed back for reuse.
        spare: crossbeam_channel::Sender<Block>,
        thread: std::thread::JoinHandle<Option<File>>,
        ended: bool,
    },
    /// The thread could not be started: the file is read in line.
    Inline(DirectReader),
}

impl ReadAhead {
    /// Starts reading `file` from its current position (see [`DirectReader::new`]).
    pub fn new(file: File) -> ReadAhead {
        let (block_tx, blocks) = crossbeam_channel::bounded(BLOCKS_AHEAD);
        let (spare, spare_rx) = crossbeam_channel::bounded::<Block>(BLOCKS_AHEAD + 2);
        // Handed over once the thread runs, so that the file stays ours if it cannot start.
        let (file_tx, file_rx) = crossbeam_channel::bounded::<File>(1);
        let spawned = std::thread::Builder::new().name("read-ahead".into()).spawn(move || {
            let file = file_rx.recv().ok()?;
            let mut direct = set_direct(&file, true);
            loop {
                let mut block = spare_rx.try_recv().unwrap_or_default();
                if block.buf.len() != BLOCK + ALIGN {
                    block.buf = vec![0u8; BLOCK + ALIGN];
                }
                let offset = block.buf.as_ptr().align_offset(ALIGN);
                let result = read_block(&file, &mut direct, &mut block.buf[offset..offset + BLOCK]);
                let last = !matches!(result, Ok(n) if n > 0);
                let message = result.map(|n| Block { start: offset, end: offset + n, ..block });
                // A consumer gone (the backup stopping) stops the reads too.
                if block_tx.send(message).is_err() || last {
                    if direct {
                        set_direct(&file, false);
                    }
                    return Some(file);
                }
            }
        });
        let source = match spawned {
            Ok(thread) => match file_tx.send(file) {
                Ok(()) => Source::Thread { blocks, spare, thread, ended: false },
                Err(returned) => Source::Inline(DirectReader::new(returned.into_inner())),
            },
            Err(_) => Source::Inline(DirectReader::new(file)),
        };
        ReadAhead { source, current: Block::default() }
    }

    /// The file, switched back to ordinary reads; `None` if the reading thread died.
    pub fn into_inner(self) -> Option<File> {
        match self.source {
            Source::Inline(direct) => Some(direct.into_inner()),
            Source::Thread { blocks, thread, .. } => {
                drop(blocks);
                thread.join().ok().flatten()
            }
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let current = &mut self.current;
        if current.start == current.end {
            match &mut self.source {
                Source::Inline(direct) => return direct.read(out),
                Source::Thread { ended: true, .. } => return Ok(0),
                Source::Thread { blocks, spare, ended, .. } => {
                    let next = match blocks.recv() {
                        Ok(block) => block?,
                        Err(_) => return Err(io::Error::other("the read-ahead thread stopped")),
                    };
                    let _ = spare.try_send(std::mem::replace(current, next));
                    if current.start == current.end {
                        *ended = true;
                        return Ok(0);
                    }
                }
            }
        }
        let n = (current.end - current.start).min(out.len());
        out[..n].copy_from_slice(&current.buf[current.start..current.start + n]);
        current.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    /// Everything `r` gives, asked for `piece` bytes at a time.
    fn read_in_pieces(r: &mut impl Read, piece: usize) -> Vec<u8> {
        let (mut got, mut buf) = (Vec::new(), vec![0u8; piece]);
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn reads_exactly_the_file_whatever_its_length_and_the_read_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = pattern(len);
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            for chunk in [1usize, 1000, 4096, BLOCK, 4 * BLOCK] {
                let mut r = DirectReader::new(File::open(&path).unwrap());
                let got = read_in_pieces(&mut r, chunk);
                assert_eq!(got.len(), data.len(), "length {len}, reads of {chunk}");
                assert!(got == data, "content differs: length {len}, reads of {chunk}");
            }
        }
    }

    #[test]
    fn read_ahead_gives_exactly_the_file_and_gives_the_file_back() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4097, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 12345] {
            let data = pattern(len);
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            for chunk in [1000usize, BLOCK, 3 * BLOCK] {
                let mut r = ReadAhead::new(File::open(&path).unwrap());
                let got = read_in_pieces(&mut r, chunk);
                assert_eq!(r.read(&mut [0u8; 16]).unwrap(), 0, "the end stays the end");
                assert_eq!(got.len(), data.len(), "length {len}, reads of {chunk}");
                assert!(got == data, "content differs: length {len}, reads of {chunk}");
                let file = r.into_inner().expect("the file comes back");
                assert_eq!(file.metadata().unwrap().len(), len as u64);
            }
        }
    }

    #[test]
    fn read_ahead_dropped_half_way_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, pattern(8 * BLOCK)).unwrap();
        let mut r = ReadAhead::new(File::open(&path).unwrap());
        let mut first = vec![0u8; 10];
        r.read_exact(&mut first).unwrap();
        assert_eq!(first, pattern(10));
        // Gives the file back without reading the rest: the thread saw its consumer go.
        assert!(r.into_inner().is_some());
    }

    #[test]
    fn a_read_error_reaches_the_consumer() {
        // A directory opens, but reading it fails (EISDIR): the error must come through.
        let dir = tempfile::tempdir().unwrap();
        let mut r = ReadAhead::new(File::open(dir.path()).unwrap());
        let mut buf = [0u8; 16];
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
    }

    #[test]
    fn a_file_that_grows_while_read_is_read_to_its_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing");
        let first = pattern(BLOCK + 100);
        std::fs::write(&path, &first).unwrap();
        let mut r = DirectReader::new(File::open(&path).unwrap());
        let mut got = vec![0u8; BLOCK];
        r.read_exact(&mut got).unwrap();
        // Appended while the reader is past the first block: the end is no longer aligned.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"appended").unwrap();
        r.read_to_end(&mut got).unwrap();
        let mut want = first;
        want.extend_from_slice(b"appended");
        assert!(got == want);
        let mut file = r.into_inner();
        assert_eq!(file.stream_position().unwrap(), want.len() as u64);
    }
}
