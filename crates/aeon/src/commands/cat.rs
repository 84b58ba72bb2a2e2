use aeon_core::id::Id;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::Ctx;
use crate::cli::CatArgs;

pub fn run(ctx: &Ctx, args: CatArgs) -> Result<u8> {
    let need_id = || args.id.as_deref().context("this object needs an ID argument");
    let value: Value = match args.what.as_str() {
        "config" => {
            let repo = ctx.open()?;
            repo.refuse_write_only("the config cannot be read")?;
            json!({
                "repository_id": repo.repository_id(),
                "format_version": repo.format_version(),
                "settings": repo.settings(),
            })
        }
        "snapshot" => {
            let repo = ctx.open()?;
            let entry = repo.find_snapshot(need_id()?)?;
            let mut v = serde_json::to_value(&entry.snapshot)?;
            v["id"] = json!(entry.id.to_hex());
            v
        }
        "tree" => {
            let repo = ctx.open_with_index()?;
            let spec = need_id()?;
            let tree_id = match spec.parse::<Id>() {
                Ok(id) if repo.index().get_readable(&id).is_some() => id,
                _ => {
                    let (_, _, node) = super::resolve_target(&repo, spec)?;
                    node.subtree.context("that path is not a directory")?
                }
            };
            let mut v = serde_json::to_value(repo.load_tree(&tree_id)?)?;
            v["id"] = json!(tree_id.to_hex());
            v
        }
        "index" => {
            let repo = ctx.open()?;
            let mut files = Vec::new();
            for f in repo.read_index_files()? {
                let (id, file) = f?;
                let packs: Vec<Value> = file
                    .packs
                    .iter()
                    .map(|p| {
                        json!({
                            "id": p.id.to_hex(),
                            "size": p.size,
                            "blobs": p.blobs.iter().map(|b| json!({
                                "type": b.blob_type.name(),
                                "id": b.id.to_hex(),
                                "offset": b.offset,
                                "length": b.length,
                                "raw_length": b.raw_len,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                files.push(json!({
                    "id": id.to_hex(),
                    "supersedes": file.supersedes.iter().map(Id::to_hex).collect::<Vec<_>>(),
                    "packs": packs,
                }));
            }
            Value::Array(files)
        }
        "keys" => {
            let mut slots = Vec::new();
            for (name, slot) in ctx.locate()?.key_slots()? {
                slots.push(json!({
                    "id": name,
                    "type": slot.slot_type.name(),
                    "label": slot.label_in_clear(),
                    "label_sealed": slot.label_in_clear().is_none(),
                    "created": chrono::DateTime::from_timestamp(slot.created_unix, 0).map(|t| t.to_rfc3339()),
                    "argon2id": slot.kdf.map(|k| json!({"memory_kib": k.memory_kib, "iterations": k.iterations, "parallelism": k.parallelism})),
                }));
            }
            Value::Array(slots)
        }
        other => bail!("cannot cat {other:?}: use config, snapshot ID, tree ID, index or keys"),
    };
    ctx.print_json(&value)?;
    Ok(0)
}
