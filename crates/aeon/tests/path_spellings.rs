//! Property: whatever the tree (symlinked parents, hard-link groups across directories, deep
//! nesting) and however its path is spelled on the command line, a backup restores exactly,
//! under the path as given, and `check` accepts it.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, proptest};

/// A random tree below `root`: nested directories, files, hard-link groups whose names lie in
/// different directories, relative symlinks, and one chain of `deep` nested directories.
fn build(root: &Path, seed: u64, deep: usize) {
    let mut rng = Rng::new(seed);
    generate_tree(root, seed, 12 + rng.below(20) as usize, 300_000);
    let mut dirs = vec![root.to_path_buf()];
    for e in walk(root) {
        if fs::symlink_metadata(&e).unwrap().is_dir() {
            dirs.push(e);
        }
    }
    dirs.sort();
    for group in 0..1 + rng.below(3) {
        let first = dirs[rng.below(dirs.len() as u64) as usize].join(format!("linked{group}"));
        let len = rng.below(100_000) as usize;
        fs::write(&first, rng.content(len)).unwrap();
        for name in 0..1 + rng.below(3) {
            let dir = &dirs[rng.below(dirs.len() as u64) as usize];
            let other = dir.join(format!("linked{group}-{name}"));
            fs::hard_link(&first, other).unwrap();
        }
    }
    let mut chain = root.join("deep");
    for _ in 0..deep {
        chain.push("d");
    }
    fs::create_dir_all(&chain).unwrap();
    fs::write(chain.join("bottom"), b"at the bottom").unwrap();
}

/// Every path below `root`, symlinks not followed.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Groups of relative paths that share an inode (hard links), sorted.
fn link_groups(root: &Path) -> Vec<Vec<PathBuf>> {
    let mut by_inode: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    for p in walk(root) {
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_file() && md.nlink() > 1 {
            by_inode.entry(md.ino()).or_default().push(p.strip_prefix(root).unwrap().into());
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = by_inode.into_values().collect();
    groups.iter_mut().for_each(|g| g.sort());
    groups.sort();
    groups
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn any_tree_by_any_spelling_restores_exactly(
        seed in any::<u64>(),
        deep in 0usize..300,
        spelling in 0usize..5,
    ) {
        let env = Env::new();
        // home -> data/home: the tree lives in data/home/me, reached through the link.
        let real = env.path("data/home/me");
        build(&real, seed, deep);
        std::os::unix::fs::symlink("data/home", env.path("home")).unwrap();
        std::os::unix::fs::symlink("data", env.path("data-link")).unwrap();
        let base = env.dir.path().to_path_buf();
        let home = real.parent().unwrap().to_path_buf();
        let (given, cwd) = match spelling {
            0 => (format!("{}/home/me", base.display()), &base),
            1 => (format!("{}/data-link/home/me/", base.display()), &base),
            2 => ("home/me".to_string(), &base),
            3 => (format!("{}/data/home/./me", base.display()), &base),
            _ => ("./me".to_string(), &home),
        };
        let out = env.cmd().current_dir(cwd).args(["backup", &given]).output().unwrap();
        prop_assert!(out.status.success(), "{}", stderr(&out));
        let points = env.json(&["snapshots"]);
        let recorded = points[0]["paths"][0].as_str().unwrap().to_string();
        let expected = match spelling {
            0 | 2 => base.join("home/me"),
            1 => base.join("data-link/home/me"),
            _ => base.join("data/home/me"),
        };
        prop_assert_eq!(Path::new(&recorded), expected.as_path(), "recorded as given");

        let target = env.path("target");
        let r = env.run(&["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
        prop_assert!(r.status.success(), "{}", stderr(&r));
        let restored = target.join(recorded.trim_start_matches('/'));
        assert_trees_equal(&real, &restored);
        prop_assert_eq!(link_groups(&real), link_groups(&restored));
        // The same path serves every reader.
        let listed = env.run_ok(&["ls", &format!("latest:{recorded}")]);
        prop_assert!(listed.contains(&format!("{recorded}/rel-link")), "{}", listed);
        prop_assert!(env.run(&["check", "--read-data"]).status.success());
    }
}
