use anyhow::Result;
use serde_json::json;

use crate::Ctx;
use crate::cli::{ProtectArgs, TagArgs};

/// Protection is a label of the recovery point: changing it keeps the point's id (see
/// `aeon_core::snapshot::Labels`).
pub fn run(ctx: &Ctx, args: ProtectArgs, protect: bool) -> Result<u8> {
    let repo = ctx.open_locked()?;
    let (entries, unreadable) = repo.list_snapshots()?;
    let mut changed = Vec::new();
    for spec in &args.ids {
        let e = aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?;
        let was = e.snapshot.protected;
        repo.relabel(e, |l| l.protected = protect)?;
        if !ctx.global.json {
            let state = if protect { "protected" } else { "unprotected" };
            match was == protect {
                true => ctx.say(format!("recovery point {} is already {state}", e.id.short())),
                false => ctx.say(format!("recovery point {} {state}", e.id.short())),
            }
        }
        // `previous_id` is kept for scripts written when protecting changed the id.
        changed
            .push(json!({"id": e.id.to_hex(), "previous_id": e.id.to_hex(), "protected": protect}));
    }
    if ctx.global.json {
        ctx.print_json(&changed)?;
    }
    Ok(0)
}

/// `aeon tag`: changes tags and the description; the ids stay.
pub fn run_tag(ctx: &Ctx, args: TagArgs) -> Result<u8> {
    let repo = ctx.open_locked()?;
    let (entries, unreadable) = repo.list_snapshots()?;
    let mut changed = Vec::new();
    for spec in &args.ids {
        let e = aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?;
        let labels = repo.relabel(e, |l| {
            if let Some(set) = &args.set {
                l.tags = set.iter().filter(|t| !t.is_empty()).cloned().collect();
            }
            l.tags.retain(|t| !args.remove.contains(t));
            l.tags.extend(args.add.iter().filter(|t| !t.is_empty()).cloned());
            if let Some(d) = &args.description {
                l.description = Some(d.clone()).filter(|d| !d.is_empty());
            }
        })?;
        if !ctx.global.json {
            let tags = if labels.tags.is_empty() { "none".into() } else { labels.tags.join(",") };
            ctx.say(format!("recovery point {}: tags {tags}", e.id.short()));
        }
        changed.push(json!({
            "id": e.id.to_hex(),
            "tags": labels.tags,
            "description": labels.description,
            "protected": labels.protected,
        }));
    }
    if ctx.global.json {
        ctx.print_json(&changed)?;
    }
    Ok(0)
}
