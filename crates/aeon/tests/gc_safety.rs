//! Garbage collection never loses data: prune beside running backups, kill -9 at random
//! moments, and a full disk. Every surviving recovery point must restore bit-identically.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A source tree fully determined by `seed`, plus a file shared by every tree made with the
/// same `shared` seed (so that different writers deduplicate against each other).
fn make_source(dir: &Path, seed: u64, shared: u64) {
    make_source_sized(dir, seed, shared, 24, 3 << 20);
}

fn make_source_sized(dir: &Path, seed: u64, shared: u64, files: usize, max_file: usize) {
    let _ = std::fs::remove_dir_all(dir);
    generate_tree(dir, seed, files, max_file);
    let f = dir.join("shared.bin");
    write_random(&f, 1_000_000 + shared, 2 << 20);
    filetime::set_file_mtime(&f, filetime::FileTime::from_unix_time(1_700_000_000, 0)).unwrap();
}

fn restore_and_compare(env: &Env, id: &str, source_path: &str, expected: &Path) {
    let out = env.path(&format!("restored-{}", &id[..12]));
    let _ = std::fs::remove_dir_all(&out);
    env.run_ok(&["restore", &format!("{id}:{source_path}"), "--target", out.to_str().unwrap()]);
    // Everything but directory and symlink times, which regenerating cannot reproduce.
    let strip = |p: &Path| {
        let mut t = snapshot_tree(p);
        for e in t.values_mut().filter(|e| e.kind != "file") {
            e.mtime = (0, 0);
        }
        t
    };
    let (want, got) = (strip(expected), strip(&out));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "paths of {id}");
    for (k, e) in &want {
        assert_eq!(e, &got[k], "{} in recovery point {id}", k.display());
    }
    std::fs::remove_dir_all(&out).unwrap();
}

fn snapshots(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["snapshots"]).as_array().unwrap().clone()
}

