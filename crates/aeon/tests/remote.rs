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
