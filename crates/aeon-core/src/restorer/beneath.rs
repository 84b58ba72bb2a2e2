//! Every change a restore makes, made through descriptors below its target directory.
//!
//! A restore often runs as root into a directory that an unprivileged user owns (their home).
//! That user can rename entries there while the restore runs, and swap a restored directory for
//! a symlink to `/etc`. Paths are therefore never resolved by name from `/`: the target is
//! opened once, and every entry is reached from that descriptor with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (no symlink and no `..` is crossed, not even one the plan put there),
//! then changed with `*at` calls on its parent's descriptor or `f*` calls on its own, never
//! following a symlink in the last component either. A path that changed under the restore
//! fails with [`Error::Changed`]-like messages naming it; nothing outside the target is touched.
//! Directories are created 0700 (root's, when root restores) until their final mode is set at
//! the end, so nobody else can reach into them meanwhile.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The restore's target, open.
pub(super) struct Beneath {
    root: OwnedFd,
    root_path: PathBuf,
    /// Directories this restore created (relative paths): 0700 and the restoring user's until
    /// the end, so nobody else can move them or change what is in them, and a descriptor of
    /// one stays valid below the target. Only these are kept open between calls.
    created: Mutex<HashSet<PathBuf>>,
    /// The last such directory opened as a parent: entries come in tree order, so consecutive
    /// ones mostly share it (one `openat2` saved per entry).
    last_parent: Mutex<Option<(PathBuf, Arc<OwnedFd>)>>,
}

/// Identity of a file created by the restore, checked when it is opened again for its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Inode {
    dev: u64,
    ino: u64,
}

impl Inode {
    pub(super) fn of(fd: impl AsFd) -> std::io::Result<Inode> {
        let st = rustix::fs::fstat(fd)?;
        Ok(Inode { dev: st.st_dev as u64, ino: st.st_ino as u64 })
    }
}

/// The message for a path that is not what the restore made or expected there.
fn changed(path: &Path, what: &str) -> Error {
    Error::InvalidInput(format!(
        "{}: {what}; it changed while the restore ran (replaced by a symlink or another file?), \
         so it was left alone",
        path.display()
    ))
}

fn io(path: &Path, e: Errno) -> Error {
    if e == Errno::LOOP || e == Errno::XDEV || e == Errno::NOTDIR {
        return changed(path, "a directory on its way is no longer a directory of this restore");
    }
    Error::io(path, std::io::Error::from(e))
}

impl Beneath {
    /// Opens the target directory (created if missing; the target's own path may contain
    /// symlinks, as the user gave it).
    pub(super) fn open(target: &Path) -> Result<Beneath> {
        std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
        let root = rustix::fs::open(
            target,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(target, e.into()))?;
        // One error for a target this user cannot write, rather than one per entry.
        rustix::fs::access(target, rustix::fs::Access::WRITE_OK)
            .map_err(|e| Error::io(target, e.into()))?;
        Ok(Beneath {
            root,
            root_path: target.to_path_buf(),
            created: Mutex::default(),
            last_parent: Mutex::default(),
        })
    }

