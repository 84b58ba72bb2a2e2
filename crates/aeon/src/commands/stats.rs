use aeon_core::stats;
use anyhow::Result;

use crate::Ctx;
use crate::cli::StatsArgs;
use crate::progress::bytes;

pub fn run(ctx: &Ctx, args: StatsArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let selected = if args.ids.is_empty() {
        None
    } else {
        let (entries, unreadable) = repo.list_snapshots()?;
        let mut ids = Vec::new();
        for spec in &args.ids {
            ids.push(aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?.id);
        }
        Some(ids)
    };
    let s = stats::stats(&repo, selected.as_deref())?;
    if ctx.global.json {
        ctx.print_json(&s)?;
        return Ok(0);
    }
    ctx.say(format!("recovery points:      {}", s.snapshots));
    ctx.say(format!(
        "total size:           {} (all files of the points shown, as restored)",
        bytes(s.total_size)
    ));
    ctx.say(format!(
        "deduplicated size:    {} in {} data and {} tree blobs",
        bytes(s.deduplicated_size),
        s.data_blobs,
        s.tree_blobs
    ));
    ctx.say(format!(
        "stored:               {} after compression ({:.2}x) and encryption",
        bytes(s.deduplicated_stored),
        s.compression_ratio
    ));
    ctx.say(format!("space saving:         {:.2}x (total size / stored)", s.space_saving_ratio));
    ctx.say(format!(
        "repository on disk:   {} in {} packs{}",
        bytes(s.stored_bytes),
        s.packs,
        if s.packs_pending_deletion > 0 {
            format!(" (+{} awaiting deletion)", s.packs_pending_deletion)
        } else {
            String::new()
        }
    ));
    if let Some(q) = s.quota {
        ctx.say(format!(
            "quota:                {} of {} used ({:.1}%)",
            bytes(s.stored_bytes),
            bytes(q),
            s.stored_bytes as f64 * 100.0 / q as f64
        ));
    }
    ctx.say("\nper recovery point (unique: data no other point uses, freed by forgetting it and pruning):");
    ctx.say(format!(
        "  {:<10} {:<20} {:>10} {:>10} {:>12}",
        "id", "time", "size", "unique", "unique stored"
    ));
    for p in &s.per_snapshot {
        let time = chrono::DateTime::parse_from_rfc3339(&p.time)
            .map(|t| crate::timefmt::local(&t))
            .unwrap_or_default();
        ctx.say(format!(
            "  {:<10} {:<20} {:>10} {:>10} {:>12}",
            &p.id[..8],
            time,
            bytes(p.total_size),
            bytes(p.unique_size),
            bytes(p.unique_stored)
        ));
    }
    Ok(0)
}
