use aeon_core::backend::FileType;
use anyhow::{Context, Result};
use serde_json::json;

use crate::Ctx;
use crate::cli::ProtectArgs;

/// Protection lives in the recovery point itself, so it is written with it (`backup --protect`)
/// and travels with it. Changing it rewrites the object: the new one is written first, then the
/// old one removed, so a crash leaves both (the protected one wins) and never neither.
pub fn run(ctx: &Ctx, args: ProtectArgs, protect: bool) -> Result<u8> {
    let mut repo = ctx.open()?;
    ctx.lock_shared(&mut repo)?;
    let (entries, unreadable) = repo.list_snapshots()?;
    let mut changed = Vec::new();
    for spec in &args.ids {
        let e = aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?;
        if e.snapshot.protected == protect {
            if !ctx.global.json {
                ctx.say(format!(
                    "recovery point {} is already {}",
                    e.id.short(),
                    if protect { "protected" } else { "unprotected" }
                ));
            }
            changed.push(
                json!({"id": e.id.to_hex(), "previous_id": e.id.to_hex(), "protected": protect}),
            );
            continue;
        }
        let mut s = e.snapshot.clone();
        s.protected = protect;
        s.original = Some(e.snapshot.original.unwrap_or(e.id));
        let new_id = repo.save_snapshot(&s)?;
        match repo.backend().remove(FileType::Snapshot, &e.id.to_hex()) {
            Ok(()) | Err(aeon_core::Error::ObjectNotFound { .. }) => {}
            Err(err) => return Err(err).context("removing the previous recovery point object"),
        }
        if !ctx.global.json {
            ctx.say(format!(
                "recovery point {} {} (its id is now {})",
                e.id.short(),
                if protect { "protected" } else { "no longer protected" },
                new_id.short()
            ));
        }
        changed.push(
            json!({"id": new_id.to_hex(), "previous_id": e.id.to_hex(), "protected": protect}),
        );
    }
    if ctx.global.json {
        ctx.print_json(&changed)?;
    }
    Ok(0)
}
