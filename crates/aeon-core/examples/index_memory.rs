//! Memory of the in-memory index per blob, measured with N random blob ids.
//!
//! `cargo run --release -p aeon-core --example index_memory 10000000`

use aeon_core::blob::BlobType;
use aeon_core::id::Id;
use aeon_core::index::{Index, IndexPack};
use aeon_core::pack::PackEntry;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let per_pack = 16; // 16 MiB packs of 1 MiB chunks
    let before = rss_bytes();
    let mut index = Index::default();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_id = || {
        let mut id = [0u8; 32];
        for chunk in id.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        Id(id)
    };
    let start = std::time::Instant::now();
    for p in 0..n.div_ceil(per_pack) {
        let blobs = (0..per_pack.min(n - p * per_pack))
            .map(|i| PackEntry {
                blob_type: BlobType::Data,
                id: next_id(),
                offset: 9 + i as u32 * 1_000_000,
                length: 1_000_000,
                raw_len: 1_048_576,
            })
            .collect();
        index.add_pack(&IndexPack { id: next_id(), size: 16 << 20, blobs });
    }
    index.seal();
    let load = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    let probe = next_id();
    let start = std::time::Instant::now();
    let mut found = 0;
    for _ in 0..1_000_000 {
        found += index.contains(&probe) as usize;
    }
    let lookup_ns = start.elapsed().as_nanos() as f64 / 1e6;
    std::hint::black_box(found);
    println!("## Index memory\n");
    println!(
        "{n} blobs in {} packs: {:.1} bytes per blob of RSS (blob entries and pack table together), loaded and sorted in {load:.1} s, {lookup_ns:.0} ns per lookup.\n",
        index.packs().len(),
        (after - before) as f64 / n as f64
    );
}
