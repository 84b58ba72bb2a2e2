//! Parity objects as read from `parity/` (readable without the key, so fully attacker-chosen):
//! the head decoder, and a rebuild from a group whose objects are arbitrary bytes, which must end
//! in an error or in objects that hash to their names, never a panic or an allocation beyond
//! the objects' sizes.
#![no_main]
use std::collections::HashSet;
use std::sync::Arc;

use aeon_core::backend::{Backend, FileType, MemoryBackend};
use aeon_core::id::Id;
use aeon_core::parity::{self, ParityListing, ShardHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ShardHeader::decode(data, data.len() as u64, "fuzz");
    if data.len() >= parity::FIXED_HEAD_LEN {
        let _ = ShardHeader::slots_announced(&data[..parity::FIXED_HEAD_LEN], "fuzz");
    }
    // Up to three objects in parity/ and the packs they may name.
    let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    for piece in data.split(|&b| b == 0xfe).take(4) {
        let name = Id::of_stored_bytes(piece).to_hex();
        let _ = store.write(FileType::Parity, &name, piece);
        let _ = store.write(FileType::Pack, &name, piece);
    }
    if let Ok(listing) = ParityListing::read(store.as_ref(), &HashSet::new()) {
        for g in &listing.groups {
            let lost: Vec<usize> = (0..g.members.len()).filter(|&i| g.members[i].is_some()).take(1).collect();
            if let Ok(rebuilt) = parity::groups::rebuild(store.as_ref(), g, &lost, &[]) {
                for r in rebuilt {
                    if r.kind == FileType::Pack {
                        assert_eq!(Id::of_stored_bytes(&r.bytes).to_hex(), r.name);
                    }
                }
            }
        }
    }
});
