use aeon_core::check::{self, CheckOptions};
use anyhow::Result;

use crate::cli::CheckArgs;
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: CheckArgs) -> Result<u8> {
    // Listing the packs and reading the first needs no key: it begins while the key is derived.
    let located = ctx.locate()?;
    let early =
        if args.read_data { Some(check::EarlyPackRead::start(located.storage())) } else { None };
    let password = crate::password::get(&ctx.global, false)?;
    let repo = ctx.lock_shared(located.open(password.as_bytes())?)?;
    let mut location_code = 0;
    let mut location_report = None;
    if args.locations {
        let (code, r) = super::locations::cross_check(ctx, &repo, args.repair)?;
        location_code = code;
        location_report = Some(r);
    }
    let opts = CheckOptions { read_data: args.read_data, threads: ctx.threads() };
    let bar = Bar::new(ctx.progress_visible() && args.read_data, "packs");
    let started = std::time::Instant::now();
    let report = check::check_after_listing(repo, &opts, &bar, early);
    bar.finish();
    let report = report?;
    if ctx.global.json {
        match &location_report {
            Some(l) => ctx.print_json(&serde_json::json!({"check": report, "locations": l}))?,
            None => ctx.print_json(&report)?,
        }
    } else {
        for p in &report.problems {
            eprintln!("error: {}: {}", p.object, p.message);
        }
        for n in &report.notes {
            ctx.say(format!("note: {n}"));
        }
        if !report.affected_snapshots.is_empty() {
            eprintln!("recovery points affected:");
            for s in &report.affected_snapshots {
                eprintln!("  {s}");
            }
        }
        let what = if args.read_data {
            format!(", read {} in {} packs", bytes(report.bytes_read), report.packs_read)
        } else {
            String::new()
        };
        ctx.say(format!(
            "checked {} recovery points, {} trees, {} packs, {} blobs{} in {:.2}s",
            report.snapshots,
            report.trees_checked,
            report.packs,
            report.blobs,
            what,
            started.elapsed().as_secs_f64()
        ));
    }
    if report.is_ok() {
        if !ctx.global.json {
            ctx.say("no errors were found");
        }
        Ok(location_code)
    } else {
        eprintln!("aeon: error: check found {} problem(s)", report.problems.len());
        Ok(exit::DAMAGE)
    }
}
