//! Everything a file system holds comes back exactly: a torture tree built here, compared with
//! an oracle built on lstat, getxattr, readlink, inode groups and allocated blocks (not on
//! Aeon's code), and with `rsync -aHAXS --dry-run --itemize-changes` as a second opinion.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn sh(cmd: &str, args: &[&OsStr]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_times(p: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    let a = filetime::FileTime::from_unix_time(secs - 1000, 999_999_999 - nanos);
    filetime::set_symlink_file_times(p, a, t).unwrap();
}

fn mknod(p: &Path, kind: libc::mode_t, dev: libc::dev_t) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string for the duration of the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, dev) };
    assert_eq!(rc, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

/// Builds the torture tree. Requires root (devices, owners, trusted.* xattrs).
fn build_torture_tree(root: &Path) {
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
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    atime: (i64, i64),
    size: u64,
    rdev: u64,
    content: Option<[u8; 32]>,
    link: Option<OsString>,
    xattrs: BTreeMap<OsString, Vec<u8>>,
    /// Paths of the hard-link group this entry belongs to (for files with nlink > 1).
    link_group: Vec<PathBuf>,
}

fn observe(root: &Path) -> BTreeMap<PathBuf, Seen> {
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

fn hash_file(p: &Path) -> [u8; 32] {
    // A 000 file is readable by root; the content matters, not the mode, here.
    let mut h = blake3::Hasher::new();
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOATIME: observing must not change what it observes.
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(p).unwrap();
    h.update_reader(f).unwrap();
    *h.finalize().as_bytes()
}

fn assert_same(src: &Path, out: &Path) {
    let a = observe(src);
    let mut b = observe(out);
    // Sockets are recorded but not recreated.
    assert!(a.contains_key(Path::new("socket")));
    assert!(!b.contains_key(Path::new("socket")), "sockets are not restored");
    b.insert(PathBuf::from("socket"), observe(src).remove(Path::new("socket")).unwrap());
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different sets of names");
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{} differs", k.display());
    }
}

fn rsync_agrees(src: &Path, out: &Path) {
    let mut s = src.as_os_str().to_os_string();
    s.push("/");
    let mut o = out.as_os_str().to_os_string();
    o.push("/");
    let res = Command::new("rsync")
        .args(["-aHAXS", "--dry-run", "--itemize-changes", "--exclude=/socket"])
        .arg(&s)
        .arg(&o)
        .output()
        .expect("rsync is installed by scripts/test-all.sh");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let changes = String::from_utf8_lossy(&res.stdout);
    assert!(changes.trim().is_empty(), "rsync sees differences:\n{changes}");
}

/// `size` bytes with 512 KiB of data at one third and 512 KiB at the end; the rest is holes.
fn make_sparse(path: &Path, size: u64, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = (rng.content(512 << 10), rng.content(512 << 10));
    let mut f = fs::File::create(path).unwrap();
    f.seek(SeekFrom::Start(size / 3)).unwrap();
    f.write_all(&a).unwrap();
    f.seek(SeekFrom::Start(size - (512 << 10))).unwrap();
    f.write_all(&b).unwrap();
    (a, b)
}

fn allocated(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks() * 512
}

#[test]
fn torture_tree_round_trips_exactly_new_and_in_place() {
    assert!(
        is_root(),
        "the fidelity test needs root (devices, owners, trusted.* xattrs); CI runs as root"
    );
    let env = Env::new();
    let src = env.path("src");
    build_torture_tree(&src);
    let out = env.run(&["backup", src.to_str().unwrap(), "--json"]);
    assert_success(&out);
    let spec = format!("latest:{}", src.display());

    // 1. Into a new directory.
    let fresh = env.path("fresh");
    let r = env.run(&["restore", &spec, "--target", fresh.to_str().unwrap(), "--verify"]);
    assert_success(&r);
    assert!(String::from_utf8_lossy(&r.stdout).contains("socket"), "sockets are reported");
    assert_same(&src, &fresh);
    rsync_agrees(&src, &fresh);
    let sparse = fresh.join("sparse.img");
    assert_eq!(fs::metadata(&sparse).unwrap().len(), 1 << 30);
    assert!(allocated(&sparse) < 4 << 20, "sparse file takes {} bytes on disk", allocated(&sparse));

    // 2. In place, over a damaged copy: content, modes, owners, xattrs, types changed,
    //    files added and removed, and a symlink planted where a directory belongs.
    let inplace = env.path("inplace");
    sh("cp", &["-a".as_ref(), fresh.as_os_str(), inplace.as_os_str()]);
    let untouched_inode = fs::metadata(inplace.join("line\nbreak")).unwrap().ino();
    fs::write(inplace.join("other/pair2"), b"changed through a hard link").unwrap();
    fs::write(inplace.join("a/b/c/big.bin"), b"shrunk").unwrap();
    chmod(&inplace.join("setuid"), 0o644);
    std::os::unix::fs::lchown(inplace.join("empty"), Some(777), Some(777)).unwrap();
    xattr::set(inplace.join("plain.txt"), "user.extra", b"not in the recovery point").unwrap();
    fs::remove_file(inplace.join("plain.txt")).unwrap();
    fs::write(inplace.join("plain.txt"), b"plain content\n").unwrap();
    fs::remove_file(inplace.join("fifo")).unwrap();
    fs::write(inplace.join("fifo"), b"now a regular file").unwrap();
    fs::write(inplace.join("stray-file"), b"not in the recovery point").unwrap();
    fs::create_dir_all(inplace.join("stray-dir/sub")).unwrap();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    chmod(&inplace.join("readonly"), 0o755);
    fs::remove_dir_all(inplace.join("readonly")).unwrap();
    std::os::unix::fs::symlink(&outside, inplace.join("readonly")).unwrap();

    let r =
        env.run(&["restore", &spec, "--target", inplace.to_str().unwrap(), "--delete", "--json"]);
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(v["files_unchanged"].as_u64().unwrap() > 5, "{v}");
    assert_same(&src, &inplace);
    rsync_agrees(&src, &inplace);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written through the planted symlink"
    );
    // Files that did not differ were not rewritten: same inode as before the restore.
    assert_eq!(fs::metadata(inplace.join("line\nbreak")).unwrap().ino(), untouched_inode);
}

