use aeon_core::archiver::{self, BackupOptions};
use aeon_core::filter::PathFilter;
use aeon_core::id::Id;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::BackupArgs;
use crate::progress::{Bar, bytes};
use crate::{Ctx, exit, timefmt};

pub fn run(ctx: &Ctx, args: BackupArgs) -> Result<u8> {
    let streaming = args.stdin || args.stdin_from_command;
    let mut opts = options(ctx, &args)?;
    // Listing the sources needs no key: it begins while the repository opens.
    let early_scan = if streaming { None } else { Some(archiver::EarlyScan::start(&opts)?) };
    let mut repo = ctx.open()?;
    // The lock comes before the index is read (prune relies on it). Stale locks are evidence
    // of a crash: their packs are adopted so that nothing they stored is uploaded again.
    ctx.lock_shared(&mut repo)?;
    let stale = repo.remove_stale_locks()?;
    for m in &stale {
        eprintln!("note: {m}");
    }
    crate::load_index(&mut repo)?;
    let absent = repo.index_state().missing_packs.clone();
    if !absent.is_empty() {
        eprintln!(
            "warning: the index names {} pack(s) that storage does not have (first: {}); their \
             data is stored again rather than trusted (run `aeon check`)",
            absent.len(),
            absent[0]
        );
    }
    let mut adopted = (0usize, 0u64);
    if !stale.is_empty() {
        adopted = adopt_unindexed_packs(&mut repo)?;
        if adopted.0 > 0 && !ctx.global.json {
            ctx.say(format!(
                "reusing {} pack(s), {}, stored by an interrupted run",
                adopted.0,
                bytes(adopted.1)
            ));
        }
    }
    let quota_used = match repo.settings().quota {
        Some(limit) => {
            let used = repo.storage_used()?;
            warn_quota(used, limit);
            Some(used)
        }
        None => None,
    };
    opts.quota_used = quota_used;
    opts.parent = if args.force || streaming {
        None
    } else if let Some(p) = &args.parent {
        Some(repo.find_snapshot(p)?.id)
    } else {
        latest_with_same_sources(&repo, &opts)?
    };

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
    if let Some(m) = repo.backend().mirror() {
        let missed = m.missed_writes();
        for (i, l) in m.locations().iter().enumerate() {
            let n = missed.iter().filter(|(at, _, _)| *at == i).count();
            if n > 0 {
                eprintln!(
                    "warning: location {} was unreachable ({}); {n} object(s) are missing there: \
                     run `aeon locations sync` when it is back",
                    l.url,
                    l.why_down().unwrap_or_default()
                );
            }
        }
    }
    if let (Some(limit), Some(used)) = (repo.settings().quota, quota_used) {
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
    Ok(opts)
}

/// Records packs that no index names (a killed backup wrote them) so that this backup reuses
/// their blobs. Packs whose table cannot be read are left for `check` and `prune`.
fn adopt_unindexed_packs(repo: &mut aeon_core::Repository) -> Result<(usize, u64)> {
    let mut packs = Vec::new();
    for o in repo.unindexed_packs()? {
        if let Ok(p) = repo.read_pack_table(&o.name, o.size) {
            packs.push(p);
        }
    }
    let n = packs.len();
    let bytes = repo.adopt_packs(packs)?;
    Ok((n, bytes))
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

/// The newest recovery point of the same host with the same paths.
fn latest_with_same_sources(
    repo: &aeon_core::Repository,
    opts: &BackupOptions,
) -> Result<Option<Id>> {
    let paths: Vec<String> = archiver::absolute_source_paths(&opts.paths)?
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let (entries, _) = repo.list_snapshots()?;
    Ok(entries
        .iter()
        .filter(|e| e.snapshot.hostname == opts.hostname && e.snapshot.paths == paths)
        .max_by_key(|e| e.snapshot.time)
        .map(|e| e.id))
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
