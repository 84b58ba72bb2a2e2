//! `aeon mount DIR`: the recovery points as a read-only FUSE file system (the view of
//! `aeon_core::vfs`). This file only translates between the kernel's requests and the view:
//! inode numbers, attributes, directory listings, reads.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aeon_core::tree::{NodeKind, Timestamp};
use aeon_core::vfs::{Entry, OpenFile, Vfs, VfsOptions, Virtual};
use anyhow::{Context, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::Ctx;
use crate::cli::MountArgs;

/// How long the kernel may keep attributes and names: the view changes only when points come
/// or go, which the folders above the points show within a second.
const TTL: Duration = Duration::from_secs(1);

pub fn run(ctx: &Ctx, args: MountArgs) -> Result<u8> {
    let meta = std::fs::metadata(&args.mountpoint)
        .with_context(|| format!("cannot use {} as the mount point", args.mountpoint.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a folder", args.mountpoint.display());
    // A shared lock for as long as the mount lives: prune waits, so no pack vanishes under a
    // reader.
    let repo = ctx.open_with_index()?;
    let options = VfsOptions {
        cache_bytes: args.cache_size.unwrap_or(256).saturating_mul(1 << 20),
        ..VfsOptions::default()
    };
    let vfs = Arc::new(Vfs::new(repo, options)?);
    let fs = AeonFs::new(vfs);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("aeon".into()),
        fuser::MountOption::Subtype("aeon".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if args.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(ctx.threads().max(2));
    let session = fuser::spawn_mount(fs, &args.mountpoint, &config).with_context(|| {
        format!(
            "cannot mount on {} (FUSE: /dev/fuse and fusermount3 must be usable by this user)",
            args.mountpoint.display()
        )
    })?;
    ctx.say(format!(
        "recovery points mounted on {} (read-only); Ctrl-C or `fusermount3 -u {}` unmounts",
        args.mountpoint.display(),
        args.mountpoint.display()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    // Until unmounted from outside (fusermount3 -u, umount) or asked to stop; a mount still in
    // use is not torn down under its users: the request is refused and waiting goes on.
    while !session.guard.is_finished() {
        if stop.swap(false, Ordering::SeqCst)
            && let Err(e) = unmount(&args.mountpoint)
        {
            eprintln!(
                "aeon mount: cannot unmount {} ({e}): a process still uses it; close it and press \
                 Ctrl-C again (or `fusermount3 -uz {}` detaches it now)",
                args.mountpoint.display(),
                args.mountpoint.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    session.join().context("the mount ended with an error")?;
    ctx.say(format!("unmounted {}", args.mountpoint.display()));
    Ok(0)
}

/// Unmounts `dir`: with fusermount3 (which a user may run), else the system call (root).
fn unmount(dir: &std::path::Path) -> Result<()> {
    match std::process::Command::new("fusermount3").arg("-u").arg(dir).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(_) => {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
            // SAFETY: a valid C string for the duration of the call.
            if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error().into())
            }
        }
    }
}

/// What the kernel knows by an inode number.
struct Known {
    entry: Entry,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// A folder's entries as listed to the kernel (see [`AeonFs::listing`]).
type Listing = Arc<Vec<(u64, u64, Vec<u8>, Option<Entry>)>>;

struct AeonFs {
    vfs: Arc<Vfs>,
    /// Open folders' listings, by handle.
    dirs: Mutex<HashMap<u64, Listing>>,
    inodes: Mutex<HashMap<u64, Known>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_handle: AtomicU64,
    /// The owner of the view's own folders: who mounted.
    uid: u32,
    gid: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AeonFs {
    fn new(vfs: Arc<Vfs>) -> AeonFs {
        let mut inodes = HashMap::new();
        inodes.insert(1, Known { entry: Entry::Virtual(Virtual::Root), lookups: u64::MAX / 2 });
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        AeonFs {
            vfs,
            inodes: Mutex::new(inodes),
            dirs: Mutex::default(),
            files: Mutex::default(),
            next_handle: AtomicU64::new(1),
            uid,
            gid,
        }
    }

    fn entry(&self, ino: INodeNo) -> Option<Entry> {
        lock(&self.inodes).get(&u64::from(ino)).map(|k| k.entry.clone())
    }

    /// The inode number of `name` in the folder `parent`: derived from the path, so the same
    /// entry keeps its number; a file with hard links gets one number per (point, device,
    /// inode), shared by its links.
    fn ino_of(&self, parent: u64, name: &[u8], entry: &Entry) -> u64 {
        let mut h = blake3::Hasher::new();
        match entry {
            Entry::Node { point, node, .. } if node.kind != NodeKind::Dir && node.links > 1 => {
                h.update(b"hard link");
                h.update(&point.0);
                h.update(&node.device.to_le_bytes());
                h.update(&node.inode.to_le_bytes());
            }
            _ => {
                h.update(&parent.to_le_bytes());
                h.update(name);
            }
        }
        let n = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default())
            & (u64::MAX >> 1);
        n.max(2)
    }

    fn attr(&self, ino: u64, entry: &Entry) -> FileAttr {
        let newest = self.vfs.newest_time().map_or(UNIX_EPOCH, |t| system_time(t.timestamp(), 0));
        let base = FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: newest,
            mtime: newest,
            ctime: newest,
            crtime: newest,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match entry {
            Entry::Virtual(_) => base,
            Entry::Link(target) => FileAttr {
                kind: FileType::Symlink,
                perm: 0o777,
                nlink: 1,
                size: target.len() as u64,
                ..base
            },
            Entry::Node { node, .. } => {
                let mtime = time_of(node.mtime);
                let size = match node.kind {
                    NodeKind::File => node.size,
                    NodeKind::Symlink => node.target.as_ref().map_or(0, |t| t.0.len() as u64),
                    _ => 0,
                };
                FileAttr {
                    ino: INodeNo(ino),
                    size,
                    blocks: size.div_ceil(512),
                    atime: node.atime.map_or(mtime, time_of),
                    mtime,
                    ctime: node.ctime.map_or(mtime, time_of),
                    crtime: mtime,
                    kind: file_type(node.kind),
                    perm: (node.mode & 0o7777) as u16,
                    nlink: if node.kind == NodeKind::Dir { 2 } else { node.links.max(1) as u32 },
                    uid: node.uid,
                    gid: node.gid,
                    rdev: node.rdev.unwrap_or(0) as u32,
                    blksize: 4096,
                    flags: 0,
                }
            }
        }
    }

    /// The entries of folder `ino`: (next offset, inode number, name, entry; `None` for `.` and
    /// `..`). Made once per opening of the folder: the kernel reads it in many pieces.
    fn listing(&self, ino: INodeNo) -> Result<Listing, Errno> {
        let dir = self.entry(ino).ok_or(Errno::ENOENT)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if matches!(dir, Entry::Virtual(_)) {
            self.vfs
                .refresh()
                .map_err(|e| self.failed("reading the list of recovery points", e))?;
        }
        let children = self.vfs.children(&dir).map_err(|e| self.failed("listing a folder", e))?;
        let dots = [(u64::from(ino), b".".to_vec()), (1, b"..".to_vec())];
        let listed = dots.into_iter().map(|(i, n)| (i, n, None)).chain(
            children
                .into_iter()
                .map(|(name, entry)| (self.ino_of(ino.into(), &name, &entry), name, Some(entry))),
        );
        Ok(Arc::new(
            listed
                .enumerate()
                .map(|(i, (child, name, entry))| ((i + 1) as u64, child, name, entry))
                .collect(),
        ))
    }

    /// The listing the folder handle `fh` was opened with (or a new one).
    fn listing_of(&self, ino: INodeNo, fh: FileHandle) -> Result<Listing, Errno> {
        match lock(&self.dirs).get(&u64::from(fh)) {
            Some(l) => Ok(l.clone()),
            None => self.listing(ino),
        }
    }

    /// Reports an error of the repository on stderr (the kernel gets EIO).
    fn failed(&self, what: &str, e: impl std::fmt::Display) -> Errno {
        eprintln!("aeon mount: {what}: {e}");
        Errno::EIO
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Chardev => FileType::CharDevice,
        NodeKind::Blockdev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn entry_type(entry: &Entry) -> FileType {
    match entry {
        Entry::Virtual(_) => FileType::Directory,
        Entry::Link(_) => FileType::Symlink,
        Entry::Node { node, .. } => file_type(node.kind),
    }
}

fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

fn time_of(t: Timestamp) -> SystemTime {
    system_time(t.0, t.1.min(999_999_999))
}

impl fuser::Filesystem for AeonFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.entry(parent) else { return reply.error(Errno::ENOENT) };
        if matches!(dir, Entry::Virtual(_))
            && let Err(e) = self.vfs.refresh()
        {
            return reply.error(self.failed("reading the list of recovery points", e));
        }
        match self.vfs.child(&dir, name.as_bytes()) {
            Ok(Some(entry)) => {
                let ino = self.ino_of(parent.into(), name.as_bytes(), &entry);
                let attr = self.attr(ino, &entry);
                let mut inodes = lock(&self.inodes);
                let known = inodes.entry(ino).or_insert(Known { entry: entry.clone(), lookups: 0 });
                known.entry = entry;
                known.lookups += 1;
                drop(inodes);
                reply.entry(&TTL, &attr, Generation(0));
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(self.failed(&format!("{}", name.to_string_lossy()), e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut inodes = lock(&self.inodes);
        if let Some(k) = inodes.get_mut(&u64::from(ino)) {
            k.lookups = k.lookups.saturating_sub(nlookup);
            if k.lookups == 0 {
                inodes.remove(&u64::from(ino));
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.entry(ino) {
            Some(entry) => reply.attr(&TTL, &self.attr(ino.into(), &entry)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.entry(ino) {
            Some(Entry::Link(target)) => reply.data(target.as_bytes()),
            Some(Entry::Node { node, .. }) if node.kind == NodeKind::Symlink => {
                reply.data(node.target.as_ref().map_or(&[][..], |t| t.0.as_slice()))
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(Entry::Node { node, .. }) = self.entry(ino) else {
            return reply.error(Errno::EISDIR);
        };
        if node.kind != NodeKind::File {
            return reply.error(Errno::EINVAL);
        }
        match self.vfs.open(&node) {
            Ok(file) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                lock(&self.files).insert(fh, Arc::new(file));
                // Contents never change: the kernel may keep them cached across opens.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(self.failed(&node.name.to_string_lossy(), e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(file) = lock(&self.files).get(&u64::from(fh)).cloned() else {
            return reply.error(Errno::EBADF);
        };
        match file.read(&self.vfs, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => {
                let name = match self.entry(ino) {
                    Some(Entry::Node { node, .. }) => node.name.to_string_lossy(),
                    _ => format!("inode {ino}"),
                };
                reply.error(self.failed(&name, e))
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        lock(&self.files).remove(&u64::from(fh));
        reply.ok();
    }

    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Listings carry each entry's attributes: `ls -l` of a large folder needs no lookup per
        // entry (the kernel falls back to plain listings when it sees no use for them).
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino) {
            Ok(listing) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                lock(&self.dirs).insert(fh, listing);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: fuser::ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&u64::from(fh));
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match self.listing_of(ino, fh) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (i, child_ino, name, entry) in listed.iter().skip(offset as usize) {
            let kind = entry.as_ref().map_or(FileType::Directory, entry_type);
            if reply.add(INodeNo(*child_ino), *i, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let listed = match self.listing_of(ino, fh) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (i, child_ino, name, entry) in listed.iter().skip(offset as usize) {
            let (i, child_ino) = (*i, *child_ino);
            let full = match entry {
                Some(entry) => {
                    let attr = self.attr(child_ino, entry);
                    let full = reply.add(
                        INodeNo(child_ino),
                        i,
                        OsStr::from_bytes(name),
                        &TTL,
                        &attr,
                        Generation(0),
                    );
                    if !full {
                        // The kernel counts an entry it was given as a lookup.
                        let mut inodes = lock(&self.inodes);
                        let known = inodes
                            .entry(child_ino)
                            .or_insert(Known { entry: entry.clone(), lookups: 0 });
                        known.entry = entry.clone();
                        known.lookups += 1;
                    }
                    full
                }
                // `.` and `..`: the kernel takes no lookup for them.
                None => {
                    let attr = self.attr(child_ino, &Entry::Virtual(Virtual::Root));
                    reply.add(
                        INodeNo(child_ino),
                        i,
                        OsStr::from_bytes(name),
                        &Duration::ZERO,
                        &attr,
                        Generation(0),
                    )
                }
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(Entry::Node { node, .. }) = self.entry(ino) else {
            return reply.error(Errno::NO_XATTR);
        };
        match node.xattrs.iter().find(|x| x.name.0 == name.as_bytes()) {
            Some(x) => xattr_reply(reply, &x.value.0, size),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names: Vec<u8> = match self.entry(ino) {
            Some(Entry::Node { node, .. }) => node
                .xattrs
                .iter()
                .flat_map(|x| x.name.0.iter().copied().chain(std::iter::once(0)))
                .collect(),
            _ => Vec::new(),
        };
        xattr_reply(reply, &names, size);
    }
}

/// The xattr protocol: size 0 asks for the length; a buffer too small is ERANGE.
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
