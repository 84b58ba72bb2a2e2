//! Blobs as read from packs: sealed boxes, and (after decryption) codec byte and compressed data.
#![no_main]
use aeon_core::blob::{self, BlobType};
use aeon_core::crypto::{Cipher, IdHasher, Key};
use aeon_core::id::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (1 << 24);
    let body = &data[4..];
    let _ = blob::decode_payload(body, raw_len, "fuzz");

    // Format versions 1 and 2 differ in the nonce a box stores (24 or 16 bytes).
    let cipher = Cipher::for_format(&Key([7; 32]), 1 + (raw_len % 2) as u8);
    let hasher = IdHasher::new(&Key([9; 32]));
    let id = Id([3; 32]);
    // Arbitrary bytes where a sealed blob should be: refused, never a panic.
    let mut sealed = body.to_vec();
    let _ = blob::open_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut sealed, raw_len);
    // An authentic box around an arbitrary payload: decoded, or refused by length or id.
    let mut sealed = Vec::new();
    let aad = blob::blob_aad(BlobType::Data, &id);
    if cipher.seal_into(&aad, body, &mut sealed).is_ok() {
        let mut copy = sealed.clone();
        let opened =
            blob::open_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut sealed, raw_len);
        let verified =
            blob::verify_blob_in_place(&cipher, &hasher, BlobType::Data, &id, &mut copy, raw_len);
        assert_eq!(opened.is_ok(), verified.is_ok());
        if let Ok(plain) = opened {
            assert_eq!(hasher.hash(&plain), id);
        }
    }
});
