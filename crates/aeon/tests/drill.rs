//! `aeon dr drill` and `aeon dr plan`: a drill restores, proves and measures, records itself in
//! the audit log and the compliance report, and fails (exit 4) on a planted corruption; the
//! runbook names the newest sound point, its keys, commands and an estimate from the drill.

mod common;

use std::fs;

use common::*;

#[test]
fn a_drill_proves_and_measures_a_restore_and_the_runbook_uses_it() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 21, 60, 300_000);
    fs::hard_link(
        src.join(
            fs::read_dir(&src).unwrap().flatten().find(|e| e.path().is_file()).unwrap().file_name(),
        ),
        src.join("second name"),
    )
    .unwrap();
    let point = env.backup(&src);

    let scratch = env.path("scratch");
    let d = env.json(&["dr", "drill", "--scratch", scratch.to_str().unwrap()]);
    assert_eq!(d["passed"], true, "{d}");
    assert_eq!(d["point"], point.as_str());
    assert!(d["files"].as_u64().unwrap() >= 60, "{d}");
    assert!(d["restore_seconds"].as_f64().unwrap() > 0.0);
    assert!(d["bytes_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(d["differences"].as_array().unwrap().len(), 0);
    assert!(!scratch.exists(), "the scratch folder is removed after the drill");

    // A sample of files, kept.
    let kept = env.path("kept");
    let d =
        env.json(&["dr", "drill", "--sample", "5", "--scratch", kept.to_str().unwrap(), "--keep"]);
    assert_eq!(
        (d["sampled"].as_u64(), d["files"].as_u64(), &d["passed"]),
        (Some(5), Some(5), &true.into()),
        "{d}"
    );
    assert_eq!(fs::read_dir(&kept).unwrap().count(), 5);

    // The audit log and the compliance report keep the drill; the runbook estimates from it.
    let log = env.json(&["audit", "log"]);
    let drills: Vec<_> =
        log.as_array().unwrap().iter().filter(|e| e["operation"] == "drill").collect();
    assert_eq!(drills.len(), 2);
    assert!(drills[0]["figures"]["bytes_per_second"].as_f64().unwrap() > 0.0);
    let report = env.json(&["report", "--format", "json"]);
    assert_eq!(report["verification"]["last_drill"]["outcome"], "ok", "{report}");
    let plan = env.json(&["dr", "plan"]);
    let source = &plan["sources"][0];
    assert_eq!(source["point"], point.as_str());
    assert!(source["estimated_seconds"].as_f64().unwrap() > 0.0, "{plan}");
    assert!(plan["keys"].as_array().unwrap().len() == 1, "{plan}");
    let out = env.run(&["dr", "plan"]);
    assert_success(&out);
    let md = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "# Disaster-recovery runbook",
        &point[..8],
        "Estimated recovery time:",
        "restore",
        "verify",
        "Measured restore speed",
    ] {
        assert!(md.contains(needle), "{needle} missing from\n{md}");
    }
}

#[test]
fn a_drill_finds_a_planted_corruption() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("victim.bin"), 3, 3 << 20);
    env.backup(&src);
    let pack = env.packs().into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&pack, &bytes).unwrap();

    let out = env.run(&["--json", "dr", "drill"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["passed"], false);
    let found = d["errors"].as_array().unwrap().len() + d["differences"].as_array().unwrap().len();
    assert!(found > 0, "{d}");
    assert!(d.to_string().contains("victim.bin"), "the damaged file is named: {d}");
    let log = env.json(&["audit", "log"]);
    let last = log.as_array().unwrap().iter().rev().find(|e| e["operation"] == "drill").unwrap();
    assert!(last["outcome"].as_str().unwrap().starts_with("failed"), "{last}");
}
