//! Parity heals storage: every combination of lost, damaged and truncated objects a group can
//! rebuild comes back bit for bit, more than that is named down to the files, and interrupted
//! backups and repairs are completed by the next run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A group as its parity objects' heads say (parsed here from FORMAT.md 7a, not with aeon's
/// code): its packs and its parity objects.
#[derive(Debug, Clone)]
struct Group {
    packs: Vec<String>,
    parity: Vec<PathBuf>,
}

fn groups(env: &Env) -> Vec<Group> {
    let mut by_id: BTreeMap<Vec<u8>, Group> = BTreeMap::new();
    for e in fs::read_dir(env.repo.join("parity")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 {
            continue; // a copy of a small object
        }
        let b = fs::read(e.path()).unwrap();
        assert_eq!(&b[..4], b"AEON");
        assert_eq!(b[5], 8, "kind 8");
        let k = b[10] as usize;
        let group = b[13..29].to_vec();
        let mut packs = Vec::new();
        for i in 0..k {
            let at = 41 + i * 41;
            if b[at] == 1 {
                packs.push(hex(&b[at + 1..at + 33]));
            }
        }
        let g = by_id.entry(group).or_insert(Group { packs, parity: Vec::new() });
        g.parity.push(e.path());
    }
    by_id.into_values().collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pack_path(env: &Env, id: &str) -> PathBuf {
    env.repo.join("data").join(&id[..2]).join(id)
}

/// A repository with parity 3+2, 1 MiB packs, and a backup of about 9 MiB in many files.
fn protected_repo(scheme: &str) -> (Env, PathBuf, String) {
    let env = Env::empty();
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
        "--parity",
        scheme,
    ]));
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut rng = Rng::new(35);
    for i in 0..24 {
        let dir = if i % 3 == 0 { src.join("sub") } else { src.clone() };
        fs::write(dir.join(format!("file{i}.bin")), rng.content(200_000 + (i * 37_000) as usize))
            .unwrap();
    }
    let id = env.backup(&src);
    (env, src, id)
}

#[derive(Clone, Copy, Debug)]
enum Harm {
    Delete,
    Flip,
    Truncate,
}

fn harm(path: &Path, how: Harm) {
    match how {
        Harm::Delete => fs::remove_file(path).unwrap(),
        Harm::Flip => {
            let mut b = fs::read(path).unwrap();
            let at = b.len() / 3;
            b[at] ^= 0x40;
            fs::write(path, b).unwrap();
        }
        Harm::Truncate => {
            let b = fs::read(path).unwrap();
            fs::write(path, &b[..b.len() / 2]).unwrap();
        }
    }
}

