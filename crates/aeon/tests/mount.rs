//! `aeon mount` through the kernel (FUSE; the suite runs as root): the torture tree seen
//! through the mount is the source, by the same oracle as restores (lstat, xattrs, hard-link
//! groups, content) and by rsync; the view's folders and links; a new point appears without
//! remounting; a damaged blob makes its file fail with EIO and nothing else; Ctrl-C and
//! `fusermount3 -u` unmount cleanly.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::torture::*;
use common::*;

fn mounted(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&*dir))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    fn start(env: &Env, dir: &Path) -> Mount {
        fs::create_dir_all(dir).unwrap();
        let child = env.cmd().arg("mount").arg(dir).stderr(Stdio::piped()).spawn().unwrap();
        let mut m = Mount { child: Some(child), dir: dir.to_path_buf() };
        let started = Instant::now();
        while !mounted(dir) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!("aeon mount exited ({status}): {}", String::from_utf8_lossy(&out.stderr));
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// Ends the mount with `signal` (or `fusermount3 -u` with `None`); its exit code and stderr.
    fn stop(mut self, signal: Option<i32>) -> (Option<i32>, String) {
        let child = self.child.take().unwrap();
        match signal {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            Some(s) => unsafe {
                libc::kill(child.id() as libc::pid_t, s);
            },
            None => {
                let out = std::process::Command::new("fusermount3")
                    .arg("-u")
                    .arg(&self.dir)
                    .output()
                    .expect("fusermount3 is installed by scripts/test-all.sh (fuse3)");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(!mounted(&self.dir), "still mounted");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("fusermount3").arg("-uz").arg(&self.dir).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn require_fuse() {
    assert!(is_root(), "FUSE tests need root (/dev/fuse is 0600); the suite runs as root");
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing: FUSE cannot run here");
}

#[test]
fn the_mount_shows_every_point_exactly_and_new_ones_without_remounting() {
    require_fuse();
    let env = Env::new();
    let src = env.path("src");
    build_torture_tree(&src);
    let first = env.json(&["backup", src.to_str().unwrap(), "--tag", "nightly"]);
    let first = first["snapshot_id"].as_str().unwrap().to_string();
    let mnt = env.path("mnt");
    let mount = Mount::start(&env, &mnt);

    // The view's folders and links.
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mnt), ["at", "hosts", "snapshots", "tags"]);
    let points = names(&mnt.join("snapshots"));
    assert_eq!(points.len(), 2, "{points:?}");
    assert!(points[0].ends_with(&format!("_{}", &first[..8])), "{points:?}");
    assert_eq!(fs::read_link(mnt.join("snapshots/latest")).unwrap(), Path::new(&points[0]));
    let host = names(&mnt.join("hosts")).pop().unwrap();
    assert_eq!(
        fs::read_link(mnt.join("hosts").join(&host).join("latest")).unwrap(),
        Path::new(&points[0])
    );
    assert_eq!(names(&mnt.join("tags")), ["nightly"]);
    assert_eq!(names(&mnt.join("tags/nightly")), [points[0].clone(), "latest".into()]);
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        fs::read_link(mnt.join("at").join(&today)).unwrap(),
        Path::new("../snapshots").join(&points[0])
    );
    // Any later time names the same point; a time before it, none.
    assert!(mnt.join("at/2999-01-01T00:00").join(src.strip_prefix("/").unwrap()).is_dir());
    assert!(fs::symlink_metadata(mnt.join("at/2000-01-01")).is_err());

    // The point's tree is the source: every type, mode, owner, time, xattr, hard link, byte.
    let seen = mnt.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let a = observe(&src);
    let b = observe(&seen);
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different sets of names");
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{} differs", k.display());
    }
    rsync_agrees(&src, &seen, &[]);

    // A new point appears while mounted.
    fs::write(src.join("written later.txt"), b"after the mount").unwrap();
    let second = env.backup(&src);
    wait_until("the new point is listed", Duration::from_secs(30), || {
        names(&mnt.join("snapshots")).iter().any(|n| n.ends_with(&second[..8]))
    });
    let later =
        mnt.join("snapshots/latest").join(src.strip_prefix("/").unwrap()).join("written later.txt");
    wait_until("latest names it", Duration::from_secs(30), || later.exists());
    assert_eq!(fs::read(&later).unwrap(), b"after the mount");

    let (code, log) = mount.stop(Some(libc::SIGINT));
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_damaged_blob_fails_its_file_with_eio_and_nothing_else() {
    require_fuse();
    let env = Env::new();
    let safe = env.path("safe");
    let victim = env.path("victim");
    fs::create_dir_all(&safe).unwrap();
    fs::create_dir_all(&victim).unwrap();
    let mut rng = Rng::new(7);
    let keep = rng.content(3 << 20);
    fs::write(safe.join("keep.bin"), &keep).unwrap();
    env.backup(&safe);
    let before: Vec<PathBuf> = env.packs();
    fs::write(victim.join("hit.bin"), rng.content(3 << 20)).unwrap();
    fs::write(victim.join("small.txt"), b"in the same point, another pack? no: the same").unwrap();
    env.backup(&victim);
    let pack = env
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&pack, &bytes).unwrap();

    let mnt = env.path("mnt");
    let mount = Mount::start(&env, &mnt);
    // Both points were taken within a second: find the victim's by its path.
    let points: Vec<PathBuf> = fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("latest"))
        .collect();
    let inside = |p: &PathBuf, dir: &Path| p.join(dir.strip_prefix("/").unwrap());
    let second = points.iter().find(|p| inside(p, &victim).exists()).unwrap();
    let first = points.iter().find(|p| inside(p, &safe).exists()).unwrap();
    let damaged = inside(second, &victim).join("hit.bin");
    // Listing and stat still work; reading the damaged file fails with EIO.
    assert_eq!(fs::metadata(&damaged).unwrap().len(), 3 << 20);
    let err = fs::read(&damaged).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The other point's file reads back whole.
    let kept = inside(first, &safe).join("keep.bin");
    assert!(fs::read(&kept).unwrap() == keep, "the undamaged file reads back exactly");
    // A mount in use is not torn down by Ctrl-C: it says why and stays until it is free.
    let mut user = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(inside(first, &safe))
        .spawn()
        .unwrap();
    let pid = mount.child.as_ref().unwrap().id() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(800));
    assert!(mounted(&mnt), "a busy mount was torn down");
    user.kill().unwrap();
    user.wait().unwrap();
    let (code, log) = mount.stop(Some(libc::SIGINT));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("hit.bin"), "the damaged file is named: {log}");
    assert!(log.contains("still uses it"), "{log}");
}
