//! Embedding the engine: list a repository's recovery points (any location: a path, `s3:`,
//! `sftp:` or `webdav:`), with notices (warnings, notes) printed as they come.
//!
//! `AEON_PASSWORD=… cargo run -p aeon-core --example list_points REPOSITORY`

use std::sync::Arc;

use aeon_core::progress::{Notice, Progress};
use aeon_core::repository::{OpenOptions, Repository};

/// Where the engine's warnings and notes go.
struct PrintNotices;

impl Progress for PrintNotices {
    fn notice(&self, notice: &Notice) {
        eprintln!("{notice}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let location = std::env::args().nth(1).ok_or("usage: list_points REPOSITORY")?;
    let password = std::env::var("AEON_PASSWORD").map_err(|_| "set AEON_PASSWORD")?;
    let options = OpenOptions { observer: Arc::new(PrintNotices), ..OpenOptions::default() };
    // Listing needs the key but neither a lock nor the index: the state `Repository<Open>`.
    let repo = Repository::locate(&location, options)?.open(password.as_bytes())?;
    let (points, unreadable) = repo.list_snapshots()?;
    for p in &points {
        let s = &p.snapshot;
        let protected = if s.protected { " (protected)" } else { "" };
        println!("{}  {}  {}  {}{protected}", p.id.short(), s.time, s.hostname, s.paths.join(", "));
    }
    for (name, why) in &unreadable {
        eprintln!("recovery point {name} cannot be read: {why}");
    }
    Ok(())
}
