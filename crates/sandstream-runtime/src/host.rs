//! Running host tools (runc, ip, iptables) with errors that say what failed.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `program args…`, returning its stdout; a failure carries its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_input(program, args, None)
}

/// Like [`run`], with `input` written to the program's stdin (for `iptables-restore`,
/// which takes many commands in one process).
pub(crate) fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let started = std::time::Instant::now();
    let failed = |detail: String| Error::Command { command: format!("{program} {}", args.join(" ")), detail };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A program that stops reading has failed; its exit status and stderr say why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    tracing::trace!(program, elapsed_us = started.elapsed().as_micros() as u64, "host command");
    if !out.status.success() {
        let mut detail = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        if let Some(input) = input {
            detail.push_str(&format!("; input: {}", input.trim().replace('\n', " | ")));
        }
        return Err(failed(detail));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], but a failure is only logged: for best-effort cleanup.
pub(crate) fn run_quiet(program: &str, args: &[&str]) -> bool {
    run_quiet_with_input(program, args, None)
}

/// Like [`run_with_input`], but a failure is only logged: for best-effort cleanup.
pub(crate) fn run_quiet_with_input(program: &str, args: &[&str], input: Option<&str>) -> bool {
    match run_with_input(program, args, input) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cleanup step failed");
            false
        }
    }
}
