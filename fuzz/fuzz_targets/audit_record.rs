//! Audit records as read from `audit/` (their clear part is attacker-chosen): decoding, the
//! signature check, and the ordering and verification of a log made of such records.
#![no_main]
use std::sync::Arc;

use aeon_core::audit::{self, Record};
use aeon_core::backend::{Backend, FileType, MemoryBackend};
use aeon_core::crypto::{Cipher, Key};
use aeon_core::id::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Id::of_stored_bytes(data);
    if let Ok(r) = Record::decode(name, data) {
        let _ = r.signature_holds();
    }
    let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    for piece in data.split(|&b| b == 0xfe).take(6) {
        let _ = store.write(FileType::Audit, &Id::of_stored_bytes(piece).to_hex(), piece);
    }
    let cipher = Cipher::new(&Key([9; 32]));
    let _ = audit::verify(store.as_ref(), &cipher, Some("00"));
    let _ = audit::entries(store.as_ref(), &cipher);
});
