//! Index files: the sealed container, the plaintext table and the clear condemned list.
#![no_main]
use aeon_core::crypto::{Cipher, Key};
use aeon_core::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in 1..=aeon_core::format::FORMAT_VERSION {
        let cipher = Cipher::for_format(&Key([7; 32]), version);
        let _ = IndexFile::decode(&cipher, data, "fuzz");
    }
    let _ = IndexFile::decode_plaintext(data, "fuzz");
    // What write-only clients read without a key: the clear list of condemned packs.
    let _ = IndexFile::clear_condemned(data, "fuzz");
});
