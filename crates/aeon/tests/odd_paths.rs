//! Unusual paths and damaged repositories: sources below symlinked directories, restores into
//! existing targets, damaged recovery points and index files. Each test failed before its fix.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// A repository and a source folder `src` holding one file `f` with `content`.
fn env_with_file(content: &[u8]) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), content).unwrap();
    (env, src)
}

/// `/t/link -> real`: a backup of `/t/link/docs` records the path as given, with `link` a
/// directory, so that every reader finds the files under the path the user named.
#[test]
fn a_source_below_a_symlinked_directory_is_restorable_by_the_path_given() {
    let env = Env::new();
    let docs = env.path("real/docs");
    fs::create_dir_all(&docs).unwrap();
    fs::write(docs.join("a"), b"hi\n").unwrap();
    std::os::unix::fs::symlink("real", env.path("link")).unwrap();
    let given = env.path("link/docs");
    let id = env.backup(&given);

    let spec = format!("{id}:{}", given.display());
    let ls = env.run_ok(&["ls", &spec]);
    assert!(ls.contains(&format!("{}/a", given.display())), "{ls}");
    let dumped = env.run(&["dump", &format!("{spec}/a")]);
    assert_success(&dumped);
    assert_eq!(dumped.stdout, b"hi\n");
    let found = env.run_ok(&["find", "a"]);
    assert!(found.contains(&format!("{}/a", given.display())), "{found}");

    let target = env.path("target");
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let restored = target.join(given.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"hi\n");
    let link = fs::symlink_metadata(restored.parent().unwrap()).unwrap();
    assert!(link.is_dir(), "the symlinked parent is restored as the directory it led to");
    let check = env.run(&["check", "--read-data"]);
    assert_success(&check);

    // A symlink given as a source with another source beneath it cannot be both: refused.
    let out = env.run(&["backup", env.path("link").to_str().unwrap(), given.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symbolic link"), "{}", stderr(&out));
}

/// The target directory keeps its own owner, mode and times when it existed: restoring a whole
/// point into `/` must never `chmod 000 /`.
#[test]
fn an_existing_target_keeps_its_own_metadata() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), b"x").unwrap();
    let id = env.backup(&src);
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o751)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    filetime::set_file_mtime(&target, t).unwrap();
    for extra in [&[][..], &["--overwrite", "always"], &["--include", "/**/f"]] {
        let mut args = vec!["restore", &id, "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.run_ok(&args);
        let md = fs::metadata(&target).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o751, "{extra:?}");
        // Adding entries moves its mtime to now; it is not set to the point's (1970) root.
        assert!(md.mtime() >= 1_700_000_000, "{extra:?}");
    }
    // A subdirectory restored into a new target makes the target its copy, metadata and all.
    let sub_target = env.path("new-target");
    let mtime = fs::metadata(src.join("sub")).unwrap().mtime();
    env.run_ok(&[
        "restore",
        &format!("{id}:{}/sub", src.display()),
        "--target",
        sub_target.to_str().unwrap(),
    ]);
    assert_eq!(fs::metadata(&sub_target).unwrap().mtime(), mtime);
}

/// A file whose data is damaged is not restored under any of its names.
#[test]
fn no_name_of_a_damaged_file_is_left_behind() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d1")).unwrap();
    fs::create_dir_all(src.join("d2")).unwrap();
    write_random(&src.join("d1/f"), 5, 3 << 20);
    fs::hard_link(src.join("d1/f"), src.join("d2/g")).unwrap();
    env.backup(&src);
    let pack = env.packs().into_iter().next().unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&pack, bytes).unwrap();
    let target = env.path("target");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let root = target.join(src.strip_prefix("/").unwrap());
    assert!(!root.join("d1/f").exists() && !root.join("d2/g").exists());
    assert!(stderr(&out).contains("d2/g"), "{}", stderr(&out));
}

/// `latest` never silently means an older point while the newest is damaged; naming the
/// damaged point says it is damaged (exit 4), not that nothing matches.
#[test]
fn a_damaged_newest_point_is_an_error_not_skipped() {
    let (env, src) = env_with_file(b"old");
    let older = env.backup(&src);
    fs::write(src.join("f"), b"new").unwrap();
    let newest = env.backup(&src);
    let object = env.repo.join("snapshots").join(&newest);
    let mut bytes = fs::read(&object).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&object, bytes).unwrap();

    let target = env.path("target");
    let spec = format!("latest:{}/f", src.display());
    for args in [
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
        vec!["ls", "latest"],
        vec!["dump", &spec],
        vec!["find", "f"],
        vec!["ls", &newest[..8]],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&newest), "{args:?}: {}", stderr(&out));
    }
    assert!(!target.join(src.strip_prefix("/").unwrap()).exists());
    // The older point stays usable by its id.
    let out = env.run(&["dump", &format!("{older}:{}/f", src.display())]);
    assert_success(&out);
    assert_eq!(out.stdout, b"old");
}

