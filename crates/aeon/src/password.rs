//! Where the password comes from: environment, file, command, or a terminal prompt.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use crate::cli::GlobalOpts;

fn trim_line_end(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// Returns the password; `confirm` asks twice on a terminal (for `init`).
pub fn get(opts: &GlobalOpts, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var("AEON_PASSWORD") {
        return Ok(p);
    }
    if let Some(file) = &opts.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?;
        let first = text.lines().next().unwrap_or("").to_string();
        return Ok(trim_line_end(first));
    }
    if let Some(cmd) = &opts.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run password command {cmd:?}"))?;
        if !out.status.success() {
            bail!("password command {cmd:?} failed with {}", out.status);
        }
        let text =
            String::from_utf8(out.stdout).context("password command printed non-UTF-8 output")?;
        return Ok(trim_line_end(text));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("enter password for repository: ")?;
        if confirm {
            let again = rpassword::prompt_password("enter password again: ")?;
            if again != p {
                bail!("the two passwords differ");
            }
        }
        if p.is_empty() {
            bail!("an empty password is not allowed");
        }
        return Ok(p);
    }
    bail!(
        "no password given: set AEON_PASSWORD, AEON_PASSWORD_FILE or AEON_PASSWORD_COMMAND, or run on a terminal"
    )
}

/// The password of a second repository (the source of `copy`): AEON_FROM_PASSWORD, a file, or
/// a prompt on a terminal.
pub fn get_source(file: Option<&std::path::Path>) -> Result<String> {
    if let Ok(p) = std::env::var("AEON_FROM_PASSWORD") {
        return Ok(p);
    }
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?;
        return Ok(trim_line_end(text.lines().next().unwrap_or("").to_string()));
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password("password of the source repository: ")?);
    }
    bail!("no password for the source repository: set AEON_FROM_PASSWORD or --from-password-file")
}
