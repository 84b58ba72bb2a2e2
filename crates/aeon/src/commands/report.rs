//! `aeon report`: the compliance report.

use aeon_core::report::{self, Format};
use anyhow::{Context, Result};

use crate::Ctx;
use crate::cli::ReportArgs;

pub fn run(ctx: &Ctx, args: ReportArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let report = report::compliance(&repo)?;
    let format: Format = if ctx.global.json { Format::Json } else { args.format.parse()? };
    let text = report::render(&report, format)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            ctx.say(format!("report written to {}", path.display()));
        }
        None => print!("{text}"),
    }
    Ok(0)
}
