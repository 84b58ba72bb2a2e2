//! Model-based fuzzing of the repository's protocols (in the style of redb's `fuzz_redb`):
//! random sequences of backups of small generated trees, forget, protect/unprotect and prune,
//! with storage writes that fail and crashes at a random storage call (every handle dropped,
//! the repository reopened), checked against a plain model of which recovery points exist and
//! what they hold. After every step every point of the model restores exactly, `check
//! --read-data` finds nothing wrong, and a protected point is never forgotten.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aeon_core::archiver::{self, BackupOptions, ParentChoice};
use aeon_core::backend::{Backend, FileType, MemoryBackend};
use aeon_core::check::{self, CheckOptions};
use aeon_core::keys::KdfParams;
use aeon_core::lock::LockKind;
use aeon_core::progress::NoProgress;
use aeon_core::prune::{self, PruneOptions};
use aeon_core::repository::{InitOptions, Repository};
use aeon_core::restorer::{self, RestoreOptions};
use aeon_core::testing::{Fault, FaultyBackend};
use aeon_core::{Error, Id};
use libfuzzer_sys::fuzz_target;

const PASSWORD: &[u8] = b"model";

/// What the model knows of a recovery point.
#[derive(Debug, Clone)]
struct Point {
    files: BTreeMap<String, Vec<u8>>,
    protected: bool,
}

/// Eight 12 KiB blocks that files are made of, so that backups share data.
fn block(i: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(i);
    (0..12 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The files of a generated tree: 1 to 4 files of 0 to 3 blocks and a distinct tail.
fn tree_files(seed: u8, step: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for f in 0..=(seed % 4) {
        let mut content = Vec::new();
        for b in 0..(seed.wrapping_add(f) % 4) {
            content.extend(block(seed.wrapping_mul(31).wrapping_add(b).wrapping_add(f) % 8));
        }
        content.extend(format!("file {f} of step {step} seed {seed}").as_bytes());
        files.insert(format!("d{}/f{f}", f % 2), content);
    }
    files
}

fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>, step: usize) {
    let _ = std::fs::remove_dir_all(root);
    for (i, (name, content)) in files.iter().enumerate() {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        // Distinct modification times: a file rewritten within one clock tick must not look
        // unchanged to the parent comparison (a limit of every tool comparing metadata).
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + (step * 16 + i) as u64);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy)]
enum Op {
    Backup(u8),
    Forget(u8),
    ToggleProtection(u8),
    Prune(u8),
}

fn decode(data: &[u8]) -> Vec<(Op, Vec<Fault>)> {
    let mut steps = Vec::new();
    let mut pending = Vec::new();
    for pair in data.chunks_exact(2).take(10) {
        let (kind, arg) = (pair[0], pair[1]);
        let op = match kind % 7 {
            0 | 1 => Op::Backup(arg),
            2 => Op::Forget(arg),
            3 => Op::ToggleProtection(arg),
            4 => Op::Prune(arg),
            5 => {
                pending.push(Fault::CrashAtCall(u64::from(arg) % 160 + 1));
                continue;
            }
            _ => {
                pending.push(Fault::FailWrite(u64::from(arg) % 24 + 1));
                continue;
            }
        };
        steps.push((op, std::mem::take(&mut pending)));
    }
    steps
}

/// Runs one step against storage that may fail; `Err` is the engine's error.
fn run(
    backend: Arc<dyn Backend>,
    op: Op,
    source: &Path,
    target: Option<Id>,
) -> Result<Option<Id>, Error> {
    let repo = Repository::open(backend, PASSWORD)?;
    match op {
        Op::Backup(_) => {
            let mut opts = BackupOptions::new(vec![source.to_path_buf()]);
            opts.hostname = "model".into();
            opts.threads = 1;
            let prepared = archiver::prepare(repo, &mut opts, ParentChoice::Latest)?;
            let done = archiver::backup(&prepared.repo, &opts, &NoProgress)?;
            Ok(Some(done.snapshot_id))
        }
        Op::Forget(_) | Op::ToggleProtection(_) => {
            let Some(target) = target else { return Ok(None) };
            let repo = repo.lock(LockKind::Shared, "model")?;
            let (entries, _) = repo.list_snapshots()?;
            let entry = entries.iter().find(|e| e.id == target).expect("model point listed");
            if let Op::Forget(_) = op {
                repo.forget(std::slice::from_ref(entry))?;
            } else {
                repo.relabel(entry, |l| l.protected = !l.protected)?;
            }
            Ok(Some(target))
        }
        Op::Prune(arg) => {
            let opts = PruneOptions { max_unused: f64::from(arg % 3) * 0.3, ..Default::default() };
            prune::prune(repo, &opts, &NoProgress)?;
            Ok(None)
        }
    }
}

