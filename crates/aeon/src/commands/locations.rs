use aeon_core::backend::MirrorBackend;
use aeon_core::locations;
use anyhow::{Context, Result};

use crate::Ctx;
use crate::cli::{LocationsAction, LocationsArgs};
use crate::progress::bytes;

fn mirror_of<S>(repo: &aeon_core::Repository<S>) -> Result<&MirrorBackend> {
    repo.mirror().context(
        "this repository has one location; `aeon init --location A --location B` makes one with several",
    )
}

pub fn run(ctx: &Ctx, args: LocationsArgs) -> Result<u8> {
    let repo = ctx.open()?;
    let m = mirror_of(&repo)?;
    match args.action {
        LocationsAction::Status => {
            let st = locations::status(m);
            if ctx.global.json {
                ctx.print_json(&st)?;
            } else {
                for s in &st {
                    if s.reachable {
                        ctx.say(format!(
                            "{}: reachable, {} objects ({}), missing {} ({})",
                            s.location,
                            s.objects,
                            bytes(s.bytes),
                            s.missing.len(),
                            bytes(s.missing_bytes)
                        ));
                    } else {
                        ctx.say(format!(
                            "{}: UNREACHABLE: {}",
                            s.location,
                            s.error.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
            let complete = st.iter().all(|s| s.reachable && s.missing.is_empty());
            Ok(if complete { 0 } else { crate::exit::INCOMPLETE })
        }
        LocationsAction::Sync => {
            let r = locations::sync(m)?;
            if ctx.global.json {
                ctx.print_json(&r)?;
            } else {
                ctx.say(format!("copied {} object(s), {}", r.copied, bytes(r.bytes)));
                for f in &r.failed {
                    eprintln!("error: {f}");
                }
            }
            Ok(if r.failed.is_empty() { 0 } else { crate::exit::ERROR })
        }
    }
}

/// `check --locations [--repair]`: the exit code, and the report (printed here unless --json,
/// where `check` prints it with its own).
pub fn cross_check<S>(
    ctx: &Ctx,
    repo: &aeon_core::Repository<S>,
    repair: bool,
) -> Result<(u8, locations::CrossCheckReport)> {
    let m = mirror_of(repo)?;
    let r = locations::cross_check(m, repair)?;
    if !ctx.global.json {
        for u in &r.unreachable {
            eprintln!("error: unreachable: {u}");
        }
        for (loc, o) in &r.missing {
            eprintln!("{}: {} {} missing", loc, o.kind, o.name);
        }
        for (loc, o) in &r.damaged {
            eprintln!("{}: {} {} damaged", loc, o.kind, o.name);
        }
        for (loc, o) in &r.healed {
            ctx.say(format!("healed {} {} at {loc} from a good copy", o.kind, o.name));
        }
        for o in &r.lost {
            eprintln!("error: {} {} has no good copy in any location", o.kind, o.name);
        }
        ctx.say(format!(
            "compared {} objects across {} locations ({} copies, {} read)",
            r.objects,
            m.locations().len(),
            r.copies_read,
            bytes(r.bytes_read)
        ));
    }
    let code = if r.is_ok() { 0 } else { crate::exit::DAMAGE };
    Ok((code, r))
}
