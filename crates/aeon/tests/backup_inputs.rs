//! What goes into a backup: excludes, lists of paths, file system boundaries, and files that
//! change or vanish while they are read.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;

/// Every path in the latest recovery point, relative to `src`.
fn stored_paths(env: &Env, src: &Path) -> BTreeSet<String> {
    let spec = format!("latest:{}", src.display());
    let v = env.json(&["ls", &spec, "--recursive"]);
    let prefix = format!("{}/", src.display());
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().strip_prefix(&prefix).unwrap().to_string())
        .collect()
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

#[test]
fn exclude_options_leave_out_what_they_name() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("scratch.tmp"), b"tmp");
    write(&src.join("deep/also.TMP"), b"upper-case tmp");
    write(&src.join("node_modules/pkg/index.js"), b"js");
    write(&src.join("photos/IMG.JPG"), b"jpg");
    write(&src.join("build/out/a.o"), b"obj");
    write(&src.join("big.iso"), &vec![0u8; 2 << 20]);
    write(&src.join("marked/.nobackup"), b"");
    write(&src.join("marked/secret.txt"), b"skip me");
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache",
    );
    write(&src.join("cache/blob.bin"), b"cached");
    write(&src.join("fakecache/CACHEDIR.TAG"), b"not the signature");
    write(&src.join("fakecache/kept.bin"), b"kept");
    let excludes = env.path("excludes.txt");
    fs::write(&excludes, "# comment\n\nbuild/out\n").unwrap();

    let out = env.run(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "*.tmp",
        "--exclude",
        "node_modules",
        "--iexclude",
        "*.jpg",
        "--exclude-file",
        excludes.to_str().unwrap(),
        "--exclude-larger-than",
        "1M",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
    ]);
    assert_success(&out);
    let got = stored_paths(&env, &src);
    let expected: BTreeSet<String> = [
        "keep.txt",
        "deep",
        "deep/also.TMP",
        "photos",
        "build",
        "marked",
        "marked/.nobackup",
        "cache",
        "cache/CACHEDIR.TAG",
        "fakecache",
        "fakecache/CACHEDIR.TAG",
        "fakecache/kept.bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn files_from_lists_the_sources() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    write(&a.join("one"), b"1");
    write(&b.join("two"), b"2");
    write(&env.path("c/three"), b"3");
    let list = env.path("list.txt");
    fs::write(&list, format!("# sources\n{}\n\n{}\n", a.display(), b.display())).unwrap();
    let v = env.json(&["backup", "--files-from", list.to_str().unwrap()]);
    assert_eq!(v["total_files"], 2);
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps[0]["paths"], serde_json::json!([a.to_str().unwrap(), b.to_str().unwrap()]));
}

#[test]
fn one_file_system_records_mount_points_but_not_their_contents() {
    assert!(is_root(), "mounting a tmpfs for this test needs root; CI runs as root");
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("local.txt"), b"here");
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "none"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    write(&mnt.join("elsewhere.txt"), b"other fs");

    env.run_ok(&["backup", src.to_str().unwrap(), "-x"]);
    assert_eq!(
        stored_paths(&env, &src),
        ["local.txt", "mnt"].iter().map(|s| s.to_string()).collect()
    );
    env.run_ok(&["backup", src.to_str().unwrap()]);
    assert!(stored_paths(&env, &src).contains("mnt/elsewhere.txt"));
}

#[test]
fn a_file_rewritten_during_its_backup_is_reported_with_exit_code_3() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("stable.txt"), b"stable");
    let growing = src.join("growing.log");
    write(&growing, &Rng::new(1).content(64 << 20));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let growing = growing.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&growing).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"another log line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let out = env.run(&["backup", src.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("growing.log: changed while being read"), "{}", stderr(&out));
    // The recovery point is complete: both files are in it.
    let got = stored_paths(&env, &src);
    assert!(got.contains("growing.log") && got.contains("stable.txt"));
    env.run_ok(&["check", "--read-data"]);
}

#[test]
fn files_deleted_during_the_backup_are_reported_and_skipped() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("stays.txt"), b"stays");
    // Many files, deleted from a second thread while the backup walks and reads them.
    let mut rng = Rng::new(9);
    for i in 0..3000 {
        write(&src.join(format!("churn/f{i:04}")), &rng.content(8 << 10));
    }
    // Start deleting (from the end) once aeon is reading the files, seen in /proc/PID/fd: a
    // file open inside `churn`, not `churn` itself, which the scan that runs while the key is
    // derived also opens (deleting then would empty the folder before the walk lists it).
    let child = env
        .cmd()
        .args(["backup", src.to_str().unwrap(), "--threads", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fd_dir = format!("/proc/{}/fd", child.id());
    let churn = src.join("churn");
    let started = std::time::Instant::now();
    'wait: while started.elapsed() < std::time::Duration::from_secs(30) {
        for fd in fs::read_dir(&fd_dir).into_iter().flatten().flatten() {
            if fs::read_link(fd.path()).is_ok_and(|t| t.parent() == Some(churn.as_path())) {
                break 'wait;
            }
        }
    }
    for i in (0..3000).rev() {
        let _ = fs::remove_file(churn.join(format!("f{i:04}")));
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("vanished during the backup"), "{err}");
    assert!(stored_paths(&env, &src).contains("stays.txt"));
    env.run_ok(&["check", "--read-data"]);
}
