//! With the metadata cache, browsing a remote repository (listing recovery points, walking
//! trees as ls/find/diff do) downloads no pack, index or recovery-point data after the first
//! time, and a damaged cache entry is noticed and fetched again.

#[path = "support/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aeon_core::Repository;
use aeon_core::archiver::{self, BackupOptions};
use aeon_core::backend::{Backend, FileType, ObjectInfo, RemoteBackend, RemoteOptions};
use aeon_core::cache::Cache;
use aeon_core::keys::KdfParams;
use aeon_core::lock::LockKind;
use aeon_core::progress::NoProgress;
use aeon_core::repository::InitOptions;
use aeon_core::tree::NodeKind;

/// Counts the reads that reach storage, by object kind.
struct Counting {
    inner: RemoteBackend,
    reads: Mutex<HashMap<&'static str, u64>>,
}

impl Counting {
    fn count(&self, t: FileType) {
        *self.reads.lock().unwrap().entry(t.dir()).or_default() += 1;
    }
    fn reads(&self) -> HashMap<&'static str, u64> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> aeon_core::Result<()> {
        self.inner.create()
    }
    fn location_exists(&self) -> aeon_core::Result<bool> {
        self.inner.location_exists()
    }
    fn stat(&self, t: FileType, name: &str) -> aeon_core::Result<Option<u64>> {
        self.inner.stat(t, name)
    }
    fn read(&self, t: FileType, name: &str) -> aeon_core::Result<Vec<u8>> {
        self.count(t);
        self.inner.read(t, name)
    }
    fn read_range(&self, t: FileType, name: &str, o: u64, l: u64) -> aeon_core::Result<Vec<u8>> {
        self.count(t);
        self.inner.read_range(t, name, o, l)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> aeon_core::Result<()> {
        self.inner.write(t, name, data)
    }
    fn list(&self, t: FileType) -> aeon_core::Result<Vec<ObjectInfo>> {
        self.inner.list(t)
    }
    fn remove(&self, t: FileType, name: &str) -> aeon_core::Result<()> {
        self.inner.remove(t, name)
    }
}

/// What `ls -R` does: every node of every recovery point.
fn walk_everything(repo: &Repository) -> usize {
    let (points, _) = repo.list_snapshots().unwrap();
    let mut nodes = 0;
    for p in points {
        let mut stack = vec![p.snapshot.tree];
        while let Some(t) = stack.pop() {
            for n in repo.load_tree(&t).unwrap().nodes {
                nodes += 1;
                if n.kind == NodeKind::Dir {
                    stack.extend(n.subtree);
                }
            }
        }
    }
    nodes
}

#[test]
fn browsing_a_remote_repository_reads_metadata_once() {
    let weed = servers::Seaweed::start();
    weed.create_bucket("cache");
    let opts = RemoteOptions {
        s3_access_key_id: Some(servers::S3_ACCESS_KEY.into()),
        s3_secret_access_key: Some(servers::S3_SECRET_KEY.into()),
        ..Default::default()
    };
    let url = weed.s3_url("cache", "repo");
    let counting = Arc::new(Counting {
        inner: RemoteBackend::open(&url, &opts).unwrap(),
        reads: Mutex::new(HashMap::new()),
    });
    let init = InitOptions {
        kdf: KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 },
        ..InitOptions::default()
    };
    let repo = Repository::init(counting.clone(), b"pw", init).unwrap();
    let src = tempfile::tempdir().unwrap();
    for d in 0..20 {
        let dir = src.path().join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..30 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}").repeat(100)).unwrap();
        }
    }
    let mut repo = repo.lock(LockKind::Shared, "test").unwrap().load_index().unwrap();
    for _ in 0..2 {
        let mut o = BackupOptions::new(vec![src.path().to_path_buf()]);
        o.hostname = "h".into();
        archiver::backup(&repo, &o, &NoProgress).unwrap();
        repo.reload_index().unwrap();
        std::fs::write(src.path().join("d0/new"), b"changed").unwrap();
    }
    drop(repo);
    counting.reads();

    let cache_dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut r = Repository::open(counting.clone(), b"pw").unwrap();
        r.set_cache(Cache::open(cache_dir.path(), &r.repository_id()).unwrap());
        r.without_lock().load_index().unwrap()
    };
    let repo = open();
    let nodes = walk_everything(&repo);
    assert!(nodes > 1200, "{nodes}");
    let first = counting.reads();
    assert!(first.get("data").copied().unwrap_or(0) >= 1, "tree packs fetched once: {first:?}");
    drop(repo);

    // Second session: everything from the cache; only the config and key slot are read.
    let repo = open();
    assert_eq!(walk_everything(&repo), nodes);
    let second = counting.reads();
    for kind in ["data", "index", "snapshots"] {
        assert_eq!(second.get(kind).copied().unwrap_or(0), 0, "{kind} read again: {second:?}");
    }
    drop(repo);

    // A damaged cache entry is detected by its name and fetched again.
    let trees = cache_dir
        .path()
        .join(Repository::open(counting.clone(), b"pw").unwrap().repository_id())
        .join("trees");
    let cached = std::fs::read_dir(&trees).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&cached).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&cached, bytes).unwrap();
    counting.reads();
    let repo = open();
    assert_eq!(walk_everything(&repo), nodes);
    assert_eq!(counting.reads().get("data").copied().unwrap_or(0), 1, "one pack fetched again");
    assert_eq!(repo.cache().unwrap().stats().get("damaged").copied(), Some(1));
}
