//! Tree blobs (CBOR).
#![no_main]
use aeon_core::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data, "fuzz") {
        // Whatever decodes must encode and decode to the same value.
        let again = Tree::decode(&t.encode(), "fuzz").expect("re-decode");
        assert_eq!(again, t);
    }
});