fn repair_json(env: &Env, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["repair", "--json"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (code, v)
}

fn assert_checks_clean(env: &Env) {
    let c = env.json(&["check", "--read-data"]);
    assert_eq!(c["problems"].as_array().unwrap().len(), 0, "{c}");
}

#[test]
fn every_combination_of_two_harmed_objects_of_a_group_heals_bit_for_bit() {
    let (env, src, id) = protected_repo("3+2");
    let all = groups(&env);
    let g = all.iter().find(|g| g.packs.len() == 3).expect("a full group").clone();
    let objects: Vec<PathBuf> =
        g.packs.iter().map(|p| pack_path(&env, p)).chain(g.parity.iter().cloned()).collect();
    assert_eq!(objects.len(), 5);
    let originals: Vec<Vec<u8>> = objects.iter().map(|p| fs::read(p).unwrap()).collect();
    let harms = [Harm::Delete, Harm::Flip, Harm::Truncate];
    let mut n = 0;
    for a in 0..objects.len() {
        for b in a + 1..objects.len() {
            harm(&objects[a], harms[n % 3]);
            harm(&objects[b], harms[(n + 1) % 3]);
            n += 1;
            let (code, dry) = repair_json(&env, &["--dry-run"]);
            assert_eq!(code, 4, "a dry run with damage exits 4: {dry}");
            assert_eq!(dry["findings"].as_array().unwrap().len(), 2, "{dry}");
            assert_ne!(
                fs::read(&objects[a]).ok().as_ref(),
                Some(&originals[a]),
                "the dry run wrote"
            );
            let (code, r) = repair_json(&env, &[]);
            assert_eq!(code, 0, "{r}");
            for (p, want) in objects.iter().zip(&originals) {
                assert_eq!(&fs::read(p).unwrap(), want, "{} after losing {a} and {b}", p.display());
            }
        }
    }
    assert_eq!(n, 10);
    assert_checks_clean(&env);
    let target = env.path("restored");
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn index_files_recovery_points_and_key_slots_come_back_from_their_copies() {
    let (env, _src, id) = protected_repo("4+2");
    let snapshot = env.repo.join("snapshots").join(&id);
    let index: Vec<PathBuf> =
        fs::read_dir(env.repo.join("index")).unwrap().flatten().map(|e| e.path()).collect();
    let key = fs::read_dir(env.repo.join("keys")).unwrap().flatten().next().unwrap().path();
    let keep =
        [fs::read(&snapshot).unwrap(), fs::read(&index[0]).unwrap(), fs::read(&key).unwrap()];
    fs::remove_file(&snapshot).unwrap();
    harm(&index[0], Harm::Flip);
    harm(&key, Harm::Truncate);
    // Even the key slot: repair needs no password to find damage...
    let out = env.cmd().env_remove("AEON_PASSWORD").args(["repair", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id) && text.contains("would be restored from copy"), "{text}");
    // ... and the only key slot, damaged, comes back before the password is tried.
    let out = env.run(&["repair"]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("restored from its copy"));
    assert_eq!(fs::read(&key).unwrap(), keep[2]);
    let (code, r) = repair_json(&env, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(fs::read(&snapshot).unwrap(), keep[0]);
    assert_eq!(fs::read(&index[0]).unwrap(), keep[1]);
    assert_checks_clean(&env);
}

#[test]
fn losing_more_than_parity_names_the_points_and_files_and_repair_snapshots_keeps_the_rest() {
    let (env, src, id) = protected_repo("3+1");
    // A group of data packs only (the tree pack, the smallest, would take every file with it).
    let tree_pack = env.packs().last().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let g = groups(&env)
        .into_iter()
        .find(|g| g.packs.len() == 3 && !g.packs.contains(&tree_pack))
        .expect("a full group");
    // Two packs of a 3+1 group: one more than its parity.
    let lost: BTreeSet<String> = g.packs[..2].iter().cloned().collect();
    for p in &lost {
        fs::remove_file(pack_path(&env, p)).unwrap();
    }
    let (code, r) = repair_json(&env, &[]);
    assert_eq!(code, 4, "{r}");
    let named: BTreeSet<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["lost"] == true)
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, lost);
    let affected = r["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{r}");
    assert_eq!(affected[0]["snapshot"], id.as_str());
    let files: BTreeSet<String> = affected[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    // The oracle: the files a restore of the point cannot bring back whole.
    let target = env.path("restored");
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let root = target.join(src.strip_prefix("/").unwrap());
    let mut failed = BTreeSet::new();
    for e in walk(&src) {
        let rel = e.strip_prefix(&src).unwrap();
        let restored = root.join(rel);
        if fs::read(&restored).ok() != fs::read(&e).ok() {
            failed.insert(format!("{}/{}", src.display(), rel.display()));
        }
    }
    assert!(!failed.is_empty());
    assert_eq!(files, failed, "repair names exactly the files a restore loses");

    // repair index drops nothing readable; repair snapshots writes the point without them.
    env.run_ok(&["repair", "index"]);
    let rs = env.json(&["repair", "snapshots"]);
    let p = &rs["points"][0];
    assert_eq!(p["original"], id.as_str());
    let removed: BTreeSet<String> =
        p["removed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    assert_eq!(removed, failed);
    let new_id = p["rewritten"].as_str().unwrap().to_string();
    let snaps = env.json(&["snapshots"]);
    let new = snaps.as_array().unwrap().iter().find(|s| s["id"] == new_id.as_str()).unwrap();
    assert!(new["tags"].as_array().unwrap().iter().any(|t| t == "repaired"), "{new}");
    assert_eq!(new["original"], id.as_str());
    let again = env.path("again");
    env.run_ok(&["restore", &new_id, "--target", again.to_str().unwrap()]);
    let root = again.join(src.strip_prefix("/").unwrap());
    for e in walk(&src) {
        let rel = e.strip_prefix(&src).unwrap();
        let name = format!("{}/{}", src.display(), rel.display());
        assert_eq!(root.join(rel).exists(), !failed.contains(&name), "{name}");
        if !failed.contains(&name) {
            assert_eq!(fs::read(root.join(rel)).unwrap(), fs::read(&e).unwrap(), "{name}");
        }
    }
    env.run_ok(&["forget", &id]);
    assert_checks_clean(&env);
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn spawn_quiet(env: &Env, args: &[&str]) -> Child {
    env.cmd().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

fn parity_status(env: &Env) -> serde_json::Value {
    env.json(&["parity", "show"])["status"].clone()
}

#[test]
fn a_backup_killed_while_sealing_and_a_killed_repair_are_completed_by_the_next_run() {
    let env = Env::empty();
    assert_success(&env.run(&[
        "init",
        "--kdf-memory",
        "8",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
        "--parity",
        "4+2",
    ]));
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..10 {
        write_random(&src.join(format!("f{i}")), 900 + i, 3 << 20);
    }
    let mut rng = Rng::new(4);
    let mut killed = 0;
    for round in 0..6 {
        write_random(&src.join(format!("new{round}")), 1000 + round, 4 << 20);
        let mut child = spawn_quiet(&env, &["backup", src.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Kill once some packs are on storage: groups are being filled and sealed.
        let want = env.packs().len() + 3 + rng.below(6) as usize;
        while env.packs().len() < want
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(killed >= 3, "only {killed} backups were killed mid-way");
    // The next backup adopts what the killed ones left and protects it.
    env.backup(&src);
    let st = parity_status(&env);
    assert_eq!(st["packs_protected"], st["packs"], "{st}");
    let (code, r) = repair_json(&env, &["--dry-run"]);
    assert_eq!(code, 0, "{r}");

    // A repair killed while it rebuilds: the next one finishes.
    let g = groups(&env).into_iter().find(|g| g.packs.len() == 4).unwrap();
    let victims: Vec<PathBuf> = g.packs[..2].iter().map(|p| pack_path(&env, p)).collect();
    let keep: Vec<Vec<u8>> = victims.iter().map(|p| fs::read(p).unwrap()).collect();
    for delay in [1u64, 5, 20, 60] {
        for v in &victims {
            let _ = fs::remove_file(v);
        }
        let mut child = spawn_quiet(&env, &["repair"]);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        env.run_ok(&["unlock"]);
        let (code, r) = repair_json(&env, &[]);
        assert_eq!(code, 0, "{r}");
        for (v, want) in victims.iter().zip(&keep) {
            assert_eq!(&fs::read(v).unwrap(), want);
        }
    }
    assert_checks_clean(&env);
}

#[test]
fn prune_keeps_parity_consistent_and_parity_can_be_turned_on_and_off() {
    let env = Env::new(); // no parity yet: an existing repository
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 70 + i, 3 << 20);
    }
    env.backup(&src);
    assert_eq!(parity_status(&env)["scheme"], serde_json::Value::Null);
    let set = env.json(&["parity", "set", "3+1"]);
    assert_eq!(set["status"]["packs_protected"], set["status"]["packs"], "{set}");
    assert!(set["protected"]["copies_written"].as_u64().unwrap() >= 3, "{set}");
    // Change, forget, prune: deleted packs leave their groups; what remains rebuilds.
    for i in 0..3 {
        write_random(&src.join(format!("f{i}")), 170 + i, 3 << 20);
    }
    env.backup(&src);
    let first = env.json(&["snapshots"])[0]["id"].as_str().unwrap().to_string();
    env.run_ok(&["forget", &first]);
    let pr = env.json(&["prune", "--max-unused", "0"]);
    assert!(pr["packs_deleted"].as_u64().unwrap() > 0, "{pr}");
    assert!(pr["parity_groups_updated"].as_u64().unwrap() > 0, "{pr}");
    let st = parity_status(&env);
    assert_eq!(st["packs_protected"], st["packs"], "{st}");
    assert_eq!(st["leftovers"], 0, "{st}");
    // Every group still rebuilds any one of its packs.
    for g in groups(&env) {
        let p = pack_path(&env, &g.packs[0]);
        let keep = fs::read(&p).unwrap();
        fs::remove_file(&p).unwrap();
        let (code, r) = repair_json(&env, &[]);
        assert_eq!(code, 0, "{r}");
        assert_eq!(fs::read(&p).unwrap(), keep);
    }
    assert_checks_clean(&env);
    let off = env.json(&["parity", "off"]);
    assert!(off["removed"].as_u64().unwrap() > 0);
    assert_eq!(fs::read_dir(env.repo.join("parity")).unwrap().count(), 0);
    assert_checks_clean(&env);
}

#[test]
fn a_location_heals_from_another_when_it_has_no_parity_to_heal_from() {
    let env = Env::empty();
    let a = env.path("a");
    let b = env.path("b");
    let out = env
        .cmd()
        .env_remove("AEON_REPOSITORY")
        .args([
            "init",
            "--kdf-memory",
            "8",
            "--kdf-iterations",
            "1",
            "--location",
            a.to_str().unwrap(),
            "--location",
            b.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let env = Env { repo: a.clone(), ..env };
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 5, 2 << 20);
    env.backup(&src);
    let pack = env.packs()[0].clone();
    let keep = fs::read(&pack).unwrap();
    harm(&pack, Harm::Flip);
    let (code, r) = repair_json(&env, &[]);
    assert_eq!(code, 0, "{r}");
    let f = r["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "pack").unwrap().clone();
    assert_eq!(f["action"], "copied from another location", "{r}");
    assert_eq!(fs::read(&pack).unwrap(), keep);
}

#[test]
fn subsets_and_scrubs_cover_all_data_and_a_scrub_repairs_what_it_finds() {
    let (env, _src, _id) = protected_repo("4+2");
    let packs = env.packs().len() as u64;
    let mut read = 0;
    for n in 1..=7 {
        let r = env.json(&["check", "--read-data-subset", &format!("{n}/7")]);
        assert_eq!(r["problems"].as_array().unwrap().len(), 0, "{r}");
        read += r["packs_read"].as_u64().unwrap();
    }
    assert_eq!(read, packs, "the seven parts are disjoint and cover every pack");
    let r = env.json(&["check", "--read-data-subset", "100%"]);
    assert_eq!(r["packs_read"].as_u64().unwrap(), packs);
    let r = env.json(&["check", "--read-data-subset", "1MiB"]);
    assert!((1..packs).contains(&r["packs_read"].as_u64().unwrap()), "{r}");
    let out = env.run(&["check", "--read-data-subset", "8/7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // A daily scrub reads a seventh, goes on where the last stopped, and covers everything
    // within seven runs; its place is kept in the repository.
    let mut bytes = 0;
    let mut full = false;
    for _ in 0..7 {
        let r = env.json(&["check", "--scrub"]);
        bytes += r["bytes_read"].as_u64().unwrap();
        full |= r["scrub"]["last_full_pass"].is_string();
        assert_eq!(fs::read_dir(env.repo.join("scrub")).unwrap().count(), 1);
    }
    let data = env.json(&["check"])["data_bytes"].as_u64().unwrap();
    assert!(bytes >= data, "seven scrubs read {bytes} of {data} bytes");
    assert!(full, "a full pass was recorded");

    // Damage found by a scrub is rebuilt from parity with --repair.
    let victim = env.packs()[0].clone();
    let keep = fs::read(&victim).unwrap();
    harm(&victim, Harm::Flip);
    let mut healed = false;
    for _ in 0..7 {
        let out = env.run(&["check", "--scrub", "--repair"]);
        if String::from_utf8_lossy(&out.stdout).contains("rebuilt from parity") {
            assert_success(&out);
            healed = true;
            break;
        }
        assert_success(&out);
    }
    assert!(healed, "seven scrubs never reached the damaged pack");
    assert_eq!(fs::read(&victim).unwrap(), keep);
    assert_checks_clean(&env);
}

#[test]
fn verify_proves_a_restore_equal_and_names_every_difference() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 12, 60, 300_000);
    let id = env.backup(&src);
    let target = env.path("restored");
    env.run_ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let v = env.json(&["verify", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(v["equal"], true, "{v}");
    assert!(v["files"].as_u64().unwrap() >= 60, "{v}");
    assert_eq!(
        v["root"].as_str().unwrap().len(),
        64,
        "the content root is the point's tree id: {v}"
    );
    // A byte changed with size and mtime kept (what a size-and-time check would miss), a file
    // removed, a file added: each named.
    let here = target.join(src.strip_prefix("/").unwrap());
    let victim = walk(&here)
        .into_iter()
        .find(|p| fs::metadata(p).is_ok_and(|m| m.len() > 10 && m.is_file()) && !p.is_symlink())
        .unwrap();
    let mtime = fs::metadata(&victim).unwrap().modified().unwrap();
    let mut b = fs::read(&victim).unwrap();
    b[5] ^= 1;
    fs::write(&victim, b).unwrap();
    fs::File::options().write(true).open(&victim).unwrap().set_modified(mtime).unwrap();
    fs::write(here.join("extra.txt"), "x").unwrap();
    let out = env.run(&[
        "verify",
        &format!("{id}:{}", src.display()),
        "--target",
        here.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diffs: BTreeSet<(String, String)> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["change"] != "metadata")
        .map(|d| {
            (d["change"].as_str().unwrap().to_string(), d["path"].as_str().unwrap().to_string())
        })
        .collect();
    let rel = format!("/{}", victim.strip_prefix(&here).unwrap().display());
    assert_eq!(
        diffs,
        BTreeSet::from([
            ("modified".to_string(), rel),
            ("added".to_string(), "/extra.txt".to_string())
        ])
    );
}

#[test]
fn random_sets_of_m_harmed_objects_of_a_bigger_group_heal_bit_for_bit() {
    let (env, _src, _id) = protected_repo("6+3");
    let g = groups(&env).into_iter().find(|g| g.packs.len() == 6).expect("a full 6+3 group");
    let objects: Vec<PathBuf> =
        g.packs.iter().map(|p| pack_path(&env, p)).chain(g.parity.iter().cloned()).collect();
    let originals: Vec<Vec<u8>> = objects.iter().map(|p| fs::read(p).unwrap()).collect();
    let harms = [Harm::Delete, Harm::Flip, Harm::Truncate];
    let mut rng = Rng::new(606);
    for round in 0..8 {
        let mut chosen = BTreeSet::new();
        while chosen.len() < 3 {
            chosen.insert(rng.below(objects.len() as u64) as usize);
        }
        for (n, &i) in chosen.iter().enumerate() {
            harm(&objects[i], harms[(round + n) % 3]);
        }
        let (code, r) = repair_json(&env, &[]);
        assert_eq!(code, 0, "round {round}, {chosen:?}: {r}");
        for (p, want) in objects.iter().zip(&originals) {
            assert_eq!(&fs::read(p).unwrap(), want, "round {round}, {chosen:?}: {}", p.display());
        }
    }
    assert_checks_clean(&env);
}
