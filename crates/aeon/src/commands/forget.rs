use aeon_core::retention::{self, GroupBy, GroupPlan, PolicySource, RetentionPolicy};
use aeon_core::snapshot::SnapshotEntry;
use anyhow::{Result, bail};
use serde_json::json;

use crate::cli::{ForgetArgs, PolicyFlags};
use crate::{Ctx, timefmt};

pub fn run(ctx: &Ctx, args: ForgetArgs) -> Result<u8> {
    // Forget only removes recovery-point objects; prune decides about data.
    let repo = ctx.open_locked()?;
    let (entries, unreadable) = repo.list_snapshots()?;
    for (name, e) in &unreadable {
        eprintln!("warning: recovery point {name} cannot be read, and is left alone: {e}");
    }
    let entries: Vec<SnapshotEntry> =
        entries.into_iter().filter(|e| args.filter.matches(e)).collect();
    let given = policy_from_flags(&args.policy)?;

    let mut plan_json = None;
    let to_remove: Vec<SnapshotEntry> = if !args.ids.is_empty() {
        if !given.is_empty() {
            bail!("give recovery point ids or a policy, not both");
        }
        let mut list = Vec::new();
        for spec in &args.ids {
            // A protected point is refused by the engine, which records the refusal.
            list.push(aeon_core::snapshot::resolve_among(&entries, &unreadable, spec)?.clone());
        }
        list
    } else {
        let source = if !given.is_empty() {
            PolicySource::Given(given)
        } else if !repo.settings().retention.is_empty() {
            PolicySource::PerCategory(repo.settings().retention.clone())
        } else {
            bail!(
                "no retention policy: give --keep-* flags (e.g. --keep-daily 7 --keep-weekly 5) \
                 or store one with `aeon policy set`"
            );
        };
        let group_by: GroupBy = args.group_by.parse()?;
        let groups = match &args.timezone {
            Some(name) => {
                let tz: chrono_tz::Tz = name.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "unknown time zone {name:?}: use an IANA name such as Europe/Berlin or UTC"
                    )
                })?;
                retention::plan(entries, &source, group_by, &tz)?
            }
            None => retention::plan(entries, &source, group_by, &chrono::Local)?,
        };
        plan_json = show_plan(ctx, &groups, args.dry_run);
        groups
            .into_iter()
            .flat_map(|g| g.points.into_iter().filter(|(_, v)| !v.keep).map(|(e, _)| e))
            .collect()
    };

    let print_plan = |extra: Option<serde_json::Value>| -> Result<()> {
        if let Some(plan) = &plan_json {
            match extra {
                Some(prune) => ctx.print_json(&json!({"forget": plan, "prune": prune}))?,
                None => ctx.print_json(plan)?,
            }
        }
        Ok(())
    };
    if args.dry_run {
        print_plan(None)?;
        if !ctx.global.json {
            ctx.say(format!(
                "would remove {} recovery point(s) (dry run: nothing changed)",
                to_remove.len()
            ));
        }
        return Ok(0);
    }
    let outcome = repo.forget(&to_remove)?;
    if !ctx.global.json {
        ctx.say(format!("removed {} recovery point(s)", outcome.removed));
    }
    if args.prune {
        let repo = repo.unlock();
        let opts = super::prune::options(&args.prune_opts, false)?;
        if ctx.global.json {
            let report = aeon_core::prune::prune(repo, &opts, &aeon_core::progress::NoProgress)?;
            print_plan(Some(serde_json::to_value(&report)?))?;
            return Ok(0);
        }
        return super::prune::run_with(ctx, repo, &opts);
    }
    print_plan(None)?;
    Ok(0)
}

/// Prints the plan as text, or returns it as JSON (printed by the caller, with the prune report
/// when there is one, so that --json output is one document).
fn show_plan(ctx: &Ctx, groups: &[GroupPlan], dry_run: bool) -> Option<serde_json::Value> {
    if ctx.global.json {
        let list: Vec<_> = groups
            .iter()
            .map(|g| {
                let point = |e: &SnapshotEntry, reasons: &[String]| {
                    json!({
                        "id": e.id.to_hex(),
                        "short_id": e.id.short(),
                        "time": e.snapshot.time.to_rfc3339(),
                        "protected": e.snapshot.protected,
                        "reasons": reasons,
                    })
                };
                json!({
                    "group": g.key,
                    "policy": g.policy,
                    "keep": g.points.iter().filter(|(_, v)| v.keep).map(|(e, v)| point(e, &v.reasons)).collect::<Vec<_>>(),
                    "remove": g.points.iter().filter(|(_, v)| !v.keep).map(|(e, v)| point(e, &v.reasons)).collect::<Vec<_>>(),
                    "dry_run": dry_run,
                })
            })
            .collect();
        return Some(serde_json::Value::Array(list));
    }
    for g in groups {
        ctx.say(format!(
            "{}: {}",
            g.key.describe(),
            g.policy.as_deref().unwrap_or("no policy for this category: all kept")
        ));
        for (e, v) in &g.points {
            let verdict = if v.keep { "keep  " } else { "remove" };
            let why = if v.keep { format!("  ({})", v.reasons.join(", ")) } else { String::new() };
            ctx.say(format!(
                "  {verdict} {}  {}{why}",
                e.id.short(),
                timefmt::local(&e.snapshot.time)
            ));
        }
    }
    None
}

pub fn policy_from_flags(f: &PolicyFlags) -> Result<RetentionPolicy> {
    let span = |s: &Option<String>| -> Result<Option<retention::Span>> {
        Ok(s.as_deref().map(str::parse).transpose()?)
    };
    Ok(RetentionPolicy {
        keep_last: f.keep_last,
        keep_hourly: f.keep_hourly,
        keep_daily: f.keep_daily,
        keep_weekly: f.keep_weekly,
        keep_monthly: f.keep_monthly,
        keep_yearly: f.keep_yearly,
        keep_within: span(&f.keep_within)?,
        keep_within_hourly: span(&f.keep_within_hourly)?,
        keep_within_daily: span(&f.keep_within_daily)?,
        keep_within_weekly: span(&f.keep_within_weekly)?,
        keep_within_monthly: span(&f.keep_within_monthly)?,
        keep_within_yearly: span(&f.keep_within_yearly)?,
        keep_tags: f.keep_tags.clone(),
        max_points: f.max_points,
    })
}
