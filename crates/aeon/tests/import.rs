//! `aeon import` against real restic 0.14 and Borg 1.2 repositories made by Debian's packages:
//! two snapshots (archives) of the torture tree with changes between them, imported, and every
//! imported point restored and compared with `restic restore` / `borg extract` of the same
//! snapshot by the fidelity test's oracle; a second run imports nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::torture::*;
use common::*;

const SOURCE_PASSWORD: &str = "source secret";

/// Runs a peer's program (restic, borg) with its password set; panics with its output if it
/// fails.
fn peer(program: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut c = Command::new(program);
    c.args(args)
        .env("RESTIC_PASSWORD", SOURCE_PASSWORD)
        .env("BORG_PASSPHRASE", SOURCE_PASSWORD)
        .env("RESTIC_CACHE_DIR", std::env::temp_dir().join("aeon-test-restic-cache"))
        .stdin(std::process::Stdio::null());
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out =
        c.output().unwrap_or_else(|e| panic!("{program} is installed by scripts/test-all.sh: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The torture tree, then the changes a second snapshot records.
fn first_tree(src: &Path) {
    build_torture_tree(src);
}

fn change_tree(src: &Path) {
    fs::write(src.join("added.txt"), b"new in the second snapshot").unwrap();
    fs::write(src.join("a/hard1"), b"rewritten, still shared by three names").unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    xattr::set(src.join("pair1"), "user.changed", b"yes").unwrap();
}

/// What the oracle compares: everything but the root directory's own times, and atimes (a
/// peer's restore and ours both set them, but reading the files to compare would not).
fn view(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut v = observe(root);
    for s in v.values_mut() {
        s.atime = (0, 0);
    }
    // Neither restic 0.14 nor Borg recreates sockets; Aeon does not either.
    v.remove(Path::new("socket"));
    v
}

fn assert_same_tree(expected: &Path, got: &Path, what: &str) {
    let (a, b) = (view(expected), view(got));
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "{what}: different sets of names");
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{what}: {} differs", k.display());
    }
}

fn restore_point(env: &Env, id: &str, target: &Path) {
    env.run_ok(&["restore", id, "--target", target.to_str().unwrap()]);
}

fn source_env(env: &Env) -> Env {
    let mut e = Env { repo: env.repo.clone(), extra_env: env.extra_env.clone(), ..Env::empty() };
    e.extra_env.push(("AEON_FROM_PASSWORD".into(), SOURCE_PASSWORD.into()));
    e
}

#[test]
fn restic_snapshots_come_across_with_every_attribute_and_a_rerun_adds_nothing() {
    let env = Env::new();
    let env = source_env(&env);
    let src = env.path("src");
    let restic = env.path("restic-repo");
    let r = restic.to_str().unwrap();
    let s = src.to_str().unwrap();
    first_tree(&src);
    peer("restic", &["init", "-q", "-r", r], None);
    peer("restic", &["backup", "-q", "-r", r, "--host", "laptop", "--tag", "daily", s], None);
    change_tree(&src);
    peer("restic", &["backup", "-q", "-r", r, "--host", "laptop", s], None);
    let listed: serde_json::Value =
        serde_json::from_str(&peer("restic", &["snapshots", "--json", "-r", r], None)).unwrap();
    let snapshots = listed.as_array().unwrap();
    assert_eq!(snapshots.len(), 2);

    let dry = env.json(&["import", "restic", r, "--dry-run"]);
    assert_eq!((dry["imported"].as_u64(), dry["points"].as_array().unwrap().len()), (Some(0), 2));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0, "a dry run writes nothing");

    let report = env.json(&["import", "restic", r]);
    assert_eq!(report["imported"], 2, "{report}");
    let again = env.json(&["import", "restic", r]);
    assert_eq!(
        (again["imported"].as_u64(), again["already_imported"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(again["blobs_added"], 0);

    let points = env.json(&["snapshots"]);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (i, snap) in snapshots.iter().enumerate() {
        let restic_id = snap["id"].as_str().unwrap();
        let p = points
            .iter()
            .find(|p| p["imported"]["id"] == restic_id)
            .unwrap_or_else(|| panic!("no point for restic snapshot {restic_id}: {points:?}"));
        assert_eq!(p["original"], restic_id);
        assert_eq!(p["host"], "laptop");
        assert_eq!(p["paths"], serde_json::json!([s]));
        let (ours, theirs) = (
            chrono::DateTime::parse_from_rfc3339(p["time"].as_str().unwrap()).unwrap(),
            chrono::DateTime::parse_from_rfc3339(snap["time"].as_str().unwrap()).unwrap(),
        );
        assert_eq!(ours, theirs, "the point keeps the snapshot's time");
        if i == 0 {
            assert_eq!(p["tags"], serde_json::json!(["daily"]));
        } else {
            let first = points.iter().find(|q| q["imported"]["id"] == snapshots[0]["id"]).unwrap();
            assert_eq!(p["parent"], first["id"], "the parent relation comes across");
        }
        let theirs = env.path(&format!("restic-restore-{i}"));
        peer(
            "restic",
            &["restore", "-q", "-r", r, restic_id, "--target", theirs.to_str().unwrap()],
            None,
        );
        let ours = env.path(&format!("aeon-restore-{i}"));
        restore_point(&env, p["id"].as_str().unwrap(), &ours);
        let inner = src.strip_prefix("/").unwrap();
        assert_same_tree(&theirs.join(inner), &ours.join(inner), &format!("restic snapshot {i}"));
    }
    // The second snapshot is the tree as it is now, but for what restic 0.14 does not record:
    // xattrs of symlinks.
    let latest = env.path("aeon-restore-1").join(src.strip_prefix("/").unwrap());
    let mut expected = view(&src);
    expected.get_mut(Path::new("link-abs")).unwrap().xattrs.clear();
    assert_eq!(expected.keys().collect::<Vec<_>>(), view(&latest).keys().collect::<Vec<_>>());
    for (k, v) in view(&latest) {
        assert_eq!(expected[&k], v, "the source: {} differs", k.display());
    }
}

#[test]
fn borg_archives_come_across_with_every_attribute_and_a_rerun_adds_nothing() {
    let env = Env::new();
    let env = source_env(&env);
    let src = env.path("src");
    let borg = env.path("borg-repo");
    let b = borg.to_str().unwrap();
    let s = src.to_str().unwrap();
    first_tree(&src);
    peer("borg", &["init", "-e", "repokey", b], None);
    peer("borg", &["create", &format!("{b}::monday"), s], None);
    change_tree(&src);
    peer("borg", &["create", "--comment", "after the change", &format!("{b}::tuesday"), s], None);

    let one = env.json(&["import", "borg", &format!("{b}::monday"), "--dry-run"]);
    assert_eq!(one["points"].as_array().unwrap().len(), 1, "{one}");
    let report = env.json(&["import", "borg", b]);
    assert_eq!(report["imported"], 2, "{report}");
    let again = env.json(&["import", "borg", b]);
    assert_eq!(
        (again["imported"].as_u64(), again["already_imported"].as_u64()),
        (Some(0), Some(2))
    );

    let points = env.json(&["snapshots"]);
    let points = points.as_array().unwrap();
    for name in ["monday", "tuesday"] {
        let p = points
            .iter()
            .find(|p| p["imported"]["name"] == name)
            .unwrap_or_else(|| panic!("no point for archive {name}: {points:?}"));
        assert_eq!(p["tags"], serde_json::json!([format!("borg:{name}")]));
        assert_eq!(p["paths"], serde_json::json!([s]));
        let theirs = env.path(&format!("borg-extract-{name}"));
        fs::create_dir_all(&theirs).unwrap();
        peer("borg", &["extract", &format!("{b}::{name}")], Some(&theirs));
        let ours = env.path(&format!("aeon-restore-{name}"));
        restore_point(&env, p["id"].as_str().unwrap(), &ours);
        let inner = src.strip_prefix("/").unwrap();
        assert_same_tree(&theirs.join(inner), &ours.join(inner), &format!("Borg archive {name}"));
    }
    let tuesday = points.iter().find(|p| p["imported"]["name"] == "tuesday").unwrap();
    assert_eq!(tuesday["description"], "after the change");
}

#[test]
fn a_wrong_password_and_a_folder_that_is_no_restic_repository_are_named() {
    let env = Env::new();
    let restic = env.path("restic-repo");
    let r = restic.to_str().unwrap();
    peer("restic", &["init", "-q", "-r", r], None);
    let mut wrong =
        Env { repo: env.repo.clone(), extra_env: env.extra_env.clone(), ..Env::empty() };
    wrong.extra_env.push(("AEON_FROM_PASSWORD".into(), "not it".into()));
    let out = wrong.run(&["import", "restic", r]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("wrong password for the restic repository"), "{}", stderr(&out));
    let nothing = env.path("nothing");
    fs::create_dir_all(&nothing).unwrap();
    let out = source_env(&env).run(&["import", "restic", nothing.to_str().unwrap()]);
    assert!(stderr(&out).contains("no restic repository"), "{}", stderr(&out));
    let out = source_env(&env).run(&["import", "borg", nothing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("Borg repository"), "{}", stderr(&out));
}
