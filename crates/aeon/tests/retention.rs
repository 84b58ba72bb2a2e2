//! forget, protect, stored policies, stats and quotas through the real binary.

mod common;

use common::*;

fn ids(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g[key].as_array().unwrap().iter())
        .map(|p| p["time"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn forget_by_policy_with_reasons_protection_and_max_points() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"hello").unwrap();
    let s = src.to_str().unwrap();
    // Twenty days at 10:00 UTC, and a second point at 22:00 on the last three days.
    for day in 1..=20 {
        let time = format!("2026-03-{day:02} 10:00:00");
        let mut args = vec!["backup", s, "--time", &time, "-q"];
        if day == 2 {
            args.push("--protect");
        }
        if day == 5 {
            args.extend(["--tag", "keep-me"]);
        }
        env.run_ok(&args);
    }
    for day in 18..=20 {
        env.run_ok(&["backup", s, "--time", &format!("2026-03-{day}T22:00:00Z"), "-q"]);
    }

    let plan = env.json(&[
        "forget",
        "--keep-daily",
        "3",
        "--keep-tag",
        "keep-me",
        "--timezone",
        "UTC",
        "--dry-run",
    ]);
    let mut kept = ids(&plan, "keep");
    kept.sort();
    assert_eq!(
        kept,
        vec![
            "2026-03-02T10:00:00+00:00",
            "2026-03-05T10:00:00+00:00",
            "2026-03-18T22:00:00+00:00",
            "2026-03-19T22:00:00+00:00",
            "2026-03-20T22:00:00+00:00",
        ]
    );
    let reasons: Vec<String> = plan[0]["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    assert_eq!(reasons, vec!["daily", "daily", "daily", "tag keep-me", "protected"]);
    assert_eq!(ids(&plan, "remove").len(), 18);
    // A dry run changes nothing.
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 23);

    // In another zone the days differ: in Tokyo (UTC+9) 22:00 UTC is the next morning, so
    // 20 March 10:00 UTC is the newest point of its (Tokyo) day.
    let tokyo = env.json(&["forget", "--keep-daily", "2", "--timezone", "Asia/Tokyo", "--dry-run"]);
    let mut kept = ids(&tokyo, "keep");
    kept.sort();
    assert_eq!(
        kept,
        vec!["2026-03-02T10:00:00+00:00", "2026-03-20T10:00:00+00:00", "2026-03-20T22:00:00+00:00"]
    );

    // max-points caps the group; the protected point stays on top of it.
    let capped = env.json(&["forget", "--keep-last", "10", "--max-points", "4", "--dry-run"]);
    assert_eq!(ids(&capped, "keep").len(), 4);
    assert!(ids(&capped, "keep").contains(&"2026-03-02T10:00:00+00:00".to_string()));

    env.run_ok(&["forget", "--keep-daily", "3", "--keep-tag", "keep-me", "--timezone", "UTC"]);
    let left = env.json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 5);

    // A protected point cannot be forgotten by id either, until unprotected.
    let protected =
        left.as_array().unwrap().iter().find(|p| p["time"] == "2026-03-02T10:00:00+00:00").unwrap();
    let pid = protected["id"].as_str().unwrap();
    let out = env.run(&["forget", &pid[..12]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("protected"), "{}", stderr(&out));
    let changed = env.json(&["unprotect", &pid[..12]]);
    let new_id = changed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(new_id, pid, "a recovery point keeps its id for life");
    env.run_ok(&["forget", &new_id[..12]]);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 4);

    // No policy given and none stored: refused with a hint.
    let out = env.run(&["forget"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("aeon policy set"), "{}", stderr(&out));
}

#[test]
fn stored_policies_per_category_apply_without_flags() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let s = src.to_str().unwrap();
    for (i, category) in ["critical", "incremental"].iter().enumerate() {
        for h in 0..4 {
            let time = format!("2026-05-01 {:02}:00:00", i * 10 + h);
            env.run_ok(&["backup", s, "--category", category, "--time", &time, "-q"]);
        }
    }
    env.run_ok(&["policy", "set", "--category", "critical", "--keep-last", "3"]);
    env.run_ok(&["policy", "set", "--keep-last", "1"]);
    let shown = env.json(&["policy", "show"]);
    assert_eq!(shown["critical"]["keep_last"], 3);
    assert_eq!(shown["*"]["keep_last"], 1);
    env.run_ok(&["forget"]);
    let left = env.json(&["snapshots"]);
    let count = |c: &str| left.as_array().unwrap().iter().filter(|p| p["category"] == c).count();
    assert_eq!((count("critical"), count("incremental")), (3, 1));
    // A policy with no rule is refused rather than stored.
    let out = env.run(&["policy", "set", "--category", "full"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn stats_show_unique_data_per_recovery_point() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("shared"), 1, 3 << 20);
    write_random(&src.join("first"), 2, 2 << 20);
    let first = env.backup(&src);
    std::fs::remove_file(src.join("first")).unwrap();
    write_random(&src.join("second"), 3, 1 << 20);
    let second = env.backup(&src);
    let s = env.json(&["stats"]);
    assert_eq!(s["snapshots"], 2);
    assert_eq!(s["total_size"], (5 << 20) + (4 << 20));
    let dedup = s["deduplicated_size"].as_u64().unwrap();
    assert!((6 << 20..(6 << 20) + 100_000).contains(&dedup), "{dedup}");
    let per = s["per_snapshot"].as_array().unwrap();
    let unique =
        |id: &str| per.iter().find(|p| p["id"] == id).unwrap()["unique_size"].as_u64().unwrap();
    // Each holds its own file alone (plus its own trees).
    assert!((2 << 20..(2 << 20) + 50_000).contains(&unique(&first)), "{}", unique(&first));
    assert!((1 << 20..(1 << 20) + 50_000).contains(&unique(&second)), "{}", unique(&second));
    let one = env.json(&["stats", &second[..8]]);
    assert_eq!(one["total_size"], 4 << 20);
    assert_eq!(one["per_snapshot"].as_array().unwrap().len(), 1);
}

#[test]
fn quota_warns_at_ninety_percent_and_stops_before_passing_it() {
    let env = Env::empty();
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--quota",
        "9M",
    ]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 7, 8_700_000);
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_success(&out);
    assert!(stderr(&out).contains("quota"), "a warning at 90%: {}", stderr(&out));

    write_random(&src.join("b"), 8, 8 << 20);
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    assert!(stderr(&out).contains("quota exceeded"), "{}", stderr(&out));
    assert!(env.repo_size() <= 9 << 20, "never written past the quota: {}", env.repo_size());
    env.run_ok(&["check", "--read-data"]);
    let q = env.json(&["quota", "show"]);
    assert!(q["used"].as_u64().unwrap() <= q["quota"].as_u64().unwrap());

    // Raised: the next backup completes and the repository checks clean.
    env.run_ok(&["quota", "set", "40M"]);
    let id = env.backup(&src);
    env.run_ok(&["check", "--read-data"]);
    let out_dir = env.path("out");
    env.run_ok(&[
        "restore",
        &format!("{id}:{}", src.display()),
        "--target",
        out_dir.to_str().unwrap(),
    ]);
    assert_trees_equal(&src, &out_dir);
    assert_eq!(env.json(&["stats"])["quota"], 40 << 20);
}
