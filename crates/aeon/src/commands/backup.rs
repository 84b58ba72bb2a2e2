use aeon_core::archiver::{self, BackupOptions, ParentChoice};
use aeon_core::filter::PathFilter;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::BackupArgs;
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit, timefmt};

pub fn run(ctx: &Ctx, args: BackupArgs) -> Result<u8> {
    let streaming = args.stdin || args.stdin_from_command;
    let mut opts = options(ctx, &args)?;
    // Listing the sources needs no key: it begins while the repository opens.
    let early_scan = match streaming || opts.changed.is_some() {
        true => None,
        false => Some(archiver::EarlyScan::start(&opts)?),
    };
    let parent = match (&args.parent, args.force || streaming) {
        (_, true) => ParentChoice::None,
        (Some(spec), false) => ParentChoice::Given(spec.clone()),
        (None, false) => ParentChoice::Latest,
    };
    let prepared = archiver::prepare(ctx.open()?, &mut opts, parent)?;
    let repo = prepared.repo;
    let adopted = (prepared.packs_reused, prepared.bytes_reused);
    if adopted.0 > 0 && !ctx.global.json {
        ctx.say(format!(
            "reusing {} pack(s), {}, stored by an interrupted run",
            adopted.0,
            bytes(adopted.1)
        ));
    }
    if let Some((used, limit)) = prepared.quota {
        warn_quota(used, limit);
    }

    let bar = Bar::new(ctx.progress_visible(), "files");
    let started = std::time::Instant::now();
    let result = if streaming {
        backup_stream(&repo, &opts, &args, &bar)
    } else {
        archiver::backup_after_scan(&repo, &opts, &bar, early_scan).map_err(anyhow::Error::from)
    };
    bar.finish();
    let result = result?;
    let s = &result.snapshot.summary;
    let secs = started.elapsed().as_secs_f64();
    if ctx.global.json {
        ctx.print_json(&json!({
            "snapshot_id": result.snapshot_id.to_hex(),
            "short_id": result.snapshot_id.short(),
            "parent": result.snapshot.parent.map(|p| p.to_hex()),
            "time": result.snapshot.time.to_rfc3339(),
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "dirs_new": s.dirs_new,
            "dirs_changed": s.dirs_changed,
            "dirs_unchanged": s.dirs_unchanged,
            "total_files": s.total_files,
            "total_bytes": s.total_bytes,
            "bytes_read": s.bytes_read,
            "blobs_added": s.blobs_added,
            "data_added": s.data_added,
            "data_added_stored": s.data_added_stored,
            "errors": s.errors,
            "warnings": result.warnings,
            "notes": result.notes,
            "protected": result.snapshot.protected,
            "packs_reused_after_interruption": adopted.0,
            "bytes_reused_after_interruption": adopted.1,
            "duration_seconds": secs,
        }))?;
    } else {
        if let Some(p) = result.snapshot.parent.filter(|_| ctx.global.verbose > 0) {
            ctx.say(format!("parent recovery point {}", p.short()));
        }
        ctx.say(format!(
            "Files: {} new, {} changed, {} unchanged\nDirs:  {} new, {} changed, {} unchanged",
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.dirs_new,
            s.dirs_changed,
            s.dirs_unchanged
        ));
        ctx.say(format!(
            "Added to the repository: {} ({} stored)\nProcessed {} files, {} in {:.2}s",
            bytes(s.data_added),
            bytes(s.data_added_stored),
            s.total_files,
            bytes(s.total_bytes),
            secs
        ));
        ctx.say(format!("recovery point {} saved", result.snapshot_id.short()));
    }
    archiver::report_missed_writes(&repo);
    if let Some((used, limit)) = prepared.quota {
        warn_quota(used + s.data_added_stored, limit);
    }
    if !ctx.global.json {
        for n in &result.notes {
            ctx.say(format!("note: {n}"));
        }
    }
    if !result.warnings.is_empty() {
        eprintln!(
            "warning: {} item(s) could not be backed up; the recovery point was saved without them",
            result.warnings.len()
        );
        return Ok(exit::INCOMPLETE);
    }
    Ok(0)
}

