//! Pack files as they come off storage: header, key mode, trailer and the table inside.
#![no_main]
use aeon_core::crypto::{Cipher, Key};
use aeon_core::pack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in 1..=aeon_core::format::FORMAT_VERSION {
        let cipher = Cipher::for_format(&Key([7; 32]), version);
        let _ = pack::read_table(&cipher, data, "fuzz");
    }
    // The plaintext table decoder (rows and compressed columns), reached directly: the AEAD
    // would stop random input.
    let _ = pack::decode_table(data, u32::MAX as u64, "fuzz");
    // A write-only client's envelope after key mode 1.
    let _ = pack::envelope_of(data, "fuzz");
});
