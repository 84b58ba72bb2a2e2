//! The physical limit of Aeon's backup pipeline on this machine: the same stages (read, chunk,
//! hash, compress, encrypt) on the same data without storage, with the data in memory, read from
//! the page cache, and read from a cold page cache as the benchmark's backups read.
//!
//! `cargo run --release -p aeon-core --example pipeline_limit DIR [NAME]` prints a Markdown
//! section headed NAME (default: DIR).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aeon_core::blob::{self, BlobType, Compression};
use aeon_core::chunker::{ChunkerParams, chunk_slice};
use aeon_core::crypto::{Cipher, IdHasher, Key};

/// Files are cut into pieces of at most this size, so that a few huge files still keep every
/// core busy (Aeon's backup streams a huge file through one reader but compresses on all cores).
const PIECE: u64 = 16 << 20;

/// One unit of work: `len` bytes of `path` from `offset`.
struct Piece {
    path: PathBuf,
    offset: u64,
    len: usize,
}

fn pieces(dir: &Path, out: &mut Vec<Piece>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            pieces(&e.path(), out);
        } else if ft.is_file() {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            let mut offset = 0;
            loop {
                let len = (size - offset).min(PIECE) as usize;
                out.push(Piece { path: e.path(), offset, len });
                offset += len as u64;
                if offset >= size {
                    break;
                }
            }
        }
    }
}

fn read_piece(p: &Piece) -> Vec<u8> {
    let mut data = vec![0; p.len];
    let n = std::fs::File::open(&p.path).and_then(|f| f.read_at(&mut data, p.offset)).unwrap_or(0);
    data.truncate(n);
    data
}

/// Chunk, hash, compress and encrypt one buffer; returns the sealed bytes (to keep it honest).
fn process(data: &[u8], cipher: &Cipher, hasher: &IdHasher) -> usize {
    let mut sealed = 0;
    let gear = aeon_core::chunker::Gear::from_secret(&[7; 32]);
    for c in chunk_slice(data, ChunkerParams::default(), &gear) {
        let id = hasher.hash(c);
        sealed += blob::seal_blob(cipher, BlobType::Data, &id, c, Compression::default())
            .expect("seal")
            .len();
    }
    sealed
}

fn run(list: &[Piece], threads: usize, with_read: bool, cache: &[Vec<u8>]) -> f64 {
    let cipher = Cipher::for_format(&Key([1; 32]), aeon_core::format::FORMAT_VERSION);
    let hasher = IdHasher::new(&Key([2; 32]));
    timed_on_threads(list.len(), threads, |i| {
        if with_read {
            std::hint::black_box(process(&read_piece(&list[i]), &cipher, &hasher));
        } else {
            std::hint::black_box(process(&cache[i], &cipher, &hasher));
        }
    })
}

/// Seconds to read every piece from storage and nothing else, `threads` reads at a time.
fn run_reads(list: &[Piece], threads: usize) -> f64 {
    timed_on_threads(list.len(), threads, |i| {
        std::hint::black_box(read_piece(&list[i]).len());
    })
}

/// Seconds for `threads` threads to call `work` once for each of `0..count` between them.
fn timed_on_threads(count: usize, threads: usize, work: impl Fn(usize) + Sync) -> f64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/usr/share".into());
    let name = std::env::args().nth(2).unwrap_or_else(|| dir.clone());
    let mut list = Vec::new();
    pieces(Path::new(&dir), &mut list);
    list.sort_by(|a, b| (&a.path, a.offset).cmp(&(&b.path, b.offset)));
    let cache: Vec<Vec<u8>> = list.iter().map(read_piece).collect();
    let bytes: usize = cache.iter().map(Vec::len).sum();
    let files = list.iter().filter(|p| p.offset == 0).count();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mb = |secs: f64| bytes as f64 / secs / 1e6;
    println!("### {name}\n");
    println!(
        "{files} files, {:.0} MB from {dir}: chunk (FastCDC {} KiB average), keyed BLAKE3, zstd:3, XChaCha20-Poly1305, no storage.\n",
        bytes as f64 / 1e6,
        ChunkerParams::default().avg_size >> 10
    );
    println!("| stages | 1 core MB/s | {cores} cores MB/s |\n|---|---|---|");
    let one = run(&list, 1, false, &cache);
    // With every core busy, a core does less than alone (shared caches, memory bandwidth, and
    // on a virtual machine perhaps two threads of one physical core): this is the CPU cost the
    // backup pays, which runs on every core too.
    let stages_cpu_before = cpu_seconds();
    let all = run(&list, cores, false, &cache);
    let stages_cpu = cpu_seconds() - stages_cpu_before;
    println!("| chunk+hash+compress+encrypt (data in memory) | {:.0} | {:.0} |", mb(one), mb(all));
    let (one, all) = (run(&list, 1, true, &cache), run(&list, cores, true, &cache));
    println!("| read (page cache)+chunk+hash+compress+encrypt | {:.0} | {:.0} |", mb(one), mb(all));
    // The benchmark's backups read from a cold cache, which costs kernel time of its own (on a
    // virtual machine, several CPU seconds for half a gigabyte of small files). The best of one
    // and four readers per core is the limit with that cost included.
    let cold = |threads: usize| drop_page_cache().then(|| run(&list, threads, true, &cache));
    match (cold(1), cold(cores).zip(cold(cores * 4))) {
        (Some(one), Some((all, many))) => println!(
            "| read (cold cache)+chunk+hash+compress+encrypt | {:.0} | {:.0} |",
            mb(one),
            mb(all.min(many))
        ),
        _ => println!(
            "| read (cold cache): not measured, dropping the page cache needs root | | |\n"
        ),
    }
    // Reading alone, with many reads in flight, is what the disk allows: no pipeline reading
    // from a cold cache can be faster than this or than the stages' CPU work, whichever is
    // lower. (The row above, each reader working in line, is easily beaten.)
    // Each pass also gives its CPU time: reading cold is not free of CPU (system calls, page
    // cache, and on a virtual machine the device's kicks and interrupts).
    let read_alone = |threads: usize| {
        drop_page_cache().then(|| {
            let before = cpu_seconds();
            (run_reads(&list, threads), cpu_seconds() - before)
        })
    };
    if let (Some(few), Some(many)) = (read_alone(cores * 4), read_alone(cores * 16)) {
        println!(
            "| read alone (cold cache, best of {} and {} threads) | | {:.0} |",
            cores * 4,
            cores * 16,
            mb(few.0.min(many.0))
        );
        // Reading as cheaply as the cheaper pass did plus the stages on every core, spread
        // without loss over the cores: the CPU work no cold-cache backup avoids.
        let read_cpu = few.1.min(many.1);
        println!(
            "| CPU work: read alone {read_cpu:.2} s + stages {stages_cpu:.2} s, on {cores} cores at best | | {:.0} |",
            mb((read_cpu + stages_cpu) / cores as f64)
        );
    }
    println!();
}

/// User and system CPU seconds this process has used so far, on all its threads.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return f64::NAN;
    }
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`; false if not permitted.
fn drop_page_cache() -> bool {
    std::process::Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}
