use std::path::PathBuf;

use aeon_core::filter::PathFilter;
use aeon_core::find::{Finder, Query};
use aeon_core::tree::Timestamp;
use anyhow::Result;
use serde_json::json;

use crate::cli::FindArgs;
use crate::{Ctx, timefmt};

fn ts(t: Option<&str>) -> Result<Option<Timestamp>> {
    Ok(t.map(timefmt::parse)
        .transpose()?
        .map(|d| Timestamp(d.timestamp(), d.timestamp_subsec_nanos())))
}

pub fn run(ctx: &Ctx, args: FindArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let (min_size, max_size) = match args.size.as_deref() {
        None => (None, None),
        Some(s) if s.starts_with('+') => (Some(super::backup::parse_size(&s[1..])?), None),
        Some(s) if s.starts_with('-') => (None, Some(super::backup::parse_size(&s[1..])?)),
        Some(s) => {
            let n = super::backup::parse_size(s)?;
            (Some(n), Some(n))
        }
    };
    let query = Query {
        pattern: PathFilter::exact(std::slice::from_ref(&args.pattern), args.ignore_case)?,
        newer: ts(args.newer.as_deref())?,
        older: ts(args.older.as_deref())?,
        min_size,
        max_size,
    };
    let mut finder = Finder::new(&repo, query);
    let (entries, unreadable) = repo.list_snapshots()?;
    let mut results = Vec::new();
    for e in entries
        .iter()
        .rev()
        .filter(|e| args.host.as_ref().is_none_or(|h| &e.snapshot.hostname == h))
    {
        let found = finder.find(&e.snapshot.tree, PathBuf::from("/"))?;
        if found.is_empty() {
            continue;
        }
        if !ctx.global.json {
            println!(
                "recovery point {} ({}, {}):",
                e.id.short(),
                timefmt::local(&e.snapshot.time),
                e.snapshot.hostname
            );
        }
        for (path, node) in found {
            if ctx.global.json {
                results.push(json!({
                    "snapshot_id": e.id.to_hex(),
                    "time": e.snapshot.time.to_rfc3339(),
                    "path": path.to_string_lossy(),
                    "type": node.kind,
                    "size": node.size,
                    "mtime": timefmt::rfc3339_nanos(node.mtime),
                }));
            } else {
                println!(
                    "  {:>12}  {}  {}",
                    node.size,
                    timefmt::rfc3339_nanos(node.mtime),
                    path.display()
                );
            }
        }
    }
    if ctx.global.json {
        ctx.print_json(&results)?;
    }
    // What the damaged points held is unknown: the search is incomplete, and says so.
    let consequence =
        format!("not searched ({} damaged recovery point(s) in all)", unreadable.len());
    aeon_core::snapshot::refuse_unreadable(unreadable.iter(), &consequence)?;
    Ok(0)
}
