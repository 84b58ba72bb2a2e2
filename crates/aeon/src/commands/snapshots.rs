use aeon_core::snapshot::SnapshotEntry;
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
    let since = args.since.as_deref().map(timefmt::parse).transpose()?;
    let until = args.until.as_deref().map(timefmt::parse).transpose()?;
    let selected: Vec<_> = entries
        .iter()
        .filter(|e| args.filter.matches(e))
        .filter(|e| args.kind.as_ref().is_none_or(|k| e.snapshot.kind.as_ref() == Some(k)))
        .filter(|e| since.is_none_or(|t| e.snapshot.time >= t))
        .filter(|e| until.is_none_or(|t| e.snapshot.time <= t))
        .collect();
    let groups = group(&selected, args.group_by.as_deref())?;
    if ctx.global.json {
        let as_json = |list: &[&SnapshotEntry]| -> Vec<serde_json::Value> {
            list.iter()
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
                        "protected": s.protected,
                        "original": s.original.map(|o| o.to_hex()),
                        "imported": s.imported,
                        "summary": s.summary,
                    })
                })
                .collect()
        };
        if args.group_by.is_some() {
            let list: Vec<_> = groups
                .iter()
                .map(|(key, members)| json!({"group_key": key, "snapshots": as_json(members)}))
                .collect();
            ctx.print_json(&list)?;
        } else {
            ctx.print_json(&as_json(&selected))?;
        }
        return Ok(0);
    }
    for (key, members) in &groups {
        if args.group_by.is_some() {
            let shown: Vec<String> = key.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("group: {}", shown.join(", "));
        }
        print_table(members);
    }
    Ok(0)
}

type GroupKey = Vec<(String, String)>;

/// Groups by the chosen fields (none: one group), keeping time order within each.
fn group<'a>(
    list: &[&'a SnapshotEntry],
    by: Option<&str>,
) -> Result<Vec<(GroupKey, Vec<&'a SnapshotEntry>)>> {
    let fields: Vec<&str> = by
        .map(|b| b.split(',').map(str::trim).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    if let Some(bad) = fields.iter().find(|f| !["host", "paths", "tags"].contains(f)) {
        anyhow::bail!("cannot group by {bad:?}: use host, paths and/or tags");
    }
    let mut groups: Vec<(GroupKey, Vec<&SnapshotEntry>)> = Vec::new();
    for e in list {
        let key: GroupKey = fields
            .iter()
            .map(|f| {
                let v = match *f {
                    "host" => e.snapshot.hostname.clone(),
                    "paths" => e.snapshot.paths.join(","),
                    _ => e.snapshot.tags.join(","),
                };
                (f.to_string(), v)
            })
            .collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(e),
            None => groups.push((key, vec![e])),
        }
    }
    if groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    Ok(groups)
}

fn print_table(selected: &[&SnapshotEntry]) {
    println!("{:<9}  {:<19}  {:<16}  {:<16}  Paths", "ID", "Time", "Host", "Tags");
    println!("{}", "-".repeat(80));
    for e in selected {
        let s = &e.snapshot;
        let mark = if s.protected { "*" } else { "" };
        println!(
            "{:<9}  {:<19}  {:<16}  {:<16}  {}",
            format!("{}{mark}", e.id.short()),
            timefmt::local(&s.time),
            s.hostname,
            s.tags.join(","),
            s.paths.join(", ")
        );
    }
    println!("{}", "-".repeat(80));
    println!("{} recovery point(s)", selected.len());
    if selected.iter().any(|e| e.snapshot.protected) {
        println!("* protected: forget never removes it (`aeon unprotect ID` lifts it)");
    }
}
