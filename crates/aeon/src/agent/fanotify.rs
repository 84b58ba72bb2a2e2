//! Watching whole file systems with fanotify (root only): one mark per file system instead of
//! one inotify watch per folder, so a tree of any size is watched at once and no watch limit
//! applies. Events name a folder by its file handle and the entry by name
//! (`FAN_REPORT_DFID_NAME`); the folder's path comes from `open_by_handle_at`.
//!
//! Written on `libc` directly: the crates that wrap fanotify (nix, fanotify-rs) read events in
//! the older mode that hands out open files, without the folder handles and names used here.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use anyhow::{Result, bail};

use super::watch::Event;

/// What a change to an entry of a watched file system looks like.
const MASK: u64 = libc::FAN_MODIFY
    | libc::FAN_ATTRIB
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_ONDIR;
/// How long the reader waits for events before it looks whether it should stop.
const POLL_MS: i32 = 250;

/// A running fanotify watch; dropping it stops its thread.
pub struct FanotifyWatch {
    stop: Arc<AtomicBool>,
}

impl Drop for FanotifyWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An open file descriptor, closed when dropped.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn last_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

/// Marks the file systems of `sources` and sends what changes beneath them to `events`.
pub fn start(sources: &[PathBuf], events: Sender<Event>) -> Result<FanotifyWatch> {
    let flags =
        libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
    // SAFETY: plain system call with constant arguments.
    let fd = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_LARGEFILE) as u32) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            bail!(
                "fanotify needs root (CAP_SYS_ADMIN): run the agent as root or use watch_method = \"inotify\""
            );
        }
        bail!("fanotify is not available: {e}");
    }
    let fanotify = Fd(fd);
    // A descriptor on each watched file system, to turn its handles back into paths.
    let mut mounts: HashMap<[i32; 2], Fd> = HashMap::new();
    for source in sources {
        let c = CString::new(source.as_os_str().as_bytes())?;
        // SAFETY: `c` is a valid C string for the duration of the calls.
        let marked = unsafe {
            libc::fanotify_mark(
                fanotify.0,
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                MASK,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if marked < 0 {
            return Err(last_error(&format!(
                "cannot mark the file system of {}",
                source.display()
            )));
        }
        // SAFETY: `c` is a valid C string; the result is checked.
        let dir =
            unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if dir < 0 {
            return Err(last_error(&format!("cannot open {}", source.display())));
        }
        let dir = Fd(dir);
        // SAFETY: statfs fills the zeroed struct we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(dir.0, &mut st) } < 0 {
            return Err(last_error(&format!(
                "cannot read the file system of {}",
                source.display()
            )));
        }
        mounts.entry(fsid_of(&st)).or_insert(dir);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let sources = sources.to_vec();
    std::thread::Builder::new().name("fanotify".into()).spawn(move || {
        read_events(&fanotify, &mounts, &sources, &events, &stopped);
    })?;
    Ok(FanotifyWatch { stop })
}

fn fsid_of(st: &libc::statfs) -> [i32; 2] {
    // SAFETY: fsid_t is two ints; the layout is the kernel's.
    unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) }
}

