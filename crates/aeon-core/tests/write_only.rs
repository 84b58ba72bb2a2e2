//! Write-only clients at the library level: what one writes opens for full keys only, never
//! with anything the client holds.

use std::sync::Arc;

use aeon_core::backend::{Backend, FileType, LocalBackend};
use aeon_core::blob::{self, BlobType};
use aeon_core::crypto::{Cipher, Key};
use aeon_core::keys::{Credential, KdfParams, NewSlot, SecretKey, SlotNotes};
use aeon_core::lock::LockKind;
use aeon_core::repository::{InitOptions, Repository};
use aeon_core::{Error, pack};

#[test]
fn a_write_only_clients_pack_opens_with_a_full_key_and_nothing_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let init = InitOptions { kdf: KdfParams::FLOOR, ..InitOptions::default() };
    Repository::init(backend.clone(), b"pw", init).unwrap();
    let public = SecretKey::generate().unwrap().public();
    let full =
        Repository::open(backend.clone(), b"pw").unwrap().lock(LockKind::Shared, "t").unwrap();
    let settings = full.writer_settings().unwrap();
    full.key_add(&NewSlot::WriteOnly { public: &public, settings }, &SlotNotes::default()).unwrap();
    drop(full);

    // The client writes one blob in one pack.
    let as_writer =
        || Repository::open_with(backend.clone(), &Credential::PublicKey(Box::new(public.clone())));
    let writer =
        as_writer().unwrap().lock(LockKind::Shared, "backup").unwrap().load_index().unwrap();
    let secret = b"the payroll of december, written by a server that must not read it back";
    let id = writer.hasher().hash(secret);
    let sealed =
        blob::seal_blob(writer.cipher(), BlobType::Data, &id, secret, Default::default()).unwrap();
    let mut packer = writer.packer();
    packer.add(BlobType::Data, id, &sealed, secret.len() as u32).unwrap();
    packer.finish().unwrap();
    let packs = backend.list(FileType::Pack).unwrap();
    assert_eq!(packs.len(), 1);
    let bytes = backend.read(FileType::Pack, &packs[0].name).unwrap();
    // Key mode 1 and the run's envelope: 8 + 1 + 32 + 1,120 bytes before the first blob.
    assert_eq!(bytes[8], pack::KEY_MODE_WRITER);
    assert_eq!(pack::first_blob_offset(pack::envelope_of(&bytes, "p").unwrap()), 1161);
    assert!(!bytes.windows(16).any(|w| w == &secret[..16]), "plaintext on storage");

    // The client itself reads nothing back, not even this.
    assert!(matches!(writer.read_blob(BlobType::Data, &id), Err(Error::WriteOnly(_))));
    // Neither its next run, nor keys made of what it holds (the public key's bytes).
    let later = as_writer().unwrap();
    assert!(pack::read_table(later.cipher(), &bytes, "p").is_err());
    let blob_at = 1161..1161 + sealed.len();
    let attempt = blob::open_blob(
        later.cipher(),
        later.hasher(),
        BlobType::Data,
        &id,
        &bytes[blob_at.clone()],
        secret.len() as u32,
    );
    assert!(attempt.is_err());
    for guess in [*blake3::hash(&public.bytes()).as_bytes(), public.fingerprint()] {
        let cipher = Cipher::for_format(&Key(guess), writer.format_version());
        assert!(pack::read_table(&cipher, &bytes, "p").is_err());
        let raw = secret.len() as u32;
        let blob = &bytes[blob_at.clone()];
        assert!(blob::open_blob(&cipher, writer.hasher(), BlobType::Data, &id, blob, raw).is_err());
    }

    // A full key reads it: the pack table, and the blob through the index.
    let full = Repository::open(backend.clone(), b"pw").unwrap();
    let entries = pack::read_table(full.cipher(), &bytes, "p").unwrap();
    assert_eq!(entries.len(), 1);
    let full = full.lock(LockKind::Shared, "read").unwrap().load_index().unwrap();
    assert_eq!(full.read_blob(BlobType::Data, &id).unwrap(), secret);
}
