use aeon_core::keys::KdfParams;
use aeon_core::repository::InitOptions;
use aeon_core::repository::{InitTarget, canonical_location};
use anyhow::{Result, bail};

use crate::Ctx;
use crate::cli::InitArgs;

pub fn run(ctx: &Ctx, args: InitArgs) -> Result<u8> {
    let mut locations: Vec<String> = Vec::new();
    let given = ctx.global.repo.as_deref().filter(|r| !r.is_empty());
    if !args.locations.is_empty() {
        if let Some(r) = given {
            locations.push(canonical_location(r));
        }
        for l in &args.locations {
            let l = canonical_location(l);
            if !locations.contains(&l) {
                locations.push(l);
            }
        }
    }
    let location = match given {
        Some(r) => r,
        None if !locations.is_empty() => &locations[0],
        None => ctx.location()?,
    };
    let target = InitTarget::new(location, &locations, &ctx.storage_options())?;
    if args.kdf_memory == 0 || args.kdf_iterations == 0 || args.kdf_lanes == 0 {
        bail!("--kdf-memory, --kdf-iterations and --kdf-lanes must be at least 1");
    }
    let stripe = args.layout == "stripe";
    if stripe && locations.len() < 2 {
        bail!("--layout stripe needs two or more --location");
    }
    let parity = match (args.parity.as_deref(), stripe) {
        (Some(p), _) => Some(p.parse::<aeon_core::parity::Scheme>()?),
        (None, true) => Some(aeon_core::parity::Scheme::new(locations.len() as u8 - 1, 1)?),
        (None, false) => None,
    };
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
        parity,
        stripe,
        ..InitOptions::default()
    };
    let where_ = target.location();
    let repo = target.create(password.as_bytes(), opts)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "repository_id": repo.repository_id(),
            "location": where_,
        }))?;
    } else {
        ctx.say(format!("created aeon repository {} at {}", &repo.repository_id()[..10], where_));
        ctx.say("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(0)
}
