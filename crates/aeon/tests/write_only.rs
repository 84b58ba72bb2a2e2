//! Write-only clients end to end: a client holding only a public file adds recovery points,
//! deduplicated against its own, and can read, delete or replace nothing; full keys read them.

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// Runs `aeon` as the write-only client: no password, the public file as its key, a cache of
/// its own (where it records what it wrote).
fn as_writer(env: &Env, public: &Path, args: &[&str]) -> std::process::Output {
    env.cmd()
        .env_remove("AEON_PASSWORD")
        .env("AEON_KEY_FILE", public)
        .env("XDG_CACHE_HOME", env.path("writer-cache"))
        .args(args)
        .output()
        .unwrap()
}

fn writer_json(env: &Env, public: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = as_writer(env, public, &all);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A public key made and added as a write-only slot.
fn add_writer(env: &Env) -> std::path::PathBuf {
    let public = env.path("server.pub");
    env.run_ok(&["key", "generate", "--public", public.to_str().unwrap()]);
    let added = env.json(&["key", "add", "--public", public.to_str().unwrap(), "--write-only"]);
    assert_eq!(added["type"], "write-only");
    public
}

#[test]
fn a_write_only_client_backs_up_and_reads_nothing_and_full_keys_read_it() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 11, 30, 200_000);
    let public = add_writer(&env);
    let listed = env.json(&["key", "list"]);
    let slot = listed.as_array().unwrap().iter().find(|s| s["access"] == "write-only");
    assert!(slot.is_some(), "{listed}");

    let first = writer_json(&env, &public, &["backup", src.to_str().unwrap()]);
    assert!(first["data_added"].as_u64().unwrap() > 1_000_000, "{first}");
    // Deduplicated against what it wrote itself (its local record): no file data again, only
    // the trees of the folders above `src`, whose times changed.
    let second = writer_json(&env, &public, &["backup", src.to_str().unwrap()]);
    assert!(second["data_added"].as_u64().unwrap() < 10_000, "{second}");
    assert_eq!(second["parent"], serde_json::Value::Null, "it cannot read a parent");

    // Its packs are sealed to its run (key mode 1, an envelope after the mode byte).
    for pack in env.packs() {
        let head = fs::read(&pack).unwrap();
        assert_eq!(head[8], 1, "{}: key mode", pack.display());
    }

    // It reads nothing: each refusal is one clear line and exit code 1.
    let id = first["snapshot_id"].as_str().unwrap().to_string();
    let target = env.path("out");
    let dump_spec = format!("{id}:{}", src.join("f0").display());
    for args in [
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
        vec!["restore", &id, "--target", target.to_str().unwrap()],
        vec!["ls", &id],
        vec!["cat", "snapshot", &id],
        vec!["cat", "config"],
        vec!["dump", &dump_spec],
        vec!["find", "f0"],
        vec!["snapshots"],
        vec!["check"],
        vec!["key", "list"],
    ] {
        let out = as_writer(&env, &public, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("write-only key"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!target.exists(), "{args:?} wrote something");
    }
    // And it deletes nothing.
    for args in [vec!["forget", "--keep-last", "1"], vec!["prune"], vec!["unlock", "--remove-all"]]
    {
        let out = as_writer(&env, &public, &args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
    }
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 2);

    // A full key reads everything it wrote, exactly, and the log says who did what.
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    let checked = env.run(&["check", "--read-data"]);
    assert_success(&checked);
    let verified = env.run(&["audit", "verify"]);
    assert_success(&verified);
    let log = env.run_ok(&["audit", "log"]);
    assert_eq!(log.lines().filter(|l| l.contains("backup")).count(), 2, "{log}");

    // A full key forgets and prunes its points; the client then stores again what is gone and
    // never refers to a pruned pack.
    let all: Vec<String> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for s in &all {
        env.run_ok(&["forget", s]);
    }
    env.run_ok(&["prune"]);
    assert!(env.packs().is_empty(), "every pack of the forgotten points went");
    fs::write(src.join("added later"), b"after the prune").unwrap();
    let third = writer_json(&env, &public, &["backup", src.to_str().unwrap()]);
    assert!(third["data_added"].as_u64().unwrap() > 1_000_000, "stored again: {third}");
    let again = env.path("again");
    env.run_ok(&["restore", "latest", "--target", again.to_str().unwrap()]);
    assert_trees_equal(&src, &again.join(src.strip_prefix("/").unwrap()));
    assert_success(&env.run(&["check", "--read-data"]));

    // Removing the slot ends the client: its file no longer opens the repository, while what
    // it wrote stays readable (the slot is retired, not deleted).
    let slot_id = slot.unwrap()["id"].as_str().unwrap().to_string();
    env.run_ok(&["key", "remove", &slot_id[..12]]);
    let out = as_writer(&env, &public, &["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no write-only key slot"), "{}", stderr(&out));
    let kept = env.path("kept");
    env.run_ok(&["restore", "latest", "--target", kept.to_str().unwrap()]);
    assert_trees_equal(&src, &kept.join(src.strip_prefix("/").unwrap()));
    let listed = env.json(&["key", "list"]);
    let retired = listed.as_array().unwrap().iter().find(|s| s["retired"] == true).unwrap();
    // Removing the retired slot would lose the client's points: refused without --force.
    let out = env.run(&["key", "remove", &retired["id"].as_str().unwrap()[..12]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unreadable"), "{}", stderr(&out));
}

/// A write-only slot cannot be made where its client could not keep the repository's promises.
#[test]
fn a_repository_with_parity_refuses_a_write_only_slot() {
    let env = Env::empty();
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--parity",
        "2+1",
    ]));
    let public = env.path("server.pub");
    env.run_ok(&["key", "generate", "--public", public.to_str().unwrap()]);
    let out = env.run(&["key", "add", "--public", public.to_str().unwrap(), "--write-only"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("parity"), "{}", stderr(&out));
}
