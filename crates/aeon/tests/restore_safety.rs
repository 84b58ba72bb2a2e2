//! A restore never writes outside its target: not through symlinks, not through crafted names.

mod common;

use std::fs;

use aeon_core::tree::{Node, NodeKind, RawName, Tree};

use common::*;

#[test]
fn symlink_from_one_point_is_not_followed_by_the_next() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();

    // Recovery point 1: `a` is a symlink to a directory outside the target.
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("a")).unwrap();
    let first = env.backup(&src);
    // Recovery point 2: `a` is a directory holding `passwd`.
    fs::remove_file(src.join("a")).unwrap();
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("a/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
    let second = env.backup(&src);

    let target = env.path("target");
    for id in [&first, &second] {
        let spec = format!("{id}:{}", src.display());
        env.run_ok(&[
            "restore",
            &spec,
            "--target",
            target.to_str().unwrap(),
            "--overwrite",
            "always",
        ]);
    }
    assert!(fs::read_dir(&outside).unwrap().next().is_none(), "wrote through the symlink");
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("a/passwd")).unwrap(), b"root::0:0::/:/bin/sh\n");
}

/// Writes a recovery point whose root tree holds the given hostile names, each a file with
/// the content "pwned", next to one harmless file.
fn craft_hostile_point(env: &Env, names: &[&[u8]]) -> String {
    let mut crafter = Crafter::open(env);
    let data_id = crafter.data(b"pwned");
    let mut nodes = Vec::new();
    for name in names.iter().chain([&b"harmless.txt"[..]].iter()) {
        let mut n = Node::new(RawName(name.to_vec()), NodeKind::File);
        n.mode = 0o644;
        n.size = 5;
        n.content = vec![data_id];
        nodes.push(n);
    }
    let tree = crafter.tree(&Tree { nodes });
    crafter.point(tree)
}

#[test]
fn crafted_names_never_escape_the_target() {
    let env = Env::new();
    let victim = env.path("victim.txt");
    let id = craft_hostile_point(
        &env,
        &[b"..", b".", b"../victim.txt", b"/tmp/aeon-absolute-escape", b"", b"a\0b"],
    );
    let target = env.path("deep/target");
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "hostile names are errors");
    let err = stderr(&out);
    assert!(err.contains("unsafe name"), "{err}");
    assert!(!victim.exists(), "escaped with ../");
    assert!(
        !std::path::Path::new("/tmp/aeon-absolute-escape").exists(),
        "escaped with an absolute name"
    );
    // What is harmless is still restored, and nothing else is in the target.
    assert_eq!(fs::read(target.join("harmless.txt")).unwrap(), b"pwned");
    let names: Vec<_> = fs::read_dir(&target).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("harmless.txt")]);
    assert_eq!(fs::read_dir(env.path("deep")).unwrap().count(), 1);
}

/// Every regular file below `dir` (symlinks not followed).
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Root restores into a folder an unprivileged user owns; that user swaps every directory the
/// restore creates there for a symlink to a folder outside. Nothing may appear outside, and the
/// restore must blame the changed paths, not the repository's data.
#[test]
fn a_racing_user_cannot_steer_a_root_restore_outside_its_target() {
    assert!(is_root(), "this test restores as root against an unprivileged racer");
    let env = Env::new();
    let src = env.path("src");
    for d in 0..60 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..30 {
            write_random(&dir.join(format!("f{f:02}")), d * 100 + f, 16 << 10);
        }
        fs::write(dir.join("sub/deep"), b"deep").unwrap();
    }
    let id = env.backup(&src);

    // The racer (uid 4242) must reach the target through the test's folders.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = env.path("alice");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(4242), Some(4242)).unwrap();
    let racer_code = r#"
import os, sys, time
target, outside = sys.argv[1], sys.argv[2]
swapped, end = 0, time.time() + 60
while time.time() < end and not os.path.exists(os.path.join(target, ".stop")):
    for e in os.scandir(target):
        if e.name.startswith(".") or e.is_symlink() or not e.is_dir(follow_symlinks=False):
            continue
        try:
            os.rename(e.path, os.path.join(target, ".moved-" + e.name))
            os.symlink(outside, e.path)
            swapped += 1
        except OSError:
            pass
print(swapped)
"#;
    let racer = std::process::Command::new("setpriv")
        .args([
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            racer_code,
        ])
        .arg(&target)
        .arg(&outside)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let spec = format!("{id}:{}", src.display());
    let out = env.run(&["restore", &spec, "--target", target.to_str().unwrap(), "--threads", "2"]);
    fs::write(target.join(".stop"), b"").unwrap();
    let racer = racer.wait_with_output().unwrap();
    let swapped: u64 = String::from_utf8_lossy(&racer.stdout).trim().parse().unwrap();

    assert_eq!(files_below(&outside), Vec::<std::path::PathBuf>::new(), "written outside");
    let err = stderr(&out);
    assert!(!err.contains("failed verification"), "the data is fine: {err}");
    assert_ne!(out.status.code(), Some(4), "not a damage exit code: {err}");
    assert!(swapped > 0, "the racer swapped nothing: the test proves nothing");
    assert!(!out.status.success(), "a restore raced this way cannot be complete: {err}");
    assert!(err.contains("changed while the restore ran"), "{err}");
    // Every file the restore completed where it put it is right (what the racer moved away
    // is out of the restore's reach, by design: it follows no name it did not create).
    for f in files_below(&target) {
        let rel = f.strip_prefix(&target).unwrap();
        if rel.starts_with(".stop") || rel.to_string_lossy().starts_with(".moved-") {
            continue;
        }
        let got = fs::read(&f).unwrap();
        assert!(got == fs::read(src.join(rel)).unwrap(), "{} differs", f.display());
    }
}

/// `--no-privileged` leaves out setuid/setgid bits, device nodes and privileged extended
/// attributes; a default restore as root brings them back.
#[test]
fn no_privileged_leaves_out_what_grants_privileges() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(is_root(), "devices and trusted.* attributes need root");
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let tool = src.join("tool");
    fs::write(&tool, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o6755)).unwrap();
    xattr::set(&tool, "trusted.mark", b"t").unwrap();
    xattr::set(&tool, "user.note", b"u").unwrap();
    let dev = std::ffi::CString::new(src.join("null").to_str().unwrap()).unwrap();
    // SAFETY: a plain mknod of a path this test owns.
    assert_eq!(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0);
    let id = env.backup(&src);
    let spec = format!("{id}:{}", src.display());

    let full = env.path("full");
    env.run_ok(&["restore", &spec, "--target", full.to_str().unwrap()]);
    assert_eq!(fs::metadata(full.join("tool")).unwrap().mode() & 0o7777, 0o6755);
    assert!(xattr::get(full.join("tool"), "trusted.mark").unwrap().is_some());
    assert!(fs::symlink_metadata(full.join("null")).is_ok());

    let safe = env.path("safe");
    let out = env.run(&["restore", &spec, "--target", safe.to_str().unwrap(), "--no-privileged"]);
    assert_success(&out);
    assert_eq!(fs::metadata(safe.join("tool")).unwrap().mode() & 0o7777, 0o755);
    assert!(xattr::get(safe.join("tool"), "trusted.mark").unwrap().is_none());
    assert_eq!(xattr::get(safe.join("tool"), "user.note").unwrap(), Some(b"u".to_vec()));
    assert!(fs::symlink_metadata(safe.join("null")).is_err(), "device recreated");
    assert!(String::from_utf8_lossy(&out.stdout).contains("device node not recreated"));
}
