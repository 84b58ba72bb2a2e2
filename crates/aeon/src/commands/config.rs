//! `aeon config check|show`, `aeon completions SHELL`, `aeon man DIR`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use serde_json::json;

use crate::Ctx;
use crate::cli::{Cli, ConfigAction, ConfigArgs};
use crate::config::{Config, DEFAULT_PROFILE};

pub fn run(ctx: &Ctx, args: ConfigArgs) -> Result<u8> {
    let Some(path) = Config::locate(ctx.global.config.as_deref()) else {
        bail!(
            "no configuration file: give --config FILE (or AEON_CONFIG), or create ~/.config/aeon/aeon.toml or /etc/aeon/aeon.toml"
        );
    };
    let config = Config::read(&path)?;
    match args.action {
        ConfigAction::Check => {
            let problems = config.problems();
            if ctx.global.json {
                ctx.print_json(&json!({
                    "file": path.display().to_string(),
                    "profiles": config.profiles.keys().collect::<Vec<_>>(),
                    "problems": problems,
                }))?;
            } else {
                for p in &problems {
                    eprintln!("{}:{}: {}", path.display(), p.line, p.message);
                }
                if problems.is_empty() {
                    let names: Vec<&String> = config.profiles.keys().collect();
                    ctx.say(format!(
                        "{}: {} profile(s) ({}), no problems",
                        path.display(),
                        names.len(),
                        names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            Ok(if problems.is_empty() { 0 } else { crate::exit::ERROR })
        }
        ConfigAction::Show => {
            let name = ctx.global.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_string());
            let p = config.resolve(&name)?;
            let text = |v: &Option<toml::Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
            let schedules = |v: &Option<toml::Spanned<crate::config::Schedules>>| {
                v.as_ref()
                    .map(|s| s.get_ref().all().iter().map(|x| x.to_string()).collect::<Vec<_>>())
            };
            let shown = json!({
                "profile": name,
                "file": path.display().to_string(),
                "repository": p.repository,
                "password_source": match (&p.password, &p.password_file, &p.password_command) {
                    (Some(_), _, _) => Some("password (in the file)".to_string()),
                    (_, Some(f), _) => Some(format!("password_file {}", f.display())),
                    (_, _, Some(c)) => Some(format!("password_command {c}")),
                    _ => None,
                },
                "key_file": p.key_file,
                "sources": p.sources(),
                "exclude": p.exclude,
                "tags": p.tags,
                "host": p.host,
                "category": text(&p.category),
                "kind": text(&p.kind),
                "retention": crate::commands::forget::policy_from_flags(&p.policy_flags()).ok(),
                "schedule": schedules(&p.schedule),
                "next_backup": next_run(p.schedule.as_ref().map(|s| s.get_ref())),
                "forget_schedule": schedules(&p.forget_schedule),
                "check_schedule": schedules(&p.check_schedule),
                "watch": p.watch.unwrap_or(false),
                "watch_delay": text(&p.watch_delay),
                "max_age": text(&p.max_age),
            });
            if ctx.global.json {
                ctx.print_json(&shown)?;
            } else {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            }
            Ok(0)
        }
    }
}

/// When a profile's schedules next fire from now (the earliest), RFC 3339.
fn next_run(schedules: Option<&crate::config::Schedules>) -> Option<String> {
    let now = chrono::Local::now();
    schedules?
        .all()
        .iter()
        .filter_map(|s| crate::schedule::Schedule::parse(s).ok())
        .map(|s| s.next_after(now, None))
        .min()
        .map(|t| t.to_rfc3339())
}

/// Prints the completion script of `shell` on stdout.
pub fn completions(shell: &str) -> Result<u8> {
    use clap_complete::Shell;
    let shell: Shell = shell.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    // Into memory first: the generator panics on a closed pipe (`aeon completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "aeon", &mut script);
    use std::io::Write;
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Writes `aeon.1` and one page per subcommand (`aeon-backup.1`, …) into `dir`.
pub fn man_pages(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    Ok(0)
}
