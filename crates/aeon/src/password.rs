//! Where the password comes from: environment, file, command, or a terminal prompt.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use crate::cli::GlobalOpts;

/// A password, wiped from memory when dropped.
pub type Password = Zeroizing<String>;

/// Refuses an empty password from any source, naming the source: an empty one protects nothing,
/// and is more often a variable or file that was not filled in than a choice.
fn non_empty(p: String, source: &str) -> Result<Password> {
    let p = Zeroizing::new(p);
    if p.is_empty() {
        bail!("the password from {source} is empty: an empty password is not allowed");
    }
    Ok(p)
}

fn trim_line_end(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// The first line of a password file (without its line end), refused when empty.
fn from_file(file: &std::path::Path) -> Result<Password> {
    let text = Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?,
    );
    let first = trim_line_end(text.lines().next().unwrap_or("").to_string());
    non_empty(first, &format!("password file {}", file.display()))
}

/// Returns the password; `confirm` asks twice on a terminal (for `init`).
pub fn get(opts: &GlobalOpts, confirm: bool) -> Result<Password> {
    if let Ok(p) = std::env::var("AEON_PASSWORD") {
        return non_empty(p, "AEON_PASSWORD");
    }
    if let Some(file) = &opts.password_file {
        return from_file(file);
    }
    if let Some(cmd) = &opts.password_command {
        return from_command(cmd);
    }
    if std::io::stdin().is_terminal() {
        let p = non_empty(
            rpassword::prompt_password("enter password for repository: ")?,
            "the prompt",
        )?;
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("enter password again: ")?);
            if *again != *p {
                bail!("the two passwords differ");
            }
        }
        return Ok(p);
    }
    bail!(
        "no password given: set AEON_PASSWORD, AEON_PASSWORD_FILE or AEON_PASSWORD_COMMAND, or run on a terminal"
    )
}

/// The password of a second repository (the source of `copy`): AEON_FROM_PASSWORD, a file, or
/// a prompt on a terminal.
pub fn get_source(file: Option<&std::path::Path>) -> Result<Password> {
    get_source_or_command(file, None)
}

/// [`get_source`], or the first line a command prints (`import`'s --from-password-command).
pub fn get_source_or_command(
    file: Option<&std::path::Path>,
    command: Option<&str>,
) -> Result<Password> {
    if let Ok(p) = std::env::var("AEON_FROM_PASSWORD") {
        return non_empty(p, "AEON_FROM_PASSWORD");
    }
    if let Some(file) = file {
        return from_file(file);
    }
    if let Some(cmd) = command {
        return from_command(cmd);
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("password of the source repository: ")?;
        return non_empty(p, "the prompt");
    }
    bail!("no password for the source repository: set AEON_FROM_PASSWORD or --from-password-file")
}

/// A new password (`key add`, `key passwd`): AEON_NEW_PASSWORD, the first line of `file`, or
/// a prompt on a terminal, asked twice.
pub fn get_new(file: Option<&std::path::Path>) -> Result<Password> {
    if let Ok(p) = std::env::var("AEON_NEW_PASSWORD") {
        return non_empty(p, "AEON_NEW_PASSWORD");
    }
    if let Some(file) = file {
        return from_file(file);
    }
    if std::io::stdin().is_terminal() {
        let p = non_empty(rpassword::prompt_password("new password: ")?, "the prompt")?;
        let again = Zeroizing::new(rpassword::prompt_password("new password again: ")?);
        if *again != *p {
            bail!("the two passwords differ");
        }
        return Ok(p);
    }
    bail!(
        "no new password given: set AEON_NEW_PASSWORD or --new-password-file, or run on a terminal"
    )
}

/// The first line `cmd` (run by `sh -c`) prints.
fn from_command(cmd: &str) -> Result<Password> {
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
    non_empty(trim_line_end(text), &format!("password command {cmd:?}"))
}