/// Every point of the model restores exactly, and check finds nothing wrong.
fn verify(store: &MemoryBackend, source: &Path, model: &BTreeMap<Id, Point>, scratch: &Path) {
    let backend: Arc<dyn Backend> = Arc::new(store.clone());
    let repo = Repository::open(backend.clone(), PASSWORD).expect("reopen");
    let repo = repo.lock(LockKind::Shared, "verify").expect("lock").load_index().expect("index");
    let (entries, unreadable) = repo.list_snapshots().expect("list");
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let listed: Vec<Id> = entries.iter().map(|e| e.id).collect();
    assert_eq!(listed.len(), model.len(), "points: {listed:?} vs model {:?}", model.keys());
    for e in &entries {
        let want = model.get(&e.id).expect("a point the model has");
        assert_eq!(e.snapshot.protected, want.protected, "protection of {}", e.id);
        let node = repo.find_node(&e.snapshot.tree, &source.display().to_string()).expect("source");
        let target = scratch.join(e.id.to_hex());
        let opts = RestoreOptions { threads: 1, verify: true, ..Default::default() };
        let summary = restorer::restore(&repo, &node, "", &target, &opts, &NoProgress).expect("restore");
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        for (name, content) in &want.files {
            assert_eq!(&std::fs::read(target.join(name)).expect("restored file"), content, "{name}");
        }
        std::fs::remove_dir_all(&target).unwrap();
    }
    let locked = repo.unlock().lock(LockKind::Shared, "check").expect("lock");
    let opts = CheckOptions { read_data: true, threads: 1, ..CheckOptions::default() };
    let report = check::check(locked, &opts, &NoProgress).expect("check runs");
    assert!(report.is_ok(), "check: {:?}", report.problems);
}

/// A process killed while holding a lock leaves it; its machine would judge it stale (the
/// process is gone), which this process cannot fake for itself: the lock is removed instead.
fn remove_locks(store: &MemoryBackend) {
    for l in store.list(FileType::Lock).unwrap() {
        store.remove(FileType::Lock, &l.name).unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let steps = decode(data);
    if steps.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (source, scratch) = (dir.path().join("src"), dir.path().join("restored"));
    let store = MemoryBackend::new();
    let init = InitOptions {
        kdf: KdfParams::FLOOR,
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(Arc::new(store.clone()), PASSWORD, init).unwrap();
    let mut model: BTreeMap<Id, Point> = BTreeMap::new();

    for (step, (op, faults)) in steps.into_iter().enumerate() {
        let files = match op {
            Op::Backup(seed) => tree_files(seed, step),
            _ => BTreeMap::new(),
        };
        if let Op::Backup(_) = op {
            write_tree(&source, &files, step);
        }
        let faulty = Arc::new(FaultyBackend::new(Arc::new(store.clone()), faults.clone()));
        // The point a forget or a change of protection is about.
        let target = match op {
            Op::Forget(arg) | Op::ToggleProtection(arg) if !model.is_empty() => {
                model.keys().nth(usize::from(arg) % model.len()).copied()
            }
            _ => None,
        };
        let outcome = run(faulty.clone(), op, &source, target);
        drop(faulty);
        remove_locks(&store);

        // What storage now holds, against what the model allows.
        let now: Vec<Id> = store
            .list(FileType::Snapshot)
            .unwrap()
            .into_iter()
            .map(|o| o.name.parse().unwrap())
            .collect();
        match (op, &outcome) {
            (Op::Backup(_), Ok(Some(id))) => {
                model.insert(*id, Point { files, protected: false });
            }
            (Op::Backup(_), Err(_)) if !faults.is_empty() => {
                // Interrupted: the point was written or not; if written, it must hold the tree.
                let new: Vec<Id> = now.iter().filter(|id| !model.contains_key(id)).copied().collect();
                for id in new {
                    model.insert(id, Point { files: files.clone(), protected: false });
                }
            }
            (Op::Forget(_), Ok(Some(id))) => {
                assert!(!model[id].protected, "a protected point was forgotten");
                model.remove(id);
            }
            (Op::Forget(_), Err(Error::Protected(_))) => {
                let id = target.expect("a point was named");
                assert!(model[&id].protected, "forget refused an unprotected point");
            }
            (Op::Forget(_), Err(_)) if !faults.is_empty() => {
                if let Some(id) = target.filter(|id| !now.contains(id)) {
                    assert!(!model[&id].protected, "a protected point was forgotten");
                    model.remove(&id);
                }
            }
            (Op::ToggleProtection(_), Ok(Some(id))) => {
                let p = model.get_mut(id).unwrap();
                p.protected = !p.protected;
            }
            (Op::ToggleProtection(_), Err(_)) if !faults.is_empty() => {
                // Changed or not: whatever storage says now, once verified below.
                if let Some(id) = target {
                    let repo = Repository::open(Arc::new(store.clone()), PASSWORD).unwrap();
                    let (entries, _) = repo.list_snapshots().unwrap();
                    let listed = entries.iter().find(|e| e.id == id).expect("still there");
                    model.get_mut(&id).unwrap().protected = listed.snapshot.protected;
                }
            }
            (_, Ok(_)) => {}
            (Op::Prune(_), Err(_)) if !faults.is_empty() => {}
            (_, Err(e)) => panic!("{op:?} failed without an injected fault: {e}"),
        }
        verify(&store, &source, &model, &scratch);
    }
});
