//! The agent's web dashboard in real headless Chromium (Python Playwright driving the system
//! browser, tests/browser/dashboard.py): log in, see the point this test just made, start a
//! restore from the page, watch it finish; then the restored files are compared here. Also the
//! server's guards, from a plain socket: another Host (DNS rebinding), no session, another
//! site's Origin.
//!
//! `AEON_UPDATE_SCREENSHOTS=1` copies the page's screenshots into docs/dashboard/.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The Python with Playwright that scripts/test-all.sh installs.
fn python() -> PathBuf {
    let python = std::env::var_os("AEON_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/aeon-test-venv/bin/python3"));
    let ok = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import playwright: scripts/test-all.sh installs it (pip install playwright \
         into /opt/aeon-test-venv), or set AEON_TEST_PYTHON",
        python.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: scripts/test-all.sh installs Debian's chromium"
    );
    python
}

/// One HTTP/1.1 request on a fresh connection: the status code and the whole answer.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

fn get(port: u16, host: &str, path: &str) -> (u16, String) {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_shows_a_new_point_and_restores_it_in_a_real_browser() {
    let python = python();
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 37, 40, 200_000);
    fs::create_dir_all(src.join("projects/aeon")).unwrap();
    fs::write(src.join("projects/aeon/notes.txt"), "the dashboard restored me\n").unwrap();
    let config = env.config_file(&format!(
        "[home]\ninherit = \"default\"\nsources = [{src:?}]\n\
         schedule = \"0 3 * * *\"\ncheck_schedule = \"30 4 * * 0\"\n"
    ));
    // Points of two hosts; the newest is the one the browser must find and restore.
    let backup = |extra: &[&str]| {
        let out = env
            .cmd()
            .env_remove("AEON_PASSWORD")
            .env_remove("AEON_REPOSITORY")
            .env("AEON_CONFIG", &config)
            .args(["--profile", "home", "--json", "backup"])
            .args(extra)
            .output()
            .unwrap();
        assert_success(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    backup(&["--host", "db01", "--tag", "nightly"]);
    backup(&[]);
    fs::write(src.join("projects/aeon/todo.txt"), "restore from the browser\n").unwrap();
    let point = backup(&["--tag", "manual"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let state = env.path("state");
    let agent = Agent(
        env.cmd()
            .env_remove("AEON_PASSWORD")
            .env_remove("AEON_REPOSITORY")
            .env("AEON_CONFIG", &config)
            .args(["agent", "--log-format", "json", "--state-dir", state.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the agent does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token_file = state.join("dashboard.token");
    let token = fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);

    // The guards, from a plain socket.
    let host = format!("127.0.0.1:{port}");
    let (code, page) = get(port, &host, "/");
    assert_eq!(code, 200);
    assert!(page.contains("Content-Security-Policy") || page.contains("content-security-policy"));
    assert_eq!(get(port, &format!("rebound.example:{port}"), "/").0, 421, "DNS rebinding");
    assert_eq!(get(port, &host, "/api/overview").0, 401, "no session");
    let login = format!("{{\"secret\":\"{token}\"}}");
    let (code, _) = http(
        port,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{login}",
            login.len()
        ),
    );
    assert_eq!(code, 403, "another site's Origin");
    // Metrics stay open to the scraper.
    assert!(get(port, &host, "/metrics").1.contains("aeon_job_success_total"));

    let target = env.path("restored");
    let shots = env.path("screenshots");
    fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let run = Command::new(python)
        .arg(&script)
        .env("AEON_URL", format!("http://{host}/"))
        .env("AEON_TOKEN", &token)
        .env("AEON_REPO_PASSWORD", PASSWORD)
        .env("AEON_POINT", &point)
        .env("AEON_TARGET", &target)
        .env("AEON_SCREENSHOTS", &shots)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(seen["point_row"].as_str().unwrap().contains(&point[..8]), "{seen}");
    assert!(seen["restore"].as_str().unwrap().contains("finished"), "{seen}");
    assert!(seen["audit_first"].as_str().unwrap().contains("restore"), "{seen}");
    assert_eq!(seen["password_restore_refused"], true);
    assert!(!env.path("restored-by-password").exists());

    // What the browser restored is the source, byte for byte and with its metadata.
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
    for name in ["login", "overview", "points", "restore", "audit"] {
        let png = fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}.png");
    }
    if std::env::var_os("AEON_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard");
        fs::create_dir_all(&docs).unwrap();
        for name in ["login", "overview", "points", "restore", "audit"] {
            fs::copy(shots.join(format!("{name}.png")), docs.join(format!("{name}.png"))).unwrap();
        }
    }
    drop(agent);
}
