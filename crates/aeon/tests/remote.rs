//! Backup, check and restore through the real binary on S3 (SeaweedFS), WebDAV (SeaweedFS) and
//! SFTP (OpenSSH), and clear, bounded failures for wrong credentials, a missing bucket and an
//! unreachable server.

mod common;
#[path = "../../aeon-core/tests/support/servers.rs"]
mod servers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn remote_env(url: &str, extra: &[(&str, &str)]) -> Env {
    let mut env = Env::empty();
    env.repo = PathBuf::from(url);
    env.extra_env = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env
}

fn s3_credentials() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", servers::S3_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", servers::S3_SECRET_KEY),
    ]
}

/// init, backup, an unchanged second backup, check --read-data, restore, forget + prune.
fn round_trip(env: &Env) {
    assert_success(&env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let src = env.path("src");
    generate_tree(&src, 42, 60, 6 << 20);
    let first = env.backup(&src);
    let v = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(v["files_new"], 0);
    assert!(v["data_added"].as_u64().unwrap() < 100_000, "{v}");
    env.run_ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.run_ok(&["restore", &first, "--target", out.to_str().unwrap()]);
    assert_trees_equal(&src, &out.join(src.strip_prefix("/").unwrap()));
    env.run_ok(&["forget", "--keep-last", "1", "--prune"]);
    env.run_ok(&["check"]);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
}

#[test]
fn s3_and_webdav_round_trips() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("aeon");
    let creds = s3_credentials();
    round_trip(&remote_env(&weed.s3_url("aeon", "repo1"), &creds));
    round_trip(&remote_env(&weed.webdav_url("repo2"), &[]));
}

#[test]
fn sftp_round_trip() {
    let sshd = servers::Sshd::start();
    let key = sshd.key.display().to_string();
    let env = remote_env(
        &sshd.url("repo"),
        &[("AEON_SFTP_KEY", &key), ("AEON_SFTP_KNOWN_HOSTS", "accept")],
    );
    round_trip(&env);
}

