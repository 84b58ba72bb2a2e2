//! Key slots end to end: list, add, change, remove; key files and post-quantum key pairs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

const CHEAP: [&str; 4] = ["--kdf-memory", "8", "--kdf-iterations", "1"];

fn slots(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["key", "list"]).as_array().expect("a list").clone()
}

fn with_password(env: &Env, password: &str, args: &[&str]) -> std::process::Output {
    env.cmd().env("AEON_PASSWORD", password).args(args).output().unwrap()
}

fn with_key_file(env: &Env, file: &std::path::Path, args: &[&str]) -> std::process::Output {
    env.cmd().env_remove("AEON_PASSWORD").env("AEON_KEY_FILE", file).args(args).output().unwrap()
}

#[test]
fn password_slots_are_listed_added_changed_and_removed() {
    let env = Env::new();
    let first = slots(&env);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["type"], "password");
    assert_eq!(first[0]["current"], true);
    assert!(first[0]["label"].as_str().unwrap().contains('@'), "{first:?}");
    assert!(first[0]["created"].as_str().is_some());
    assert!(first[0]["last_used"].as_str().is_some(), "init signed the log: {first:?}");
    let label = first[0]["label"].as_str().unwrap().to_string();
    // The label is sealed: storage does not show it.
    for f in fs::read_dir(env.repo.join("keys")).unwrap() {
        let bytes = fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(label.len()).any(|w| w == label.as_bytes()), "label in the clear");
    }

    let mut add = env.cmd();
    add.env("AEON_NEW_PASSWORD", "second one").args(["key", "add", "--label", "laptop"]);
    let out = add.args(CHEAP).output().unwrap();
    assert_success(&out);
    let two = slots(&env);
    assert_eq!(two.len(), 2);
    let added = two.iter().find(|s| s["label"] == "laptop").expect("the new slot");
    assert_eq!(added["current"], false);
    assert_eq!(added["argon2id"]["memory_kib"], 8192);
    assert_success(&with_password(&env, "second one", &["snapshots"]));

    // passwd: the slot in use is replaced.
    let pw_file = env.path("new-password");
    fs::write(&pw_file, "third one\n").unwrap();
    let out = with_password(
        &env,
        "second one",
        &[
            "key",
            "passwd",
            "--new-password-file",
            pw_file.to_str().unwrap(),
            "--kdf-memory",
            "8",
            "--kdf-iterations",
            "1",
        ],
    );
    assert_success(&out);
    let out = with_password(&env, "second one", &["snapshots"]);
    assert_eq!(out.status.code(), Some(12), "the old password still opens: {}", stderr(&out));
    assert_success(&with_password(&env, "third one", &["snapshots"]));
    let after: Vec<serde_json::Value> = slots(&env);
    assert_eq!(after.len(), 2);
    assert!(after.iter().any(|s| s["label"] == "laptop"), "passwd keeps the label: {after:?}");

    // remove: never the slot in use without --force; never the last.
    let current =
        after.iter().find(|s| s["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let other =
        after.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_string();
    let out = env.run(&["key", "remove", &current[..12]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in use") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_success(&env.run(&["key", "remove", &other[..12]]));
    let out = with_password(&env, "third one", &["snapshots"]);
    assert_eq!(out.status.code(), Some(12), "a removed slot still opens: {}", stderr(&out));
    let out = env.run(&["key", "remove", "--force", &current[..12]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("last one"), "{}", stderr(&out));
    assert_eq!(slots(&env).len(), 1);
    assert_success(&env.run(&["check"]));
}

#[test]
fn key_files_and_post_quantum_keys_open_the_repository_until_removed() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 3, 20, 50_000);
    let key_file = env.path("ci.key");
    env.run_ok(&["key", "add", "--key-file", key_file.to_str().unwrap(), "--label", "ci"]);
    assert_eq!(fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    // A key file is never replaced.
    let out = env.run(&["key", "add", "--key-file", key_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let out = with_key_file(&env, &key_file, &["--json", "backup", src.to_str().unwrap()]);
    assert_success(&out);
    let out = with_key_file(&env, &key_file, &["--json", "key", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let current = list.as_array().unwrap().iter().find(|s| s["current"] == true).unwrap().clone();
    assert_eq!(current["type"], "key-file");

    // A post-quantum key pair: the public half is added, the secret half opens.
    let public = env.path("vault.pub");
    let made = env.json(&["key", "generate", "--public", public.to_str().unwrap()]);
    let secret = env.path("vault.secret");
    assert_eq!(made["secret"], secret.to_str().unwrap());
    assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    env.run_ok(&["key", "add", "--public", public.to_str().unwrap(), "--label", "vault"]);
    let target = env.path("restored");
    let out =
        with_key_file(&env, &secret, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_success(&out);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    let pq_slot = slots(&env).into_iter().find(|s| s["type"] == "public-key").expect("pq slot");
    let size =
        fs::metadata(env.repo.join("keys").join(pq_slot["id"].as_str().unwrap())).unwrap().len();
    // 1,317 bytes and the sealed notes {"label": "vault"} (1 + 24 + 13 + 16).
    assert_eq!(size, 1317 + 54);

    // The public half opens nothing; a stranger's secret opens nothing.
    let out = with_key_file(&env, &public, &["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("public key"), "{}", stderr(&out));
    let stranger = env.path("stranger.pub");
    env.run_ok(&["key", "generate", "--public", stranger.to_str().unwrap()]);
    let out = with_key_file(&env, &env.path("stranger.secret"), &["snapshots"]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));

    // A leaked key file, removed from the repository, no longer opens it.
    let id = current["id"].as_str().unwrap();
    env.run_ok(&["key", "remove", &id[..12]]);
    let out = with_key_file(&env, &key_file, &["snapshots"]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    // Not a key file at all: a clear error.
    let junk = env.path("junk");
    fs::write(&junk, "hello\n").unwrap();
    let out = with_key_file(&env, &junk, &["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not an aeon key file"), "{}", stderr(&out));

    // A slot for a server that must never delete: whoever opens with it is append-only.
    let server_key = env.path("server.key");
    env.run_ok(&["key", "add", "--append-only", "--key-file", server_key.to_str().unwrap()]);
    let listed = slots(&env);
    let server = listed.iter().find(|s| s["type"] == "key-file").expect("the server slot");
    assert_eq!(server["append_only"], true);
    let out = with_key_file(&env, &server_key, &["backup", src.to_str().unwrap()]);
    assert_success(&out);
    let before = slots(&env).len();
    let out = with_key_file(&env, &server_key, &["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    let out = with_key_file(
        &env,
        &server_key,
        &["key", "remove", &listed[0]["id"].as_str().unwrap()[..12]],
    );
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(slots(&env).len(), before, "nothing was removed");
}
