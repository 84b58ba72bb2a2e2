use aeon_core::import::{self, ImportOptions, ImportReport};
use anyhow::{Context, Result};

use crate::Ctx;
use crate::cli::{ImportArgs, ImportCommon, ImportFrom};
use crate::progress::{Bar, bytes};

pub fn run(ctx: &Ctx, args: ImportArgs) -> Result<u8> {
    let report = match args.from {
        ImportFrom::Restic(a) => {
            let opts = ImportOptions { dry_run: a.common.dry_run, only: a.snapshots };
            let storage = aeon_core::backend::open_location(&a.source, &ctx.storage_options())
                .context("the restic repository")?;
            let password = password(&a.common)?;
            let source = import::restic::ResticSource::open(storage, &password)?;
            let target = ctx.open_with_index()?;
            let bar = Bar::new(ctx.progress_visible(), "snapshots");
            let report = import::restic::import(&source, &target, &opts, &bar);
            bar.finish();
            report?
        }
        ImportFrom::Borg(a) => {
            let (repo, archive) = match a.source.rsplit_once("::") {
                Some((repo, archive)) => (repo.to_string(), vec![archive.to_string()]),
                None => (a.source.clone(), Vec::new()),
            };
            let opts = ImportOptions { dry_run: a.common.dry_run, only: archive };
            // Borg asks for its passphrase itself (BORG_PASSPHRASE, BORG_PASSCOMMAND); ours
            // is passed on only when one is given.
            let given = std::env::var_os("AEON_FROM_PASSWORD").is_some()
                || a.common.from_password_file.is_some()
                || a.common.from_password_command.is_some();
            let password = if given { Some(password(&a.common)?) } else { None };
            let source = import::borg::BorgSource::open(
                &a.borg,
                &repo,
                password.as_ref().map(|p| p.as_str()),
            )?;
            let target = ctx.open_with_index()?;
            let bar = Bar::new(ctx.progress_visible(), "archives");
            let report = import::borg::import(&source, &target, &opts, &bar);
            bar.finish();
            report?
        }
    };
    render(ctx, &report)
}

fn password(common: &ImportCommon) -> Result<crate::password::Password> {
    crate::password::get_source_or_command(
        common.from_password_file.as_deref(),
        common.from_password_command.as_deref(),
    )
}

fn render(ctx: &Ctx, r: &ImportReport) -> Result<u8> {
    if ctx.global.json {
        ctx.print_json(r)?;
        return Ok(0);
    }
    for p in &r.points {
        let what = match (&p.recovery_point, p.already_imported, r.dry_run) {
            (Some(id), true, _) => format!("already imported as {}", &id[..8.min(id.len())]),
            (_, false, true) => "would be imported".to_string(),
            (Some(id), false, _) => format!("imported as {}", &id[..8.min(id.len())]),
            (None, _, _) => "not imported".to_string(),
        };
        let name = p.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
        ctx.say(format!(
            "{} {}{} {}@{} {}: {what}",
            &p.id[..8.min(p.id.len())],
            p.time.format("%Y-%m-%d %H:%M:%S"),
            name,
            p.username,
            p.hostname,
            p.paths.join(" "),
        ));
    }
    for note in &r.notes {
        eprintln!("note: {note}");
    }
    if r.dry_run {
        let todo = r.points.len() - r.already_imported;
        ctx.say(format!(
            "{todo} {} would be imported, {} already imported; nothing was written (--dry-run)",
            noun(r.format),
            r.already_imported
        ));
    } else {
        ctx.say(format!(
            "{} {} imported, {} already imported; read {}, stored {} new ({} blobs)",
            r.imported,
            noun(r.format),
            r.already_imported,
            bytes(r.stats.bytes_read),
            bytes(r.stats.bytes_stored),
            r.stats.blobs_added
        ));
    }
    Ok(0)
}

fn noun(format: &str) -> &'static str {
    match format {
        "borg" => "archive(s)",
        _ => "snapshot(s)",
    }
}
