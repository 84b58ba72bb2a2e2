//! End-to-end: back up generated trees through the real binary and restore them exactly.

mod common;

use common::*;

#[test]
fn round_trip_is_exact_for_content_and_metadata() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 1, 120, 24 << 20);
    let id = env.backup(&src);

    // Whole recovery point: sources sit at their absolute path below the target.
    let out = env.path("out-full");
    env.run_ok(&["restore", &id, "--target", out.to_str().unwrap()]);
    let restored_src = out.join(src.strip_prefix("/").unwrap());
    assert_trees_equal(&src, &restored_src);

    // ID:PATH restores that directory's contents into the target.
    let out2 = env.path("out-sub");
    let spec = format!("latest:{}", src.display());
    env.run_ok(&["restore", &spec, "--target", out2.to_str().unwrap()]);
    assert_trees_equal(&src, &out2);
}

#[test]
fn subpath_single_file_latest_and_abbreviated_ids() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 2, 30, 3 << 20);
    let first = env.backup(&src);
    std::fs::write(src.join("added.txt"), b"second generation").unwrap();
    let second = env.backup(&src);
    assert_ne!(first, second);

    // A single file by an abbreviated id.
    let out = env.path("one");
    let spec = format!("{}:{}/added.txt", &second[..6], src.display());
    env.run_ok(&["restore", &spec, "--target", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out.join("added.txt")).unwrap(), b"second generation");

    // The first recovery point does not have it.
    let spec = format!("{}:{}/added.txt", &first[..8], src.display());
    let o = env.run(&["restore", &spec, "--target", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));

    // latest resolves to the newer one; a one-digit prefix of nothing fails clearly.
    let v = env.json(&["cat", "snapshot", "latest"]);
    assert_eq!(v["id"], second);
    let bad = env.run(&["ls", "zz"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("not a recovery point id"), "{}", stderr(&bad));
}

#[test]
fn snapshots_and_ls_json_carry_the_documented_fields() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 3, 10, 100_000);
    let v = env.json(&["backup", src.to_str().unwrap(), "--host", "web-01", "--tag", "nightly"]);
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(v["files_new"].as_u64().unwrap() as usize, 10);

    let list = env.json(&["snapshots"]);
    let s = &list.as_array().unwrap()[0];
    assert_eq!(s["id"], id);
    assert_eq!(s["short_id"], &id[..8]);
    assert_eq!(s["host"], "web-01");
    assert_eq!(s["tags"], serde_json::json!(["nightly"]));
    assert_eq!(s["paths"], serde_json::json!([src.to_str().unwrap()]));
    assert!(s["parent"].is_null());
    chrono_like(s["time"].as_str().unwrap());

    // The second backup of the same host and paths finds the first as its parent.
    let v2 = env.json(&["backup", src.to_str().unwrap(), "--host", "web-01"]);
    assert_eq!(v2["parent"], id);
    assert_eq!(v2["files_unchanged"].as_u64().unwrap(), 10);
    assert_eq!(v2["bytes_read"].as_u64().unwrap(), 0);

    let spec = format!("latest:{}", src.display());
    let entries = env.json(&["ls", &spec]);
    let names: Vec<&str> =
        entries.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"rel-link") && names.contains(&"empty"), "{names:?}");
    let link = entries.as_array().unwrap().iter().find(|e| e["name"] == "rel-link").unwrap();
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["target"], "file0.dat");

    let recursive = env.json(&["ls", &spec, "--recursive"]);
    assert!(recursive.as_array().unwrap().len() > entries.as_array().unwrap().len());
    let text = env.run_ok(&["ls", "-l", &spec]);
    assert!(text.contains("lrwxrwxrwx") && text.contains("-> file0.dat"), "{text}");
}

fn chrono_like(t: &str) {
    assert!(t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T'), "not RFC 3339: {t}");
}

#[test]
fn cat_prints_decrypted_objects_as_json() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 4, 5, 10_000);
    let id = env.backup(&src);
    let config = env.json(&["cat", "config"]);
    assert_eq!(config["format_version"], 3);
    assert_eq!(config["settings"]["chunker"]["avg_size"], 512 * 1024);
    assert_eq!(config["settings"]["compression"], "zstd:3");
    let snap = env.json(&["cat", "snapshot", &id[..10]]);
    let tree_id = snap["tree"].as_str().unwrap().to_string();
    let tree = env.json(&["cat", "tree", &tree_id]);
    assert_eq!(tree["id"], tree_id);
    assert_eq!(tree["nodes"][0]["type"], "dir");
    let index = env.json(&["cat", "index"]);
    let blobs: usize = index
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["packs"].as_array().unwrap())
        .map(|p| p["blobs"].as_array().unwrap().len())
        .sum();
    assert!(blobs >= 5);
    let keys = env.json(&["cat", "keys"]);
    assert_eq!(keys[0]["type"], "password");
}

#[test]
fn compression_choices_round_trip() {
    for compression in ["none", "lz4", "zstd:19"] {
        let env = Env::new();
        let src = env.path("src");
        generate_tree(&src, 5, 12, 1 << 20);
        let v = env.json(&["backup", src.to_str().unwrap(), "--compression", compression]);
        assert_eq!(v["errors"], 0);
        let out = env.path("out");
        let spec = format!("latest:{}", src.display());
        env.run_ok(&["restore", &spec, "--target", out.to_str().unwrap()]);
        assert_trees_equal(&src, &out);
        env.run_ok(&["check", "--read-data"]);
    }
}

#[test]
fn several_sources_share_one_recovery_point() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b/inner");
    generate_tree(&a, 6, 5, 10_000);
    generate_tree(&b, 7, 5, 10_000);
    let v = env.json(&["backup", a.to_str().unwrap(), b.to_str().unwrap()]);
    let out = env.path("out");
    env.run_ok(&["restore", v["snapshot_id"].as_str().unwrap(), "--target", out.to_str().unwrap()]);
    assert_trees_equal(&a, &out.join(a.strip_prefix("/").unwrap()));
    assert_trees_equal(&b, &out.join(b.strip_prefix("/").unwrap()));
}
