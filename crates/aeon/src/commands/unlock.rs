use aeon_core::backend::FileType;
use aeon_core::lock::{self, Liveness};
use anyhow::Result;
use serde_json::json;

use crate::Ctx;
use crate::cli::UnlockArgs;

pub fn run(ctx: &Ctx, args: UnlockArgs) -> Result<u8> {
    let mut repo = ctx.open()?;
    // A lock of our own first: its storage time is the "now" that other locks' ages count from.
    repo.lock(lock::LockKind::Shared, "unlock")?;
    let own = repo.held_lock().map(|l| l.id());
    let judged: Vec<_> = repo.judge_locks()?.into_iter().filter(|l| Some(l.id) != own).collect();
    let mut removed = lock::remove_stale(repo.backend().as_ref(), &judged)?;
    let mut kept = Vec::new();
    for l in judged.iter().filter(|l| l.liveness == Liveness::Live) {
        if args.all {
            match repo.backend().remove(FileType::Lock, &l.id.to_hex()) {
                Ok(()) | Err(aeon_core::Error::ObjectNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            removed.push(format!("removed lock of {} (still running)", l.info.describe()));
        } else {
            kept.push(l.info.describe());
        }
    }
    if ctx.global.json {
        ctx.print_json(&json!({"removed": removed, "live": kept}))?;
        return Ok(0);
    }
    for m in &removed {
        ctx.say(m);
    }
    for k in &kept {
        ctx.say(format!("kept the lock of {k}: it is still running (--all removes it anyway)"));
    }
    if removed.is_empty() && kept.is_empty() {
        ctx.say("no locks");
    }
    Ok(0)
}
