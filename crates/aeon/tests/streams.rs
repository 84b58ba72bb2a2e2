//! Stream backups: standard input and a command's output (how database dumps are protected).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn stdin_is_stored_as_one_file() {
    let env = Env::new();
    let data = Rng::new(3).content(3 << 20);
    let mut child = env
        .cmd()
        .args(["backup", "--stdin", "--stdin-filename", "dump.sql", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_bytes"], data.len() as u64);
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["paths"], serde_json::json!(["/dump.sql"]));
    let target = env.path("out");
    env.run_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(std::fs::read(target.join("dump.sql")).unwrap() == data);
}

#[test]
fn failing_command_leaves_no_recovery_point() {
    let env = Env::new();
    let out = env.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "db.sql",
        "--",
        "sh",
        "-c",
        "echo 'partial dump'; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no recovery point was written") && err.contains("exit status: 3"),
        "{err}"
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);

    let out = env.run(&["backup", "--stdin-from-command", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot run"), "{}", stderr(&out));

    // A command that succeeds is kept.
    let ok = env.json(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "db.sql",
        "--",
        "echo",
        "SELECT 1;",
    ]);
    assert_eq!(ok["total_bytes"], 10);
}

fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    }
}

#[test]
fn two_gib_stream_uses_bounded_memory() {
    let env = Env::new();
    // 2 GiB: half incompressible, half compressible, produced by a real command.
    let script = "head -c 1073741824 /dev/urandom; yes 'INSERT INTO t VALUES (42, now());' | head -c 1073741824";
    let v = env.json(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "big.sql",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(v["total_bytes"], 2u64 << 30);
    let peak_mib = children_peak_rss_kib() / 1024;
    eprintln!("peak RSS of aeon (and its children) backing up a 2 GiB stream: {peak_mib} MiB");
    assert!(peak_mib < 256, "a 2 GiB stream took {peak_mib} MiB of memory");
    let check = env.run_ok(&["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
}
