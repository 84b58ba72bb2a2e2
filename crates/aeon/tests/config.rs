//! The configuration file: profiles fill in what flags and environment variables leave open;
//! `aeon config check` names every problem with its line; completions and man pages.

mod common;

use std::fs;
use std::process::Output;

use common::*;

/// `aeon` with the configuration file and no repository or password from the environment.
fn with_config(env: &Env, config: &std::path::Path, args: &[&str]) -> Output {
    env.cmd()
        .env_remove("AEON_REPOSITORY")
        .env_remove("AEON_PASSWORD")
        .env("AEON_CONFIG", config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_profile_backs_up_its_sources_and_flags_override_it() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 5, 6, 5_000);
    fs::write(src.join("scratch.tmp"), b"not wanted").unwrap();
    let config = env.config_file(&format!(
        "[home]\ninherit = \"default\"\nsources = [{:?}]\nexclude = [\"*.tmp\"]\n\
         tags = [\"home\"]\ncategory = \"critical\"\nkeep_last = 1\nschedule = \"every 6h\"\n",
        src.display()
    ));
    let password = env.path("password");
    let out = with_config(&env, &config, &["config", "check"]);
    assert_success(&out);

    // No paths, no repository, no password on the command line: the profile gives them.
    for _ in 0..2 {
        assert_success(&with_config(&env, &config, &["--profile", "home", "backup"]));
    }
    let out = with_config(&env, &config, &["--json", "snapshots"]);
    assert_success(&out);
    let points: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["tags"][0], "home");
    assert_eq!(points[0]["category"], "critical");
    assert_eq!(points[0]["paths"][0], src.to_str().unwrap());
    let spec = format!("latest:{}", src.display());
    let listed = with_config(&env, &config, &["ls", &spec]);
    assert_success(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.lines().count() >= 6, "{listed}");
    assert!(!listed.contains("scratch.tmp"), "the profile's exclude applies: {listed}");

    // Flags win over the profile: another tag, and AEON_PASSWORD over its password file.
    fs::write(&password, "wrong\n").unwrap();
    let out = with_config(&env, &config, &["--profile", "home", "backup", "--tag", "manual"]);
    assert_eq!(out.status.code(), Some(12), "the profile's (now wrong) password file is used");
    let out = env
        .cmd()
        .env_remove("AEON_REPOSITORY")
        .env("AEON_CONFIG", &config)
        .args(["--profile", "home", "--json", "backup", "--tag", "manual"])
        .output()
        .unwrap();
    assert_success(&out);
    let shown = env.json(&["cat", "snapshot", "latest"]);
    assert_eq!(shown["tags"], serde_json::json!(["manual"]));

    // forget without flags applies the profile's keep_last.
    let out = env
        .cmd()
        .env_remove("AEON_REPOSITORY")
        .env("AEON_CONFIG", &config)
        .args(["--profile", "home", "forget"])
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);

    // A profile that does not exist is named, with the ones that do.
    let out = with_config(&env, &config, &["--profile", "office", "snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no profile [office]"), "{}", stderr(&out));
    assert!(stderr(&out).contains("default, home"), "{}", stderr(&out));
}

#[test]
fn config_check_names_each_problem_with_its_line() {
    let env = Env::empty();
    let config = env.path("aeon.toml");
    fs::write(
        &config,
        "[home]\nrepository = \"/r\"\nsources = [\"relative/path\"]\ncategory = \"weekly\"\n\
         schedule = \"every 5s\"\nwatch_delay = \"soon\"\n[office]\ninherit = \"nowhere\"\n",
    )
    .unwrap();
    let out = with_config(&env, &config, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let name = config.display().to_string();
    for (line, needle) in
        [(3, "absolute"), (4, "weekly"), (5, "every minute"), (6, "soon"), (8, "nowhere")]
    {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("{name}:{line}:")) && l.contains(needle)),
            "line {line} ({needle}): {err}"
        );
    }
    // Any command using that file stops at the first problem, pointing at `config check`.
    let out = with_config(&env, &config, &["--profile", "home", "snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(":3:") && stderr(&out).contains("config check"));
    // A misspelt key: its line and the key meant.
    fs::write(&config, "[home]\nrepository = \"/r\"\nsourcs = [\"/home\"]\n").unwrap();
    let out = with_config(&env, &config, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(":3: unknown key `sourcs` (did you mean `sources`?)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_and_man_pages() {
    let env = Env::empty();
    for (shell, needle) in
        [("bash", "_aeon()"), ("zsh", "#compdef aeon"), ("fish", "complete -c aeon")]
    {
        let out = env.run(&["completions", shell]);
        assert_success(&out);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(needle), "{shell}: {script}");
        assert!(script.contains("backup") && script.contains("restore"), "{shell}");
    }
    let dir = env.path("man");
    env.run_ok(&["man", dir.to_str().unwrap()]);
    let page = fs::read_to_string(dir.join("aeon-backup.1")).unwrap();
    assert!(page.contains(".TH") && page.contains("exclude"), "{page}");
    assert!(dir.join("aeon.1").exists() && dir.join("aeon-key-add.1").exists());
}
