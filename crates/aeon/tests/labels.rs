//! A recovery point keeps its id for life: protection, tags and the description change in
//! place (label records), and everything that names points by id keeps working.

mod common;

use common::*;

/// A repository and a source folder holding one file, `f` = "data".
fn with_source() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    (env, src)
}

fn point<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array().unwrap().iter().find(|p| p["id"] == id).expect("point listed")
}

#[test]
fn protect_tag_and_describe_keep_the_id() {
    let (env, src) = with_source();
    let first = env.backup(&src);
    let s = src.to_str().unwrap();
    env.run_ok(&["backup", s, "--tag", "nightly", "-q"]);
    let second = env.json(&["snapshots"])[1]["id"].as_str().unwrap().to_string();

    // Protect: same id, shown by `snapshots` (text and JSON).
    let changed = env.json(&["protect", &first[..10]]);
    assert_eq!(changed[0]["id"], first.as_str(), "{changed}");
    let list = env.json(&["snapshots"]);
    assert_eq!(point(&list, &first)["protected"], true, "{list}");
    assert_eq!(point(&list, &second)["protected"], false, "{list}");
    let text = env.run_ok(&["snapshots"]);
    assert!(text.contains(&format!("{}*", &first[..8])), "{text}");

    // Tags and description: added, removed, set; the id stays and other labels are kept.
    let t = env.json(&["tag", &second[..10], "--add", "reviewed,keep", "--remove", "nightly"]);
    assert_eq!(t[0]["tags"], serde_json::json!(["keep", "reviewed"]), "{t}");
    env.run_ok(&["tag", &first[..10], "--description", "before the upgrade", "--add", "x"]);
    let list = env.json(&["snapshots"]);
    assert_eq!(point(&list, &second)["tags"], serde_json::json!(["keep", "reviewed"]));
    assert_eq!(point(&list, &first)["description"], "before the upgrade");
    assert_eq!(point(&list, &first)["protected"], true, "tagging kept the protection");
    env.run_ok(&["tag", &second[..10], "--set", "release-1.4"]);
    let list = env.json(&["snapshots", "--tag", "release-1.4"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "filters see the labels: {list}");
    // One record per point: each change replaced the one before.
    let records = std::fs::read_dir(env.repo.join("labels")).unwrap().count();
    assert_eq!(records, 2, "superseded label records are removed");

    // Everything that takes an id still finds both.
    env.run_ok(&["ls", &first[..10]]);
    env.run_ok(&["restore", &second[..10], "--target", env.path("out").to_str().unwrap()]);
    assert_eq!(
        std::fs::read(env.path("out").join(s.trim_start_matches('/')).join("f")).unwrap(),
        b"data"
    );

    // forget refuses the protected point (by id and by policy), keeps its id after unprotect.
    let out = env.run(&["forget", &first[..10]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is protected"), "{}", stderr(&out));
    env.run_ok(&["forget", "--keep-last", "1"]);
    let left = env.json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 2, "the protected point stays: {left}");
    env.run_ok(&["unprotect", &first[..10]]);
    env.run_ok(&["forget", &first[..10]]);
    assert!(env.json(&["snapshots"]).as_array().unwrap().iter().all(|p| p["id"] != first.as_str()));
    // Its label record went with it.
    assert_eq!(std::fs::read_dir(env.repo.join("labels")).unwrap().count(), 1);
    env.run_ok(&["check"]);
}

#[test]
fn a_damaged_label_record_stops_forget_but_not_reading() {
    let (env, src) = with_source();
    let id = env.backup(&src);
    env.run_ok(&["protect", &id[..10]]);
    let record =
        std::fs::read_dir(env.repo.join("labels")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&record, bytes).unwrap();

    // Readers go on (with a warning naming the record); forget refuses: the point may be
    // protected, and nothing says it is not.
    let out = env.run(&["snapshots"]);
    assert_success(&out);
    assert!(stderr(&out).contains("label record"), "{}", stderr(&out));
    let out = env.run(&["forget", &id[..10]]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("label record"), "{}", stderr(&out));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    // check names it.
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("label record"), "{}", stderr(&out));
}

#[test]
fn prune_removes_the_labels_of_points_that_are_gone() {
    let (env, src) = with_source();
    let id = env.backup(&src);
    env.run_ok(&["tag", &id[..10], "--add", "x"]);
    // As a forget that stopped after removing the point and before its record would leave it.
    std::fs::remove_file(env.repo.join("snapshots").join(&id)).unwrap();
    let r = env.json(&["prune"]);
    assert_eq!(r["label_records_removed"], 1, "{r}");
    assert_eq!(std::fs::read_dir(env.repo.join("labels")).unwrap().count(), 0);
}

#[test]
fn tag_without_a_change_is_a_usage_error() {
    let env = Env::new();
    let out = env.run(&["tag", "latest"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
