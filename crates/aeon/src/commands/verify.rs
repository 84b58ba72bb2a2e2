use aeon_core::diff::{self, ChangeKind};
use aeon_core::tree::NodeKind;
use anyhow::Result;
use serde_json::json;

use crate::cli::{AtArgs, VerifyArgs};
use crate::progress::bytes;
use crate::{Ctx, exit};

pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let none = AtArgs { at: None, host: None, path: None };
    let (point, path, node) = super::resolve_target_at(&repo, Some(&args.point), &none)?;
    let started = std::time::Instant::now();
    let mut changes = Vec::new();
    let read = diff::verify_live(&repo, &node, &args.target, &mut changes)?;
    let differs = |c: &&diff::Change| c.change != ChangeKind::Metadata;
    let content = changes.iter().filter(differs).count();
    let metadata = changes.len() - content;
    if ctx.global.json {
        ctx.print_json(&json!({
            "snapshot": point.id.to_hex(),
            "root": point.snapshot.tree.to_hex(),
            "path": format!("/{}", path.trim_matches('/')),
            "equal": content == 0,
            "files": read.files,
            "bytes": read.bytes,
            "dirs": read.dirs,
            "others": read.others,
            "differences": changes,
        }))?;
    } else {
        for c in &changes {
            let slash = if c.kind == NodeKind::Dir { "/" } else { "" };
            println!("{}    {}{}", c.change.marker(), c.path, slash);
        }
        ctx.say(format!(
            "{} /{} (content root {}): {} files ({}), {} directories, {} other entries hashed and compared in {:.2}s",
            point.id.short(),
            path.trim_matches('/'),
            &point.snapshot.tree.to_hex()[..16],
            read.files,
            bytes(read.bytes),
            read.dirs,
            read.others,
            started.elapsed().as_secs_f64()
        ));
        if content == 0 {
            ctx.say(format!(
                "{} equals the recovery point{}",
                args.target.display(),
                if metadata > 0 {
                    format!(" in content ({metadata} entries differ in metadata only: U)")
                } else {
                    String::new()
                }
            ));
        }
    }
    if content > 0 {
        eprintln!(
            "aeon: error: {content} entries differ from the recovery point (+ extra, - missing, M content)"
        );
        return Ok(exit::DAMAGE);
    }
    Ok(0)
}
