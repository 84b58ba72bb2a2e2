//! Lock objects: the sealed object and its CBOR content (what any process with the key may
//! have written, or storage may have damaged).
#![no_main]
use aeon_core::crypto::{Cipher, Key};
use aeon_core::format;
use aeon_core::lock::LockInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = Cipher::new(&Key([7; 32]));
    let _ = LockInfo::decode(&cipher, data, "fuzz");
    if let Ok(info) = format::from_cbor::<LockInfo>(data, "fuzz") {
        // Hostile content (another machine's identity, any declared period) must judge without
        // panicking; the age comes from storage, never from the content.
        let age = Some(std::time::Duration::from_secs(data.len() as u64 * 60));
        let _ = aeon_core::lock::liveness(&info, Some("fuzz-machine"), age);
        let _ = aeon_core::lock::liveness(&info, info.machine.as_deref(), None);
        let _ = info.stale_period();
        let _ = info.describe();
    }
});
