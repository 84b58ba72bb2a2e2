//! The audit log end to end: every operation leaves a signed, linked record, and each way of
//! tampering with the log is named by `aeon audit verify` (each case fails on a tamper-blind log).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aeon_core::audit::{Record, SigningKey};
use aeon_core::backend::LocalBackend;
use aeon_core::id::Id;
use common::*;

fn log(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["audit", "log"]).as_array().expect("a list").clone()
}

fn verify(env: &Env, head: Option<&str>) -> (i32, serde_json::Value) {
    let mut args = vec!["--json", "audit", "verify"];
    if let Some(h) = head {
        args.extend(["--head", h]);
    }
    let out = env.run(&args);
    (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).expect("JSON"))
}

fn record_path(env: &Env, id: &str) -> PathBuf {
    env.repo.join("audit").join(id)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn problems(report: &serde_json::Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["record"].as_str().unwrap().into(), p["problem"].as_str().unwrap().into()))
        .collect()
}

/// Re-signs the record `id` with `key` (same body, parents as given) and stores it under its
/// new name in place of the old one; returns the new name.
fn resign(env: &Env, id: &str, parents: &[Id], key: &SigningKey) -> String {
    let repo =
        aeon_core::Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes())
            .unwrap();
    let data = fs::read(record_path(env, id)).unwrap();
    let record = Record::decode(id.parse().unwrap(), &data).unwrap();
    let body = record.open(repo.cipher()).unwrap();
    let (name, bytes) = Record::seal(parents, &body, repo.cipher(), key).unwrap();
    fs::remove_file(record_path(env, id)).unwrap();
    fs::write(record_path(env, &name.to_hex()), bytes).unwrap();
    name.to_hex()
}

/// A repository whose log holds init, backup, labels, key-add, a record by the added key,
/// check and restore.
fn logged_repo() -> (Env, Vec<serde_json::Value>) {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 5, 10, 20_000);
    let id = env.backup(&src);
    env.run_ok(&["protect", &id]);
    let out = env
        .cmd()
        .env("AEON_NEW_PASSWORD", "second")
        .args(["key", "add", "--label", "second", "--kdf-memory", "8", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert_success(&out);
    let out =
        env.cmd().env("AEON_PASSWORD", "second").args(["tag", "--add", "x", &id]).output().unwrap();
    assert_success(&out);
    env.run_ok(&["check", "--read-data"]);
    env.run_ok(&["restore", &id, "--target", env.path("r").to_str().unwrap()]);
    let entries = log(&env);
    (env, entries)
}

#[test]
fn every_operation_is_recorded_signed_and_linked() {
    let (env, entries) = logged_repo();
    let ops: Vec<&str> = entries.iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["init", "backup", "labels", "key-add", "labels", "check", "restore"]);
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["parents"], serde_json::json!([pair[0]["id"]]), "a chain");
    }
    assert!(entries[1]["added"][0].as_str().unwrap().starts_with("snapshots/"));
    assert_eq!(entries[5]["outcome"], "ok");
    assert!(entries[6]["figures"]["seconds"].as_f64().is_some());
    // The tag was signed by the second slot's key, which key-add registered.
    assert_ne!(entries[4]["signer"], entries[2]["signer"]);
    assert_eq!(entries[3]["registers"][0]["key"], entries[4]["signer"]);
    let (code, report) = verify(&env, Some(entries[2]["id"].as_str().unwrap()));
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["records_after_head"], 4);
    // Opened without a lock (for read-only storage), a check writes nothing, not even a record.
    env.run_ok(&["--no-lock", "check"]);
    assert_eq!(log(&env).len(), entries.len());
    // -v prints the head after an operation; --json carries it.
    let out = env.run(&["-v", "tag", "--add", "y", "latest"]);
    assert_success(&out);
    let head = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("audit head: "))
        .expect("head")
        .to_string();
    assert_eq!(verify(&env, None).1["heads"], serde_json::json!([head]));
    let v = env.json(&["backup", env.path("src").to_str().unwrap()]);
    assert_eq!(verify(&env, None).1["heads"], serde_json::json!([v["audit_head"]]));
    let out = env.run(&["--json", "tag", "--add", "z", "latest"]);
    let line: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    assert_eq!(verify(&env, None).1["heads"], serde_json::json!([line["audit_head"]]));
    // A refused operation is recorded with its outcome.
    let protected =
        entries[1]["added"][0].as_str().unwrap().trim_start_matches("snapshots/").to_string();
    let out = env.run(&["forget", &protected]);
    assert_ne!(out.status.code(), Some(0));
    let last = log(&env).pop().unwrap();
    assert_eq!(last["operation"], "forget");
    assert!(last["outcome"].as_str().unwrap().starts_with("failed:"), "{last}");
}

