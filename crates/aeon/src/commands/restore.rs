use aeon_core::restorer::{self, RestoreOptions};
use anyhow::Result;
use serde_json::json;

use crate::cli::RestoreArgs;
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let (entry, path, node) = super::resolve_target(&repo, &args.snapshot)?;
    let bar = Bar::new(ctx.progress_visible(), "files");
    let started = std::time::Instant::now();
    let summary = restorer::restore(
        &repo,
        &node,
        &args.target,
        &RestoreOptions {
            threads: ctx.threads(),
        },
        &bar,
    );
    bar.finish();
    let summary = summary?;
    let secs = started.elapsed().as_secs_f64();
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    if ctx.global.json {
        ctx.print_json(&json!({
            "snapshot_id": entry.id.to_hex(),
            "path": path,
            "target": args.target,
            "files": summary.files,
            "dirs": summary.dirs,
            "links": summary.links,
            "bytes": summary.bytes,
            "errors": summary.errors,
            "duration_seconds": secs,
        }))?;
    } else {
        ctx.say(format!(
            "restored {} files, {} dirs, {} links, {} from {} to {} in {:.2}s",
            summary.files,
            summary.dirs,
            summary.links,
            bytes(summary.bytes),
            entry.id.short(),
            args.target.display(),
            secs
        ));
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
        eprintln!(
            "aeon: error: {} item(s) could not be restored",
            summary.errors.len()
        );
        return Ok(exit::ERROR);
    }
    Ok(0)
}
