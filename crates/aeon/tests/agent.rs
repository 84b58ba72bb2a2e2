//! `aeon agent` end to end: it runs due jobs (a never-run interval at once, a missed cron run
//! once), runs hooks with the outcome, skips a run whose before hook fails, reloads on SIGHUP,
//! stops on SIGTERM, and `aeon agent status` tells the last and next runs. Nothing sleeps a
//! schedule away: the tests start from states that make a run due, and wait for events.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

struct Agent {
    child: Child,
}

impl Agent {
    fn start(env: &Env, config: &Path, state: &Path) -> Agent {
        let child = env
            .cmd()
            .env_remove("AEON_PASSWORD")
            .env_remove("AEON_REPOSITORY")
            .env("AEON_CONFIG", config)
            .args(["agent", "--log-format", "json", "--state-dir", state.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// SIGTERM, then its exit code and log.
    fn stop(self) -> (Option<i32>, String) {
        self.signal(libc::SIGTERM);
        let out = self.child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn status(env: &Env, config: &Path, state: &Path) -> Vec<serde_json::Value> {
    let out = env
        .cmd()
        .env("AEON_CONFIG", config)
        .args(["--json", "agent", "status", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// Waits (at most 60 s) until `done` holds for the status of `job`.
fn wait_for(
    env: &Env,
    config: &Path,
    state: &Path,
    job: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let rows = status(env, config, state);
        let row = rows.iter().find(|r| r["job"] == job).cloned().unwrap_or_default();
        if done(&row) {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {job}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup(env: &Env, profiles: &str) -> (PathBuf, PathBuf) {
    (env.config_file(profiles), env.path("state"))
}

#[test]
fn the_agent_runs_due_jobs_with_hooks_and_stops_cleanly() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 8, 10, 20_000);
    let hooks = env.path("hooks.log");
    let (config, state) = setup(
        &env,
        &format!(
            "[home]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"every 1h\"\n\
             hooks = {{ before = \"echo before $AEON_JOB >> {h}\", after = \"echo after $AEON_OUTCOME $AEON_EXIT_CODE >> {h}\" }}\n\n\
             [nightly]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"0 3 * * *\"\n",
            h = hooks.display()
        ),
    );
    let agent = Agent::start(&env, &config, &state);
    // Never run, every hour: it runs at once. The cron job waits for 3:00.
    let row = wait_for(&env, &config, &state, "home:backup", |r| r["last_outcome"] == "ok");
    let points = env.json(&["snapshots"]);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(row["last_point"], points[0]["id"]);
    let last = chrono::DateTime::parse_from_rfc3339(row["last_start"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(row["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next - last, chrono::Duration::hours(1));
    let nightly =
        status(&env, &config, &state).into_iter().find(|r| r["job"] == "nightly:backup").unwrap();
    assert_eq!(nightly["last_start"], serde_json::Value::Null);
    assert!(nightly["next_run"].as_str().unwrap().contains("T03:00:00"), "{nightly}");

    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.lines().any(|l| l.contains("\"run finished\"") && l.contains("home:backup")),
        "{log}"
    );
    assert!(
        log.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON lines: {log}"
    );
    assert_eq!(fs::read_to_string(&hooks).unwrap(), "before home:backup\nafter success 0\n");
    // A restart does not run it again (it ran within the hour).
    let agent = Agent::start(&env, &config, &state);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _) = agent.stop();
    assert_eq!(code, Some(0));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_failing_before_hook_skips_the_run_and_a_missed_run_is_caught_up_once() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 9, 5, 10_000);
    let (config, state) = setup(
        &env,
        &format!(
            "[broken]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"every 1h\"\n\
             hooks = {{ before = \"exit 7\" }}\n\n\
             [daily]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"0 3 * * *\"\n"
        ),
    );
    // The daily job last ran three days ago: the agent was off, two runs were missed.
    fs::create_dir_all(&state).unwrap();
    let long_ago = (chrono::Local::now() - chrono::Duration::days(3)).to_rfc3339();
    fs::write(
        state.join("agent.json"),
        format!("{{\"daily:backup\": {{\"last_start\": \"{long_ago}\", \"failures\": 0, \"successes\": 1, \"failed_runs\": 0}}}}"),
    )
    .unwrap();
    let agent = Agent::start(&env, &config, &state);
    let broken =
        wait_for(&env, &config, &state, "broken:backup", |r| r["last_outcome"].is_string());
    assert_eq!(broken["last_outcome"], "skipped: the before hook failed (exit code 7)");
    assert_eq!(broken["failures_in_a_row"], 1);
    let daily = wait_for(&env, &config, &state, "daily:backup", |r| r["last_outcome"] == "ok");
    assert!(daily["next_run"].as_str().unwrap().contains("T03:00:00"), "caught up once: {daily}");
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    // One point: the daily catch-up; the broken profile wrote none.
    let points = env.json(&["snapshots"]);
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
}

#[test]
fn sighup_reloads_the_configuration() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 10, 5, 10_000);
    let (config, state) =
        setup(&env, &format!("[home]\ninherit = \"default\"\nsources = [{src:?}]\n"));
    let agent = Agent::start(&env, &config, &state);
    std::thread::sleep(Duration::from_millis(500));
    assert!(env.json(&["snapshots"]).as_array().unwrap().is_empty(), "nothing scheduled yet");
    let text = fs::read_to_string(&config).unwrap() + "schedule = \"every 2h\"\n";
    fs::write(&config, text).unwrap();
    agent.signal(libc::SIGHUP);
    wait_for(&env, &config, &state, "home:backup", |r| r["last_outcome"] == "ok");
    // A broken file on reload is logged and the agent keeps what it had.
    fs::write(&config, "[home]\nsourcs = 1\n").unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(800));
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("configuration not reloaded") && log.contains("sourcs"), "{log}");
}

/// A free loopback port (bound and released: the test binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed: scripts/test-all.sh installs Debian's prometheus");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_for_the_textfile_collector_pass_promtool() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 12, 5, 10_000);
    env.run_ok(&["backup", src.to_str().unwrap()]);
    env.run_ok(&["backup", src.to_str().unwrap()]);
    env.run_ok(&["quota", "set", "1GiB"]);
    env.run_ok(&["check"]);
    let dir = env.path("textfile");
    env.run_ok(&["metrics", "--textfile", dir.to_str().unwrap()]);
    let text = fs::read_to_string(dir.join("aeon.prom")).unwrap();
    promtool_accepts(&text);
    let line =
        |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(line("aeon_points{").ends_with(" 2"), "{text}");
    assert!(line("aeon_audit_log_intact{").ends_with(" 1"), "{text}");
    assert!(line("aeon_last_check_success{").ends_with(" 1"), "{text}");
    assert!(line("aeon_repository_quota_bytes{").ends_with(" 1073741824"), "{text}");
    assert!(!line("aeon_repository_size_bytes{").ends_with(" 0"), "{text}");
}

/// A real Prometheus scrapes the agent's /metrics and sees the run the agent made.
#[test]
fn prometheus_scrapes_the_agent() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 13, 5, 10_000);
    let (config, state) = setup(
        &env,
        &format!("[home]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"every 1h\"\n"),
    );
    let port = free_port();
    let child = env
        .cmd()
        .env_remove("AEON_PASSWORD")
        .env_remove("AEON_REPOSITORY")
        .env("AEON_CONFIG", &config)
        .args([
            "agent",
            "--state-dir",
            state.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let agent = Agent { child };
    wait_for(&env, &config, &state, "home:backup", |r| r["last_outcome"] == "ok");

    let prom_port = free_port();
    let prom_dir = env.path("prometheus");
    fs::create_dir_all(&prom_dir).unwrap();
    fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: aeon\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is not installed: scripts/test-all.sh installs Debian's prometheus");
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=aeon_job_success_total%7Bprofile%3D%22home%22%7D"
    );
    let started = Instant::now();
    let seen = loop {
        let out = std::process::Command::new("curl").args(["-s", &query]).output().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(v) = body["data"]["result"][0]["value"][1].as_str() {
            break v.to_string();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = prometheus.kill();
            panic!("Prometheus never saw the metric: {body}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(seen, "1");
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// A webhook that answers 500 to its first request and 200 to the next ones; the bodies it got.
fn flaky_webhook() -> (u16, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if n == 0 { "500 Internal Server Error" } else { "200 OK" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            if n > 0 {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or_default());
            }
        }
    });
    (port, rx)
}

/// Failures and lateness reach a webhook (retried past a 500) and a real SMTP server.
#[test]
fn failures_and_lateness_are_notified_by_webhook_and_email() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 14, 3, 1_000);
    let (hook_port, received) = flaky_webhook();
    let smtp_port = free_port();
    let maildir = env.path("Maildir");
    let mut smtp = std::process::Command::new("aiosmtpd")
        .args(["-n", "-l", &format!("127.0.0.1:{smtp_port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect(
            "aiosmtpd is not installed: scripts/test-all.sh installs Debian's python3-aiosmtpd",
        );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let notify = format!(
        "notify = {{ webhook = \"http://127.0.0.1:{hook_port}/aeon\", email = [\"ops@example.com\"], smtp = \"127.0.0.1:{smtp_port}\" }}\n"
    );
    let (config, state) = setup(
        &env,
        &format!(
            "[broken]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"every 1h\"\n\
             hooks = {{ before = \"exit 5\" }}\n{notify}\n\
             [quiet]\ninherit = \"default\"\nsources = [{src:?}]\nschedule = \"0 3 * * *\"\nmax_age = \"2s\"\n{notify}"
        ),
    );
    let agent = Agent::start(&env, &config, &state);
    let mut events = Vec::new();
    while events.len() < 2 {
        let body = received.recv_timeout(Duration::from_secs(60)).expect("a notification");
        events.push(body);
    }
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    let failure = events.iter().find(|e| e["event"] == "failure").expect("the failure");
    assert_eq!(failure["profile"], "broken");
    assert_eq!(failure["exit_code"], 5);
    assert!(failure["outcome"].as_str().unwrap().contains("before hook"), "{failure}");
    let late = events.iter().find(|e| e["event"] == "late").expect("the lateness");
    assert_eq!(late["profile"], "quiet");
    // The same two by e-mail.
    let started = Instant::now();
    let mails = loop {
        let mails: Vec<String> = fs::read_dir(maildir.join("new"))
            .map(|d| d.filter_map(|f| fs::read_to_string(f.ok()?.path()).ok()).collect())
            .unwrap_or_default();
        if mails.len() >= 2 || started.elapsed() > Duration::from_secs(30) {
            break mails;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = smtp.kill();
    let _ = smtp.wait();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails.iter().any(|m| m.contains("Subject: [aeon] broken backup: failure")),
        "{mails:?}"
    );
    assert!(mails.iter().any(|m| m.contains("Subject: [aeon] quiet backup: late")), "{mails:?}");
    assert!(mails.iter().all(|m| m.contains("ops@example.com")));
}

/// Continuous protection: a change is in a recovery point within the delay, and that backup
/// reads only what changed (the rest of the tree is carried over from the parent).
#[test]
fn a_watched_profile_backs_up_a_change_within_its_delay() {
    watched_profile_backs_up_a_change("inotify");
}

/// The same with fanotify (as root; the suite runs as root): one mark for the whole file
/// system, events of other paths on it filtered out.
#[test]
fn a_profile_watched_with_fanotify_backs_up_a_change_within_its_delay() {
    assert!(is_root(), "the suite runs as root (scripts/test-all.sh)");
    watched_profile_backs_up_a_change("fanotify");
}

fn watched_profile_backs_up_a_change(method: &str) {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 15, 200, 4_000);
    let (config, state) = setup(
        &env,
        &format!(
            "[live]\ninherit = \"default\"\nsources = [{src:?}]\nwatch = true\nwatch_delay = \"1s\"\n\
             watch_method = \"{method}\"\n"
        ),
    );
    let agent = Agent::start(&env, &config, &state);
    // At start the watch cannot know what changed before: a normal incremental backup.
    let first = wait_for(&env, &config, &state, "live:backup", |r| r["last_outcome"] == "ok");
    let first_point = first["last_point"].as_str().unwrap().to_string();
    let changed = src.join("written after the watch began");
    let written = Instant::now();
    fs::write(&changed, b"protected within seconds").unwrap();
    let second = wait_for(&env, &config, &state, "live:backup", |r| {
        r["last_point"].as_str().is_some_and(|p| p != first_point)
    });
    let rpo = written.elapsed();
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(rpo < Duration::from_secs(20), "{rpo:?}");
    assert!(log.contains("events may be missing") && log.contains("changes seen"), "{log}");
    assert!(log.contains(&format!("\"method\":\"{method}\"")), "{log}");
    let point = second["last_point"].as_str().unwrap();
    let shown = env.json(&["cat", "snapshot", point]);
    assert_eq!(shown["summary"]["bytes_read"], 24, "only the new file was read: {shown}");
    let out = env.path("out");
    env.run_ok(&["restore", point, "--target", out.to_str().unwrap()]);
    assert_trees_equal(&src, &out.join(src.strip_prefix("/").unwrap()));
}
