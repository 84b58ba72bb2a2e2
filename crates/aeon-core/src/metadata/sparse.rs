//! Reading sparse files without reading their holes.
//!
//! The reader yields exactly the bytes `read` would (zeros in holes), so chunk boundaries and
//! ids are the same as for the same content stored densely, but holes are produced in memory
//! from SEEK_DATA/SEEK_HOLE instead of being read from disk. On restore, all-zero blobs are
//! skipped, which recreates the holes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

pub struct SparseReader {
    file: File,
    size: u64,
    pos: u64,
    /// End of the current data extent, or of the current hole when `in_hole`.
    extent_end: u64,
    in_hole: bool,
}

fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: lseek on a valid descriptor has no memory-safety preconditions.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None); // no more data (or hole) after offset
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

impl SparseReader {
    pub fn new(file: File, size: u64) -> SparseReader {
        SparseReader { file, size, pos: 0, extent_end: 0, in_hole: false }
    }

    /// True if the file has fewer allocated blocks than its size needs: worth reading sparsely.
    pub fn looks_sparse(md: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        md.blocks().saturating_mul(512) < md.size().saturating_sub(64 * 1024)
    }

    fn next_extent(&mut self) -> io::Result<()> {
        match seek(&self.file, self.pos, libc::SEEK_DATA)? {
            Some(data) if data == self.pos => {
                self.in_hole = false;
                self.extent_end = seek(&self.file, self.pos, libc::SEEK_HOLE)?.unwrap_or(self.size);
            }
            Some(data) => {
                self.in_hole = true;
                self.extent_end = data;
            }
            None => {
                self.in_hole = true;
                self.extent_end = self.size;
            }
        }
        self.extent_end = self.extent_end.min(self.size).max(self.pos);
        Ok(())
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.extent_end {
            self.next_extent()?;
            if self.pos >= self.extent_end {
                // The file shrank or an extent is empty: fall back to a plain read.
                let n = self.file.read_at(buf, self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
        }
        let want = buf.len().min((self.extent_end - self.pos) as usize);
        let n = if self.in_hole {
            buf[..want].fill(0);
            want
        } else {
            self.file.read_at(&mut buf[..want], self.pos)?
        };
        if n == 0 {
            return Ok(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn reads_the_same_bytes_as_a_plain_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let mut f = File::create(&p).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(12 << 20).unwrap();
        f.seek(SeekFrom::Start(11 << 20)).unwrap();
        f.write_all(&[7u8; 5000]).unwrap();
        drop(f);
        let plain = std::fs::read(&p).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert!(SparseReader::looks_sparse(&md));
        let mut got = Vec::new();
        SparseReader::new(File::open(&p).unwrap(), md.len()).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), plain.len());
        assert!(got == plain);
    }
}