#[test]
fn numeric_owner_ignores_names() {
    assert!(is_root(), "needs root to set owners");
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    std::os::unix::fs::lchown(src.join("f"), Some(65534), Some(65534)).unwrap();
    env.backup(&src);
    let spec = format!("latest:{}", src.display());
    let out = env.path("o");
    env.run_ok(&["restore", &spec, "--target", out.to_str().unwrap(), "--numeric-owner"]);
    assert_eq!(fs::metadata(out.join("f")).unwrap().uid(), 65534);
}

#[test]
fn names_are_bytes_not_text() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let weird = OsString::from_vec(vec![b'x', 0xff, 0xfe, b'\n', b'y']);
    fs::write(src.join(&weird), b"bytes").unwrap();
    env.backup(&src);
    let out = env.path("o");
    env.run_ok(&[
        "restore",
        &format!("latest:{}", src.display()),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(out.join(&weird)).unwrap(), b"bytes");
    let listing = env.json(&["ls", &format!("latest:{}", src.display())]);
    assert_eq!(listing[0]["name"], "x\u{fffd}\u{fffd}\ny");
}

#[test]
fn ten_gib_sparse_file_with_one_mib_of_data_restores_to_about_one_mib() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let size = 10u64 << 30;
    let (a, b) = make_sparse(&src.join("disk.img"), size, &mut Rng::new(77));
    let v = env.json(&["backup", src.to_str().unwrap()]);
    assert!(v["data_added_stored"].as_u64().unwrap() < 4 << 20, "{v}");
    let out = env.path("out");
    env.run_ok(&[
        "restore",
        &format!("latest:{}", src.display()),
        "--target",
        out.to_str().unwrap(),
    ]);
    let restored = out.join("disk.img");
    assert_eq!(fs::metadata(&restored).unwrap().len(), size);
    let on_disk = allocated(&restored);
    assert!(on_disk <= 2 << 20, "10 GiB sparse file takes {on_disk} bytes on disk after restore");
    let f = fs::File::open(&restored).unwrap();
    let mut buf = vec![0u8; 512 << 10];
    f.read_exact_at(&mut buf, size / 3).unwrap();
    assert!(buf == a);
    f.read_exact_at(&mut buf, size - (512 << 10)).unwrap();
    assert!(buf == b);
    f.read_exact_at(&mut buf, 5 << 30).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
}
