//! Blob payloads after decryption: codec byte and compressed data.
#![no_main]
use aeon_core::blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (1 << 24);
    let _ = blob::decode_payload(&data[4..], raw_len, "fuzz");
});
