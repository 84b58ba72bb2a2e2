//! Database recovery points against a real PostgreSQL (Debian's, a throwaway cluster per test,
//! as RECIPES.md 5 and 13 start it) and SQLite: a logical `pg_dump -Fc` streamed through
//! `backup --stdin-from-command`, a physical `pg_basebackup` folder, and SQLite's `.backup`;
//! each restored into a fresh server (or file) and compared by the query results of pgbench's
//! tables (row counts and a checksum of every row). The recipes are in the README.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by scripts/test-all.sh (postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server in /usr/lib/postgresql")
}

/// Runs `program`, killed after 3 minutes: a client that waits forever fails the test with its
/// name instead of holding the suite.
fn sh(program: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["--kill-after=10", "180"])
        .arg(program)
        .args(args)
        .env("PGCONNECT_TIMEOUT", "30")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}{}: {}",
        program.display(),
        if out.status.code() == Some(124) { " timed out" } else { "" },
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway cluster run by the `postgres` user (the server refuses root), reached through a
/// Unix socket in its own folder only: no TCP port another test's server could also pick.
/// Stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    sock: PathBuf,
}

impl Cluster {
    /// A new cluster in `dir` (initdb), or one over an existing data folder (`fresh = false`).
    fn start(dir: &Path, fresh: bool) -> Cluster {
        assert!(is_root(), "the PostgreSQL tests run the server as the postgres user: run as root");
        let bin = pg_bin();
        let data = dir.join("data");
        let sock = dir.join("sock");
        fs::create_dir_all(&sock).unwrap();
        // The postgres user must reach its folders: the test's temp folder is 0700.
        let mut up = dir.to_path_buf();
        while let Some(parent) = up.parent() {
            if parent == Path::new("/") || parent == Path::new("/tmp") {
                break;
            }
            up = parent.to_path_buf();
        }
        sh(Path::new("chmod"), &["o+x", up.to_str().unwrap()]);
        sh(Path::new("chown"), &["-R", "postgres:", dir.to_str().unwrap()]);
        if fresh {
            let initdb = bin.join("initdb");
            sh(
                Path::new("runuser"),
                &[
                    "-u",
                    "postgres",
                    "--",
                    initdb.to_str().unwrap(),
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ],
            );
        } else {
            sh(Path::new("chmod"), &["0700", data.to_str().unwrap()]);
        }
        let options = format!(
            "-p 5432 -k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off",
            sock.display()
        );
        let pg_ctl = bin.join("pg_ctl");
        let log = dir.join("server.log");
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", pg_ctl.to_str().unwrap(), "-D", data.to_str().unwrap()])
            .args(["-l", log.to_str().unwrap(), "-w", "-t", "60", "-o", &options, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            started.success(),
            "postgres did not start: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        Cluster { bin, data, sock }
    }

    /// Runs the client `program` of this server's version against it with `args`.
    fn client(&self, program: &str, args: &[&str]) -> String {
        let connection = self.connection();
        let mut all: Vec<&str> = connection.iter().map(String::as_str).collect();
        all.extend(args);
        sh(&self.bin.join(program), &all)
    }

    fn psql(&self, sql: &str) -> String {
        self.client("psql", &["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
    }

    /// Row counts and a checksum of every row of pgbench's four tables.
    fn fingerprint(&self) -> String {
        ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]
            .iter()
            .map(|t| {
                self.psql(&format!(
                    "SELECT '{t}', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM {t} x"
                ))
            })
            .collect()
    }

    fn connection(&self) -> Vec<String> {
        let sock = self.sock.to_string_lossy().into_owned();
        ["-h", &sock, "-p", "5432", "-U", "postgres"].map(String::from).to_vec()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                pg_ctl.to_str().unwrap(),
                "-D",
                self.data.to_str().unwrap(),
            ])
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A source cluster with pgbench's tables (scale 1: 100,000 accounts) and some transactions.
fn source(env: &Env) -> Cluster {
    let pg = Cluster::start(&env.path("pg-source"), true);
    pg.client("pgbench", &["-i", "-s", "1", "-q", "postgres"]);
    pg.client("pgbench", &["-t", "200", "-n", "postgres"]);
    pg
}

#[test]
fn a_pg_dump_stream_restores_into_a_fresh_cluster_with_the_same_rows() {
    let env = Env::new();
    let pg = source(&env);
    let before = pg.fingerprint();
    assert!(before.contains("pgbench_accounts|100000|"), "{before}");
    let pg_dump = pg.bin.join("pg_dump");
    let mut args = vec!["backup", "--stdin-from-command", "--stdin-filename", "postgres.dump"];
    args.extend(["--kind", "database", "--tag", "pg_dump", "--", pg_dump.to_str().unwrap(), "-Fc"]);
    let conn = pg.connection();
    args.extend(conn.iter().map(String::as_str));
    args.push("postgres");
    let point = env.json(&args)["snapshot_id"].as_str().unwrap().to_string();
    // Rows change after the backup: the restore must bring the earlier state back.
    pg.psql("DELETE FROM pgbench_history");

    let fresh = Cluster::start(&env.path("pg-fresh"), true);
    let dump = env.run(&["dump", &format!("{point}:/postgres.dump")]);
    assert_success(&dump);
    let file = env.path("postgres.dump");
    fs::write(&file, &dump.stdout).unwrap();
    fresh.client("pg_restore", &["-d", "postgres", "--exit-on-error", file.to_str().unwrap()]);
    assert_eq!(fresh.fingerprint(), before);
    let shown = env.json(&["snapshots"]);
    assert_eq!(shown[0]["kind"], "database");
}

#[test]
fn a_pg_basebackup_folder_restores_and_starts_as_a_server_with_the_same_rows() {
    let env = Env::new();
    let pg = source(&env);
    let before = pg.fingerprint();
    let base = env.path("basebackup");
    // A fast checkpoint: the default spreads it over minutes.
    pg.client("pg_basebackup", &["-D", base.to_str().unwrap(), "-Fp", "-Xs", "-c", "fast"]);
    let point = env.json(&["backup", base.to_str().unwrap(), "--kind", "database"]);
    let point = point["snapshot_id"].as_str().unwrap().to_string();
    fs::remove_dir_all(&base).unwrap();
    pg.psql("DELETE FROM pgbench_accounts WHERE aid % 2 = 0");

    // Restored into a new folder, it is a server of its own with the rows of the backup.
    let target = env.path("pg-restored");
    fs::create_dir_all(&target).unwrap();
    let spec = format!("{point}:{}", base.display());
    env.run_ok(&["restore", &spec, "--target", target.join("data").to_str().unwrap()]);
    let restored = Cluster::start(&target, false);
    assert_eq!(restored.fingerprint(), before);
}

#[test]
fn an_sqlite_backup_file_restores_with_the_same_rows() {
    let env = Env::new();
    let dir = env.path("app");
    fs::create_dir_all(&dir).unwrap();
    let db = dir.join("app.db");
    let sqlite = |db: &Path, sql: &str| sh(Path::new("sqlite3"), &[db.to_str().unwrap(), sql]);
    sqlite(
        &db,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000) INSERT INTO t SELECT i, hex(randomblob(16)) FROM n;",
    );
    let query = "SELECT count(*), sum(length(v)), group_concat(v) FROM (SELECT v FROM t ORDER BY id LIMIT 500)";
    let before = sqlite(&db, query);
    // `.backup` writes a consistent copy even while others write; that copy is backed up.
    let copy = env.path("backups/app.db");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    sqlite(&db, &format!(".backup {}", copy.display()));
    let point = env.backup(copy.parent().unwrap());
    sqlite(&db, "DELETE FROM t WHERE id % 3 = 0");

    let target = env.path("restored");
    env.run_ok(&[
        "restore",
        &format!("{point}:{}", copy.display()),
        "--target",
        target.to_str().unwrap(),
    ]);
    let restored = target.join("app.db");
    assert_eq!(sqlite(&restored, "PRAGMA integrity_check"), "ok\n");
    assert_eq!(sqlite(&restored, query), before);
    assert_eq!(sqlite(&restored, "SELECT count(*) FROM t"), "20000\n");
}
