//! A torture tree (every file type, owners, modes, xattrs and ACLs, hard links, odd names,
//! a sparse file, nanosecond times) and an oracle that observes a tree through lstat,
//! getxattr, readlink and inode groups only: for restores and for the mount.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Rng;

pub fn sh(cmd: &str, args: &[&OsStr]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn set_times(p: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    let a = filetime::FileTime::from_unix_time(secs - 1000, 999_999_999 - nanos);
    filetime::set_symlink_file_times(p, a, t).unwrap();
}

pub fn mknod(p: &Path, kind: libc::mode_t, dev: libc::dev_t) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string for the duration of the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, dev) };
    assert_eq!(rc, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

/// Builds the torture tree. Requires root (devices, owners, trusted.* xattrs).
pub fn build_torture_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let r = |s: &str| root.join(s);
    fs::write(r("plain.txt"), b"plain content\n").unwrap();
    fs::write(r("empty"), b"").unwrap();
    fs::create_dir_all(r("emptydir")).unwrap();
    fs::create_dir_all(r("a/b/c")).unwrap();
    fs::create_dir_all(r("other")).unwrap();
    let mut rng = Rng::new(5);
    fs::write(r("a/b/c/big.bin"), rng.content(9 << 20)).unwrap();

    // Symlinks: relative, absolute, dangling, a loop, a link to a directory.
    std::os::unix::fs::symlink("plain.txt", r("link-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", r("link-abs")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", r("link-dangling")).unwrap();
    std::os::unix::fs::symlink("loop-b", r("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", r("loop-b")).unwrap();
    std::os::unix::fs::symlink("a/b", r("link-dir")).unwrap();

    // Hard links across directories: one group of three, one of two.
    fs::write(r("a/hard1"), b"shared by three names").unwrap();
    fs::hard_link(r("a/hard1"), r("a/b/hard2")).unwrap();
    fs::hard_link(r("a/hard1"), r("other/hard3")).unwrap();
    fs::write(r("pair1"), rng.content(100_000)).unwrap();
    fs::hard_link(r("pair1"), r("other/pair2")).unwrap();

    // Special files.
    sh("mkfifo", &[r("fifo").as_os_str()]);
    mknod(&r("chardev"), libc::S_IFCHR, libc::makedev(1, 3));
    mknod(&r("blockdev"), libc::S_IFBLK, libc::makedev(7, 200));
    drop(std::os::unix::net::UnixListener::bind(r("socket")).unwrap());

    // Modes.
    fs::write(r("setuid"), b"#!/bin/sh\n").unwrap();
    chmod(&r("setuid"), 0o4755);
    fs::write(r("setgid"), b"x").unwrap();
    chmod(&r("setgid"), 0o2750);
    fs::create_dir_all(r("sticky")).unwrap();
    chmod(&r("sticky"), 0o1777);
    fs::write(r("mode000"), b"nobody may read me").unwrap();
    chmod(&r("mode000"), 0o000);
    fs::create_dir_all(r("readonly")).unwrap();
    fs::write(r("readonly/inside.txt"), b"in a read-only dir").unwrap();

    // Owners: a named user and group, and bare numbers without names.
    std::os::unix::fs::lchown(r("plain.txt"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::lchown(r("a/b/c/big.bin"), Some(4321), Some(8765)).unwrap();
    std::os::unix::fs::lchown(r("link-rel"), Some(4321), Some(65534)).unwrap();

    // Extended attributes in several namespaces, and POSIX ACLs (access and default).
    xattr::set(r("plain.txt"), "user.comment", b"hello xattr").unwrap();
    xattr::set(r("plain.txt"), "user.binary", &[0u8, 255, 1, 2]).unwrap();
    xattr::set(r("plain.txt"), "trusted.aeon", b"root only").unwrap();
    xattr::set(r("emptydir"), "user.dir", b"on a directory").unwrap();
    xattr::set(r("link-abs"), "trusted.onlink", b"xattr on a symlink").unwrap();
    sh("setfacl", &["-m".as_ref(), "u:4321:rw-,g:8765:r--".as_ref(), r("pair1").as_os_str()]);
    sh("setfacl", &["-d".as_ref(), "-m".as_ref(), "u:4321:rwx".as_ref(), r("a").as_os_str()]);

    // Names: not UTF-8, with a newline, 255 bytes long, and a path near PATH_MAX.
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9-latin1")), b"non-utf8 name").unwrap();
    fs::write(r("line\nbreak"), b"newline in name").unwrap();
    fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    let mut deep = r("deep");
    while deep.as_os_str().len() < 3900 {
        deep.push("d".repeat(200));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"near PATH_MAX").unwrap();

    // A sparse file (the 10 GiB case has a test of its own).
    make_sparse(&r("sparse.img"), 1 << 30, &mut rng);

    // Times in nanoseconds on everything, directories last (creating entries changes them).
    let mut all: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
        all.push(p);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for (i, p) in all.iter().enumerate() {
        set_times(p, 1_700_000_000 + i as i64 * 37, (i as u32 * 7919) % 1_000_000_000);
    }
    chmod(&r("readonly"), 0o555);
    set_times(&r("readonly"), 1_650_000_000, 42);
}

/// The oracle's view of one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub atime: (i64, i64),
    pub size: u64,
    pub rdev: u64,
    pub content: Option<[u8; 32]>,
    pub link: Option<OsString>,
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    /// Paths of the hard-link group this entry belongs to (for files with nlink > 1).
    pub link_group: Vec<PathBuf>,
}

pub fn observe(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut by_inode: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "chardev"
        } else if ft.is_block_device() {
            "blockdev"
        } else if ft.is_socket() {
            "socket"
        } else {
            "file"
        };
        if ft.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
        if ft.is_file() && md.nlink() > 1 {
            by_inode.entry(md.ino()).or_default().push(rel.clone());
        }
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).unwrap() {
            xattrs.insert(name.clone(), xattr::get(&p, &name).unwrap().unwrap_or_default());
        }
        let is_root_dir = rel.as_os_str().is_empty();
        out.insert(
            rel,
            Seen {
                kind,
                mode: if ft.is_symlink() { 0 } else { md.mode() & 0o7777 },
                uid: md.uid(),
                gid: md.gid(),
                mtime: if is_root_dir { (0, 0) } else { (md.mtime(), md.mtime_nsec()) },
                // Listing a directory or reading a link (the backup must do both) updates its
                // atime, and no flag prevents that: compare the atimes of regular files only.
                atime: if ft.is_file() { (md.atime(), md.atime_nsec()) } else { (0, 0) },
                size: if ft.is_file() { md.len() } else { 0 },
                rdev: md.rdev(),
                content: ft.is_file().then(|| hash_file(&p)),
                link: ft.is_symlink().then(|| fs::read_link(&p).unwrap().into_os_string()),
                xattrs,
                link_group: Vec::new(),
            },
        );
    }
    for group in by_inode.into_values() {
        let mut g = group.clone();
        g.sort();
        for p in &group {
            out.get_mut(p).unwrap().link_group = g.clone();
        }
    }
    out
}

pub fn hash_file(p: &Path) -> [u8; 32] {
    // A 000 file is readable by root; the content matters, not the mode, here.
    let mut h = blake3::Hasher::new();
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOATIME: observing must not change what it observes.
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(p).unwrap();
    h.update_reader(f).unwrap();
    *h.finalize().as_bytes()
}

/// `size` bytes with 512 KiB of data at one third and 512 KiB at the end; the rest is holes.
pub fn make_sparse(path: &Path, size: u64, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = (rng.content(512 << 10), rng.content(512 << 10));
    let mut f = fs::File::create(path).unwrap();
    f.seek(SeekFrom::Start(size / 3)).unwrap();
    f.write_all(&a).unwrap();
    f.seek(SeekFrom::Start(size - (512 << 10))).unwrap();
    f.write_all(&b).unwrap();
    (a, b)
}

/// `rsync -aHAXS --dry-run --itemize-changes` sees no difference between the trees (but in
/// the paths `excluded`).
pub fn rsync_agrees(src: &Path, out: &Path, excluded: &[&str]) {
    let mut s = src.as_os_str().to_os_string();
    s.push("/");
    let mut o = out.as_os_str().to_os_string();
    o.push("/");
    let res = Command::new("rsync")
        .args(["-aHAXS", "--dry-run", "--itemize-changes"])
        .args(excluded.iter().map(|e| format!("--exclude={e}")))
        .arg(&s)
        .arg(&o)
        .output()
        .expect("rsync is installed by scripts/test-all.sh");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let changes = String::from_utf8_lossy(&res.stdout);
    assert!(changes.trim().is_empty(), "rsync sees differences:\n{changes}");
}
