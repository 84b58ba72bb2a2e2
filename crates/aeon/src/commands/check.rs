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
    let credential = ctx.credential(ctx.global.key_file.as_deref())?;
    let repo = ctx.lock_shared(located.open_with(&credential)?)?;
    let mut location_code = 0;
    let mut location_report = None;
    if args.locations {
        let (code, r) = super::locations::cross_check(ctx, &repo, args.repair)?;
        location_code = code;
        location_report = Some(r);
    }
    let subset = args.read_data_subset.as_deref().map(str::parse).transpose()?;
    let opts = CheckOptions {
        read_data: args.read_data,
        threads: ctx.threads(),
        subset,
        scrub: args.scrub,
    };
    let storage = repo.storage().clone();
    let bar = Bar::new(
        ctx.progress_visible() && (args.read_data || args.scrub || subset.is_some()),
        "packs",
    );
    let started = std::time::Instant::now();
    let report = check::check_after_listing(repo, &opts, &bar, early);
    bar.finish();
    let report = report?;
    // With parity, damaged packs are rebuilt from their groups right away.
    let repaired = match (args.repair, report.damaged_packs.is_empty()) {
        (true, false) => {
            Some(aeon_core::repair::rebuild_packs(storage.as_ref(), &report.damaged_packs)?)
        }
        _ => None,
    };
    if ctx.global.json {
        match (&location_report, &repaired) {
            (Some(l), _) => {
                ctx.print_json(&serde_json::json!({"check": report, "locations": l}))?
            }
            (None, Some(r)) => {
                ctx.print_json(&serde_json::json!({"check": report, "repaired": r}))?
            }
            (None, None) => ctx.print_json(&report)?,
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
        let what = if report.packs_read > 0 || args.read_data {
            format!(
                ", read {} in {} packs ({:.1}% of the data)",
                bytes(report.bytes_read),
                report.packs_read,
                report.bytes_read as f64 * 100.0 / report.data_bytes.max(1) as f64
            )
        } else {
            String::new()
        };
        for f in repaired.iter().flatten() {
            let line = format!("pack {}: {} -> {}", f.name, f.problem, f.action);
            if f.healed { ctx.say(line) } else { eprintln!("error: {line}") }
        }
        if let Some(s) = &report.scrub {
            ctx.say(format!(
                "scrub: this pass has read {} since {}{}",
                bytes(s.pass_bytes),
                s.pass_started.format("%Y-%m-%d %H:%M"),
                s.last_full_pass.map_or(String::new(), |t| format!(
                    "; last full pass ended {}",
                    t.format("%Y-%m-%d %H:%M")
                ))
            ));
        }
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
    let all_healed = repaired.as_ref().is_some_and(|r| r.iter().all(|f| f.healed))
        && report.problems.iter().all(|p| p.object.starts_with("pack "));
    if report.is_ok() {
        if !ctx.global.json {
            ctx.say("no errors were found");
        }
        Ok(location_code)
    } else if all_healed {
        ctx.say(format!("{} damaged pack(s) rebuilt from parity", report.damaged_packs.len()));
        Ok(location_code)
    } else {
        eprintln!("aeon: error: check found {} problem(s)", report.problems.len());
        Ok(exit::DAMAGE)
    }
}
