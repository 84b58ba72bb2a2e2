//! File-system metadata beyond `lstat`: owner names, extended attributes (and the POSIX ACLs
//! stored in them), and the data extents of sparse files.

mod owners;
mod sparse;

pub use owners::OwnerNames;
pub use sparse::SparseReader;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::tree::{RawName, Xattr};

fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// Reads every extended attribute of `path` without following a symlink. File systems without
/// xattr support yield none; other errors are returned so the caller can warn.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<Xattr>> {
    collect_xattrs(|| xattr::list(path), |name| xattr::get(path, name))
}

/// [`read_xattrs`] of an open file: no lookup of its path, which in a deep tree cost more than
/// listing the attributes.
pub fn read_xattrs_of(file: &std::fs::File) -> std::io::Result<Vec<Xattr>> {
    use xattr::FileExt;
    collect_xattrs(|| file.list_xattr(), |name| file.get_xattr(name))
}

fn collect_xattrs<L: Iterator<Item = std::ffi::OsString>>(
    list: impl FnOnce() -> std::io::Result<L>,
    get: impl Fn(&std::ffi::OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> std::io::Result<Vec<Xattr>> {
    let names = match list() {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match get(&name) {
            Ok(Some(value)) => {
                out.push(Xattr { name: RawName(name.as_bytes().to_vec()), value: RawName(value) })
            }
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets extended attributes on `path` (not following a symlink) and removes ones it has that
/// are not in `xattrs`, so that an in-place restore ends with exactly the recorded set.
pub fn write_xattrs(path: &Path, xattrs: &[Xattr]) -> std::io::Result<()> {
    if let Ok(existing) = xattr::list(path) {
        for name in existing {
            let keep = xattrs.iter().any(|x| x.name.0 == name.as_bytes());
            if !keep {
                let _ = xattr::remove(path, &name);
            }
        }
    }
    for x in xattrs {
        xattr::set(path, x.name.as_os_str(), &x.value.0)?;
    }
    Ok(())
}

/// [`write_xattrs`] through a path whose last component is followed: a `/proc/self/fd/N` link
/// to an entry the restore holds open (see the restorer's `beneath` module).
pub fn write_xattrs_following(path: &Path, xattrs: &[Xattr]) -> std::io::Result<()> {
    let mut names = vec![0u8; 4096];
    loop {
        match rustix::fs::listxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0)
            }
            Err(_) => {
                names.clear();
                break;
            }
        }
    }
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !xattrs.iter().any(|x| x.name.0 == name) {
            let _ = rustix::fs::removexattr(path, std::ffi::OsStr::from_bytes(name));
        }
    }
    for x in xattrs {
        rustix::fs::setxattr(path, x.name.as_os_str(), &x.value.0, rustix::fs::XattrFlags::empty())
            .map_err(std::io::Error::from)?;
    }
    Ok(())
}
