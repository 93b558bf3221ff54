//! Running host tools (runc, ip, iptables) with errors that say what failed.

use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `program args…`, returning its stdout; a failure carries its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command { command: format!("{program} {}", args.join(" ")), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], but a failure is only logged: for best-effort cleanup.
pub(crate) fn run_quiet(program: &str, args: &[&str]) -> bool {
    match run(program, args) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cleanup step failed");
            false
        }
    }
}
