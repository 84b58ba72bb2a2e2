use aeon_core::diff::{self, ChangeKind};
use aeon_core::tree::NodeKind;
use anyhow::{Result, bail};

use crate::Ctx;
use crate::cli::{AtArgs, DiffArgs};

pub fn run(ctx: &Ctx, mut args: DiffArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    // `diff --at TIME ID`: the point in force at TIME is the first, the one given the second.
    if args.at.at.is_some() && args.second.is_none() && args.live.is_none() {
        args.second = args.first.take();
    }
    let (first, path, node) = super::resolve_target_at(&repo, args.first.as_deref(), &args.at)?;
    let base = format!("/{}", path.trim_matches('/'));
    let mut changes = Vec::new();
    if let Some(live) = &args.live {
        if args.second.is_some() {
            bail!("give one recovery point with --live");
        }
        diff::diff_live(&repo, &node, live, &base, &mut changes)?;
    } else {
        let Some(second) = args.second.as_deref() else {
            bail!("give two recovery points, or one with --live PATH (or --at TIME and one)");
        };
        let none = AtArgs { at: None, host: None, path: None };
        let second_spec =
            if second.contains(':') { second.to_string() } else { format!("{second}:{path}") };
        let (_, _, other) = super::resolve_target_at(&repo, Some(&second_spec), &none)?;
        let sub =
            |n: &aeon_core::tree::Node| (n.kind == NodeKind::Dir).then_some(n.subtree).flatten();
        diff::diff_trees(&repo, sub(&node).as_ref(), sub(&other).as_ref(), &base, &mut changes)?;
    }
    if args.content_only {
        changes.retain(|c| c.change != ChangeKind::Metadata);
    }
    if ctx.global.json {
        ctx.print_json(&changes)?;
    } else {
        for c in &changes {
            let slash = if c.kind == NodeKind::Dir { "/" } else { "" };
            println!("{}    {}{}", c.change.marker(), c.path, slash);
        }
        let count = |k| changes.iter().filter(|c| c.change == k).count();
        ctx.say(format!(
            "\nagainst {}: {} added, {} removed, {} modified, {} metadata only",
            first.id.short(),
            count(ChangeKind::Added),
            count(ChangeKind::Removed),
            count(ChangeKind::Modified),
            count(ChangeKind::Metadata)
        ));
    }
    Ok(0)
}