/// Failures are one clear line within a bounded time, never a hang.
#[test]
fn wrong_credentials_missing_bucket_and_unreachable_server() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("present");
    let timed = |env: &Env, args: &[&str]| {
        let start = Instant::now();
        let out = env.run(args);
        (out, start.elapsed())
    };

    let wrong = remote_env(
        &weed.s3_url("present", "r"),
        &[
            ("AWS_ACCESS_KEY_ID", servers::S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    );
    let (out, took) = timed(&wrong, &["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("access denied") || stderr(&out).contains("Signature"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");

    let missing = remote_env(&weed.s3_url("no-such-bucket", "r"), &s3_credentials());
    let (out, took) = timed(&missing, &["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("bucket does not exist"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = remote_env(&format!("s3:http://127.0.0.1:{port}/b/r"), &s3_credentials());
    let (out, took) = timed(&nowhere, &["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("storage error") && err.contains("hint:"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("aeon: error:")).count(), 1, "{err}");
    assert!(took < Duration::from_secs(90), "took {took:?}");
    eprintln!("unreachable endpoint: failed after {took:?}");
}

/// A volume server of a replicated SeaweedFS cluster dies in the middle of a backup: the backup
/// completes, or fails with a clear error that a rerun fixes; the repository checks clean.
#[test]
fn volume_server_killed_during_backup() {
    let mut cluster = servers::SeaweedCluster::start();
    cluster.create_bucket("ha-test");
    let env = remote_env(&cluster.s3_url("ha-test", "repo"), &s3_credentials());
    assert_success(&env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        write_random(&src.join(format!("f{i}")), 900 + i, 16 << 20);
    }
    let before = cluster.volume_bytes();
    let child = env
        .cmd()
        .args(["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once the backup has stored some of its data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.volume_bytes() < before + (40 << 20) {
        assert!(Instant::now() < deadline, "the backup stored nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.kill("vol1");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    eprintln!("backup with a volume server killed: exit {:?}: {err}", out.status.code());
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("storage error") && err.contains("hint:"), "a clear error: {err}");
        // Retryable: the next run completes.
        assert_success(&env.run(&["backup", src.to_str().unwrap()]));
    }
    env.run_ok(&["check", "--read-data"]);
    let out_dir = env.path("out");
    env.run_ok(&["restore", "latest", "--target", out_dir.to_str().unwrap()]);
    assert_trees_equal(&src, &out_dir.join(src.strip_prefix("/").unwrap()));
}

/// A repository over a local folder and S3. S3 goes away during a backup: the backup completes
/// on the local location and says what S3 lacks; `locations sync` fills the gap. A damaged pack
/// in one location is healed from the other by `check --locations --repair`.
#[test]
fn two_locations_outage_sync_and_repair() {
    let mut weed = servers::Seaweed::start();
    weed.create_bucket("mirror");
    let mut env = Env::empty();
    env.extra_env = s3_credentials().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let local = env.path("local-repo");
    let s3 = weed.s3_url("mirror", "repo");
    env.repo = local.clone();
    assert_success(&env.run(&[
        "init",
        "--location",
        &s3,
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
    ]));
    let src = env.path("src");
    generate_tree(&src, 8, 40, 4 << 20);
    env.backup(&src);
    // Opening through the S3 location finds the local one too.
    let through_s3 = Env { repo: PathBuf::from(&s3), ..Env::empty() };
    let mut through_s3 = through_s3;
    through_s3.extra_env = env.extra_env.clone();
    let st = through_s3.json(&["locations", "status"]);
    assert_eq!(st.as_array().unwrap().len(), 2, "{st}");

    // S3 disappears; the next backup completes on the local location.
    weed.kill();
    std::fs::write(src.join("during-outage.txt"), b"written while S3 was down").unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_success(&out);
    assert!(stderr(&out).contains("locations sync"), "{}", stderr(&out));
    // Repair cannot look at a location that does not answer: it says so and does not claim the
    // repository whole.
    let out = env.run(&["repair", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unreachable: Vec<&serde_json::Value> =
        r["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "location").collect();
    assert_eq!(unreachable.len(), 1, "{r}");
    assert!(unreachable[0]["name"].as_str().unwrap().starts_with("s3:"), "{r}");
    assert!(unreachable[0]["problem"].as_str().unwrap().starts_with("unreachable"), "{r}");
    weed.restart();
    let out = env.run(&["locations", "status", "--json"]);
    assert_eq!(out.status.code(), Some(3), "incomplete until synced");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s3_missing = st
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"].as_str().unwrap().starts_with("s3:"))
        .unwrap()["missing"]
        .as_array()
        .unwrap()
        .len();
    assert!(s3_missing >= 3, "pack(s), index, recovery point: {st}");
    let r = env.json(&["locations", "sync"]);
    assert_eq!(r["copied"].as_u64().unwrap() as usize, s3_missing, "{r}");
    env.run_ok(&["locations", "status"]);
    env.run_ok(&["check", "--locations", "--read-data"]);

    // Damage a pack in the local location: cross-verification finds it, --repair heals it.
    let pack = env_packs(&local)[0].clone();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pack, &bytes).unwrap();
    let out = env.run(&["check", "--locations"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    let r = env.json(&["check", "--locations", "--repair"]);
    assert_eq!(r["locations"]["healed"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["locations"]["healed"][0][0].as_str().unwrap().ends_with("local-repo"), "{r}");
    let out = env.run(&["check", "--locations", "--read-data"]);
    assert_success(&out);
    let restored = env.path("out");
    env.run_ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_trees_equal(&src, &restored.join(src.strip_prefix("/").unwrap()));
}

fn env_packs(repo: &std::path::Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in std::fs::read_dir(repo.join("data")).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            v.push(f.path());
        }
    }
    v.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    v
}

/// --limit-upload caps the upload rate.
#[test]
fn upload_bandwidth_limit() {
    let weed = servers::Seaweed::start();
    let env = remote_env(&weed.webdav_url("limited"), &[]);
    assert_success(&env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 3, 4 << 20);
    let start = Instant::now();
    env.run_ok(&["backup", src.to_str().unwrap(), "--limit-upload", "1024"]);
    let took = start.elapsed();
    // 4 MiB at 1 MiB/s: about four seconds.
    assert!(took >= Duration::from_millis(3500), "took {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// An object of the bucket, through SeaweedFS's WebDAV view of the filer (the test's hand on
/// the storage: aeon itself only speaks S3 here).
fn bucket_object(weed: &servers::Seaweed, key: &str) -> String {
    format!("http://127.0.0.1:{}/buckets/{key}", weed.webdav_port)
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-f", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Parity on S3: a pack deleted from the bucket and another overwritten with garbage are
/// rebuilt bit for bit from their groups by `aeon repair`, and the data checks clean.
#[test]
fn s3_parity_rebuilds_a_lost_and_a_damaged_pack() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("parity");
    let env = remote_env(&weed.s3_url("parity", "repo"), &s3_credentials());
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
        "--parity",
        "3+2",
    ]));
    let src = env.path("src");
    generate_tree(&src, 21, 40, 3 << 20);
    let id = env.backup(&src);
    // A group's packs, from a parity object's head (FORMAT.md 7a).
    let listing = String::from_utf8(curl(&[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &bucket_object(&weed, "parity/repo/parity/"),
    ]))
    .unwrap();
    let mut packs = Vec::new();
    for name in listing
        .split("<D:href>")
        .skip(1)
        .filter_map(|h| h.split('<').next())
        .filter_map(|h| h.rsplit('/').next())
    {
        if name.len() != 64 {
            continue;
        }
        let b = curl(&[&bucket_object(&weed, &format!("parity/repo/parity/{name}"))]);
        let members: Vec<String> = (0..b[10] as usize)
            .filter(|i| b[41 + i * 41] == 1)
            .map(|i| {
                b[41 + i * 41 + 1..41 + i * 41 + 33].iter().map(|x| format!("{x:02x}")).collect()
            })
            .collect();
        if members.len() >= 2 {
            packs = members;
            break;
        }
    }
    assert!(packs.len() >= 2, "a group of two packs or more: {listing}");
    let key = |p: &str| bucket_object(&weed, &format!("parity/repo/data/{}/{p}", &p[..2]));
    let keep: Vec<Vec<u8>> = packs[..2].iter().map(|p| curl(&[&key(p)])).collect();
    curl(&["-X", "DELETE", &key(&packs[0])]);
    curl(&["-X", "PUT", "--data-binary", "garbage", &key(&packs[1])]);
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let started = Instant::now();
    let r = env.json(&["repair"]);
    eprintln!("repair of 2 packs on S3: {:.2}s", started.elapsed().as_secs_f64());
    let healed: Vec<&serde_json::Value> =
        r["findings"].as_array().unwrap().iter().filter(|f| f["healed"] == true).collect();
    assert_eq!(healed.len(), 2, "{r}");
    for (p, want) in packs[..2].iter().zip(&keep) {
        assert_eq!(&curl(&[&key(p)]), want, "pack {p} rebuilt bit for bit");
    }
    env.run_ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.run_ok(&["restore", &id, "--target", out.to_str().unwrap()]);
    assert_trees_equal(&src, &out.join(src.strip_prefix("/").unwrap()));
}

/// A stripe 2+1 over a local folder, SeaweedFS S3 and a second SeaweedFS's WebDAV: the WebDAV
/// server stops in the middle of a backup and of a restore, and both complete; the local location,
/// wiped as if its disk were replaced, is rebuilt by `aeon repair`.
#[test]
fn stripe_over_three_locations_rides_out_a_lost_server_and_rebuilds_a_replaced_location() {
    let s3 = servers::Seaweed::start();
    s3.create_bucket("stripe");
    let mut dav = servers::Seaweed::start();
    let mut env = Env::empty();
    env.extra_env = s3_credentials().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let local = env.path("local");
    env.repo = local.clone();
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
        "--layout",
        "stripe",
        "--location",
        &s3.s3_url("stripe", "repo"),
        "--location",
        &dav.webdav_url("repo"),
    ]));
    let src = env.path("src");
    generate_tree(&src, 31, 50, 2 << 20);
    let first = env.backup(&src);
    let st = env.json(&["locations", "status"]);
    assert_eq!(st["scheme"], "2+1", "{st}");
    assert_eq!(st["redundancy_left"], 1, "{st}");
    let stored: u64 =
        st["locations"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    let data = dir_size(&src);
    eprintln!("stripe 2+1: {stored} bytes stored over 3 locations for {data} bytes of source");

    // The WebDAV server goes away in the middle of a backup: it completes on the other two.
    std::fs::create_dir_all(src.join("more")).unwrap();
    for i in 0..6 {
        write_random(&src.join("more").join(format!("m{i}")), 60 + i, 1 << 20);
    }
    let child = env
        .cmd()
        .args(["backup", "--json", src.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    dav.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "backup with one location gone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = second["snapshot_id"].as_str().unwrap().to_string();
    // And a backup made while it is away for good: its packs for that location are not written
    // (degraded writes), the parity on the others covers them.
    write_random(&src.join("more").join("while-away"), 99, 3 << 20);
    let third = env.backup(&src);

    // Back again: repair writes what it missed, and both points restore whole.
    dav.restart();
    let out = env.run(&["locations", "status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "degraded until repaired: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.run_ok(&["repair"]);
    let st = env.json(&["locations", "status"]);
    assert_eq!((st["degraded"].as_u64(), st["unprotected"].as_u64()), (Some(0), Some(0)), "{st}");
    let restored = env.path("r-third");
    env.run_ok(&["restore", &third, "--target", restored.to_str().unwrap()]);
    assert_trees_equal(&src, &restored.join(src.strip_prefix("/").unwrap()));
    let restored = env.path("r-second");
    env.run_ok(&["restore", &second, "--target", restored.to_str().unwrap()]);
    let v = env.json(&["verify", &second, "--target", restored.to_str().unwrap()]);
    assert_eq!(v["equal"], true, "{v}");
    std::fs::remove_file(src.join("more").join("while-away")).unwrap();

    // It goes away during a restore: the restore completes from the other two.
    let target = env.path("r2");
    let child = env
        .cmd()
        .args(["restore", &first, "--target", target.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    dav.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restore with one location gone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dav.restart();
    let v = env.json(&["verify", &first, "--target", target.to_str().unwrap()]);
    assert_eq!(v["equal"], true, "{v}");

    // The local disk is replaced: everything it held comes back from the others.
    let packs_before = std::fs::read_dir(local.join("data")).unwrap().count();
    std::fs::remove_dir_all(&local).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let through_s3 = Env {
        repo: PathBuf::from(s3.s3_url("stripe", "repo")),
        extra_env: env.extra_env.clone(),
        ..Env::empty()
    };
    let started = Instant::now();
    let out = through_s3.run(&["repair"]);
    if out.status.code() == Some(3) {
        // A server just restarted may fail a read; repair says so (exit 3) rather than call the
        // repository whole, and a second run does the work, as its message tells a user to.
        eprintln!("repair, first run: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(2));
        through_s3.run_ok(&["repair"]);
    } else {
        assert_success(&out);
    }
    eprintln!("rebuilding a replaced location: {:.2}s", started.elapsed().as_secs_f64());
    assert!(packs_before > 0);
    let st = env.json(&["locations", "status"]);
    assert_eq!(
        (st["complete"].clone(), st["degraded"].clone()),
        (st["groups"].clone(), 0.into()),
        "{st}"
    );
    env.run_ok(&["check", "--read-data"]);
}

/// A client with an S3 identity that cannot delete: with --append-only its backups succeed (its
/// locks refreshed by new objects, never removed) and leave a repository a full client checks,
/// restores and prunes; forget and prune fail clearly, with and without --append-only, and
/// storage keeps every object.
#[test]
fn append_only_backups_with_a_credential_that_cannot_delete() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("appendonly");
    weed.deny_delete_to_appender("appendonly");
    let url = weed.s3_url("appendonly", "repo");
    let admin = remote_env(&url, &s3_credentials());
    assert_success(&admin.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let appender = remote_env(
        &url,
        &[
            ("AWS_ACCESS_KEY_ID", servers::S3_APPEND_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", servers::S3_APPEND_SECRET_KEY),
            ("AEON_LOCK_STALE_AFTER", "60"),
        ],
    );
    let src = admin.path("src");
    generate_tree(&src, 9, 30, 2 << 20);
    let listed_before = admin.json(&["snapshots"]).as_array().unwrap().len();
    // With --append-only every backup succeeds.
    for round in 0..2 {
        fs_write_more(&src, round);
        let out = appender.run(&["backup", "--append-only", src.to_str().unwrap()]);
        assert_success(&out);
    }
    let points = admin.json(&["snapshots"]).as_array().unwrap().len();
    assert_eq!(points, listed_before + 2);
    // forget and prune fail clearly, and delete nothing.
    let out = appender.run(&["forget", "--append-only", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    let out = appender.run(&["prune", "--append-only"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    let out = appender.run(&["forget", "--keep-last", "1"]);
    assert_ne!(out.status.code(), Some(0), "the credential deleted: {}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("denied") || stderr(&out).contains("permission"),
        "{}",
        stderr(&out)
    );
    assert_eq!(admin.json(&["snapshots"]).as_array().unwrap().len(), points);
    // The full client sees a sound repository, restores the latest point exactly, and cleans up.
    admin.run_ok(&["check", "--read-data"]);
    let out = admin.path("out");
    admin.run_ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_trees_equal(&src, &out.join(src.strip_prefix("/").unwrap()));
    let log = admin.json(&["audit", "log"]);
    let backups = log.as_array().unwrap().iter().filter(|e| e["operation"] == "backup").count();
    assert!(backups >= 2, "{log}");
    assert_eq!(admin.run(&["audit", "verify"]).status.code(), Some(0));
    // The appender's lock objects are still there (it removes nothing); the full client's prune
    // works beside them.
    assert_success(&admin.run(&["prune"]));
    admin.run_ok(&["check"]);
}

fn fs_write_more(src: &std::path::Path, round: u32) {
    std::fs::write(src.join(format!("more-{round}")), vec![round as u8; 100_000]).unwrap();
}

/// A write-only client on S3, with a storage credential that cannot delete either: it backs up
/// (deduplicating its second run against its first), reads nothing; the admin restores exactly.
#[test]
fn a_write_only_client_backs_up_to_s3_and_the_full_key_restores() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("writeonly");
    weed.deny_delete_to_appender("writeonly");
    let url = weed.s3_url("writeonly", "repo");
    let admin = remote_env(&url, &s3_credentials());
    assert_success(&admin.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]));
    let public = admin.path("server.pub");
    admin.run_ok(&["key", "generate", "--public", public.to_str().unwrap()]);
    admin.run_ok(&["key", "add", "--public", public.to_str().unwrap(), "--write-only"]);
    let cache = admin.path("server-cache");
    let server = remote_env(
        &url,
        &[
            ("AWS_ACCESS_KEY_ID", servers::S3_APPEND_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", servers::S3_APPEND_SECRET_KEY),
            ("AEON_KEY_FILE", public.to_str().unwrap()),
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
        ],
    );
    let run_server =
        |args: &[&str]| server.cmd().env_remove("AEON_PASSWORD").args(args).output().unwrap();
    let src = admin.path("src");
    generate_tree(&src, 21, 30, 1 << 20);
    let out = run_server(&["--json", "backup", src.to_str().unwrap()]);
    assert_success(&out);
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(first["data_added"].as_u64().unwrap() > 1 << 20, "{first}");
    let out = run_server(&["--json", "backup", src.to_str().unwrap()]);
    assert_success(&out);
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(second["data_added"].as_u64().unwrap() < 20_000, "deduplicated: {second}");
    let target = admin.path("out");
    let out = run_server(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("write-only key"), "{}", stderr(&out));
    assert!(!target.exists());
    admin.run_ok(&["check", "--read-data"]);
    admin.run_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert_eq!(admin.json(&["snapshots"]).as_array().unwrap().len(), 2);
    assert_eq!(admin.run(&["audit", "verify"]).status.code(), Some(0));
}

/// `aeon import restic` from a restic repository on S3 (SeaweedFS): restic writes it, Aeon
/// reads it through its own S3 backend, and the imported point restores the tree.
#[test]
fn a_restic_repository_on_s3_is_imported() {
    let s3 = servers::Seaweed::start();
    s3.create_bucket("restic");
    let mut env = Env::new();
    env.extra_env = s3_credentials().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.extra_env.push(("AEON_FROM_PASSWORD".into(), "restic secret".into()));
    let src = env.path("src");
    generate_tree(&src, 77, 40, 1 << 20);
    let url = s3.s3_url("restic", "repo");
    for args in
        [vec!["init", "-q", "-r", &url], vec!["backup", "-q", "-r", &url, src.to_str().unwrap()]]
    {
        let out = std::process::Command::new("restic")
            .args(&args)
            .envs(s3_credentials())
            .env("RESTIC_PASSWORD", "restic secret")
            .env("RESTIC_CACHE_DIR", env.path("restic-cache"))
            .output()
            .expect("restic is installed by scripts/test-all.sh");
        assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report = env.json(&["import", "restic", &url]);
    assert_eq!(report["imported"], 1, "{report}");
    let id = report["points"][0]["recovery_point"].as_str().unwrap().to_string();
    let target = env.path("restored");
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    let again = env.json(&["import", "restic", &url]);
    assert_eq!(again["already_imported"], 1, "{again}");
}
