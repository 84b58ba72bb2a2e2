//! Key slots of every type: everything up to (not including) the Argon2id derivation, and the
//! key-file and public-key paths in full (a wrong key must open nothing, never panic).
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
