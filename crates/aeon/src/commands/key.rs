//! `aeon key`: list, add, change and remove key slots; make post-quantum key pairs.

use std::path::{Path, PathBuf};

use aeon_core::keys::files::write_new;
use aeon_core::keys::{KdfParams, KeyFileSecret, KeyMaterial, NewSlot, SecretKey, SlotNotes};
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Ctx;
use crate::cli::{KdfArgs, KeyAction, KeyArgs};
use crate::timefmt;

pub fn run(ctx: &Ctx, args: KeyArgs) -> Result<u8> {
    match args.action {
        KeyAction::Generate { public, secret } => generate(ctx, &public, secret),
        KeyAction::List => list(ctx),
        KeyAction::Add { public, write_only, label, new_password_file, kdf } => {
            // With `key add`, --key-file names the key file to create; opening takes
            // AEON_KEY_FILE or the password.
            let new_key_file = ctx.global.key_file.clone();
            let repo = ctx.lock_shared(ctx.open_with(ctx.credential(None)?)?)?;
            let label =
                label.unwrap_or_else(|| format!("{}@{}", super::user_name(), super::host_name()));
            // With --append-only the new slot's holder deletes and replaces nothing, whatever
            // flags it runs with.
            let notes = SlotNotes { label, append_only: ctx.global.append_only };
            let (added, kind, note) = match (&public, &new_key_file) {
                (Some(_), Some(_)) => bail!("give --public or --key-file, not both"),
                (Some(path), None) => {
                    let KeyMaterial::PublicKey(pk) = KeyMaterial::read(path)? else {
                        bail!(
                            "{} is not a public key (make one with `aeon key generate --public FILE`)",
                            path.display()
                        )
                    };
                    let fp = pk.fingerprint_hex();
                    if write_only {
                        let settings = repo.writer_settings()?;
                        let slot = NewSlot::WriteOnly { public: &pk, settings };
                        (
                            repo.key_add(&slot, &notes)?,
                            "write-only",
                            format!(
                                "fingerprint {fp}: `aeon --key-file {}` adds recovery points and reads none",
                                path.display()
                            ),
                        )
                    } else {
                        (
                            repo.key_add(&NewSlot::PublicKey(&pk), &notes)?,
                            "public-key",
                            format!("fingerprint {fp}"),
                        )
                    }
                }
                (None, Some(path)) => {
                    let secret = KeyFileSecret::random()?;
                    write_new(path, &secret.to_text(), true)
                        .with_context(|| format!("cannot create key file {}", path.display()))?;
                    let added = repo.key_add(&NewSlot::KeyFile(&secret), &notes);
                    if added.is_err() {
                        // A key file that opens nothing would mislead.
                        let _ = std::fs::remove_file(path);
                    }
                    (added?, "key-file", format!("key file {}", path.display()))
                }
                (None, None) => {
                    let password = crate::password::get_new(new_password_file.as_deref())?;
                    let kdf = kdf_params(&kdf)?;
                    (
                        repo.key_add(
                            &NewSlot::Password { password: password.as_bytes(), kdf },
                            &notes,
                        )?,
                        "password",
                        String::new(),
                    )
                }
            };
            if ctx.global.json {
                ctx.print_json(&json!({"added": added.id, "type": kind}))?;
            } else {
                ctx.say(format!("added {kind} slot {} {note}", &added.id[..16]));
            }
            Ok(0)
        }
        KeyAction::Passwd { new_password_file, kdf } => {
            let repo = ctx.open_locked()?;
            let password = crate::password::get_new(new_password_file.as_deref())?;
            let (added, old) = repo.key_passwd(password.as_bytes(), kdf_params(&kdf)?)?;
            if ctx.global.json {
                ctx.print_json(&json!({"added": added.id, "removed": old}))?;
            } else {
                ctx.say(format!(
                    "password changed: slot {} replaces {}",
                    &added.id[..16],
                    &old[..16]
                ));
            }
            Ok(0)
        }
        KeyAction::Remove { id, force } => {
            let repo = ctx.open_locked()?;
            let removed = repo.key_remove(&id, force)?;
            if ctx.global.json {
                ctx.print_json(&json!({"removed": removed}))?;
            } else {
                ctx.say(format!("removed key slot {}", &removed[..16]));
            }
            Ok(0)
        }
    }
}

fn list(ctx: &Ctx) -> Result<u8> {
    let repo = ctx.open_locked()?;
    let slots = repo.key_list()?;
    if ctx.global.json {
        ctx.print_json(&slots)?;
        return Ok(0);
    }
    println!(
        "{:<2}{:<18}{:<12}{:<12}{:<26}{:<26}label",
        "", "id", "type", "access", "created", "last used"
    );
    for s in &slots {
        let created = s.created.map(|t| timefmt::local(&t.fixed_offset())).unwrap_or_default();
        let kind = s.slot_type.map(|t| t.name()).unwrap_or("?");
        let access = match (s.access, s.append_only) {
            (Some(aeon_core::keys::Access::Full), false) => "full",
            (Some(aeon_core::keys::Access::Full), true) => "append-only",
            (Some(aeon_core::keys::Access::WriteOnly), _) => "write-only",
            (None, _) => "?",
        };
        let label = match (&s.label, &s.error) {
            (_, Some(e)) => format!("(unreadable: {e})"),
            (Some(l), None) => l.clone(),
            (None, None) => String::new(),
        };
        let last_used = s
            .last_used
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| timefmt::local(&t))
            .unwrap_or_default();
        println!(
            "{:<2}{:<18}{:<12}{:<12}{:<26}{:<26}{label}",
            if s.current { "*" } else { "" },
            &s.id[..16],
            kind,
            access,
            created,
            last_used
        );
    }
    Ok(0)
}

fn generate(ctx: &Ctx, public: &Path, secret: Option<PathBuf>) -> Result<u8> {
    let secret_path = secret.unwrap_or_else(|| {
        let s = public.to_string_lossy();
        PathBuf::from(match s.strip_suffix(".pub") {
            Some(stem) => format!("{stem}.secret"),
            None => format!("{s}.secret"),
        })
    });
    if secret_path == public {
        bail!("the public and the secret key cannot go to the same file");
    }
    let key = SecretKey::generate()?;
    write_new(&secret_path, &key.to_text(), true)
        .with_context(|| format!("cannot create {}", secret_path.display()))?;
    let pk = key.public();
    if let Err(e) = write_new(public, &pk.to_text(), false) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(e).with_context(|| format!("cannot create {}", public.display()));
    }
    let fp = pk.fingerprint_hex();
    if ctx.global.json {
        ctx.print_json(&json!({"public": public, "secret": secret_path, "fingerprint": fp}))?;
    } else {
        ctx.say(format!(
            "public key {} (fingerprint {fp}), secret key {} (keep it secret)",
            public.display(),
            secret_path.display()
        ));
        ctx.say(format!("next: aeon key add --public {}", public.display()));
    }
    Ok(0)
}

fn kdf_params(k: &KdfArgs) -> Result<KdfParams> {
    if k.kdf_memory == 0 || k.kdf_iterations == 0 || k.kdf_lanes == 0 {
        bail!("--kdf-memory, --kdf-iterations and --kdf-lanes must be at least 1");
    }
    let p = KdfParams {
        memory_kib: k.kdf_memory.saturating_mul(1024),
        iterations: k.kdf_iterations,
        parallelism: k.kdf_lanes,
    };
    if let Some(why) = p.outside_limits() {
        bail!("{why}");
    }
    Ok(p)
}
