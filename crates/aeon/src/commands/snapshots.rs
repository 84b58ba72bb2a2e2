use anyhow::Result;
use serde_json::json;

use crate::cli::SnapshotsArgs;
use crate::{Ctx, timefmt};

pub fn run(ctx: &Ctx, args: SnapshotsArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let (entries, unreadable) = repo.list_snapshots()?;
    for (name, e) in &unreadable {
        eprintln!("warning: recovery point {name} cannot be read: {e}");
    }
    let selected: Vec<_> = entries
        .iter()
        .filter(|e| args.host.as_ref().is_none_or(|h| &e.snapshot.hostname == h))
        .filter(|e| args.tags.iter().all(|t| e.snapshot.tags.contains(t)))
        .filter(|e| args.paths.iter().all(|p| e.snapshot.paths.iter().any(|sp| sp == p)))
        .collect();
    if ctx.global.json {
        let list: Vec<_> = selected
            .iter()
            .map(|e| {
                let s = &e.snapshot;
                json!({
                    "id": e.id.to_hex(),
                    "short_id": e.id.short(),
                    "time": s.time.to_rfc3339(),
                    "host": s.hostname,
                    "username": s.username,
                    "paths": s.paths,
                    "tags": s.tags,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "tree": s.tree.to_hex(),
                    "description": s.description,
                    "category": s.category,
                    "kind": s.kind,
                    "program_version": s.program_version,
                    "summary": s.summary,
                })
            })
            .collect();
        ctx.print_json(&list)?;
        return Ok(0);
    }
    println!("{:<8}  {:<19}  {:<16}  {:<16}  Paths", "ID", "Time", "Host", "Tags");
    println!("{}", "-".repeat(80));
    for e in &selected {
        let s = &e.snapshot;
        println!(
            "{:<8}  {:<19}  {:<16}  {:<16}  {}",
            e.id.short(),
            timefmt::local(&s.time),
            s.hostname,
            s.tags.join(","),
            s.paths.join(", ")
        );
    }
    println!("{}", "-".repeat(80));
    println!("{} recovery point(s)", selected.len());
    Ok(0)
}
