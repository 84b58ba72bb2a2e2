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
        let _ = aeon_core::lock::liveness(&info, "fuzz-host", chrono::Utc::now());
        let _ = info.describe();
    }
});
