//! Tree blobs (CBOR): decoding, and the promise that a tree `check` accepts is restored whole.
#![no_main]
use aeon_core::tree::{NodeKind, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Tree::decode(data, "fuzz") else { return };
    // Whatever decodes must encode and decode to the same value.
    let again = Tree::decode(&t.encode(), "fuzz").expect("re-decode");
    assert_eq!(again, t);
    let refused = aeon_core::restorer::refused_entries(&t);
    let readers = t.clone().for_readers();
    if !t.faults().is_empty() {
        // Whatever restore takes of a faulty tree is still safe to write.
        for (i, n) in readers.nodes.iter().enumerate() {
            if !refused.contains_key(&i) {
                assert!(aeon_core::tree::is_safe_name(&n.name.0));
            }
        }
        return;
    }
    // Accepted by check: restore refuses nothing, and every entry is what it claims, checked
    // here without the shared fault function.
    assert!(refused.is_empty());
    assert_eq!(readers, t, "readers see an accepted tree as stored");
    for (i, n) in t.nodes.iter().enumerate() {
        let name = &n.name.0;
        assert!(!name.is_empty() && name != b"." && name != b"..");
        assert!(!name.contains(&b'/') && !name.contains(&0));
        if i > 0 {
            assert!(t.nodes[i - 1].name.0 < *name, "sorted and unique");
        }
        assert_eq!(t.find(name), Some(n), "every entry is found by its name");
        match n.kind {
            NodeKind::Dir => assert!(n.subtree.is_some() && n.content.is_empty()),
            NodeKind::Symlink => assert!(n.target.is_some() && n.subtree.is_none()),
            NodeKind::File => assert!(n.subtree.is_none() && n.target.is_none()),
            _ => assert!(n.subtree.is_none() && n.content.is_empty() && n.target.is_none()),
        }
    }
});
