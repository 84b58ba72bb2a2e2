//! Key slots: everything up to (not including) the Argon2id derivation.
#![no_main]
use aeon_core::keys::KeySlot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = KeySlot::decode(data) {
        // The limits are judged before any derivation would run.
        let _ = slot.kdf.above_ceiling();
        let _ = slot.kdf.outside_limits();
    }
});
