//! What a repository of a folder would store under several chunker bounds: chunks, bytes left
//! after deduplication, and bytes after zstd:3 (the probe and raw fallback included). The
//! README's "Why these defaults" quotes it for the benchmark's large files.
//!
//! `cargo run --release -p aeon-core --example chunk_sweep DIR [MIN/AVG/MAX in KiB ...]`
//! (default bounds: 512/1024/8192 and 256/512/8192)

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aeon_core::blob::{Compression, encode_payload};
use aeon_core::chunker::{ChunkerParams, chunk_slice};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => files(&p, out),
            Ok(md) if md.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn parse_bounds(arg: &str) -> Option<ChunkerParams> {
    let v: Vec<u32> = arg.split('/').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [min, avg, max] = v[..] else { return None };
    let p = ChunkerParams { min_size: min << 10, avg_size: avg << 10, max_size: max << 10 };
    p.validate().ok().map(|()| p)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: chunk_sweep DIR [MIN/AVG/MAX in KiB ...]");
        std::process::exit(2);
    };
    let mut bounds: Vec<ChunkerParams> = args
        .map(|a| parse_bounds(&a).unwrap_or_else(|| panic!("bad bounds {a}: MIN/AVG/MAX in KiB")))
        .collect();
    if bounds.is_empty() {
        bounds = vec![parse_bounds("512/1024/8192").unwrap(), ChunkerParams::default()];
    }
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    println!("| min/avg/max KiB | chunks | unique chunks | after dedup | stored (zstd:3) |");
    println!("|---|---|---|---|---|");
    let gear = aeon_core::chunker::Gear::from_secret(&[7; 32]);
    for p in bounds {
        let (mut chunks, mut unique, mut deduplicated, mut stored) = (0usize, 0usize, 0u64, 0u64);
        let mut seen = HashSet::new();
        for path in &paths {
            let Ok(data) = std::fs::read(path) else { continue };
            let pieces: Vec<&[u8]> = chunk_slice(&data, p, &gear).collect();
            chunks += pieces.len();
            // Compress on two threads, as a backup would.
            let half = pieces.len().div_ceil(2).max(1);
            let sized: Vec<(blake3::Hash, usize, usize)> = std::thread::scope(|s| {
                let workers: Vec<_> = pieces
                    .chunks(half)
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|c| {
                                    let mut out = Vec::new();
                                    encode_payload(Compression::Zstd(3), c, &mut out);
                                    (blake3::hash(c), c.len(), out.len())
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
            });
            for (hash, raw, packed) in sized {
                if seen.insert(hash) {
                    unique += 1;
                    deduplicated += raw as u64;
                    stored += packed as u64;
                }
            }
        }
        println!(
            "| {}/{}/{} | {chunks} | {unique} | {deduplicated} | {stored} |",
            p.min_size >> 10,
            p.avg_size >> 10,
            p.max_size >> 10
        );
    }
}
