use aeon_core::Repository;
use aeon_core::tree::{Node, NodeKind};
use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::LsArgs;
use crate::{Ctx, timefmt};

pub fn run(ctx: &Ctx, args: LsArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let (_, path, node) = super::resolve_target_at(&repo, args.snapshot.as_deref(), &args.at)?;
    let base = format!("/{}", path.trim_matches('/'));
    let mut rows = Vec::new();
    if node.kind == NodeKind::Dir {
        collect(&repo, &node, &base, args.recursive, &mut rows)?;
    } else {
        rows.push((base, node));
    }
    if ctx.global.json {
        let list: Vec<Value> = rows.iter().map(|(p, n)| node_json(p, n)).collect();
        ctx.print_json(&list)?;
    } else {
        for (p, n) in &rows {
            if args.long {
                println!("{}", long_line(p, n));
            } else {
                println!("{p}");
            }
        }
    }
    Ok(0)
}

fn collect(
    repo: &Repository,
    dir: &Node,
    base: &str,
    recursive: bool,
    out: &mut Vec<(String, Node)>,
) -> Result<()> {
    let Some(sub) = dir.subtree else {
        return Ok(());
    };
    aeon_core::tree::ensure_depth(aeon_core::tree::depth_of(base), &base)?;
    let tree = repo.load_tree(&sub)?;
    for n in tree.nodes {
        let p = format!("{}/{}", base.trim_end_matches('/'), n.name.to_string_lossy());
        let is_dir = n.kind == NodeKind::Dir;
        out.push((p.clone(), n.clone()));
        if recursive && is_dir {
            collect(repo, &n, &p, true, out)?;
        }
    }
    Ok(())
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Chardev => "chardev",
        NodeKind::Blockdev => "blockdev",
        NodeKind::Socket => "socket",
    }
}

pub fn node_json(path: &str, n: &Node) -> Value {
    json!({
        "path": path,
        "name": n.name.to_string_lossy(),
        "type": kind_name(n.kind),
        "size": n.size,
        "mode": format!("{:o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "mtime": timefmt::rfc3339_nanos(n.mtime),
        "target": n.target.as_ref().map(|t| t.to_string_lossy()),
    })
}

fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    // setuid, setgid and sticky show in the execute positions, as ls does.
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, shift) in [6, 3, 0].into_iter().enumerate() {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let (flag, with_x, without_x) = special[i];
        s.push(match (n.mode & flag != 0, bits & 1 != 0) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn long_line(path: &str, n: &Node) -> String {
    let time = timefmt::from_timestamp(n.mtime)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let link =
        n.target.as_ref().map(|t| format!(" -> {}", t.to_string_lossy())).unwrap_or_default();
    let user = n.user.clone().unwrap_or_else(|| n.uid.to_string());
    let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
    format!("{} {:>8} {:>8} {:>12} {} {}{}", mode_string(n), user, group, n.size, time, path, link)
}