fn warn_quota(used: u64, limit: u64) {
    if used as f64 >= limit as f64 * 0.9 {
        eprintln!(
            "warning: the repository uses {} of its {} quota ({:.0}%); forget and prune, or raise it with `aeon quota set`",
            bytes(used),
            bytes(limit),
            used as f64 * 100.0 / limit as f64
        );
    }
}

/// The backup's options from its arguments: everything but what the repository decides (the
/// parent, the quota already used).
fn options(ctx: &Ctx, args: &BackupArgs) -> Result<BackupOptions> {
    let mut paths = args.paths.clone();
    for list in &args.files_from {
        paths.extend(
            PathFilter::patterns_from_file(list)?.into_iter().map(std::path::PathBuf::from),
        );
    }
    let mut opts = BackupOptions::new(paths);
    let mut excludes = args.excludes.clone();
    for f in &args.exclude_files {
        excludes.extend(PathFilter::patterns_from_file(f)?);
    }
    opts.excludes = PathFilter::new(&excludes, &args.iexcludes)?;
    opts.exclude_if_present = args.exclude_if_present.clone();
    opts.exclude_caches = args.exclude_caches;
    opts.exclude_larger_than = args.exclude_larger_than.as_deref().map(parse_size).transpose()?;
    opts.one_file_system = args.one_file_system;
    opts.hostname = args.host.clone().unwrap_or_else(super::host_name);
    opts.username = super::user_name();
    opts.tags = args.tags.clone();
    opts.description = args.description.clone();
    opts.category = args.category.clone();
    opts.kind = args.kind.clone();
    opts.threads = ctx.threads();
    opts.compression = args.compression.as_deref().map(str::parse).transpose()?;
    opts.time = args.time.as_deref().map(timefmt::parse).transpose()?;
    opts.scan_totals = ctx.progress_visible();
    opts.protect = args.protect;
    if let Some(list) = &args.changed_paths {
        if args.force {
            bail!(
                "--changed-paths carries unchanged folders over from the parent; --force reads everything: give one"
            );
        }
        let text = std::fs::read_to_string(list)
            .with_context(|| format!("cannot read the changed paths in {}", list.display()))?;
        let paths = text.lines().filter(|l| !l.is_empty()).map(std::path::PathBuf::from).collect();
        opts.changed = Some(archiver::ChangedPaths::new(paths));
        // The walk is short: a scan for the progress bar's totals would walk everything.
        opts.scan_totals = false;
    }
    Ok(opts)
}

/// Backs up standard input or a command's output as one file.
fn backup_stream(
    repo: &aeon_core::Repository,
    opts: &BackupOptions,
    args: &BackupArgs,
    bar: &Bar,
) -> Result<archiver::BackupResult> {
    if args.stdin {
        if !args.paths.is_empty() {
            bail!("--stdin backs up standard input only; give no paths");
        }
        let mut input = std::io::stdin().lock();
        return Ok(archiver::backup_stream(
            repo,
            opts,
            &args.stdin_filename,
            &mut input,
            &mut || Ok(()),
            bar,
        )?);
    }
    let (program, rest) = args
        .paths
        .split_first()
        .with_context(|| "--stdin-from-command needs a command after --")?;
    let shown = args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let mut child = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown:?}"))?;
    let mut stdout = child.stdout.take().context("no stdout from the command")?;
    let mut check = || -> aeon_core::Result<()> {
        let status = child.wait().map_err(|e| aeon_core::Error::io(program, e))?;
        if status.success() {
            Ok(())
        } else {
            Err(aeon_core::Error::InvalidInput(format!(
                "{shown:?} failed ({status}); no recovery point was written"
            )))
        }
    };
    Ok(archiver::backup_stream(repo, opts, &args.stdin_filename, &mut stdout, &mut check, bar)?)
}

/// "500", "500K", "20M", "2G", "1T" (powers of 1024; an optional trailing "B" or "iB").
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (digits, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    match digits.trim().parse::<u64>() {
        Ok(n) => Ok(n.saturating_mul(mult)),
        Err(_) => bail!("invalid size {text:?}: use a number with an optional K, M, G or T"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("500").unwrap(), 500);
        assert_eq!(super::parse_size("2k").unwrap(), 2048);
        assert_eq!(super::parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(super::parse_size("3MB").unwrap(), 3 << 20);
        assert!(super::parse_size("lots").is_err());
    }
}
