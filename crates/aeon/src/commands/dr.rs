//! `aeon dr plan` and `aeon dr drill`: the runbook and the measured, proven restore.

use aeon_core::drill::{self, DrillOptions};
use anyhow::{Context, Result};

use crate::cli::{DrAction, DrArgs};
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: DrArgs) -> Result<u8> {
    match args.action {
        DrAction::Plan { output } => {
            let repo = ctx.open_with_index()?;
            let book = drill::plan::runbook(&repo)?;
            let text = if ctx.global.json {
                serde_json::to_string_pretty(&book)? + "\n"
            } else {
                book.to_markdown()
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    ctx.say(format!("runbook written to {}", path.display()));
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        DrAction::Drill { host, path, sample, scratch, keep } => {
            let repo = ctx.open_with_index()?;
            let scratch = scratch.unwrap_or_else(drill::default_scratch);
            let opts = DrillOptions {
                host,
                path,
                sample,
                scratch: scratch.clone(),
                threads: ctx.threads(),
                seed: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            };
            let bar = Bar::new(ctx.progress_visible(), "files");
            let report = drill::drill(&repo, &opts, &bar);
            bar.finish();
            let report = report?;
            if !keep && let Err(e) = drill::remove_scratch(&scratch) {
                eprintln!("warning: the scratch folder {} was not removed: {e}", scratch.display());
            }
            if ctx.global.json {
                ctx.print_json(&report)?;
            } else {
                for c in report.differences.iter().chain(&report.metadata_differences) {
                    println!("{}    {}", c.change.marker(), c.path);
                }
                for e in &report.errors {
                    eprintln!("error: {e}");
                }
                let what = match report.sampled {
                    Some(n) => format!("{n} files picked at random from"),
                    None => "all of".to_string(),
                };
                ctx.say(format!(
                    "drill of {} {} ({} of {}, {}): restored {} files, {} in {:.2} s ({}/s), \
                     read back and compared in {:.2} s",
                    what,
                    report.restored,
                    &report.point[..8],
                    report.host,
                    report.point_time.format("%Y-%m-%d %H:%M:%S"),
                    report.files,
                    bytes(report.bytes),
                    report.restore_seconds,
                    bytes(report.bytes_per_second as u64),
                    report.verify_seconds,
                ));
                ctx.say(if report.passed {
                    "passed: every restored byte and attribute equals the recovery point"
                        .to_string()
                } else {
                    format!(
                        "FAILED: {} difference(s), {} error(s)",
                        report.differences.len(),
                        report.errors.len()
                    )
                });
            }
            Ok(if report.passed { 0 } else { exit::DAMAGE })
        }
    }
}
