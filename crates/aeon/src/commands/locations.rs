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
    if let Some(stripe) = repo.stripe() {
        return run_stripe(ctx, stripe, args);
    }
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

/// `locations status` of a striped repository: each location's share, and the redundancy the
/// groups have left.
fn run_stripe(
    ctx: &Ctx,
    stripe: &aeon_core::backend::StripeBackend,
    args: LocationsArgs,
) -> Result<u8> {
    if let LocationsAction::Sync = args.action {
        anyhow::bail!(
            "a striped repository keeps each pack in one location: `aeon repair` rebuilds what a location lacks"
        );
    }
    let st = stripe.status()?;
    if ctx.global.json {
        ctx.print_json(&st)?;
    } else {
        ctx.say(format!("stripe {} over {} locations", st.scheme, st.locations.len()));
        for l in &st.locations {
            match &l.error {
                None => ctx.say(format!(
                    "{}: reachable, {} packs, {} parity objects ({})",
                    l.location,
                    l.packs,
                    l.parity_objects,
                    bytes(l.bytes)
                )),
                Some(e) => ctx.say(format!("{}: UNREACHABLE: {e}", l.location)),
            }
        }
        ctx.say(format!(
            "groups: {} complete, {} degraded (rebuildable), {} lost; {}",
            st.complete,
            st.degraded,
            st.lost,
            match st.redundancy_left {
                n if n < 0 => "DATA IS LOST: `aeon repair` names what".to_string(),
                0 => "no redundancy left: any further loss loses data (`aeon repair` restores it)"
                    .to_string(),
                n => format!("{n} more location(s) may be lost without losing data"),
            }
        ));
    }
    if st.unprotected > 0 && !ctx.global.json {
        ctx.say(format!("{} pack(s) have no parity (written while a location was away): `aeon repair` protects them", st.unprotected));
    }
    let whole = st.degraded == 0 && st.lost == 0 && st.unprotected == 0;
    Ok(if whole && st.locations.iter().all(|l| l.reachable) { 0 } else { crate::exit::INCOMPLETE })
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
