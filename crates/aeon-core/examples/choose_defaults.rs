//! Measures the trade-offs behind Aeon's defaults on this machine's own files:
//! cipher speed, compression level, chunk size and pack size.
//!
//! `cargo run --release -p aeon-core --example choose_defaults [DIR...]` (default: /usr/share /usr/lib)

use std::path::{Path, PathBuf};
use std::time::Instant;

use aeon_core::blob::{Compression, encode_payload};
use aeon_core::chunker::{Chunker, ChunkerParams};
use aeon_core::crypto::{Cipher, Key};

const SAMPLE_LIMIT: usize = 256 << 20;

fn collect(dir: &Path, out: &mut Vec<u8>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if out.len() >= SAMPLE_LIMIT {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            collect(&p, out);
        } else if md.is_file()
            && md.len() < 64 << 20
            && let Ok(d) = std::fs::read(&p)
        {
            out.extend_from_slice(&d);
        }
    }
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let dirs = if dirs.is_empty() { vec!["/usr/share".into(), "/usr/lib".into()] } else { dirs };
    let mut sample = Vec::new();
    for d in &dirs {
        collect(d, &mut sample);
    }
    sample.truncate(SAMPLE_LIMIT);
    println!("sample: {} MiB from {:?}\n", sample.len() >> 20, dirs);
    let chunks: Vec<&[u8]> = sample.chunks(1 << 20).collect();

    println!("## Cipher (1 MiB messages, one core)");
    let cipher = Cipher::new(&Key([3; 32]));
    let t = Instant::now();
    for c in &chunks {
        std::hint::black_box(cipher.seal(b"aad", c).unwrap());
    }
    println!("XChaCha20-Poly1305: {:.0} MB/s", mbps(sample.len(), t.elapsed().as_secs_f64()));
    {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let aes = aes_gcm::Aes256Gcm::new_from_slice(&[3; 32]).unwrap();
        let nonce = aes_gcm::Nonce::try_from(&[0u8; 12][..]).unwrap();
        let t = Instant::now();
        for c in &chunks {
            std::hint::black_box(aes.encrypt(&nonce, Payload { msg: c, aad: b"aad" }).unwrap());
        }
        println!("AES-256-GCM:        {:.0} MB/s", mbps(sample.len(), t.elapsed().as_secs_f64()));
    }

    println!("\n## Compression (1 MiB blocks, one core)");
    println!("| codec | ratio | compress MB/s | decompress MB/s |\n|---|---|---|---|");
    for c in [
        Compression::Lz4,
        Compression::Zstd(1),
        Compression::Zstd(3),
        Compression::Zstd(6),
        Compression::Zstd(9),
        Compression::Zstd(19),
    ] {
        let take =
            if matches!(c, Compression::Zstd(19)) { chunks.len().min(32) } else { chunks.len() };
        let input: usize = chunks[..take].iter().map(|c| c.len()).sum();
        let t = Instant::now();
        let mut outs = Vec::with_capacity(take);
        for ch in &chunks[..take] {
            let mut o = Vec::new();
            encode_payload(c, ch, &mut o);
            outs.push(o);
        }
        let ct = t.elapsed().as_secs_f64();
        let stored: usize = outs.iter().map(|o| o.len()).sum();
        let t = Instant::now();
        for (o, ch) in outs.iter().zip(&chunks[..take]) {
            std::hint::black_box(aeon_core::blob::decode_payload(o, ch.len() as u32, "x").unwrap());
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "| {c} | {:.3} | {:.0} | {:.0} |",
            input as f64 / stored as f64,
            mbps(input, ct),
            mbps(input, dt)
        );
    }

    println!("\n## Chunk size: new data after 30 small edits spread over the sample");
    let mut edited = sample.clone();
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..30 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x as usize) % edited.len();
        edited.splice(at..at, b"an inserted line of text\n".iter().copied());
    }
    println!(
        "| min/avg/max | chunks | new bytes after edits | index entries per TiB |\n|---|---|---|---|"
    );
    for (min, avg, max) in [
        (64u32, 256u32, 1024u32),
        (256, 512, 8192),
        (256, 1024, 4096),
        (512, 1024, 8192),
        (1024, 4096, 16384),
    ] {
        let p = ChunkerParams { min_size: min << 10, avg_size: avg << 10, max_size: max << 10 };
        let ids = |d: &[u8]| -> Vec<(blake3::Hash, usize)> {
            Chunker::new(d, p, aeon_core::chunker::Gear::from_secret(&[42; 32]))
                .map(|c| c.unwrap())
                .map(|c| (blake3::hash(&c), c.len()))
                .collect()
        };
        let a = ids(&sample);
        let known: std::collections::HashSet<_> = a.iter().map(|(h, _)| *h).collect();
        let b = ids(&edited);
        let new: usize = b.iter().filter(|(h, _)| !known.contains(h)).map(|(_, l)| l).sum();
        let per_tib = (1u64 << 40) / (sample.len() as u64 / a.len() as u64);
        println!(
            "| {min}K/{avg}K/{max}K | {} | {:.1} MiB ({:.2}%) | {per_tib} |",
            a.len(),
            new as f64 / 1048576.0,
            new as f64 * 100.0 / sample.len() as f64
        );
    }

    println!("\n## Pack size: writing 512 MiB as durable files (write + fsync + rename)");
    let dir = std::env::temp_dir().join("aeon-pack-size-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let backend = aeon_core::backend::LocalBackend::new(&dir);
    use aeon_core::backend::{Backend, FileType};
    backend.create().unwrap();
    for mib in [4usize, 16, 64] {
        let buf = vec![0xa5u8; mib << 20];
        let n = 512 / mib;
        let t = Instant::now();
        for i in 0..n {
            backend.write(FileType::Pack, &format!("{mib:04}{i:060}"), &buf).unwrap();
        }
        println!(
            "{mib:>3} MiB packs: {:.0} MB/s, {} files per TiB",
            mbps(n * buf.len(), t.elapsed().as_secs_f64()),
            (1u64 << 40) / (buf.len() as u64)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