/// Names in `index/` that are not index files are ignored with a warning; a damaged index file
/// is reported and its packs are found through their own tables.
#[test]
fn a_stray_or_damaged_index_file_does_not_stop_restores() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("one"), 1, 200_000);
    env.backup(&src);
    write_random(&src.join("two"), 2, 200_000);
    env.backup(&src);
    fs::write(env.repo.join("index/junk"), b"not an index").unwrap();
    let out = env.run(&["ls", "latest"]);
    assert_success(&out);
    assert!(stderr(&out).contains("index/junk"), "{}", stderr(&out));

    // Damage the index file that names the second backup's pack.
    let mut files: Vec<_> = fs::read_dir(env.repo.join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap() != "junk")
        .collect();
    files.sort_by_key(|p| fs::metadata(p).unwrap().modified().unwrap());
    let newest_index = files.last().unwrap();
    let mut bytes = fs::read(newest_index).unwrap();
    bytes[40] ^= 1;
    fs::write(newest_index, bytes).unwrap();

    let target = env.path("target");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_success(&out);
    assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    // Prune would take what only the damaged file described for unused: it refuses.
    let out = env.run(&["prune"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let check = env.run(&["check"]);
    assert!(!check.status.success());
    assert!(stderr(&check).contains(newest_index.file_name().unwrap().to_str().unwrap()));
}

/// Makes `levels` nested directories `d/d/d/...` below `root`, the last holding `f`, through
/// descriptors (a path that long could not be named at once).
fn make_deep_tree(root: &std::path::Path, levels: usize) {
    use rustix::fs::{Mode, OFlags};
    fs::create_dir_all(root).unwrap();
    let mut dir =
        rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..levels {
        rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
            .unwrap();
    }
    let f =
        rustix::fs::openat(&dir, "f", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644))
            .unwrap();
    rustix::io::write(&f, b"deep").unwrap();
}

/// A tree as deep as a backup can record restores exactly; a crafted deeper one is refused
/// with one clear error by every reader, never a stack overflow.
#[test]
fn deep_trees_restore_and_deeper_crafted_ones_are_refused() {
    let env = Env::new();
    let src = env.path("s");
    make_deep_tree(&src, 1500);
    let id = env.backup(&src);
    let target = env.path("t");
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap()).join("d/".repeat(1500)).join("f");
    assert_eq!(fs::read(restored).unwrap(), b"deep");
    let found = env.run_ok(&["find", "f"]);
    assert!(found.contains("/d/d/f"), "{found}");
    assert_success(&env.run(&["check", "--read-data"]));

    let crafted = craft_deep_point(&env, aeon_core::tree::MAX_DEPTH + 10);
    let out_target = env.path("t2");
    for args in [
        vec!["restore", crafted.as_str(), "--target", out_target.to_str().unwrap()],
        vec!["ls", crafted.as_str(), "--recursive"],
        vec!["find", "nothing-by-this-name"],
        vec!["check"],
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert!(matches!(out.status.code(), Some(1) | Some(4)), "{args:?}: {:?} {err}", out.status);
        assert!(err.contains("deeper than 4096 levels"), "{args:?}: {err}");
    }
}

/// A recovery point of `levels` directories nested in each other, written with the library.
fn craft_deep_point(env: &Env, levels: usize) -> String {
    use aeon_core::tree::{Node, NodeKind, RawName, Tree};
    let mut crafter = Crafter::open(env);
    let mut below: Option<aeon_core::id::Id> = None;
    for _ in 0..levels {
        let nodes = below
            .map(|id| {
                let mut node = Node::new(RawName(b"d".to_vec()), NodeKind::Dir);
                node.mode = 0o755;
                node.subtree = Some(id);
                node
            })
            .into_iter()
            .collect();
        below = Some(crafter.tree(&Tree { nodes }));
    }
    crafter.point(below.unwrap())
}

