//! The physical limit of Aeon's backup pipeline on this machine: the same stages (read from the
//! page cache, chunk, hash, compress, encrypt) on the same data, in memory, without storage; and
//! the same with reads from a cold page cache, as the benchmark's backups read.
//!
//! `cargo run --release -p aeon-core --example pipeline_limit DIR` prints a Markdown section.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aeon_core::blob::{self, BlobType, Compression};
use aeon_core::chunker::{ChunkerParams, chunk_slice};
use aeon_core::crypto::{Cipher, IdHasher, Key};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// Chunk, hash, compress and encrypt one buffer; returns the sealed bytes (to keep it honest).
fn process(data: &[u8], cipher: &Cipher, hasher: &IdHasher) -> usize {
    let mut sealed = 0;
    for c in chunk_slice(data, ChunkerParams::default(), 7) {
        let id = hasher.hash(c);
        sealed += blob::seal_blob(cipher, BlobType::Data, &id, c, Compression::default())
            .expect("seal")
            .len();
    }
    sealed
}

fn run(list: &[PathBuf], threads: usize, with_read: bool, cache: &[Vec<u8>]) -> f64 {
    let cipher = Cipher::for_format(&Key([1; 32]), aeon_core::format::FORMAT_VERSION);
    let hasher = IdHasher::new(&Key([2; 32]));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= list.len() {
                        break;
                    }
                    if with_read {
                        let data = std::fs::read(&list[i]).unwrap_or_default();
                        std::hint::black_box(process(&data, &cipher, &hasher));
                    } else {
                        std::hint::black_box(process(&cache[i], &cipher, &hasher));
                    }
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/usr/share".into());
    let mut list = Vec::new();
    files(Path::new(&dir), &mut list);
    list.sort();
    let cache: Vec<Vec<u8>> = list.iter().map(|p| std::fs::read(p).unwrap_or_default()).collect();
    let bytes: usize = cache.iter().map(Vec::len).sum();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mb = |secs: f64| bytes as f64 / secs / 1e6;
    println!("## In-memory pipeline limit\n");
    println!(
        "{} files, {:.0} MB from {dir}: chunk (FastCDC {} KiB average), keyed BLAKE3, zstd:3, XChaCha20-Poly1305, no storage.\n",
        list.len(),
        bytes as f64 / 1e6,
        ChunkerParams::default().avg_size >> 10
    );
    println!("| stages | 1 core MB/s | {cores} cores MB/s |\n|---|---|---|");
    let (one, all) = (run(&list, 1, false, &cache), run(&list, cores, false, &cache));
    println!("| chunk+hash+compress+encrypt (data in memory) | {:.0} | {:.0} |", mb(one), mb(all));
    let (one, all) = (run(&list, 1, true, &cache), run(&list, cores, true, &cache));
    println!("| read (page cache)+chunk+hash+compress+encrypt | {:.0} | {:.0} |", mb(one), mb(all));
    // The benchmark's backups read from a cold cache, which costs kernel time of its own (on a
    // virtual machine, several CPU seconds for half a gigabyte of small files). The best of one
    // and four readers per core is the limit with that cost included.
    let cold = |threads: usize| drop_page_cache().then(|| run(&list, threads, true, &cache));
    match (cold(1), cold(cores).zip(cold(cores * 4))) {
        (Some(one), Some((all, many))) => println!(
            "| read (cold cache)+chunk+hash+compress+encrypt | {:.0} | {:.0} |\n",
            mb(one),
            mb(all.min(many))
        ),
        _ => println!(
            "| read (cold cache): not measured, dropping the page cache needs root | | |\n"
        ),
    }
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`; false if not permitted.
fn drop_page_cache() -> bool {
    std::process::Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}
