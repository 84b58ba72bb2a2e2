//! A repository written by each format version, committed to the project (made by
//! `fixtures/make-fixture.sh`), must keep opening, checking and restoring byte for byte in every
//! later version, and a backup into it must keep writing its own version.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const FIXTURE_PASSWORD: &str = "fixture-password";

/// Copies the fixture of a format version so that tests never modify the committed files.
fn fixture_env(version: u8) -> Env {
    let env = Env::empty();
    let fixture = format!("{FIXTURES}/repo-v{version}");
    let status =
        std::process::Command::new("cp").arg("-a").arg(fixture).arg(&env.repo).status().unwrap();
    assert!(status.success());
    // As a git checkout has it: without empty folders (locks/, audit/, most of data/).
    let status = std::process::Command::new("find")
        .arg(&env.repo)
        .args(["-mindepth", "1", "-type", "d", "-empty", "-delete"])
        .status()
        .unwrap();
    assert!(status.success());
    env
}

fn run(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd().env("AEON_PASSWORD", FIXTURE_PASSWORD).args(args).output().unwrap()
}

#[test]
fn version_one_repository_opens_checks_and_restores() {
    fixture_opens_checks_and_restores(1);
}

#[test]
fn version_two_repository_opens_checks_and_restores() {
    fixture_opens_checks_and_restores(2);
}

#[test]
fn version_three_repository_opens_checks_and_restores() {
    fixture_opens_checks_and_restores(3);
}

fn fixture_opens_checks_and_restores(version: u8) {
    let env = fixture_env(version);
    let out = run(&env, &["snapshots", "--json"]);
    assert_success(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &list[0];
    assert_eq!(s["host"], "fixture-host");
    assert_eq!(s["tags"], serde_json::json!([format!("v{version}")]));
    assert_eq!(s["paths"], serde_json::json!(["/tmp/fixture-src/docs"]));
    assert_eq!(s["time"], "2026-01-02T03:04:05+00:00");

    assert_success(&run(&env, &["check", "--read-data"]));

    let target = env.path("out");
    let out = run(
        &env,
        &["restore", "latest:/tmp/fixture-src/docs", "--target", target.to_str().unwrap()],
    );
    assert_success(&out);
    assert_eq!(
        std::fs::read_to_string(target.join("readme.txt")).unwrap(),
        format!("Aeon format v{version} fixture\n")
    );
    let pattern: Vec<u8> = (0..700_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    assert_eq!(std::fs::read(target.join("pattern.bin")).unwrap(), pattern);
    assert_eq!(std::fs::read_link(target.join("link")).unwrap(), Path::new("readme.txt"));
    assert!(target.join("empty").is_dir());
    let md = std::fs::metadata(target.join("readme.txt")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mtime_nsec(), 123_456_789);

    // A new backup into the old repository works and the result still checks.
    let src = env.path("src");
    generate_tree(&src, 21, 5, 10_000);
    let out = run(&env, &["backup", src.to_str().unwrap()]);
    assert_success(&out);
    assert_success(&run(&env, &["check", "--read-data"]));

    // It keeps its version: older clients sharing it can still read all of it.
    let out = run(&env, &["cat", "config"]);
    assert_success(&out);
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["format_version"], version);
    for dir in ["data", "index", "snapshots"] {
        for entry in walkdir(&env.repo.join(dir)) {
            let bytes = std::fs::read(&entry).unwrap();
            assert_eq!(bytes[4], version, "{} is of another format version", entry.display());
        }
    }
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}
