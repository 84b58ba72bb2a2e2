//! Opening a repository tries every key slot: one that is hostile, damaged or unreadable is
//! skipped with a warning and never stops the others.

use std::sync::Arc;

use aeon_core::Error;
use aeon_core::backend::{Backend, FileType, LocalBackend};
use aeon_core::keys::KdfParams;
use aeon_core::repository::{InitOptions, Repository};

#[test]
fn a_hostile_or_damaged_slot_never_stops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let init = InitOptions { kdf: KdfParams::FLOOR, ..InitOptions::default() };
    Repository::init(backend.clone(), b"pw", init).unwrap();
    let genuine = backend.list(FileType::Key).unwrap()[0].name.clone();
    let bytes = backend.read(FileType::Key, &genuine).unwrap();
    // Named so that they sort before the genuine slot (slots are tried in name order): one asking for 4 TiB of Argon2 memory, one cut short.
    let mut greedy = bytes.clone();
    let label_len = u16::from_le_bytes([bytes[49], bytes[50]]) as usize;
    greedy[51 + label_len..55 + label_len].copy_from_slice(&u32::MAX.to_le_bytes());
    backend.write(FileType::Key, &"0".repeat(64), &greedy).unwrap();
    backend.write(FileType::Key, &format!("{}1", "0".repeat(63)), &bytes[..40]).unwrap();

    let started = std::time::Instant::now();
    let repo = Repository::open(backend.clone(), b"pw").unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the greedy slot was run");
    let warnings = repo.open_warnings().join("\n");
    assert!(warnings.contains(&format!("key slot {} skipped", "0".repeat(64))), "{warnings}");
    assert!(warnings.contains("above what readers run"), "{warnings}");
    assert_eq!(repo.open_warnings().len(), 2, "{warnings}");

    // A wrong password says that some slots could not be tried.
    let err = Repository::open(backend.clone(), b"wrong").err().unwrap();
    assert!(matches!(err, Error::WrongPasswordWithSkipped(_)), "{err}");
    // An empty password is refused before any slot is tried.
    let err = Repository::open(backend, b"").err().unwrap();
    assert!(err.to_string().contains("empty password"), "{err}");
}
