//! Bad input and hostile situations get a clear message and a documented exit code.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn wrong_password() {
    let env = Env::new();
    let out = env.cmd().env("AEON_PASSWORD", "not it").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
}

#[test]
fn missing_repository_and_not_a_repository() {
    let env = Env::empty();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(stderr(&out).contains("no repository at"), "{}", stderr(&out));

    fs::create_dir_all(&env.repo).unwrap();
    fs::write(env.repo.join("notes.txt"), b"just a folder").unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(stderr(&out).contains("is not an Aeon repository"), "{}", stderr(&out));

    fs::write(env.repo.join("config"), b"{\"version\": 2}").unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(stderr(&out).contains("does not start with the AEON magic"), "{}", stderr(&out));
}

#[test]
fn newer_format_version_is_refused_by_name() {
    let env = Env::new();
    let config = env.repo.join("config");
    let mut bytes = fs::read(&config).unwrap();
    bytes[4] = 4;
    fs::write(&config, &bytes).unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("format version 4 is newer than this aeon supports (up to 3)"), "{err}");
}

#[test]
fn init_refuses_an_existing_repository_and_harms_nothing() {
    let env = Env::new();
    let before = fs::read(env.repo.join("config")).unwrap();
    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
    assert_eq!(fs::read(env.repo.join("config")).unwrap(), before);
}

#[test]
fn no_password_source_without_a_terminal() {
    let env = Env::new();
    let out = env.cmd().env_remove("AEON_PASSWORD").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no password given"), "{}", stderr(&out));
}

#[test]
fn password_file_and_command() {
    let env = Env::new();
    let file = env.path("pw");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd()
        .env_remove("AEON_PASSWORD")
        .env("AEON_PASSWORD_FILE", &file)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_success(&out);
    let out = env
        .cmd()
        .env_remove("AEON_PASSWORD")
        .env("AEON_PASSWORD_COMMAND", format!("echo '{PASSWORD}'"))
        .arg("snapshots")
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn unreadable_file_is_skipped_with_exit_code_3_and_the_point_is_written() {
    let mut env = Env::empty();
    if is_root() {
        // Root reads everything: run aeon as `nobody` so that mode 000 means something.
        env.run_as = Some(65534);
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let init = env.run(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"]);
    assert_success(&init);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("ok.txt"), b"readable").unwrap();
    fs::write(src.join("secret.txt"), b"not for you").unwrap();
    fs::set_permissions(src.join("ok.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();

    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret.txt"), "{}", stderr(&out));
    let spec = format!("latest:{}", src.display());
    let listing = env.run_ok(&["ls", &spec]);
    assert!(listing.contains("ok.txt") && !listing.contains("secret.txt"), "{listing}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let env = Env::new();
    let out = env.run(&["backup"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["backup", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/definitely/not/here"), "{}", stderr(&out));
    let out = env.run(&["backup", env.dir.path().to_str().unwrap(), "--compression", "gzip"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid compression"));
    let out = env.cmd().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("aeon {}", env!("CARGO_PKG_VERSION"))
    );
}

/// An empty password is refused from every source, naming the source.
#[test]
fn an_empty_password_is_refused_from_every_source() {
    let env = Env::new();
    let out = env.cmd().env("AEON_PASSWORD", "").arg("snapshots").output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AEON_PASSWORD is empty"), "{}", stderr(&out));
    let file = env.path("pw");
    std::fs::write(&file, "\n").unwrap();
    let out = env
        .cmd()
        .env_remove("AEON_PASSWORD")
        .args(["snapshots", "--password-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is empty"), "{}", stderr(&out));
    let fresh = Env::empty();
    let out = fresh.cmd().env("AEON_PASSWORD", "").arg("init").output().unwrap();
    assert!(!out.status.success());
    assert!(!fresh.repo.join("config").exists(), "no repository made with an empty password");
}