#[test]
fn tampering_with_the_log_is_named() {
    let (env, entries) = logged_repo();
    let audit = env.repo.join("audit");
    let pristine = env.path("audit-pristine");
    copy_dir(&audit, &pristine);
    let id = |i: usize| entries[i]["id"].as_str().unwrap().to_string();
    let newest = id(entries.len() - 1);
    assert_eq!(verify(&env, Some(&newest)).0, 0);

    // Removed from the middle: its follower names it.
    fs::remove_file(record_path(&env, &id(3))).unwrap();
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(
        problems(&r).iter().any(|(rec, p)| *rec == id(4) && p.contains("missing (removed)")),
        "{r}"
    );

    // Altered in place.
    copy_dir(&pristine, &audit);
    let mut bytes = fs::read(record_path(&env, &id(2))).unwrap();
    let at = bytes.len() - 80;
    bytes[at] ^= 1;
    fs::write(record_path(&env, &id(2)), &bytes).unwrap();
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(
        problems(&r).iter().any(|(rec, p)| *rec == id(2) && p.contains("no longer hash")),
        "{r}"
    );

    // Altered and stored under its new name: the signature fails, its follower misses it.
    let renamed = Id::of_stored_bytes(&bytes).to_hex();
    fs::rename(record_path(&env, &id(2)), record_path(&env, &renamed)).unwrap();
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    let p = problems(&r);
    assert!(p.iter().any(|(rec, p)| *rec == renamed && p.contains("signature")), "{r}");
    assert!(p.iter().any(|(rec, p)| *rec == id(3) && p.contains("missing")), "{r}");

    // Reordered by storage alone (links swapped, signatures kept): signatures fail.
    copy_dir(&pristine, &audit);
    let mut a = fs::read(record_path(&env, &id(5))).unwrap();
    let b = fs::read(record_path(&env, &id(6))).unwrap();
    a[10..42].copy_from_slice(&b[10..42]);
    let name = Id::of_stored_bytes(&a).to_hex();
    fs::remove_file(record_path(&env, &id(5))).unwrap();
    fs::write(record_path(&env, &name), &a).unwrap();
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(problems(&r).iter().any(|(rec, p)| *rec == name && p.contains("signature")), "{r}");

    // Reordered by a key holder, re-signed with the genuine keys: the second slot's record now
    // comes before the record that registered its key.
    copy_dir(&pristine, &audit);
    let repo =
        aeon_core::Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes())
            .unwrap();
    let first_key = SigningKey::from_bytes(&repo.keyring().signing_seed);
    let second_repo =
        aeon_core::Repository::open(Arc::new(LocalBackend::new(&env.repo)), b"second").unwrap();
    let second_key = SigningKey::from_bytes(&second_repo.keyring().signing_seed);
    let p2: Id = id(2).parse().unwrap();
    let tag_first = resign(&env, &id(4), &[p2], &second_key);
    let add_after = resign(&env, &id(3), &[tag_first.parse().unwrap()], &first_key);
    let check = resign(&env, &id(5), &[add_after.parse().unwrap()], &first_key);
    resign(&env, &id(6), &[check.parse().unwrap()], &first_key);
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(
        problems(&r)
            .iter()
            .any(|(rec, p)| *rec == tag_first && p.contains("no earlier record registered")),
        "{r}"
    );
    // And the head kept elsewhere is gone.
    let (code, r) = verify(&env, Some(&newest));
    assert_eq!(code, 4);
    assert!(
        problems(&r).iter().any(|(rec, p)| *rec == newest && p.contains("not in the log")),
        "{r}"
    );

    // Truncated: the newest record removed. The rest is consistent; the kept head shows it.
    copy_dir(&pristine, &audit);
    fs::remove_file(record_path(&env, &newest)).unwrap();
    assert_eq!(verify(&env, None).0, 0, "a truncated log is consistent in itself");
    let (code, r) = verify(&env, Some(&newest));
    assert_eq!(code, 4, "{r}");
    // A record file cut short is altered.
    copy_dir(&pristine, &audit);
    let bytes = fs::read(record_path(&env, &id(1))).unwrap();
    fs::write(record_path(&env, &id(1)), &bytes[..bytes.len() - 10]).unwrap();
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(
        problems(&r).iter().any(|(rec, p)| *rec == id(1) && p.contains("no longer hash")),
        "{r}"
    );

    // Re-signed with a key no record registered.
    copy_dir(&pristine, &audit);
    let mallory = SigningKey::from_bytes(&[7u8; 32]);
    let parents = vec![id(5).parse().unwrap()];
    let forged = resign(&env, &newest, &parents, &mallory);
    let (code, r) = verify(&env, None);
    assert_eq!(code, 4);
    assert!(
        problems(&r)
            .iter()
            .any(|(rec, p)| *rec == forged && p.contains("no earlier record registered")),
        "{r}"
    );

    // The whole log replaced by an older genuine one.
    copy_dir(&pristine, &audit);
    let older = env.path("audit-older");
    copy_dir(&audit, &older);
    for i in 3..entries.len() {
        fs::remove_file(older.join(id(i))).unwrap();
    }
    env.run_ok(&["tag", "--add", "later", "latest"]);
    let head_now = verify(&env, None).1["heads"][0].as_str().unwrap().to_string();
    copy_dir(&older, &audit);
    assert_eq!(verify(&env, None).0, 0);
    let (code, r) = verify(&env, Some(&head_now));
    assert_eq!(code, 4);
    assert!(
        problems(&r).iter().any(|(rec, p)| *rec == head_now && p.contains("not in the log")),
        "{r}"
    );
}
