//! Recovery point objects, label records, config settings and the common object header.
#![no_main]
use aeon_core::crypto::{Cipher, Key};
use aeon_core::format::{self, ObjectKind};
use aeon_core::repository::Settings;
use aeon_core::snapshot::{LabelRecord, LabelSet, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = Cipher::new(&Key([7; 32]));
    let _ = Snapshot::decode(&cipher, data, "fuzz");
    let _ = format::from_cbor::<Snapshot>(data, "fuzz");
    let _ = LabelRecord::decode(&cipher, data, "fuzz");
    // A decoded record of any content must be placeable in a set and resolvable.
    if let Ok(record) = format::from_cbor::<LabelRecord>(data, "fuzz") {
        let point = record.snapshot;
        let mut set = LabelSet::default();
        set.insert(aeon_core::Id([1; 32]), record);
        assert!(set.current(&point).is_some());
    }
    let _ = format::from_cbor::<Settings>(data, "fuzz");
    let _ = format::check_header(data, ObjectKind::Config, "fuzz");
});
