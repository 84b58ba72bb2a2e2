use aeon_core::Repository;
use aeon_core::prune::{self, PruneOptions};
use aeon_core::repository::state::Open;
use anyhow::{Result, bail};

use crate::Ctx;
use crate::cli::{PruneArgs, PruneTuning};
use crate::progress::{Bar, bytes};

pub fn run(ctx: &Ctx, args: PruneArgs) -> Result<u8> {
    let opts = options(&args.tuning, args.dry_run)?;
    run_with(ctx, ctx.open()?, &opts)
}

pub fn options(t: &PruneTuning, dry_run: bool) -> Result<PruneOptions> {
    let text = t.max_unused.trim().trim_end_matches('%');
    let Ok(percent) = text.parse::<f64>() else {
        bail!("invalid --max-unused {:?}: give a percentage such as 20%", t.max_unused);
    };
    if !(0.0..=100.0).contains(&percent) {
        bail!("--max-unused must be between 0% and 100%");
    }
    let wait = match &t.wait {
        Some(d) => {
            let span: aeon_core::retention::Span = d.parse()?;
            let secs = (span.hours as u64 + span.days as u64 * 24) * 3600;
            if span.years > 0 || span.months > 0 {
                bail!("--wait takes hours or days at most (e.g. 30m is not a unit: use 1h)");
            }
            Some(std::time::Duration::from_secs(secs))
        }
        None => None,
    };
    Ok(PruneOptions { max_unused: percent / 100.0, dry_run, wait })
}

pub fn run_with(ctx: &Ctx, repo: Repository<Open>, opts: &PruneOptions) -> Result<u8> {
    let started = std::time::Instant::now();
    let plan = prune::plan(repo, opts)?;
    let r = match opts.dry_run {
        true => plan.report(),
        false => {
            let bar = Bar::new(ctx.progress_visible(), "packs");
            let report = plan.execute(&bar);
            bar.finish();
            report?
        }
    };
    if ctx.global.json {
        ctx.print_json(&r)?;
        return Ok(0);
    }
    // Its messages were told as notices while it ran.
    if r.orphan_packs_adopted > 0 {
        ctx.say(format!(
            "adopted {} unindexed pack(s), {}, left by interrupted operations",
            r.orphan_packs_adopted,
            bytes(r.orphan_bytes_adopted)
        ));
    }
    let verb = if r.dry_run { "would " } else { "" };
    ctx.say(format!(
        "{} recovery points, {} packs ({}) before",
        r.snapshots,
        r.packs_before,
        bytes(r.bytes_before)
    ));
    ctx.say(format!(
        "{verb}repack {} pack(s): {} blob(s), {} written",
        r.packs_repacked,
        r.blobs_repacked,
        bytes(r.bytes_written)
    ));
    ctx.say(format!("{verb}delete {} pack(s), freeing {}", r.packs_deleted, bytes(r.bytes_freed)));
    if r.packs_restored > 0 {
        ctx.say(format!("put back {} pack(s) that new recovery points use", r.packs_restored));
    }
    if r.packs_pending > 0 {
        ctx.say(format!(
            "{} pack(s), {}, await deletion by the next prune, once these finish:",
            r.packs_pending,
            bytes(r.bytes_pending)
        ));
        for w in &r.waiting_for {
            ctx.say(format!("  {w}"));
        }
    }
    if r.index_files_removed > 0 {
        ctx.say(format!("replaced {} index file(s)", r.index_files_removed));
    }
    ctx.say(format!("done in {:.2}s", started.elapsed().as_secs_f64()));
    Ok(0)
}
