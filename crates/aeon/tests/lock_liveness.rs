//! A live writer's lock is never judged stale by a prune that cannot know: not from a shared
//! hostname in another PID namespace, not from a clock that is off, and a writer paused past
//! its stale period never commits a recovery point that refers to what prune deleted meanwhile.
//! Each writer is a stream backup fed by the test, so that prune runs at a chosen moment.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn require_root_tools() {
    assert!(is_root(), "these tests need root (unshare of PID and UTS namespaces)");
    for tool in ["unshare", "faketime"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing (scripts/test-all.sh installs it)");
    }
}

fn lock_count(env: &Env) -> usize {
    std::fs::read_dir(env.repo.join("locks"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count()
}

struct Writer {
    child: Child,
    old: Vec<u8>,
}

/// A repository with a forgotten 8 MiB point (its pack now unused), and a stream backup started
/// through `wrapper` that has stored those same bytes (deduplicated against the forgotten pack)
/// and 40 MiB of new data in packs no index names yet.
fn start_writer(env: &Env, wrapper: &[&str], extra_env: &[(&str, &str)]) -> Writer {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("old"), 31, 8 << 20);
    let first = env.backup(&src);
    env.run_ok(&["forget", &first[..12]]);
    let old = std::fs::read(src.join("old")).unwrap();
    let packs_before = env.packs().len();

    let mut child = env
        .cmd_via(wrapper)
        .args(["backup", "--stdin", "--stdin-filename", "again", "--json"])
        .envs(extra_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lock_count(env) == 0 {
        assert!(Instant::now() < deadline, "the backup never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&old).unwrap();
    stdin.write_all(&random_bytes(32, 40 << 20)).unwrap();
    while env.packs().len() < packs_before + 2 {
        assert!(Instant::now() < deadline, "the backup never stored its first packs");
        std::thread::sleep(Duration::from_millis(20));
    }
    Writer { child, old }
}

/// Feeds the rest of the stream and waits for the backup's verdict.
fn finish_writer(mut w: Writer) -> (std::process::Output, Vec<u8>) {
    let tail = random_bytes(33, 1 << 20);
    let mut stdin = w.child.stdin.take().unwrap();
    // A writer that has already given up may have closed its end.
    let _ = stdin.write_all(&tail);
    drop(stdin);
    let out = w.child.wait_with_output().unwrap();
    let mut expected = w.old;
    expected.extend(random_bytes(32, 40 << 20));
    expected.extend(tail);
    (out, expected)
}

/// The writer's point is in the repository, complete, and nothing it uses was deleted.
fn assert_point_intact(env: &Env, out: &std::process::Output, expected: &[u8]) {
    assert_success(out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["snapshot_id"].as_str().unwrap();
    let check = env.run(&["check", "--read-data"]);
    assert!(check.status.success(), "check after a 'saved' point: {}", stderr(&check));
    let dump = env.cmd().args(["dump", &format!("{id}:/again")]).output().unwrap();
    assert_success(&dump);
    assert!(dump.stdout == expected, "the point's content differs");
}

/// Same hostname, other PID namespace: the backup's pid means nothing to prune.
#[test]
fn a_writer_in_another_pid_namespace_keeps_its_data() {
    require_root_tools();
    let env = Env::new();
    let w = start_writer(&env, &["unshare", "--pid", "--fork", "--mount-proc"], &[]);
    let r = env.json(&["prune"]);
    assert_eq!(r["waiting_for"].as_array().unwrap().len(), 1, "prune must wait for it: {r}");
    assert_eq!(r["orphan_packs_adopted"], 0, "{r}");
    assert_eq!(lock_count(&env), 1, "the backup's lock is still there");
    let (out, expected) = finish_writer(w);
    assert_point_intact(&env, &out, &expected);
}

/// Another host (own UTS and PID namespaces) whose clock is 40 minutes slow: its lock's own
/// refresh time looks 40 minutes old, storage's modification time does not.
#[test]
fn a_writer_with_a_slow_clock_keeps_its_data() {
    require_root_tools();
    let env = Env::new();
    let wrapper = [
        "unshare",
        "--uts",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        "hostname elsewhere && exec faketime -f -40m \"$0\" \"$@\"",
    ];
    let w = start_writer(&env, &wrapper, &[]);
    let r = env.json(&["prune"]);
    assert_eq!(r["waiting_for"].as_array().unwrap().len(), 1, "prune must wait for it: {r}");
    assert!(r["waiting_for"][0].as_str().unwrap().contains("host elsewhere"), "{r}");
    let (out, expected) = finish_writer(w);
    assert_point_intact(&env, &out, &expected);
}

/// A writer stopped (SIGSTOP) for longer than its stale period: prune may then judge its lock
/// stale and delete what it stored; resumed, the writer must commit nothing.
#[test]
fn a_writer_paused_past_its_stale_period_commits_nothing() {
    require_root_tools();
    let env = Env::new();
    let w = start_writer(
        &env,
        &["unshare", "--pid", "--fork", "--mount-proc"],
        &[("AEON_LOCK_STALE_AFTER", "8")],
    );
    // unshare's child is aeon itself.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", w.child.id())).unwrap();
    let aeon: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: signals to a child process of this test.
    assert_eq!(unsafe { libc::kill(aeon, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_secs(11));
    let r = env.json(&["prune"]);
    assert!(
        r["messages"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("stale")),
        "the paused writer's lock is stale by storage's clock: {r}"
    );
    assert!(r["packs_deleted"].as_u64().unwrap() >= 2, "its packs and the forgotten one go: {r}");
    assert_eq!(unsafe { libc::kill(aeon, libc::SIGCONT) }, 0);
    let (out, _) = finish_writer(w);
    assert!(!out.status.success(), "a writer that lost its lock must fail");
    assert!(stderr(&out).contains("lock"), "{}", stderr(&out));
    assert!(env.json(&["snapshots"]).as_array().unwrap().is_empty(), "no point was committed");
    env.run_ok(&["check", "--read-data"]);
    // The repository goes on: the same data is stored again by the next backup.
    env.backup(&env.path("src"));
    env.run_ok(&["check", "--read-data"]);
}

/// --no-lock is refused by every command that writes or deletes, with a hint.
#[test]
fn no_lock_is_refused_by_writers() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    let id = env.backup(&src);
    for args in [
        vec!["--no-lock", "backup", src.to_str().unwrap()],
        vec!["--no-lock", "forget", &id[..12]],
        vec!["--no-lock", "prune"],
        vec!["--no-lock", "protect", &id[..12]],
        vec!["--no-lock", "unlock"],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--no-lock is refused"), "{}", stderr(&out));
    }
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    // Readers may still use it (read-only storage).
    env.run_ok(&["--no-lock", "snapshots"]);
    env.run_ok(&["--no-lock", "check"]);
}
