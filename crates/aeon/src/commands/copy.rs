use aeon_core::copy;
use aeon_core::lock::LockKind;
use anyhow::{Context, Result};

use crate::Ctx;
use crate::cli::CopyArgs;
use crate::progress::{Bar, bytes};

pub fn run(ctx: &Ctx, args: CopyArgs) -> Result<u8> {
    let located = ctx.locate_at(&args.from_repo).context("the source repository")?;
    let password = crate::password::get_source(args.from_password_file.as_deref())?;
    let source = located.open(password.as_bytes()).context("opening the source repository")?;
    let source = match ctx.global.no_lock {
        true => source.without_lock(),
        false => source.lock(LockKind::Shared, "copy (source)")?,
    };
    let source = source.load_index()?;
    let target = ctx.open_with_index()?;
    if source.repository_id() == target.repository_id() {
        anyhow::bail!("the source and the target are the same repository");
    }
    let (entries, unreadable) = source.list_snapshots()?;
    for (name, e) in &unreadable {
        eprintln!("warning: source recovery point {name} cannot be read: {e}");
    }
    let selected: Vec<_> = if args.ids.is_empty() {
        entries.iter().filter(|e| args.filter.matches(e)).cloned().collect()
    } else {
        let mut v = Vec::new();
        for spec in &args.ids {
            v.push(aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?.clone());
        }
        v
    };
    let bar = Bar::new(ctx.progress_visible(), "points");
    let report = copy::copy(&source, &target, &selected, &bar);
    bar.finish();
    let r = report?;
    if ctx.global.json {
        ctx.print_json(&r)?;
        return Ok(0);
    }
    for (from, to) in &r.copied {
        ctx.say(format!("copied {} as {}", &from[..8], &to[..8]));
    }
    ctx.say(format!(
        "{} recovery point(s) copied, {} already present; read {}, stored {} new ({} blobs)",
        r.copied.len(),
        r.already_present.len(),
        bytes(r.bytes_read),
        bytes(r.bytes_stored),
        r.blobs_added
    ));
    Ok(0)
}