/// No input panics: huge relative times, huge thread counts, and extreme times stored in a
/// recovery point each give an error or are handled, never exit 101 or 134.
#[test]
fn extreme_numbers_are_errors_not_panics() {
    let (env, src) = env_with_file(b"x");
    let id = env.backup(&src);
    let huge = "99999999999 hours ago";
    for args in [
        vec!["ls", "--at", huge],
        vec!["snapshots", "--since", huge],
        vec!["find", "f", "--newer", huge],
        vec!["backup", "--time", huge, src.to_str().unwrap()],
        vec!["backup", "--time", "-99999999999 hours ago", src.to_str().unwrap()],
        vec!["--threads", "100000", "check"],
        vec!["--threads", "0", "check"],
    ] {
        let out = env.run(&args);
        let code = out.status.code();
        assert!(matches!(code, Some(1) | Some(2)), "{args:?}: {code:?} {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }

    // Extreme times stored in a recovery point are restored as far as the system allows.
    let point = craft_point_with_times(&env, &[i64::MAX, i64::MIN, 0]);
    let target = env.path("t");
    for args in [
        vec!["restore", point.as_str(), "--target", target.to_str().unwrap()],
        vec!["ls", point.as_str(), "--long"],
        vec!["ls", point.as_str(), "--json"],
        vec!["find", "t*", "--newer", "2000-01-01"],
        vec!["diff", &id, point.as_str()],
        vec!["dump", &format!("{point}:/")],
    ] {
        let out = env.run(&args);
        assert!(out.status.code().is_some_and(|c| c < 100), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}

/// A recovery point with one file per mtime (named `t0`, `t1`, ...).
fn craft_point_with_times(env: &Env, times: &[i64]) -> String {
    use aeon_core::tree::{Node, NodeKind, RawName, Timestamp, Tree};
    let mut crafter = Crafter::open(env);
    let data_id = crafter.data(b"t");
    let nodes = times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let mut n = Node::new(RawName(format!("t{i}").into_bytes()), NodeKind::File);
            n.mode = 0o644;
            n.size = 1;
            n.content = vec![data_id];
            n.mtime = Timestamp(t, u32::MAX);
            n.atime = Some(Timestamp(t, 999_999_999));
            n
        })
        .collect();
    let tree = crafter.tree(&Tree { nodes });
    crafter.point(tree)
}

/// A restore into a file system that fills up stops at the first "no space left" with exit 13
/// and one message; what it restored is whole, nothing is left half-written.
#[test]
fn a_restore_into_a_full_disk_stops_with_one_message() {
    assert!(is_root(), "this test mounts a small tmpfs in its own mount namespace: run as root");
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..30 {
        write_random(&src.join(format!("f{i:02}")), i, 200_000);
    }
    let id = env.backup(&src);
    let mnt = env.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let target = mnt.join("t");
    let script = format!(
        "mount -t tmpfs -o size=2m tmpfs {0} && \"$@\"; rc=$?; cp -a {0}/t {1}; exit $rc",
        mnt.display(),
        env.path("kept").display()
    );
    let out = env
        .cmd_via(&["unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .args(["restore", &id, "--target", target.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(13), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("No space left")).count(), 1, "{err}");
    assert!(!err.contains("verification"), "{err}");
    let kept = env.path("kept").join(src.strip_prefix("/").unwrap());
    let restored: Vec<_> = fs::read_dir(&kept).unwrap().flatten().collect();
    assert!(!restored.is_empty() && restored.len() < 30, "{}", restored.len());
    for e in restored {
        assert_eq!(fs::read(e.path()).unwrap(), fs::read(src.join(e.file_name())).unwrap());
    }
}

/// A repository object that is a symbolic link or a FIFO is refused at once: no endless read
/// of /dev/zero, no reader blocked forever.
#[test]
fn special_files_in_a_repository_are_refused_without_hanging() {
    for (what, plant) in
        [("config link", 0), ("config fifo", 1), ("pack fifo", 2), ("snapshot link", 3)]
    {
        let env = Env::new();
        let src = env.path("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), b"data").unwrap();
        let id = env.backup(&src);
        let victim = match plant {
            0 | 1 => env.repo.join("config"),
            2 => env.packs().pop().unwrap(),
            _ => env.repo.join("snapshots").join(&id),
        };
        fs::remove_file(&victim).unwrap();
        if plant == 1 || plant == 2 {
            let c = std::ffi::CString::new(victim.to_str().unwrap()).unwrap();
            // SAFETY: mkfifo with a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &victim).unwrap();
        }
        let target = env.path("t");
        for args in [
            vec!["check", "--read-data"],
            vec!["restore", &id, "--target", target.to_str().unwrap()],
        ] {
            let mut child = env
                .cmd()
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{what}: {args:?} hangs");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            assert!(matches!(status.code(), Some(1) | Some(4)), "{what}: {args:?}: {status:?}");
        }
    }
}

/// `dump latest:` (and `latest:/`, `latest`) writes the whole point as a tar with relative
/// paths, which tar extracts to the same tree.
#[test]
fn dump_of_a_whole_point_is_a_tar_with_relative_paths() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), b"content").unwrap();
    std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
    env.backup(&src);
    for spec in ["latest:", "latest:/", "latest"] {
        let out = env.run(&["dump", spec]);
        assert_success(&out);
        let into = env.path(&format!("x{}", spec.len()));
        fs::create_dir_all(&into).unwrap();
        let tar = std::process::Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&into)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        tar.stdin.as_ref().unwrap().write_all(&out.stdout).unwrap();
        assert!(tar.wait_with_output().unwrap().status.success(), "{spec}");
        let root = into.join(src.strip_prefix("/").unwrap());
        assert_eq!(fs::read(root.join("sub/f")).unwrap(), b"content", "{spec}");
        assert_eq!(fs::read_link(root.join("link")).unwrap(), Path::new("sub/f"), "{spec}");
    }
}

/// A restore without root cannot give files their owners: a setuid or setgid file of another
/// user would become set-id to the restoring user, so the bits are cleared, and one summary
/// line says so.
#[test]
fn a_restore_without_root_clears_set_id_bits_it_cannot_own() {
    assert!(is_root(), "this test makes root-owned setuid files and restores as another user");
    let mut env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for name in ["suid", "sgid", "plain"] {
        fs::write(src.join(name), b"#!/bin/sh\n").unwrap();
    }
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(src.join("sgid"), fs::Permissions::from_mode(0o2755)).unwrap();
    let id = env.backup(&src);
    let nobody = 65534;
    let target = env.path("t");
    fs::create_dir_all(&target).unwrap();
    for p in [env.dir.path(), &target] {
        std::os::unix::fs::chown(p, Some(nobody), Some(nobody)).unwrap();
    }
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&env.repo)
        .status()
        .unwrap();
    assert!(status.success());
    env.run_as = Some(nobody);
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_success(&out);
    let root = target.join(src.strip_prefix("/").unwrap());
    for name in ["suid", "sgid"] {
        let md = fs::metadata(root.join(name)).unwrap();
        assert_eq!(md.uid(), nobody);
        assert_eq!(md.mode() & 0o7777, 0o755, "{name} keeps a set-id bit it cannot own");
    }
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("setuid/setgid").count(), 1, "{said}");
    assert!(said.contains("2 of them had their setuid/setgid bits cleared"), "{said}");
}

