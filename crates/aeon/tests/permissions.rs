//! A local repository and the metadata cache are their owner's alone: files 0600, folders 0700.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// Every entry below `root` whose mode is not `file_mode` (files) or `dir_mode` (folders).
fn wrong_modes(root: &Path, file_mode: u32, dir_mode: u32) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mode = fs::symlink_metadata(&d).unwrap().permissions().mode() & 0o777;
        if mode != dir_mode {
            wrong.push(format!("{} {mode:o}", d.display()));
        }
        for e in fs::read_dir(&d).unwrap().flatten() {
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else if md.permissions().mode() & 0o777 != file_mode {
                wrong.push(format!("{} {:o}", e.path().display(), md.permissions().mode() & 0o777));
            }
        }
    }
    wrong
}

#[test]
fn repository_and_cache_files_are_private() {
    let env = Env::new();
    let src = env.path("src");
    generate_tree(&src, 5, 40, 40_000);
    env.backup(&src);
    assert_eq!(wrong_modes(&env.repo, 0o600, 0o700), Vec::<String>::new());

    // An existing repository's slot made readable: check warns, naming the slot and the fix.
    let slot = fs::read_dir(env.repo.join("keys")).unwrap().next().unwrap().unwrap().path();
    fs::set_permissions(&slot, fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["check"]);
    assert_success(&out);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let name = slot.file_name().unwrap().to_str().unwrap();
    assert!(
        all.contains(&format!("key slot {name} is readable by other users (mode 0644)")),
        "{all}"
    );
    assert!(all.contains("chmod 600"), "{all}");
}

#[test]
fn the_metadata_cache_is_private() {
    use aeon_core::cache::{Cache, CacheKind};
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), "r1").unwrap();
    let data = b"AEON some object".to_vec();
    let name = aeon_core::id::Id::of_stored_bytes(&data).to_hex();
    cache.put(CacheKind::Snapshot, &name, &data);
    assert_eq!(cache.get(CacheKind::Snapshot, &name), Some(data));
    assert_eq!(wrong_modes(&dir.path().join("r1"), 0o600, 0o700), Vec::<String>::new());
}
