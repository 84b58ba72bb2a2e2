//! Key slots of every type: everything up to (not including) the Argon2id derivation, and the
//! key-file, public-key and write-only paths in full (a wrong key must open nothing, never
//! panic).
#![no_main]
use aeon_core::keys::{Credential, KeyFileSecret, KeySlot, KeyMaterial, SlotType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = KeySlot::decode(data) {
        // The limits are judged before any derivation would run.
        if let Some(kdf) = slot.kdf {
            let _ = kdf.above_ceiling();
            let _ = kdf.outside_limits();
        }
        let _ = slot.label_in_clear();
        // Write-only slots: the client's path (its public key opens the writer part only).
        let _ = slot.is_retired();
        if let Ok(secret) = aeon_core::keys::SecretKey::generate() {
            let _ = slot.open_as_writer(&secret.public());
        }
        if slot.slot_type == SlotType::KeyFile {
            if let Ok(k) = KeyFileSecret::random() {
                let _ = slot.unlock(&Credential::KeyFile(k));
            }
        }
    }
    // Credential files as text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeyMaterial::parse(text, "fuzz");
    }
});
