use aeon_core::filter::PathFilter;
use aeon_core::restorer::{self, RestoreOptions, RestoreSummary};
use aeon_core::snapshot::SnapshotEntry;
use anyhow::Result;
use serde_json::json;

use crate::cli::RestoreArgs;
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let (entry, path, node) = super::resolve_target_at(&repo, args.snapshot.as_deref(), &args.at)?;
    let opts = RestoreOptions {
        threads: ctx.threads(),
        overwrite: args.overwrite.parse()?,
        delete: args.delete,
        includes: PathFilter::new(&args.includes, &[])?,
        excludes: PathFilter::new(&args.excludes, &[])?,
        numeric_owner: args.numeric_owner,
        verify: args.verify,
        privileged: !args.no_privileged,
        expected_totals: expected_totals(
            &entry,
            &path,
            !args.includes.is_empty() || !args.excludes.is_empty(),
        ),
    };
    let node_path = format!("/{}", path.trim_matches('/'));
    let bar = Bar::new(ctx.progress_visible(), "files");
    let started = std::time::Instant::now();
    let summary = restorer::restore(&repo, &node, &node_path, &args.target, &opts, &bar);
    bar.finish();
    let summary = summary?;
    let secs = started.elapsed().as_secs_f64();
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    if ctx.global.json {
        ctx.print_json(&summary_json(&entry, &node_path, &args.target, &summary, secs))?;
    } else {
        for n in &summary.notes {
            ctx.say(format!("note: {n}"));
        }
        ctx.say(format!(
            "restored {} files ({} already up to date), {} dirs, {} links, {} from {} to {} in {:.2}s",
            summary.files,
            summary.files_unchanged,
            summary.dirs,
            summary.links + summary.hardlinks,
            bytes(summary.bytes),
            entry.id.short(),
            args.target.display(),
            secs
        ));
        if opts.verify {
            ctx.say(format!("verified {} against the repository", bytes(summary.bytes_verified)));
        }
    }
    if let Some(full) = &summary.no_space {
        eprintln!(
            "aeon: error: the restore stopped: {full} ({} files were restored whole; none is left \
             half-written)",
            summary.files
        );
        eprintln!(
            "hint: free space on the target's file system (or restore a part with --include) and \
             run the restore again: with --overwrite if-changed, files already restored are kept"
        );
        return Ok(exit::STORAGE_FULL);
    }
    if summary.integrity_errors > 0 {
        eprintln!(
            "aeon: error: {} file(s) were not restored because their data failed verification",
            summary.integrity_errors
        );
        eprintln!("hint: run `aeon check --read-data` to list everything that is damaged");
        return Ok(exit::DAMAGE);
    }
    if !summary.errors.is_empty() {
        eprintln!("aeon: error: {} item(s) could not be restored", summary.errors.len());
        return Ok(exit::ERROR);
    }
    Ok(0)
}

/// What a restore of `path` in `entry` will write, when known beforehand: a whole recovery point
/// without filters (its summary says).
pub fn expected_totals(entry: &SnapshotEntry, path: &str, filtered: bool) -> Option<(u64, u64)> {
    let s = &entry.snapshot.summary;
    (path.trim_matches('/').is_empty() && !filtered && s.total_files > 0)
        .then_some((s.total_files, s.total_bytes))
}

/// A restore's summary as `--json` prints it (and the dashboard shows it).
pub fn summary_json(
    entry: &SnapshotEntry,
    node_path: &str,
    target: &std::path::Path,
    summary: &RestoreSummary,
    seconds: f64,
) -> serde_json::Value {
    json!({
        "snapshot_id": entry.id.to_hex(),
        "path": node_path,
        "target": target,
        "files": summary.files,
        "files_unchanged": summary.files_unchanged,
        "dirs": summary.dirs,
        "links": summary.links,
        "hardlinks": summary.hardlinks,
        "special": summary.special,
        "deleted": summary.deleted,
        "bytes": summary.bytes,
        "bytes_verified": summary.bytes_verified,
        "errors": summary.errors,
        "integrity_errors": summary.integrity_errors,
        "no_space": summary.no_space,
        "notes": summary.notes,
        "duration_seconds": seconds,
    })
}