    /// `path` relative to the target; it must lie below it and contain only plain names (the
    /// plan builds every path as target + names it has checked).
    fn relative<'p>(&self, path: &'p Path) -> Result<&'p Path> {
        let rel = path
            .strip_prefix(&self.root_path)
            .map_err(|_| Error::InvalidInput(format!("{}: outside the target", path.display())))?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::InvalidInput(format!("{}: not a plain path", path.display())));
        }
        Ok(rel)
    }

    /// Opens `rel` (relative to the target, "" for the target itself) without crossing a
    /// symlink or leaving the target, and without following a symlink in its last component.
    fn open_rel(&self, rel: &Path, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let rel: &OsStr =
            if rel.as_os_str().is_empty() { OsStr::new(".") } else { rel.as_os_str() };
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        match rustix::fs::openat2(&self.root, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => self.open_walking(rel, flags),
            other => other,
        }
    }

    /// What `openat2` does, for kernels before 5.6: one component at a time, none followed.
    fn open_walking(&self, rel: &OsStr, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let path = Path::new(rel);
        let mut dir = rustix::io::dup(&self.root)?;
        let mut parts = path.components().peekable();
        while let Some(c) = parts.next() {
            let Component::Normal(name) = c else {
                if c == Component::CurDir && parts.peek().is_none() {
                    return rustix::fs::openat(&dir, ".", flags, Mode::empty());
                }
                return Err(Errno::XDEV);
            };
            if parts.peek().is_none() {
                return rustix::fs::openat(&dir, name, flags, Mode::empty());
            }
            let dir_flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::PATH | OFlags::CLOEXEC;
            dir = rustix::fs::openat(&dir, name, dir_flags, Mode::empty())?;
        }
        Ok(dir)
    }

    /// The parent directory of `path`, open, and its last component.
    pub(super) fn parent<'p>(&self, path: &'p Path) -> Result<(Arc<OwnedFd>, &'p OsStr)> {
        let rel = self.relative(path)?;
        let name = rel
            .file_name()
            .ok_or_else(|| Error::InvalidInput(format!("{}: no name", path.display())))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut last = self.last_parent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, fd)) = last.as_ref()
            && cached == parent
        {
            return Ok((fd.clone(), name));
        }
        let fd = Arc::new(
            self.open_rel(parent, OFlags::DIRECTORY | OFlags::PATH).map_err(|e| io(path, e))?,
        );
        if self.created.lock().unwrap_or_else(|p| p.into_inner()).contains(parent) {
            *last = Some((parent.to_path_buf(), fd.clone()));
        }
        Ok((fd, name))
    }

    /// Notes a directory this restore made (see [`Beneath::created`]).
    fn made_dir(&self, path: &Path) {
        if let Ok(rel) = self.relative(path) {
            self.created.lock().unwrap_or_else(|p| p.into_inner()).insert(rel.to_path_buf());
        }
    }

    /// Opens an entry (not a symlink) for its metadata: `O_PATH`, so that opening a FIFO or a
    /// device has no effect.
    fn open_entry(&self, path: &Path) -> Result<OwnedFd> {
        let rel = self.relative(path)?;
        self.open_rel(rel, OFlags::PATH).map_err(|e| {
            if e == Errno::LOOP { changed(path, "it is a symlink now") } else { io(path, e) }
        })
    }

    /// Opens a file this restore created, for writing its data: it must still be that file.
    pub(super) fn open_for_data(&self, path: &Path, made: Inode) -> Result<std::fs::File> {
        let rel = self.relative(path)?;
        let fd = self.open_rel(rel, OFlags::WRONLY).map_err(|e| match e {
            Errno::LOOP => changed(path, "it is a symlink now"),
            Errno::NOENT => changed(path, "it is gone"),
            e => io(path, e),
        })?;
        if Inode::of(&fd).map_err(|e| Error::io(path, e))? != made {
            return Err(changed(path, "it is not the file this restore created"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Opens a file this restore created, to read it back (without changing its access time
    /// where the kernel allows).
    pub(super) fn open_for_reading(&self, path: &Path, made: Inode) -> Result<std::fs::File> {
        let rel = self.relative(path)?;
        let fd = match self.open_rel(rel, OFlags::RDONLY | OFlags::NOATIME) {
            Err(Errno::PERM) => self.open_rel(rel, OFlags::RDONLY),
            other => other,
        }
        .map_err(|e| io(path, e))?;
        if Inode::of(&fd).map_err(|e| Error::io(path, e))? != made {
            return Err(changed(path, "it is not the file this restore created"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// Creates a directory, 0700 until its metadata is applied; an existing directory is kept,
    /// anything else there is removed first.
    pub(super) fn create_dir(&self, path: &Path, existed: bool) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        let mkdir = |p: &OwnedFd| rustix::fs::mkdirat(p, name, Mode::from_raw_mode(0o700));
        match mkdir(&parent) {
            Ok(()) => {}
            // A directory that was there stays someone else's to move: not noted as made.
            Err(Errno::EXIST) if existed => {
                match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => return Ok(()),
                    _ => {
                        remove_at(&parent, name, path)?;
                        mkdir(&parent).map_err(|e| io(path, e))?;
                    }
                }
            }
            Err(e) => return Err(io(path, e)),
        }
        self.made_dir(path);
        Ok(())
    }

    /// Creates an empty regular file of `size` bytes (all holes), 0600, never through a symlink;
    /// anything at its place is removed first when `existed`. Returns its identity.
    pub(super) fn create_file(&self, path: &Path, size: u64, existed: bool) -> Result<Inode> {
        let (parent, name) = self.parent(path)?;
        if existed {
            remove_at(&parent, name, path)?;
        }
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io(path, e))?;
        rustix::fs::ftruncate(&fd, size).map_err(|e| io(path, e))?;
        Inode::of(&fd).map_err(|e| Error::io(path, e))
    }

    pub(super) fn create_symlink(&self, path: &Path, target: &OsStr) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        if let Ok(existing) = rustix::fs::readlinkat(&parent, name, Vec::new())
            && existing.as_bytes() == target.as_bytes()
        {
            return Ok(());
        }
        remove_at(&parent, name, path)?;
        rustix::fs::symlinkat(target, &parent, name).map_err(|e| io(path, e))
    }

    /// A FIFO or device node (`kind`: `S_IFIFO`, `S_IFCHR`, `S_IFBLK`).
    pub(super) fn create_special(
        &self,
        path: &Path,
        kind: u32,
        mode: u32,
        rdev: u64,
    ) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        remove_at(&parent, name, path)?;
        let file_type = rustix::fs::FileType::from_raw_mode(kind as rustix::fs::RawMode);
        rustix::fs::mknodat(&parent, name, file_type, Mode::from_raw_mode(mode & 0o7777), rdev)
            .map_err(|e| {
                let hint = if e == Errno::PERM { " (devices need root)" } else { "" };
                Error::InvalidInput(format!(
                    "{}: {}{hint}",
                    path.display(),
                    std::io::Error::from(e)
                ))
            })
    }

    /// Links `link` to the file at `primary`, both below the target (never following a symlink).
    pub(super) fn hard_link(&self, primary: &Path, link: &Path) -> Result<()> {
        let (from_dir, from_name) = self.parent(primary)?;
        let (to_dir, to_name) = self.parent(link)?;
        remove_at(&to_dir, to_name, link)?;
        rustix::fs::linkat(&from_dir, from_name, &to_dir, to_name, AtFlags::empty())
            .map_err(|e| io(link, e))
    }

    /// Removes whatever is at `path`, a directory with everything in it.
    pub(super) fn remove(&self, path: &Path) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        remove_at(&parent, name, path)
    }

    /// Removes a file this restore created and could not complete.
    pub(super) fn remove_file(&self, path: &Path) {
        if let Ok((parent, name)) = self.parent(path) {
            let _ = rustix::fs::unlinkat(&parent, name, AtFlags::empty());
        }
    }

    /// Sets owner (`owner`: when root), mode, extended attributes and times of the entry at
    /// `path`. Owner first, as chown clears setuid and setgid bits.
    pub(super) fn set_metadata(&self, path: &Path, m: &EntryMetadata) -> Result<()> {
        if m.symlink {
            return self.set_symlink_metadata(path, m);
        }
        let fd = self.open_entry(path)?;
        if let Some((uid, gid)) = m.owner {
            rustix::fs::chownat(
                &fd,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::EMPTY_PATH,
            )
            .map_err(|e| io(path, e))?;
        }
        // An O_PATH descriptor takes no fchmod: its /proc link reaches the same inode.
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::chmodat(
            rustix::fs::CWD,
            via.as_str(),
            Mode::from_raw_mode(m.mode),
            AtFlags::empty(),
        )
        .map_err(|e| io(path, e))?;
        crate::metadata::write_xattrs_following(Path::new(&via), m.xattrs).map_err(|e| {
            Error::InvalidInput(format!("{}: extended attributes: {e}", path.display()))
        })?;
        let times = rustix::fs::Timestamps { last_access: m.atime, last_modification: m.mtime };
        rustix::fs::utimensat(rustix::fs::CWD, via.as_str(), &times, AtFlags::empty())
            .map_err(|e| io(path, e))
    }

    fn set_symlink_metadata(&self, path: &Path, m: &EntryMetadata) -> Result<()> {
        let (parent, name) = self.parent(path)?;
        if let Some((uid, gid)) = m.owner {
            rustix::fs::chownat(
                &parent,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io(path, e))?;
        }
        if !m.xattrs.is_empty() {
            // The parent through its /proc link, the link itself not followed (lsetxattr).
            let via = Path::new(&format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
            crate::metadata::write_xattrs(&via, m.xattrs).map_err(|e| {
                Error::InvalidInput(format!("{}: extended attributes: {e}", path.display()))
            })?;
        }
        let times = rustix::fs::Timestamps { last_access: m.atime, last_modification: m.mtime };
        rustix::fs::utimensat(&parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io(path, e))
    }
}

/// What [`Beneath::set_metadata`] sets.
pub(super) struct EntryMetadata<'a> {
    pub symlink: bool,
    pub owner: Option<(u32, u32)>,
    pub mode: u32,
    pub xattrs: &'a [crate::tree::Xattr],
    pub atime: rustix::fs::Timespec,
    pub mtime: rustix::fs::Timespec,
}

/// Removes `name` in `parent`: a file or symlink, or a directory with everything in it (made
/// writable first: an earlier restore may have left it read-only). Nothing there is no error.
fn remove_at(parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(io(path, e)),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(d) => d,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io(path, e)),
    };
    let _ = rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700));
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(|e| io(path, e))? {
        let entry = entry.map_err(|e| io(path, e))?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        remove_at(&dir, &n, &path.join(&n))?;
    }
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io(path, e)),
    }
}