fn lock_count(env: &Env) -> usize {
    std::fs::read_dir(env.repo.join("locks"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[test]
fn prune_frees_space_repacks_and_keeps_what_is_used() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 1, 6 << 20);
    write_random(&src.join("b"), 2, 6 << 20);
    let first = env.backup(&src);
    std::fs::remove_file(src.join("a")).unwrap();
    write_random(&src.join("c"), 3, 6 << 20);
    let second = env.backup(&src);

    let dry = env.json(&["prune", "--dry-run"]);
    assert_eq!(dry["packs_deleted"], 0, "nothing is unused yet: {dry}");
    env.run_ok(&["forget", &first[..12]]);
    let before = env.repo_size();
    let dry = env.json(&["prune", "--dry-run"]);
    assert!(dry["packs_repacked"].as_u64().unwrap() >= 1, "{dry}");
    assert_eq!(env.repo_size(), before, "a dry run changes nothing");

    let r = env.json(&["prune"]);
    assert!(r["bytes_freed"].as_u64().unwrap() >= 6 << 20, "{r}");
    assert_eq!(r["packs_pending"], 0, "nobody else was working: deleted at once: {r}");
    let after = env.repo_size();
    assert!(after + (5 << 20) < before, "{before} -> {after}");
    env.run_ok(&["check", "--read-data"]);
    restore_and_compare(&env, &second, src.to_str().unwrap(), &src);
    // A second prune finds nothing to do.
    let again = env.json(&["prune"]);
    assert_eq!(
        (again["packs_deleted"].as_u64(), again["packs_repacked"].as_u64()),
        (Some(0), Some(0))
    );
}

/// A backup that started before prune condemned some data deduplicates against that data and
/// commits after prune finished: prune must have kept it, and the next prune puts it back.
#[test]
fn data_condemned_while_a_backup_runs_is_kept_for_it() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("old"), 21, 5 << 20);
    let first = env.backup(&src);
    env.run_ok(&["forget", &first[..12]]);

    // The stream backup holds its lock and has loaded the index, with the old data live.
    let mut child: Child = env
        .cmd()
        .args(["backup", "--stdin", "--stdin-filename", "again", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock_count(&env) == 0 {
        assert!(Instant::now() < deadline, "the backup never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let r = env.json(&["prune"]);
    assert!(r["packs_pending"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["waiting_for"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["waiting_for"][0].as_str().unwrap().starts_with("backup on host"), "{r}");
    env.run_ok(&["check"]);

    // Now the running backup stores the same bytes: deduplicated against condemned blobs.
    let old = std::fs::read(src.join("old")).unwrap();
    child.stdin.take().unwrap().write_all(&old).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["data_added"].as_u64().unwrap() < 100_000, "deduplicated: {v}");
    let id = v["snapshot_id"].as_str().unwrap().to_string();

    // Readable and checkable while the packs still await deletion...
    env.run_ok(&["check", "--read-data"]);
    let dump = env.cmd().args(["dump", &format!("{id}:/again")]).output().unwrap();
    assert_success(&dump);
    assert!(dump.stdout == old);
    let out_dir = env.path("restored");
    env.run_ok(&["restore", &id, "--target", out_dir.to_str().unwrap(), "--verify"]);
    assert!(std::fs::read(out_dir.join("again")).unwrap() == old);
    // ...and put back by the next prune instead of deleted.
    let r = env.json(&["prune"]);
    assert!(r["packs_restored"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["packs_pending"], 0, "{r}");
    env.run_ok(&["check", "--read-data"]);
    let dump = env.cmd().args(["dump", &format!("{id}:/again")]).output().unwrap();
    assert!(dump.stdout == old);
    // New backups deduplicate against it again.
    let v = env.json(&["backup", "--stdin", "--stdin-filename", "third"]);
    let _ = v; // stdin is empty here: the point is that the repository stays consistent
    env.run_ok(&["check"]);
}

/// Three writers with different and overlapping data back up in a loop while forget+prune
/// run in a loop; afterwards everything checks and every point restores exactly.
#[test]
fn concurrent_backups_and_prune() {
    let env = Env::new();
    let stop_at = Instant::now() + Duration::from_secs(40);
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..3u64 {
            let env = &env;
            let results = &results;
            s.spawn(move || {
                let dir = env.path(&format!("w{w}/src"));
                let mut k = 0u64;
                while Instant::now() < stop_at {
                    make_source(&dir, w * 1000 + k, k % 3);
                    let tag = format!("w{w}k{k}");
                    let out = env.run(&[
                        "backup",
                        dir.to_str().unwrap(),
                        "--host",
                        &format!("w{w}"),
                        "--tag",
                        &tag,
                        "-q",
                    ]);
                    assert_success(&out);
                    results.lock().unwrap().push((tag, (w, k)));
                    k += 1;
                }
            });
        }
        let env = &env;
        s.spawn(move || {
            let mut rounds = 0;
            while Instant::now() < stop_at {
                env.run_ok(&["forget", "--keep-last", "2", "-q"]);
                let out = env.run(&["prune", "--json"]);
                assert_success(&out);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            assert!(rounds >= 5, "prune ran {rounds} times");
        });
    });
    for (tag, wk) in results.into_inner().unwrap() {
        expected.insert(tag, wk);
    }
    assert!(expected.len() >= 9, "only {} backups ran", expected.len());
    env.run_ok(&["forget", "--keep-last", "2", "-q"]);
    env.run_ok(&["prune"]);
    env.run_ok(&["check", "--read-data"]);
    let left = snapshots(&env);
    assert_eq!(left.len(), 6, "two per writer");
    for p in &left {
        let tag = p["tags"][0].as_str().unwrap();
        let (w, k) = expected[tag];
        let want = env.path(&format!("expected-{tag}"));
        make_source(&want, w * 1000 + k, k % 3);
        restore_and_compare(
            &env,
            p["id"].as_str().unwrap(),
            p["paths"][0].as_str().unwrap(),
            &want,
        );
        std::fs::remove_dir_all(&want).unwrap();
    }
}

fn spawn_quiet(env: &Env, args: &[&str]) -> Child {
    env.cmd().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// kill -9 at random moments of backup, forget and prune; `check` after each; at the end every
/// surviving point restores bit-identically.
#[test]
fn kill_nine_at_random_moments() {
    let env = Env::new();
    let src = env.path("src");
    let mut rng = Rng::new(77);
    let mut sources: BTreeMap<String, u64> = BTreeMap::new();
    let mut killed = 0;
    for i in 0..50u64 {
        let seed = 5000 + i;
        make_source_sized(&src, seed, i % 4, 40, 8 << 20);
        let tag = format!("i{i}");
        let prune_round = i % 3 == 2;
        let mut child = if prune_round {
            spawn_quiet(&env, &["forget", "--keep-last", "4", "--prune"])
        } else {
            sources.insert(tag.clone(), seed);
            spawn_quiet(&env, &["backup", src.to_str().unwrap(), "--tag", &tag])
        };
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let out = env.run(&["check"]);
        assert_success(&out);
    }
    eprintln!("{killed} of 50 runs were killed mid-way");
    assert!(killed >= 15, "only {killed} of 50 runs were killed mid-way");
    // The next prune completes whatever the killed ones left: nothing pending, nothing orphaned.
    let r = env.json(&["prune"]);
    assert_eq!(r["packs_pending"], 0, "{r}");
    assert_eq!(lock_count(&env), 0, "stale locks were cleaned up");
    let c = env.json(&["check", "--read-data"]);
    assert_eq!(c["notes"].as_array().unwrap().len(), 0, "{c}");
    assert_eq!(c["problems"].as_array().unwrap().len(), 0, "{c}");
    let left = snapshots(&env);
    assert!(!left.is_empty());
    for p in &left {
        let tag = p["tags"][0].as_str().unwrap();
        let want = env.path("expected");
        make_source_sized(&want, sources[tag], tag[1..].parse::<u64>().unwrap() % 4, 40, 8 << 20);
        restore_and_compare(&env, p["id"].as_str().unwrap(), src.to_str().unwrap(), &want);
        std::fs::remove_dir_all(&want).unwrap();
    }
}

/// A killed backup's packs are reused by the next one: report how much was uploaded again.
#[test]
fn a_killed_backup_is_resumed_without_uploading_again() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        write_random(&src.join(format!("f{i}")), 300 + i, 16 << 20);
    }
    let total = dir_size(&src);
    let mut child = spawn_quiet(&env, &["backup", src.to_str().unwrap()]);
    // Kill once a few packs are on storage.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.packs().len() < 4 {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "backup ended too early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let complete: u64 = env
        .packs()
        .iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let partial = env.repo_size()
        - dir_size(&env.repo.join("keys"))
        - dir_size(&env.repo.join("locks"))
        - dir_size(&env.repo.join("index"))
        - complete
        - std::fs::metadata(env.repo.join("config")).unwrap().len();
    let v = env.json(&["backup", src.to_str().unwrap()]);
    let added = v["data_added_stored"].as_u64().unwrap();
    let reused = v["bytes_reused_after_interruption"].as_u64().unwrap();
    eprintln!(
        "{total} bytes of data; the killed backup completed {complete} bytes of packs (and left \
         {partial} bytes of a partial upload); the next backup reused {reused} and added {added}"
    );
    // Every complete pack is reused, none of it uploaded again; the rest is stored once.
    assert_eq!(reused, complete);
    assert!(reused + added <= total + total / 100, "stored twice: {}", reused + added - total);
    env.run_ok(&["check", "--read-data"]);
}

/// A backup into a full file system fails clearly and leaves the repository consistent; once
/// space is freed the next backup succeeds.
#[test]
fn full_disk_fails_cleanly_and_recovers() {
    assert!(is_root(), "mounting a size-limited tmpfs for this test needs root; CI runs as root");
    let env = Env::empty();
    let mnt: PathBuf = env.path("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let env = Env { repo: mnt.join("repo"), ..env };
    // Other data fills part of the file system; deleting it later is how space gets freed.
    write_random(&mnt.join("filler"), 9, 28 << 20);
    assert_success(&env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("small"), 1, 4 << 20);
    let first = env.backup(&src);
    write_random(&src.join("big"), 2, 40 << 20);

    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("free space"), "a hint: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("aeon: error:")).count(), 1, "{err}");
    env.run_ok(&["check", "--read-data"]);
    assert_eq!(snapshots(&env).len(), 1);
    restore_and_compare(&env, &first, src.to_str().unwrap(), &{
        let want = env.path("want");
        std::fs::create_dir_all(&want).unwrap();
        std::fs::copy(src.join("small"), want.join("small")).unwrap();
        let t = filetime::FileTime::from_last_modification_time(
            &std::fs::metadata(src.join("small")).unwrap(),
        );
        filetime::set_file_mtime(want.join("small"), t).unwrap();
        let mode = std::fs::metadata(src.join("small")).unwrap().permissions();
        std::fs::set_permissions(want.join("small"), mode).unwrap();
        want
    });

    // Space freed: the same backup now succeeds, reusing what the failed one stored.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let v = env.json(&["backup", src.to_str().unwrap()]);
    assert!(v["data_added"].as_u64().unwrap() < 40 << 20, "nothing stored twice: {v}");
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    env.run_ok(&["check", "--read-data"]);
    restore_and_compare(&env, &id, src.to_str().unwrap(), &src);
}
