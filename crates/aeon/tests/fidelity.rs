//! Everything a file system holds comes back exactly: a torture tree (common/torture.rs),
//! compared with an oracle built on lstat, getxattr, readlink, inode groups and allocated blocks
//! (not on Aeon's code), and with `rsync -aHAXS --dry-run --itemize-changes` as a second opinion.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::torture::*;
use common::*;

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
    rsync_agrees(&src, &fresh, &["/socket"]);
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
    rsync_agrees(&src, &inplace, &["/socket"]);
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
