//! `aeon audit`: the repository's tamper-evident log of operations.

use aeon_core::audit;
use anyhow::Result;

use crate::cli::{AuditAction, AuditArgs};
use crate::{Ctx, exit, timefmt};

pub fn run(ctx: &Ctx, args: AuditArgs) -> Result<u8> {
    let repo = ctx.open_locked()?;
    match args.action {
        AuditAction::Log { since } => {
            let since = since.as_deref().map(timefmt::parse).transpose()?;
            let entries: Vec<_> = audit::entries(repo.storage().as_ref(), repo.cipher())?
                .into_iter()
                .filter(|e| {
                    since.is_none_or(|s| {
                        chrono::DateTime::parse_from_rfc3339(&e.body.time).is_ok_and(|t| t >= s)
                    })
                })
                .collect();
            if ctx.global.json {
                ctx.print_json(&entries)?;
                return Ok(0);
            }
            for e in &entries {
                let when = chrono::DateTime::parse_from_rfc3339(&e.body.time)
                    .map(|t| timefmt::local(&t))
                    .unwrap_or_else(|_| e.body.time.clone());
                let mut line = format!(
                    "{when}  {}  {}@{}  {}",
                    &e.id[..8],
                    e.body.user,
                    e.body.host,
                    e.body.operation
                );
                if !e.body.arguments.is_empty() {
                    line.push(' ');
                    line.push_str(&e.body.arguments.join(" "));
                }
                if e.body.outcome != "ok" {
                    line.push_str(&format!("  [{}]", e.body.outcome));
                }
                let changed = e.body.added.len() + e.body.removed.len();
                if changed > 0 {
                    line.push_str(&format!(
                        "  (+{} -{})",
                        e.body.added.len(),
                        e.body.removed.len()
                    ));
                }
                println!("{line}");
            }
            Ok(0)
        }
        AuditAction::Verify { head } => {
            let report = audit::verify(repo.storage().as_ref(), repo.cipher(), head.as_deref())?;
            let code = if report.intact() { 0 } else { exit::DAMAGE };
            if ctx.global.json {
                ctx.print_json(&report)?;
                return Ok(code);
            }
            for p in &report.problems {
                eprintln!("record {}: {}", p.record, p.problem);
            }
            for s in &report.self_registered {
                ctx.say(format!(
                    "note: slot {} registered its own key (it is older than the log)",
                    &s[..s.len().min(16)]
                ));
            }
            if report.intact() {
                let mut line = format!(
                    "audit log intact: {} record(s), {} key(s) registered, head {}",
                    report.records,
                    report.registered.len(),
                    report.heads.join(", ")
                );
                if let Some(n) = report.records_after_head {
                    line.push_str(&format!("; the head given is in it, {n} record(s) after it"));
                }
                ctx.say(line);
            } else {
                eprintln!("aeon: error: the audit log has {} problem(s)", report.problems.len());
            }
            Ok(code)
        }
    }
}
