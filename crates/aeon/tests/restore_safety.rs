//! A restore never writes outside its target: not through symlinks, not through crafted names.

mod common;

use std::fs;
use std::sync::Arc;

use aeon_core::blob::{self, BlobType, Compression};
use aeon_core::repository::Repository;
use aeon_core::snapshot::{Snapshot, Summary};
use aeon_core::tree::{Node, NodeKind, RawName, Tree};

use common::*;

#[test]
fn symlink_from_one_point_is_not_followed_by_the_next() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();

    // Recovery point 1: `a` is a symlink to a directory outside the target.
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("a")).unwrap();
    let first = env.backup(&src);
    // Recovery point 2: `a` is a directory holding `passwd`.
    fs::remove_file(src.join("a")).unwrap();
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("a/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
    let second = env.backup(&src);

    let target = env.path("target");
    for id in [&first, &second] {
        let spec = format!("{id}:{}", src.display());
        env.run_ok(&[
            "restore",
            &spec,
            "--target",
            target.to_str().unwrap(),
            "--overwrite",
            "always",
        ]);
    }
    assert!(fs::read_dir(&outside).unwrap().next().is_none(), "wrote through the symlink");
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("a/passwd")).unwrap(), b"root::0:0::/:/bin/sh\n");
}

/// Writes a recovery point whose root tree holds the given hostile names, each a file with
/// the content "pwned", next to one harmless file.
fn craft_hostile_point(env: &Env, names: &[&[u8]]) -> String {
    let backend = Arc::new(aeon_core::backend::LocalBackend::new(&env.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let mut packer = repo.packer();
    let data = b"pwned".to_vec();
    let data_id = repo.hasher().hash(&data);
    let sealed =
        blob::seal_blob(repo.cipher(), BlobType::Data, &data_id, &data, Compression::None).unwrap();
    packer.add(BlobType::Data, data_id, &sealed, data.len() as u32).unwrap();
    let mut nodes = Vec::new();
    for name in names.iter().chain([&b"harmless.txt"[..]].iter()) {
        let mut n = Node::new(RawName(name.to_vec()), NodeKind::File);
        n.mode = 0o644;
        n.size = data.len() as u64;
        n.content = vec![data_id];
        nodes.push(n);
    }
    let tree = Tree { nodes };
    let bytes = tree.encode();
    let tree_id = repo.hasher().hash(&bytes);
    let sealed =
        blob::seal_blob(repo.cipher(), BlobType::Tree, &tree_id, &bytes, Compression::None)
            .unwrap();
    packer.add(BlobType::Tree, tree_id, &sealed, bytes.len() as u32).unwrap();
    packer.finish().unwrap();
    let snap = Snapshot {
        time: chrono::Utc::now().fixed_offset(),
        tree: tree_id,
        paths: vec!["/crafted".into()],
        hostname: "attacker".into(),
        username: "mallory".into(),
        uid: 0,
        gid: 0,
        tags: vec![],
        parent: None,
        description: None,
        category: None,
        kind: None,
        program_version: "crafted".into(),
        summary: Summary::default(),
        protected: false,
        original: None,
    };
    repo.save_snapshot(&snap).unwrap().to_hex()
}

#[test]
fn crafted_names_never_escape_the_target() {
    let env = Env::new();
    let victim = env.path("victim.txt");
    let id = craft_hostile_point(
        &env,
        &[b"..", b".", b"../victim.txt", b"/tmp/aeon-absolute-escape", b"", b"a\0b"],
    );
    let target = env.path("deep/target");
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "hostile names are errors");
    let err = stderr(&out);
    assert!(err.contains("unsafe name"), "{err}");
    assert!(!victim.exists(), "escaped with ../");
    assert!(
        !std::path::Path::new("/tmp/aeon-absolute-escape").exists(),
        "escaped with an absolute name"
    );
    // What is harmless is still restored, and nothing else is in the target.
    assert_eq!(fs::read(target.join("harmless.txt")).unwrap(), b"pwned");
    let names: Vec<_> = fs::read_dir(&target).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("harmless.txt")]);
    assert_eq!(fs::read_dir(env.path("deep")).unwrap().count(), 1);
}
