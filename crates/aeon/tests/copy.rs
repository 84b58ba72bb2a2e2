//! `aeon copy`: recovery points move between repositories with different keys and settings,
//! deduplicated against what the target has, and a rerun copies nothing twice.

mod common;

use common::*;

#[test]
fn copy_between_repositories_with_different_keys_and_settings() {
    let source = Env::new();
    let src = source.path("src");
    generate_tree(&src, 5, 50, 4 << 20);
    let first = source.backup(&src);
    std::fs::write(src.join("added.txt"), b"one more file").unwrap();
    let second = source.backup(&src);

    let mut target = Env::empty();
    target.extra_env = vec![
        ("AEON_PASSWORD".into(), "another password".into()),
        ("AEON_FROM_PASSWORD".into(), PASSWORD.into()),
        ("AEON_FROM_REPOSITORY".into(), source.repo.display().to_string()),
    ];
    assert_success(&target.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--compression",
        "lz4",
        "--pack-size",
        "4",
    ]));
    let r = target.json(&["copy", &first[..10]]);
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "{r}");
    let after_one = target.repo_size();
    let r = target.json(&["copy"]);
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "only the second is new: {r}");
    assert_eq!(r["already_present"].as_array().unwrap().len(), 1, "{r}");
    let growth = target.repo_size() - after_one;
    assert!(growth < 200_000, "the second point shares nearly everything: grew {growth}");

    // A rerun copies nothing and stores nothing.
    let before = target.repo_size();
    let r = target.json(&["copy"]);
    assert_eq!(r["copied"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(target.repo_size(), before);

    target.run_ok(&["check", "--read-data"]);
    let points = target.json(&["snapshots"]);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 2);
    let copied_second =
        points.iter().max_by_key(|p| p["time"].as_str().unwrap().to_string()).unwrap();
    let out = target.path("out");
    target.run_ok(&[
        "restore",
        copied_second["id"].as_str().unwrap(),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_trees_equal(&src, &out.join(src.strip_prefix("/").unwrap()));
    // The copy keeps host, paths and time, and records where it came from.
    let cat = target.json(&["cat", "snapshot", copied_second["id"].as_str().unwrap()]);
    assert_eq!(cat["original"].as_str(), Some(second.as_str()), "{cat}");

    // A wrong source password is a clear error.
    let mut wrong = Env::empty();
    wrong.repo = target.repo.clone();
    wrong.extra_env = vec![
        ("AEON_PASSWORD".into(), "another password".into()),
        ("AEON_FROM_PASSWORD".into(), "nope".into()),
        ("AEON_FROM_REPOSITORY".into(), source.repo.display().to_string()),
    ];
    let out = wrong.run(&["copy"]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
}
