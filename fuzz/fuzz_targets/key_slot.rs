//! Key slots: everything up to (not including) the Argon2id derivation.
#![no_main]
use aeon_core::keys::KeySlot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = KeySlot::decode(data);
});
