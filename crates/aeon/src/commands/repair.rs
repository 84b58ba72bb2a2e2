use aeon_core::lock::LockKind;
use aeon_core::repair::{self, RepairOptions, RepairReport};
use anyhow::Result;

use crate::cli::{RepairArgs, RepairWhat};
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: RepairArgs) -> Result<u8> {
    let opts = RepairOptions { dry_run: args.dry_run, threads: ctx.threads() };
    match args.what {
        Some(RepairWhat::Index) => return index(ctx, &opts),
        Some(RepairWhat::Snapshots) => return snapshots(ctx, &opts),
        None => {}
    }
    let located = ctx.locate()?;
    if !args.dry_run {
        // Before the password is tried: a damaged key slot would not open.
        for slot in repair::restore_key_slots(located.storage().as_ref())? {
            ctx.say(format!("keys {slot}: damaged or missing -> restored from its copy"));
        }
    }
    let credential = match ctx.credential(ctx.global.key_file.as_deref()) {
        Ok(c) => Some(c),
        // Finding damage needs no key: a dry run goes on without one.
        Err(_) if args.dry_run => None,
        Err(e) => return Err(e),
    };
    let bar = Bar::new(ctx.progress_visible(), "objects");
    let report = match credential {
        Some(c) => {
            let repo = located.open_with(&c)?.lock(LockKind::Exclusive, "repair")?;
            repair::repair(repo, &opts, &bar)
        }
        None => {
            let storage = located.storage();
            repair::heal_storage(storage.as_ref(), &storage.location(), &opts, &bar).map(
                |(findings, scan)| RepairReport {
                    dry_run: true,
                    objects_checked: scan.listed.len() as u64,
                    bytes_read: scan.bytes_read,
                    findings,
                    ..Default::default()
                },
            )
        }
    };
    bar.finish();
    render(ctx, &report?)
}

fn render(ctx: &Ctx, report: &RepairReport) -> Result<u8> {
    // Exit 4 when something is lost, and in a dry run that found damage (not mere missing parity).
    let damage = report.findings.iter().any(|f| f.problem != "unprotected" && f.kind != "location");
    let lost = report.findings.iter().any(|f| f.lost);
    let unreachable = report.unreachable().count();
    // Neither healed nor lost: left for a later run (a location or object that did not answer).
    let left = report.findings.iter().filter(|f| !f.healed && !f.lost).count();
    let code = if lost || (report.dry_run && damage) {
        exit::DAMAGE
    } else if left > 0 && !report.dry_run {
        exit::INCOMPLETE
    } else {
        0
    };
    if ctx.global.json {
        ctx.print_json(report)?;
        return Ok(code);
    }
    ctx.say(format!("read {} object(s), {}", report.objects_checked, bytes(report.bytes_read)));
    for f in report.findings.iter().filter(|f| f.problem != "unprotected") {
        let line = format!("{} {} ({}): {} -> {}", f.kind, f.name, f.location, f.problem, f.action);
        if f.lost { eprintln!("error: {line}") } else { ctx.say(line) }
    }
    if report.packs_protected > 0 || report.copies_written > 0 {
        ctx.say(format!(
            "protected {} pack(s) without parity ({} of parity); wrote {} cop{} of small objects",
            report.packs_protected,
            bytes(report.parity_bytes_written),
            report.copies_written,
            if report.copies_written == 1 { "y" } else { "ies" }
        ));
    }
    if !report.affected.is_empty() {
        eprintln!("recovery points that need lost data:");
        for a in &report.affected {
            if a.whole {
                eprintln!("  {} (the recovery point itself is lost)", a.snapshot);
                continue;
            }
            eprintln!(
                "  {} {}: {} path(s)",
                &a.snapshot[..12.min(a.snapshot.len())],
                a.time,
                a.files.len()
            );
            for f in &a.files {
                eprintln!("    {f}");
            }
        }
        eprintln!("hint: `aeon repair snapshots` writes copies of them without the lost files");
    }
    let lost_count = report.findings.iter().filter(|f| f.lost).count();
    let healed = report.findings.iter().filter(|f| f.healed && f.problem != "unprotected").count();
    if !damage && unreachable > 0 {
        ctx.say("no damage found in the locations that answered");
    } else if !damage {
        ctx.say("no damage found");
    } else if report.dry_run {
        ctx.say(format!(
            "{} problem(s) found; nothing was changed (--dry-run)",
            report.findings.len()
        ));
    } else {
        ctx.say(format!("healed {healed} object(s)"));
    }
    if lost {
        eprintln!("aeon: error: {lost_count} object(s) cannot be rebuilt");
    } else if unreachable > 0 {
        eprintln!(
            "aeon: error: {unreachable} location(s) did not answer and were not repaired; run `aeon repair` again once they do"
        );
    } else if left > 0 && !report.dry_run {
        eprintln!(
            "aeon: error: {left} problem(s) could not be dealt with now; run `aeon repair` again"
        );
    }
    Ok(code)
}

fn index(ctx: &Ctx, opts: &RepairOptions) -> Result<u8> {
    let repo = ctx.open()?.lock(LockKind::Exclusive, "repair index")?;
    let bar = Bar::new(ctx.progress_visible(), "packs");
    let r = aeon_core::repair::index::rebuild_index(repo, opts, &bar);
    bar.finish();
    let r = r?;
    if ctx.global.json {
        ctx.print_json(&r)?;
    } else {
        for p in &r.unreadable_packs {
            eprintln!("warning: pack {}: {}", p.0, p.1);
        }
        ctx.say(format!(
            "{} {} pack(s) ({} blobs) from their own tables{}",
            if opts.dry_run { "would index" } else { "indexed" },
            r.packs,
            r.blobs,
            if opts.dry_run {
                String::new()
            } else {
                format!(", replacing {} index file(s)", r.replaced)
            }
        ));
    }
    Ok(if r.unreadable_packs.is_empty() { 0 } else { exit::DAMAGE })
}

fn snapshots(ctx: &Ctx, opts: &RepairOptions) -> Result<u8> {
    let repo = ctx.open()?.lock(LockKind::Shared, "repair snapshots")?.load_index()?;
    let r = aeon_core::repair::snapshots::rewrite_damaged(repo, opts)?;
    if ctx.global.json {
        ctx.print_json(&r)?;
        return Ok(0);
    }
    for p in &r.points {
        ctx.say(format!(
            "{} {} -> {}: left out {} lost path(s)",
            if opts.dry_run { "would rewrite" } else { "rewrote" },
            &p.original[..12],
            p.rewritten.as_deref().map_or("(not written)", |s| &s[..12]),
            p.removed.len()
        ));
        for f in &p.removed {
            ctx.say(format!("    {f}"));
        }
    }
    if r.points.is_empty() {
        ctx.say("no recovery point needs lost data");
    } else if !opts.dry_run {
        ctx.say(
            "the originals are kept: `aeon forget` them once you have checked the rewritten points",
        );
    }
    Ok(0)
}
