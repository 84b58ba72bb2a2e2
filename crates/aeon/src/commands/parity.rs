use aeon_core::lock::LockKind;
use aeon_core::parity::{self, Scheme};
use anyhow::Result;
use serde_json::json;

use crate::Ctx;
use crate::cli::{ParityAction, ParityArgs};
use crate::progress::{Bar, bytes};

pub fn run(ctx: &Ctx, args: ParityArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let mut report = None;
    let mut removed = None;
    let repo = match args.action {
        ParityAction::Show => ctx.lock_shared(repo)?.load_index()?,
        ParityAction::Set { scheme } => {
            let scheme: Scheme = scheme.parse()?;
            let mut repo = repo.lock(LockKind::Exclusive, "parity")?;
            parity::manage::enable(&mut repo, scheme)?;
            let repo = repo.load_index()?;
            let bar = Bar::new(ctx.progress_visible(), "packs");
            let r = parity::manage::protect_all(&repo, &bar);
            bar.finish();
            report = Some(r?);
            repo
        }
        ParityAction::Off => {
            let mut repo = repo.lock(LockKind::Exclusive, "parity")?;
            removed = Some(parity::manage::disable(&mut repo)?);
            repo.load_index()?
        }
    };
    let status = parity::manage::status(&repo)?;
    if ctx.global.json {
        ctx.print_json(&json!({"status": status, "protected": report, "removed": removed}))?;
        return Ok(0);
    }
    if let Some(r) = &report {
        ctx.say(format!(
            "protected {} pack(s) with {} new group(s) ({} of parity), wrote {} cop{} of small objects",
            r.packs_protected,
            r.groups,
            bytes(r.parity_bytes),
            r.copies_written,
            if r.copies_written == 1 { "y" } else { "ies" }
        ));
        for p in &r.damaged_packs {
            eprintln!(
                "warning: pack {p} does not hash to its name and was not protected; run `aeon repair`"
            );
        }
    }
    if let Some(n) = removed {
        ctx.say(format!("parity is off; removed {n} parity object(s) and copies"));
    }
    match &status.scheme {
        None => ctx.say("parity: off (`aeon parity set 10+2` turns it on)"),
        Some(s) => {
            ctx.say(format!("parity: {s}"));
            ctx.say(format!(
                "packs:  {} of {} protected, in {} group(s) ({} complete)",
                status.packs_protected, status.packs, status.groups, status.complete_groups
            ));
            ctx.say(format!(
                "space:  {} of parity and copies for {} of packs ({:.1}%)",
                bytes(status.parity_bytes),
                bytes(status.pack_bytes),
                status.overhead_percent
            ));
            ctx.say(format!(
                "copies: {} of small objects{}",
                status.copies,
                match status.objects_without_copies {
                    0 => String::new(),
                    n => format!(", {n} object(s) lack some (`aeon repair` writes them)"),
                }
            ));
            if status.packs_protected < status.packs {
                ctx.say(format!(
                    "note: {} pack(s) have no parity yet; `aeon repair` protects them",
                    status.packs - status.packs_protected
                ));
            }
        }
    }
    Ok(0)
}
