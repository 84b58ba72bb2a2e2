//! Finding anything in any recovery point at any time: find, diff, dump, --at, filters.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

/// Three recovery points of one tree at known times.
fn timeline(env: &Env) -> (std::path::PathBuf, [String; 3]) {
    let src = env.path("src");
    fs::create_dir_all(src.join("etc/nginx")).unwrap();
    fs::write(src.join("etc/nginx/nginx.conf"), b"worker_processes 1;\n").unwrap();
    fs::write(src.join("notes.txt"), b"v1").unwrap();
    let s = src.to_str().unwrap();
    let b = |time: &str, extra: &[&str]| -> String {
        let mut args = vec!["backup", s, "--time", time];
        args.extend_from_slice(extra);
        env.json(&args)["snapshot_id"].as_str().unwrap().to_string()
    };
    let first =
        b("2026-11-20 10:00:00", &["--category", "full", "--kind", "config", "--host", "web"]);
    fs::write(src.join("etc/nginx/nginx.conf"), b"worker_processes 4;\n").unwrap();
    fs::write(src.join("big.log"), vec![b'x'; 300_000]).unwrap();
    let second =
        b("2026-11-20 14:00:00", &["--category", "incremental", "--host", "web", "--tag", "t1"]);
    fs::remove_file(src.join("notes.txt")).unwrap();
    fs::set_permissions(src.join("big.log"), fs::Permissions::from_mode(0o600)).unwrap();
    let third =
        b("2026-11-21 09:30:00", &["--category", "incremental", "--host", "db", "--tag", "t1"]);
    (src, [first, second, third])
}

#[test]
fn point_in_time_picks_the_point_in_force() {
    let env = Env::new();
    let (src, [first, second, _third]) = timeline(&env);
    let p = format!(":{}", src.display());
    let out = env.path("at-noon");
    env.run_ok(&["restore", &p, "--at", "2026-11-20 12:00", "--target", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("etc/nginx/nginx.conf")).unwrap(), b"worker_processes 1;\n");
    assert!(!out.join("big.log").exists());

    // Exactly at a point's time, that point is in force; --host narrows the choice.
    let at_two = env.run_ok(&[
        "dump",
        &format!(":{}/etc/nginx/nginx.conf", src.display()),
        "--at",
        "2026-11-20T14:00:00Z",
    ]);
    assert_eq!(at_two, "worker_processes 4;\n");
    let v = env.json(&["ls", &p, "--at", "2026-11-22 00:00", "--host", "web"]);
    let names: Vec<_> =
        v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert!(
        names.contains(&"notes.txt".to_string()),
        "the web host's last point still has notes.txt: {names:?}"
    );

    // Before the first point there is nothing; an id and --at together are refused.
    let none =
        env.run(&["restore", &p, "--at", "2026-01-01 00:00", "--target", out.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("no recovery point was taken at or before"),
        "{}",
        stderr(&none)
    );
    let both = env.run(&["ls", &first, "--at", "yesterday"]);
    assert!(stderr(&both).contains("not both"), "{}", stderr(&both));

    // diff --at: the point in force at that time against another.
    let d = env.json(&["diff", "--at", "2026-11-20 10:30", &second]);
    assert!(
        d.as_array()
            .unwrap()
            .iter()
            .any(|c| c["change"] == "modified"
                && c["path"].as_str().unwrap().ends_with("nginx.conf"))
    );
}

#[test]
fn diff_between_points_and_against_live() {
    let env = Env::new();
    let (src, [first, second, third]) = timeline(&env);
    let d = env.json(&["diff", &first, &second]);
    let find = |path: &str| {
        d.as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"].as_str().unwrap().ends_with(path))
            .map(|c| c["change"].clone())
    };
    assert_eq!(find("/big.log"), Some("added".into()));
    assert_eq!(find("/nginx.conf"), Some("modified".into()));
    assert_eq!(find("/notes.txt"), None);

    let d = env.json(&["diff", &second, &third]);
    let changes: Vec<(String, String)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["change"].as_str().unwrap().to_string(), c["path"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        changes.contains(&("removed".into(), format!("{}/notes.txt", src.display()))),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("metadata".into(), format!("{}/big.log", src.display()))),
        "{changes:?}"
    );
    let text = env.run_ok(&["diff", &second, &third]);
    assert!(text.contains(&format!("-    {}/notes.txt", src.display())), "{text}");

    // Against the live tree: one file edited in place (same size), one added.
    let spec = format!("{third}:{}", src.display());
    fs::write(src.join("etc/nginx/nginx.conf"), b"worker_processes 8;\n").unwrap();
    filetime::set_file_mtime(
        src.join("etc/nginx/nginx.conf"),
        filetime::FileTime::from_unix_time(1, 0),
    )
    .unwrap();
    fs::write(src.join("new.txt"), b"new").unwrap();
    let d = env.json(&["diff", &spec, "--live", src.to_str().unwrap()]);
    let kinds: Vec<(String, String)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["change"].as_str().unwrap().to_string(), c["path"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        kinds.contains(&("modified".into(), format!("{}/etc/nginx/nginx.conf", src.display()))),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("added".into(), format!("{}/new.txt", src.display()))), "{kinds:?}");
    assert!(!kinds.iter().any(|(_, p)| p.ends_with("big.log")), "{kinds:?}");
}

