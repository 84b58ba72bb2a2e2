use std::io::Write;

use anyhow::Result;

use crate::Ctx;
use crate::cli::DumpArgs;

pub fn run(ctx: &Ctx, args: DumpArgs) -> Result<u8> {
    let repo = ctx.open_with_index()?;
    let (_, _, node) = super::resolve_target_at(&repo, args.target.as_deref(), &args.at)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    aeon_core::dump::dump(&repo, &node, &mut out)?;
    out.flush()?;
    Ok(0)
}
