//! The compliance report: what it says matches what was done, in every format.

mod common;

use std::fs;

use common::*;

#[test]
fn the_report_tells_what_is_protected_retention_checks_keys_and_audit_state() {
    let env = Env::new();
    let docs = env.path("docs");
    let etc = env.path("etc");
    generate_tree(&docs, 1, 5, 10_000);
    generate_tree(&etc, 2, 5, 10_000);
    let first = env.json(&["backup", "--host", "alpha", docs.to_str().unwrap()]);
    for _ in 0..2 {
        env.run_ok(&["backup", "--host", "alpha", docs.to_str().unwrap()]);
    }
    env.run_ok(&["backup", "--host", "<beta&>", etc.to_str().unwrap()]);
    let first_id = first["snapshot_id"].as_str().unwrap();
    env.run_ok(&["protect", first_id]);
    env.run_ok(&["policy", "set", "--keep-last", "1"]);
    env.run_ok(&["quota", "set", "1GiB"]);
    env.run_ok(&["check", "--read-data"]);
    env.run_ok(&["restore", "latest", "--target", env.path("drill").to_str().unwrap()]);

    let r = env.json(&["report"]);
    let sources = r["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{r}");
    let alpha = sources.iter().find(|s| s["host"] == "alpha").unwrap();
    assert_eq!(alpha["points"], 3);
    assert_eq!(alpha["protected_points"], 1);
    assert!(alpha["last_backup_age_hours"].as_f64().unwrap() < 1.0);
    // keep-last 1 per host and paths: the two older alpha points that are not protected are
    // beyond the policy; the protected one is kept.
    assert_eq!(r["retention"]["adheres"], false);
    assert_eq!(r["retention"]["beyond_policy"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["protected_points"][0]["id"], first_id);
    assert_eq!(r["verification"]["last_check"]["outcome"], "ok");
    assert_eq!(r["verification"]["last_check"]["arguments"][0], "read-data");
    assert!(r["verification"]["last_restore"]["seconds"].as_f64().is_some());
    assert_eq!(r["key_slots"].as_array().unwrap().len(), 1);
    assert_eq!(r["quota"]["limit_bytes"], 1u64 << 30);
    assert!(r["quota"]["used_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["audit"]["intact"], true);

    // After forget, the points kept match the policy.
    env.run_ok(&["forget"]);
    let r = env.json(&["report"]);
    assert_eq!(r["retention"]["adheres"], true, "{r}");

    let md = env.run_ok(&["report"]);
    assert!(md.contains("## What is protected") && md.contains("| alpha |"), "{md}");
    let page = env.path("report.html");
    env.run_ok(&["report", "--format", "html", "--output", page.to_str().unwrap()]);
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("&lt;beta&amp;&gt;"), "the host name is escaped");
    assert!(!html.contains("<beta"), "unescaped input in the page");
    // Self-contained: no script, no external file.
    for needle in ["<script", "src=", "href=", "http://", "https://"] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
    // A tampered log shows in the report.
    let first_record = env.json(&["audit", "log"])[0]["id"].as_str().unwrap().to_string();
    fs::remove_file(env.repo.join("audit").join(first_record)).unwrap();
    let r = env.json(&["report"]);
    assert_eq!(r["audit"]["intact"], false, "{r}");
    let md = env.run_ok(&["report"]);
    assert!(md.contains("TAMPERED"), "{md}");
}

/// The HTML report opens in a real browser straight from the file (no server, nothing fetched)
/// and shows what the report says, escaped.
#[test]
fn the_html_report_renders_in_headless_chromium_from_the_file() {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "chromium is not installed: scripts/test-all.sh installs it (apt-get install chromium)",
        );
    let env = Env::new();
    let docs = env.path("docs");
    generate_tree(&docs, 4, 5, 10_000);
    env.run_ok(&["backup", "--host", "<beta&>", docs.to_str().unwrap()]);
    env.run_ok(&["check"]);
    let page = env.path("report.html");
    env.run_ok(&["report", "--format", "html", "--output", page.to_str().unwrap()]);
    let profile = env.path("chromium-profile");
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // Nothing may be fetched: every host name fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8_lossy(&out.stdout);
    // The browser parsed the page into a document with the report's sections and figures.
    assert!(dom.contains("<body") && dom.contains("</table>"), "{dom}");
    assert!(dom.contains("What is protected"), "{dom}");
    assert!(dom.contains("&lt;beta&amp;&gt;"), "the host name is text, not markup: {dom}");
    assert!(!dom.contains("<beta"), "{dom}");
    assert!(dom.contains("intact"), "the audit state: {dom}");
}
