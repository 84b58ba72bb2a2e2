//! Embedding the engine: back a folder up into a new repository and restore it elsewhere.
//!
//! `cargo run -p aeon-core --example backup_and_restore SOURCE REPOSITORY TARGET`

use aeon_core::archiver::{self, BackupOptions, ParentChoice};
use aeon_core::lock::LockKind;
use aeon_core::progress::NoProgress;
use aeon_core::repository::{InitOptions, InitTarget, OpenOptions, Repository};
use aeon_core::restorer::{self, RestoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, location, target] = &args[..] else {
        return Err("SOURCE REPOSITORY TARGET".into());
    };
    let storage = OpenOptions::default().storage;
    InitTarget::new(location, &[], &storage)?
        .create(b"example password", InitOptions::default())?;

    // Back up: open, then prepare (lock, index, parent), then run the archiver.
    let repo = Repository::locate(location, OpenOptions::default())?.open(b"example password")?;
    let mut opts = BackupOptions::new(vec![source.into()]);
    let prepared = archiver::prepare(repo, &mut opts, ParentChoice::Latest)?;
    let done = archiver::backup(&prepared.repo, &opts, &NoProgress)?;
    println!("recovery point {} saved", done.snapshot_id.short());

    // Restore the source folder's contents from that point into TARGET.
    let repo = prepared.repo.unlock().lock(LockKind::Shared, "restore")?.load_index()?;
    let path = archiver::absolute_source_paths(&opts.paths)?[0].display().to_string();
    let node = repo.find_node(&done.snapshot.tree, &path)?;
    let summary = restorer::restore(
        &repo,
        &node,
        "",
        target.as_ref(),
        &RestoreOptions::default(),
        &NoProgress,
    )?;
    println!("restored {} files, {} bytes into {target}", summary.files, summary.bytes);
    Ok(())
}
