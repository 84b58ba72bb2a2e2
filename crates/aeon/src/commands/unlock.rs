use anyhow::Result;
use serde_json::json;

use crate::Ctx;
use crate::cli::UnlockArgs;

pub fn run(ctx: &Ctx, args: UnlockArgs) -> Result<u8> {
    // A lock of our own first: its storage time is the "now" that other locks' ages count from.
    let repo = ctx.open()?.lock(aeon_core::lock::LockKind::Shared, "unlock")?;
    let report = repo.remove_locks(args.all)?;
    if ctx.global.json {
        ctx.print_json(&json!({"removed": report.removed, "live": report.live}))?;
        return Ok(0);
    }
    for m in &report.removed {
        ctx.say(m);
    }
    for k in &report.live {
        ctx.say(format!("kept the lock of {k}: it is still running (--all removes it anyway)"));
    }
    if report.removed.is_empty() && report.live.is_empty() {
        ctx.say("no locks");
    }
    Ok(0)
}