#[test]
fn find_across_points_with_time_and_size_filters() {
    let env = Env::new();
    let (_src, [first, second, third]) = timeline(&env);
    let hits = env.json(&["find", "nginx.conf"]);
    let points: Vec<&str> =
        hits.as_array().unwrap().iter().map(|h| h["snapshot_id"].as_str().unwrap()).collect();
    assert_eq!(points.len(), 3);
    for id in [&first, &second, &third] {
        assert!(points.contains(&id.as_str()));
    }
    let big = env.json(&["find", "*.log", "--size", "+200K"]);
    assert_eq!(big.as_array().unwrap().len(), 2);
    assert_eq!(big[0]["size"], 300_000);
    assert_eq!(env.json(&["find", "*.log", "--size", "-1K"]).as_array().unwrap().len(), 0);
    assert_eq!(env.json(&["find", "NOTES.TXT", "-i"]).as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["find", "**/etc/*/nginx.conf"]).as_array().unwrap().len(), 3);
    // Nothing in the tree was modified in the future.
    assert_eq!(env.json(&["find", "*", "--newer", "2099-01-01"]).as_array().unwrap().len(), 0);
}

#[test]
fn dump_file_and_directory_as_tar() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 31, 20, 2 << 20);
    env.backup(&src);
    let file =
        env.cmd().args(["dump", &format!("latest:{}/file3.dat", src.display())]).output().unwrap();
    if src.join("file3.dat").exists() {
        assert_success(&file);
        assert!(file.stdout == fs::read(src.join("file3.dat")).unwrap());
    }
    let tar = env.cmd().args(["dump", &format!("latest:{}", src.display())]).output().unwrap();
    assert_success(&tar);
    let tarfile = env.path("dump.tar");
    fs::write(&tarfile, &tar.stdout).unwrap();
    let out = env.path("untarred");
    fs::create_dir_all(&out).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(&tarfile)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    // tar keeps content, modes, symlinks and mtimes (to the second): compare what it keeps.
    let a = snapshot_tree(&src);
    let b = snapshot_tree(&out.join("src"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, ea) in &a {
        let eb = &b[k];
        assert_eq!(
            (ea.kind, ea.size, ea.content_hash, &ea.link),
            (eb.kind, eb.size, eb.content_hash, &eb.link),
            "{}",
            k.display()
        );
        if ea.kind != "symlink" && !k.as_os_str().is_empty() {
            assert_eq!((ea.mode, ea.mtime.0), (eb.mode, eb.mtime.0), "{}", k.display());
        }
    }
}

#[test]
fn snapshots_filter_and_group() {
    let env = Env::new();
    let (_src, [first, second, third]) = timeline(&env);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["snapshots"];
        a.extend_from_slice(args);
        env.json(&a)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&["--category", "full"]), vec![first.clone()]);
    assert_eq!(ids(&["--kind", "config"]), vec![first.clone()]);
    assert_eq!(ids(&["--host", "db"]), vec![third.clone()]);
    assert_eq!(ids(&["--tag", "t1"]), vec![second.clone(), third.clone()]);
    assert_eq!(
        ids(&["--since", "2026-11-20 12:00", "--until", "2026-11-21"]),
        vec![second.clone()]
    );
    let groups = env.json(&["snapshots", "--group-by", "host"]);
    assert_eq!(groups.as_array().unwrap().len(), 2);
    assert_eq!(groups[0]["group_key"][0], serde_json::json!(["host", "web"]));
    assert_eq!(groups[0]["snapshots"].as_array().unwrap().len(), 2);
    let bad = env.run(&["snapshots", "--group-by", "colour"]);
    assert_eq!(bad.status.code(), Some(1));
}
