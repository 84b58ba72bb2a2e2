//! Streaming recovery-point content out: one file's bytes, or a directory as a tar archive.

use std::io::{self, Read, Write};

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind};

/// Reads a file's content blob by blob (verified), holding one blob in memory.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    ids: std::vec::IntoIter<Id>,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a Repository, node: &Node) -> Self {
        ContentReader { repo, ids: node.content.clone().into_iter(), buf: Vec::new(), pos: 0 }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.next() else { return Ok(0) };
            self.buf = self.repo.read_blob(BlobType::Data, &id).map_err(io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes a file's content, or a directory (recursively) as a POSIX tar stream, to `out`.
pub fn dump(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<()> {
    let io_err = |e: io::Error| match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(core) => *core,
            Err(other) => Error::InvalidInput(other.to_string()),
        },
        None => Error::InvalidInput("write failed".into()),
    };
    match node.kind {
        NodeKind::File => {
            io::copy(&mut ContentReader::new(repo, node), out).map_err(io_err)?;
            Ok(())
        }
        NodeKind::Dir => {
            let mut tar = tar::Builder::new(out);
            // The whole point (the virtual root, named `/`) goes in with relative paths.
            let base = if crate::tree::is_safe_name(&node.name.0) {
                node.name.to_string_lossy()
            } else {
                String::new()
            };
            append_dir(repo, &mut tar, node, &base)?;
            tar.finish().map_err(io_err)
        }
        _ => Err(Error::InvalidInput("only files and directories can be dumped".into())),
    }
}

fn header_for(node: &Node, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.mode);
    h.set_uid(node.uid as u64);
    h.set_gid(node.gid as u64);
    h.set_mtime(node.mtime.0.max(0) as u64);
    if let Some(u) = &node.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &node.group {
        let _ = h.set_groupname(g);
    }
    h.set_size(0);
    h
}

fn append_dir<W: Write>(
    repo: &Repository,
    tar: &mut tar::Builder<W>,
    dir: &Node,
    path: &str,
) -> Result<()> {
    let err = |e: io::Error| Error::InvalidInput(format!("tar: {e}"));
    let Some(sub) = dir.subtree else { return Ok(()) };
    crate::tree::ensure_depth(crate::tree::depth_of(path), &path)?;
    for node in repo.load_tree(&sub)?.nodes {
        let name = node.name.to_string_lossy();
        let p = if path.is_empty() { name } else { format!("{path}/{name}") };
        match node.kind {
            NodeKind::Dir => {
                let mut h = header_for(&node, tar::EntryType::Directory);
                tar.append_data(&mut h, format!("{p}/"), io::empty()).map_err(err)?;
                append_dir(repo, tar, &node, &p)?;
            }
            NodeKind::File => {
                let mut h = header_for(&node, tar::EntryType::Regular);
                h.set_size(node.size);
                tar.append_data(&mut h, &p, ContentReader::new(repo, &node)).map_err(err)?;
            }
            NodeKind::Symlink => {
                let mut h = header_for(&node, tar::EntryType::Symlink);
                let target = node.target.clone().unwrap_or_default();
                tar.append_link(&mut h, &p, target.as_os_str()).map_err(err)?;
            }
            // Special files have no content; a tar of a recovery point lists them as they are.
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                let kind = match node.kind {
                    NodeKind::Fifo => tar::EntryType::Fifo,
                    NodeKind::Chardev => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                let mut h = header_for(&node, kind);
                if let Some(rdev) = node.rdev {
                    let _ = h.set_device_major(libc::major(rdev as libc::dev_t));
                    let _ = h.set_device_minor(libc::minor(rdev as libc::dev_t));
                }
                tar.append_data(&mut h, &p, io::empty()).map_err(err)?;
            }
            // A tar archive has no entry type for a socket.
            NodeKind::Socket => {}
        }
    }
    Ok(())
}