/// Reads events until told to stop (or the channel closes).
fn read_events(
    fanotify: &Fd,
    mounts: &HashMap<[i32; 2], Fd>,
    sources: &[PathBuf],
    events: &Sender<Event>,
    stop: &AtomicBool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let mut poll = libc::pollfd { fd: fanotify.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd we own.
        let ready = unsafe { libc::poll(&mut poll, 1, POLL_MS) };
        if ready <= 0 {
            continue;
        }
        // SAFETY: reads into the buffer we own, at most its length.
        let n = unsafe { libc::read(fanotify.0, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            let _ = events.send(Event::Lost(format!("reading fanotify events failed: {e}")));
            return;
        }
        for event in parse(&buffer[..n as usize]) {
            let message = match event {
                Parsed::Overflow => Event::Lost("the kernel's fanotify queue overflowed".into()),
                Parsed::Entry { fsid, handle, handle_type, name } => {
                    let Some(mount) = mounts.get(&fsid) else { continue };
                    match resolve(mount, handle_type, handle) {
                        Ok(dir) => {
                            let path = match name {
                                Some(n) if n != b"." => dir.join(OsStr::from_bytes(n)),
                                _ => dir,
                            };
                            if !sources.iter().any(|s| path.starts_with(s)) {
                                continue;
                            }
                            Event::Paths(vec![path])
                        }
                        // The folder is gone: its own removal is reported by its parent.
                        Err(e) if e.raw_os_error() == Some(libc::ESTALE) => continue,
                        Err(e) => Event::Lost(format!("a changed folder could not be found: {e}")),
                    }
                }
            };
            if events.send(message).is_err() {
                return;
            }
        }
    }
}

/// One event as read: an entry of a folder (its file system, handle and the entry's name), or
/// the queue overflowing.
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    Entry { fsid: [i32; 2], handle_type: i32, handle: &'a [u8], name: Option<&'a [u8]> },
    Overflow,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a buffer of events (`struct fanotify_event_metadata`, then info records of the
/// kind `struct fanotify_event_info_fid` + a file handle + a name). Anything malformed ends the
/// buffer, never reads out of it.
fn parse(buffer: &[u8]) -> Vec<Parsed<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(event_len), Some(metadata_len), Some(mask)) =
        (u32_at(buffer, at), u16_at(buffer, at + 6), u64_at(buffer, at + 8))
    {
        let (event_len, metadata_len) = (event_len as usize, metadata_len as usize);
        if event_len < 24 || metadata_len < 24 || metadata_len > event_len {
            break;
        }
        let Some(event) = buffer.get(at..at + event_len) else { break };
        if mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(Parsed::Overflow);
        }
        let mut info = metadata_len;
        while let (Some(info_type), Some(info_len)) =
            (event.get(info).copied(), u16_at(event, info + 2))
        {
            let info_len = info_len as usize;
            let Some(record) = event.get(info..info + info_len).filter(|_| info_len >= 4) else {
                break;
            };
            let named = info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME;
            if (named || info_type == libc::FAN_EVENT_INFO_TYPE_DFID)
                && let (Some(f0), Some(f1), Some(bytes), Some(handle_type)) =
                    (i32_at(record, 4), i32_at(record, 8), u32_at(record, 12), i32_at(record, 16))
                && let Some(handle) = record.get(20..20 + bytes as usize)
            {
                let name = named
                    .then(|| record.get(20 + bytes as usize..))
                    .flatten()
                    .map(|rest| rest.split(|b| *b == 0).next().unwrap_or(rest));
                out.push(Parsed::Entry { fsid: [f0, f1], handle_type, handle, name });
            }
            info += info_len;
        }
        at += event_len;
    }
    out
}

/// The path of the folder whose handle is `handle` (on the file system `mount` is on).
fn resolve(mount: &Fd, handle_type: i32, handle: &[u8]) -> std::io::Result<PathBuf> {
    // `struct file_handle` with its bytes, in 8-byte-aligned storage.
    let mut storage = vec![0u64; (8 + handle.len()).div_ceil(8)];
    let raw = storage.as_mut_ptr().cast::<u8>();
    // SAFETY: `storage` holds 8 + handle.len() bytes at least; the header is two u32-sized
    // fields, written unaligned-safe, and the handle bytes follow them.
    unsafe {
        raw.cast::<u32>().write_unaligned(handle.len() as u32);
        raw.add(4).cast::<i32>().write_unaligned(handle_type);
        std::ptr::copy_nonoverlapping(handle.as_ptr(), raw.add(8), handle.len());
    }
    // SAFETY: the handle is well formed as above; the result is checked.
    let fd =
        unsafe { libc::open_by_handle_at(mount.0, raw.cast(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = Fd(fd);
    std::fs::read_link(Path::new("/proc/self/fd").join(fd.0.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mask: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = records.concat();
        let len = 24 + body.len();
        let mut e = Vec::new();
        e.extend((len as u32).to_ne_bytes());
        e.extend([3u8, 0]);
        e.extend(24u16.to_ne_bytes());
        e.extend(mask.to_ne_bytes());
        e.extend((-1i32).to_ne_bytes());
        e.extend(7i32.to_ne_bytes());
        e.extend(body);
        e
    }

    fn dfid_name(handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut r = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        r.extend(11i32.to_ne_bytes());
        r.extend(12i32.to_ne_bytes());
        r.extend((handle.len() as u32).to_ne_bytes());
        r.extend(1i32.to_ne_bytes());
        r.extend(handle);
        r.extend(name);
        r.push(0);
        while r.len() % 4 != 0 {
            r.push(0);
        }
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_ne_bytes());
        r
    }

    #[test]
    fn events_parse_and_malformed_ones_stop_the_buffer() {
        let mut buffer =
            event(libc::FAN_CLOSE_WRITE, &[dfid_name(&[1, 2, 3, 4, 5, 6, 7, 8], b"a.txt")]);
        buffer.extend(event(libc::FAN_Q_OVERFLOW, &[]));
        let parsed = parse(&buffer);
        assert_eq!(
            parsed,
            [
                Parsed::Entry {
                    fsid: [11, 12],
                    handle_type: 1,
                    handle: &[1, 2, 3, 4, 5, 6, 7, 8],
                    name: Some(b"a.txt"),
                },
                Parsed::Overflow
            ]
        );
        // Every truncation of the buffer parses without reading past it.
        for cut in 0..buffer.len() {
            let _ = parse(&buffer[..cut]);
        }
        // A record claiming a handle longer than itself is skipped.
        let mut bad = dfid_name(&[9; 8], b"x");
        bad[12..16].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(parse(&event(libc::FAN_CREATE, &[bad])).is_empty());
    }
}
