//! Damage to stored data is found, named, and never restored as wrong bytes.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use common::*;

struct Damaged {
    env: Env,
    safe_dir: PathBuf,
    victim_dir: PathBuf,
    first: String,
    second: String,
    /// The data pack written by the second backup only (it holds the victim's content).
    victim_pack: PathBuf,
}

fn pack_names(env: &Env) -> BTreeSet<PathBuf> {
    env.packs().into_iter().collect()
}

/// Two backups whose new data lands in different packs: damage to the second's pack must not
/// stop the first's files from restoring.
fn setup() -> Damaged {
    let env = Env::new();
    let safe_dir = env.path("safe");
    let victim_dir = env.path("victim");
    fs::create_dir_all(&safe_dir).unwrap();
    fs::create_dir_all(&victim_dir).unwrap();
    let mut rng = Rng::new(99);
    fs::write(safe_dir.join("keep.bin"), rng.content(3 << 20)).unwrap();
    let first = env.backup(&safe_dir);
    let before = pack_names(&env);
    fs::write(victim_dir.join("hit.bin"), rng.content(3 << 20)).unwrap();
    // A second name of the damaged file: it must not survive as a link to a half-written file.
    fs::hard_link(victim_dir.join("hit.bin"), victim_dir.join("hit-link.bin")).unwrap();
    let second = env.backup(&victim_dir);
    let new: Vec<PathBuf> = pack_names(&env).difference(&before).cloned().collect();
    let victim_pack = new
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("the second backup wrote a pack");
    Damaged { env, safe_dir, victim_dir, first, second, victim_pack }
}

fn pack_id(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn flipped_byte_is_named_by_check_and_refused_by_restore() {
    let d = setup();
    let len = fs::metadata(&d.victim_pack).unwrap().len() as usize;
    flip_byte(&d.victim_pack, len / 2);
    check_names_damage(&d, "blob");

    // Restoring the damaged file fails clearly and leaves no wrong data behind.
    let target = d.env.path("restore-victim");
    let spec = format!("{}:{}", d.second, d.victim_dir.display());
    let out = d.env.run(&["restore", &spec, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("hit.bin") && err.contains(&pack_id(&d.victim_pack)), "{err}");
    assert!(!target.join("hit.bin").exists(), "a file with unverified data was left behind");
    assert!(!target.join("hit-link.bin").exists(), "a hard link to it was left behind");
    assert!(err.contains("it is another name of"), "{err}");

    // Files in undamaged packs still restore bit for bit.
    let target = d.env.path("restore-safe");
    let spec = format!("{}:{}", d.first, d.safe_dir.display());
    d.env.run_ok(&["restore", &spec, "--target", target.to_str().unwrap()]);
    assert_trees_equal(&d.safe_dir, &target);
}

/// The table and the header are checked as closely as the blobs: a byte flipped in either is
/// named, and the recovery points of the pack's blobs with it.
#[test]
fn flipped_byte_in_table_or_header_is_named_by_check() {
    for place in ["table", "header"] {
        let d = setup();
        let len = fs::metadata(&d.victim_pack).unwrap().len() as usize;
        flip_byte(&d.victim_pack, if place == "table" { len - 20 } else { 6 });
        check_names_damage(&d, place);
    }
}

fn flip_byte(path: &std::path::Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    fs::write(path, &bytes).unwrap();
}

/// `check --read-data` fails naming the victim pack, as a whole too, and the recovery point
/// that uses it, not the untouched one.
fn check_names_damage(d: &Damaged, place: &str) {
    let out = d.env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(4), "{place}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("pack {}", pack_id(&d.victim_pack))), "{place}: {err}");
    assert!(err.contains("does not match its name"), "{place}: the pack as a whole: {err}");
    assert!(err.contains(&d.second), "{place}: the affected recovery point: {err}");
    assert!(!err.contains(&d.first), "{place}: the untouched recovery point: {err}");
}

#[test]
fn truncated_pack_is_found_without_reading_data() {
    let d = setup();
    let len = fs::metadata(&d.victim_pack).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&d.victim_pack).unwrap();
    f.set_len(len / 3).unwrap();
    let out = d.env.run(&["check"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains(&pack_id(&d.victim_pack)) && err.contains("truncated"), "{err}");
    assert!(err.contains(&d.second), "{err}");

    let target = d.env.path("r");
    let spec = format!("{}:{}", d.second, d.victim_dir.display());
    let out = d.env.run(&["restore", &spec, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(!target.join("hit.bin").exists());
}

#[test]
fn deleted_pack_is_reported_missing() {
    let d = setup();
    fs::remove_file(&d.victim_pack).unwrap();
    let out = d.env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains(&pack_id(&d.victim_pack)) && err.contains("missing"), "{err}");
    assert!(err.contains(&d.second) && !err.contains(&d.first), "{err}");
}

#[test]
fn altered_snapshot_object_is_named() {
    let d = setup();
    let path = d.env.repo.join("snapshots").join(&d.first);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x80;
    fs::write(&path, &bytes).unwrap();
    let out = d.env.run(&["check"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains(&format!("recovery point {}", d.first)), "{err}");
    // Listing still works and warns about the damaged one.
    let out = d.env.run(&["snapshots"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains(&d.first));
}

#[test]
fn intact_repository_passes_read_data_check() {
    let d = setup();
    let out = d.env.run_ok(&["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
}

/// Storage rolled back to an older index (a replayed index, an old mirror) names a pack that
/// prune has since deleted. A backup must not deduplicate against it, and prune must not carry
/// it into the new index.
#[test]
fn a_rolled_back_index_never_makes_a_backup_skip_data() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 41, 3 << 20);
    let first = env.backup(&src);
    let saved = env.path("index-then");
    copy_dir(&env.repo.join("index"), &saved);
    env.run_ok(&["forget", &first[..12]]);
    let r = env.json(&["prune"]);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    // Roll the index back.
    std::fs::remove_dir_all(env.repo.join("index")).unwrap();
    copy_dir(&saved, &env.repo.join("index"));

    let out = env.run(&["backup", "--json", src.to_str().unwrap()]);
    assert_success(&out);
    assert!(stderr(&out).contains("storage does not have"), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["data_added"].as_u64().unwrap() >= 3 << 20, "stored again: {v}");
    // check names the pack the rolled-back index promises and storage lacks...
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(4), "{}", stderr(&check));
    let id = v["snapshot_id"].as_str().unwrap();
    let dump = env.cmd().args(["dump", &format!("{id}:{}/f", src.display())]).output().unwrap();
    assert!(dump.stdout == std::fs::read(src.join("f")).unwrap());

    // ...until prune leaves it out of the index; the new point is whole.
    let r = env.json(&["prune"]);
    assert!(r["packs_missing"].as_u64().unwrap() >= 1, "{r}");
    env.run_ok(&["check", "--read-data"]);
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert!(!stderr(&out).contains("storage does not have"), "prune dropped it: {}", stderr(&out));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
