use aeon_core::Repository;
use aeon_core::keys::KdfParams;
use aeon_core::repository::InitOptions;
use anyhow::{Result, bail};

use crate::Ctx;
use crate::cli::InitArgs;

pub fn run(ctx: &Ctx, args: InitArgs) -> Result<u8> {
    let mut locations: Vec<String> = Vec::new();
    if !args.locations.is_empty() {
        if let Some(r) = ctx.global.repo.as_deref().filter(|r| !r.is_empty()) {
            locations.push(canonical_location(r));
        }
        for l in &args.locations {
            let l = canonical_location(l);
            if !locations.contains(&l) {
                locations.push(l);
            }
        }
    }
    let backend = match locations.len() {
        0 => ctx.backend()?,
        1 => ctx.backend_at(&locations[0])?,
        _ => ctx.mirror(&locations)?,
    };
    if backend.stat(aeon_core::backend::FileType::Config, "config")?.is_some() {
        return Err(aeon_core::Error::AlreadyExists(backend.location()).into());
    }
    if args.kdf_memory == 0 || args.kdf_iterations == 0 || args.kdf_lanes == 0 {
        bail!("--kdf-memory, --kdf-iterations and --kdf-lanes must be at least 1");
    }
    let password = crate::password::get(&ctx.global, true)?;
    let opts = InitOptions {
        compression: args.compression.parse()?,
        pack_size: args.pack_size.saturating_mul(1024 * 1024),
        kdf: KdfParams {
            memory_kib: args.kdf_memory.saturating_mul(1024),
            iterations: args.kdf_iterations,
            parallelism: args.kdf_lanes,
        },
        key_label: format!("{}@{}", super::user_name(), super::host_name()),
        quota: args.quota.as_deref().map(super::backup::parse_size).transpose()?,
        locations: if locations.len() > 1 { locations.clone() } else { Vec::new() },
        ..InitOptions::default()
    };
    let repo = Repository::init(backend.clone(), password.as_bytes(), opts)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "repository_id": repo.repository_id(),
            "location": backend.location(),
        }))?;
    } else {
        ctx.say(format!(
            "created aeon repository {} at {}",
            &repo.repository_id()[..10],
            backend.location()
        ));
        ctx.say("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(0)
}

/// Local paths are recorded absolute, so that the repository opens from anywhere.
fn canonical_location(l: &str) -> String {
    if ["s3:", "sftp:", "webdav:"].iter().any(|p| l.starts_with(p)) {
        return l.to_string();
    }
    match std::path::absolute(l) {
        Ok(p) => p.display().to_string(),
        Err(_) => l.to_string(),
    }
}
