//! Deduplication: unchanged data and copies under other paths store (almost) nothing new.

mod common;

use common::*;

#[test]
fn second_backup_and_moved_copy_add_under_one_percent() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 11, 80, 8 << 20);
    let data = dir_size(&src);
    env.backup(&src);
    let after_first = env.repo_size();

    let v = env.json(&["backup", src.to_str().unwrap()]);
    let after_second = env.repo_size();
    let growth = after_second - after_first;
    assert!(growth * 100 < data, "second backup grew the repository by {growth} of {data} bytes");
    assert_eq!(v["files_new"], 0);

    // The same files under another path, read afresh (no parent): still deduplicated.
    let copy = env.path("elsewhere/copy");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let status =
        std::process::Command::new("cp").args(["-a"]).arg(&src).arg(&copy).status().unwrap();
    assert!(status.success());
    let v = env.json(&["backup", copy.to_str().unwrap()]);
    assert!(v["bytes_read"].as_u64().unwrap() >= data / 2, "the copy must really be read");
    let growth = env.repo_size() - after_second;
    assert!(growth * 100 < data, "a copy grew the repository by {growth} of {data} bytes");
}