/// Files of /proc and /sys claim sizes they do not have; their contents are left out with one
/// note per file system, never stored as 0-byte files that look like data.
#[test]
fn pseudo_file_systems_are_left_out_with_a_note() {
    let env = Env::new();
    let out = env.run(&["backup", "/proc/cpuinfo", "/sys/kernel", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = v["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("a proc file system")), "{v}");
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("a sysfs file system")), "{v}");
    let listed = env.run_ok(&["ls", "latest", "--recursive"]);
    assert!(!listed.contains("cpuinfo"), "{listed}");
    assert!(listed.lines().any(|l| l.trim_end() == "/sys/kernel"), "{listed}");
    assert!(!listed.contains("/sys/kernel/"), "{listed}");

    // A link into /proc, met first on its file system, does not make that file system proc.
    let (env, src) = env_with_file(b"data");
    std::os::unix::fs::symlink("/proc/self", env.path("a-link")).unwrap();
    let link = env.path("a-link");
    let out = env.run(&["backup", link.to_str().unwrap(), src.to_str().unwrap(), "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["notes"].as_array().unwrap().is_empty(), "{v}");
    let dumped = env.run(&["dump", &format!("latest:{}/f", src.display())]);
    assert_eq!(dumped.stdout, b"data", "{}", stderr(&dumped));
}

/// `init` makes a repository only in an empty place: not beside someone's files, and not over
/// a repository whose config was deleted (a new key beside old data).
#[test]
fn init_refuses_a_folder_that_is_not_empty() {
    let env = Env::empty();
    fs::create_dir_all(&env.repo).unwrap();
    fs::write(env.repo.join("thesis.tex"), b"years of work").unwrap();
    let out = env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("thesis.tex"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&env.repo).unwrap().count(), 1, "init wrote beside the file");

    let (env, src) = env_with_file(b"x");
    env.backup(&src);
    fs::remove_file(env.repo.join("config")).unwrap();
    let keys_before = fs::read_dir(env.repo.join("keys")).unwrap().count();
    let out = env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(env.repo.join("keys")).unwrap().count(), keys_before);
    assert!(!env.repo.join("config").exists());

    // An empty folder is fine.
    let env = Env::empty();
    fs::create_dir_all(&env.repo).unwrap();
    assert_success(&env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
}

/// Messages that misled: each case gets the right exit code and one line that says what is
/// wrong and what to do.
#[test]
fn misleading_messages_are_now_right() {
    // A repository path that is a file: "not a repository" (10), not "Not a directory" (1).
    let env = Env::empty();
    fs::write(&env.repo, b"a file").unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));

    // A key slot of a newer format version: "needs a newer aeon", not "wrong password".
    let env = Env::new();
    let slot = fs::read_dir(env.repo.join("keys")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&slot).unwrap();
    bytes[4] = 200;
    fs::write(&slot, bytes).unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("newer aeon"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong password"), "{}", stderr(&out));

    // A target this user cannot write: one error line, not one per file.
    let mut env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        fs::write(src.join(format!("f{i}")), b"x").unwrap();
    }
    fs::write(src.join("unreadable"), b"secret").unwrap();
    fs::set_permissions(src.join("unreadable"), fs::Permissions::from_mode(0o000)).unwrap();
    let id = env.backup(&src);
    let target = env.path("locked-target");
    fs::create_dir_all(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&env.repo)
        .status()
        .unwrap();
    assert!(status.success());
    env.run_as = Some(65534);
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).lines().count() <= 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("ermission denied"), "{}", stderr(&out));

    // Locks this user cannot write: a hint about permissions.
    fs::set_permissions(env.repo.join("locks"), fs::Permissions::from_mode(0o555)).unwrap();
    let out = env.run(&["ls", "latest"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("locks/ folder"), "{}", stderr(&out));

    // A file the backup cannot read is a warning, and not counted as new.
    env.run_as = Some(65534);
    fs::set_permissions(env.repo.join("locks"), fs::Permissions::from_mode(0o755)).unwrap();
    let src2 = env.path("src2");
    fs::create_dir_all(&src2).unwrap();
    std::os::unix::fs::chown(&src2, Some(65534), Some(65534)).unwrap();
    fs::write(src2.join("unreadable"), b"secret").unwrap();
    fs::set_permissions(src2.join("unreadable"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = env.run(&["backup", src2.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files_new"], 0, "{v}");
}

/// `check` rejects a tree that is not well formed: a symlink carrying a subtree, duplicate and
/// unsafe names, a size that disagrees with the content; restore refuses the same entries.
#[test]
fn check_rejects_trees_that_are_not_well_formed() {
    use aeon_core::tree::{Node, NodeKind, RawName, Tree};
    let env = Env::new();
    let mut crafter = Crafter::open(&env);
    let data_id = crafter.data(b"four");
    let empty = crafter.tree(&Tree::default());
    let file = |name: &str, size: u64| {
        let mut n = Node::new(RawName(name.as_bytes().to_vec()), NodeKind::File);
        n.mode = 0o644;
        n.size = size;
        n.content = vec![data_id];
        n
    };
    let mut link = Node::new(RawName(b"link".to_vec()), NodeKind::Symlink);
    link.target = Some(RawName(b"elsewhere".to_vec()));
    link.subtree = Some(empty);
    let nodes = vec![file("a", 4), file("a", 4), file("b/c", 4), link, file("wrong-size", 9)];
    let root = crafter.tree(&Tree { nodes });
    let id = crafter.point(root);

    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "duplicate name: \"a\"",
        "unsafe name: \"b/c\"",
        "symbolic link carrying a subtree",
        "\"wrong-size\" records 9 bytes, its content holds 4",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let target = env.path("t");
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("refused duplicate name") && err.contains("refused unsafe name"), "{err}");
    assert_eq!(fs::read(target.join("a")).unwrap(), b"four");
    assert!(target.join("link").is_dir(), "a legacy link with a subtree is read as a directory");
    assert!(!target.join("wrong-size").exists(), "a file whose size is not its content's");
    assert!(err.contains("records 9 bytes"), "{err}");
}
