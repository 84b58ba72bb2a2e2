use anyhow::Result;
use serde_json::json;

use crate::Ctx;
use crate::cli::{PolicyAction, PolicyArgs, QuotaAction, QuotaArgs};
use crate::progress::bytes;

pub fn run(ctx: &Ctx, args: PolicyArgs) -> Result<u8> {
    let mut repo = ctx.open()?;
    match args.action {
        PolicyAction::Show => {}
        PolicyAction::Set { category, policy } => {
            let p = super::forget::policy_from_flags(&policy)?;
            p.validate()?;
            repo.update_settings(|s| {
                s.retention.insert(category.clone(), p);
            })?;
            ctx.say(format!("stored the policy for category {category}"));
        }
        PolicyAction::Remove { category } => {
            if !repo.settings().retention.contains_key(&category) {
                anyhow::bail!("no policy is stored for category {category}");
            }
            repo.update_settings(|s| {
                s.retention.remove(&category);
            })?;
            ctx.say(format!("removed the policy for category {category}"));
        }
    }
    let policies = &repo.settings().retention;
    if ctx.global.json {
        ctx.print_json(&json!(policies))?;
    } else if policies.is_empty() {
        ctx.say("no retention policy is stored; `aeon forget` needs --keep-* flags");
    } else {
        for (category, p) in policies {
            ctx.say(format!("{category}: {}", p.describe()));
        }
    }
    Ok(0)
}

pub fn run_quota(ctx: &Ctx, args: QuotaArgs) -> Result<u8> {
    let mut repo = ctx.open_with_index()?;
    match args.action {
        QuotaAction::Show => {}
        QuotaAction::Set { size } => {
            let limit = super::backup::parse_size(&size)?;
            repo.update_settings(|s| s.quota = Some(limit))?;
        }
        QuotaAction::Remove => repo.update_settings(|s| s.quota = None)?,
    }
    let used = repo.storage_used()?;
    let quota = repo.settings().quota;
    if ctx.global.json {
        ctx.print_json(&json!({"quota": quota, "used": used}))?;
    } else {
        match quota {
            Some(q) => ctx.say(format!(
                "quota {}; {} used ({:.1}%)",
                bytes(q),
                bytes(used),
                used as f64 * 100.0 / q as f64
            )),
            None => ctx.say(format!("no quota; {} used", bytes(used))),
        }
    }
    Ok(0)
}
