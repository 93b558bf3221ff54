//! What a client asked to run, checked before anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{AgentError, Result};
use crate::user::Identity;

/// What a client asked to run, validated.
#[derive(Debug)]
pub(crate) struct CommandSpec {
    pub(crate) command: String,
    pub(crate) cwd: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) stdin: Vec<u8>,
    pub(crate) keep_stdin_open: bool,
    /// The request's `output_limit_bytes`: at this much output the command is killed.
    pub(crate) output_limit: Option<u64>,
    /// The request's `user`, resolved; `None`: the agent's default (`--run-as`).
    pub(crate) user: Option<Identity>,
    /// Run on a pseudo-terminal of this size (`pty.rs`); `None`: on pipes.
    pub(crate) pty: Option<crate::pty::Size>,
}

impl CommandSpec {
    /// Checks a request's fields; every error names what was wrong.
    pub(crate) fn parse(req: sandstream_proto::v1::ExecuteRequest, default_cwd: &Path) -> Result<CommandSpec> {
        let sandstream_proto::v1::ExecuteRequest {
            command,
            cwd,
            env,
            timeout: timeout_ms,
            stdin,
            keep_stdin_open,
            output_limit_bytes,
            user,
            pty,
            encoding: _,
        } = req;
        let pty = pty.map(crate::pty::Size::parse).transpose()?;
        // On a terminal, no command is the user's interactive shell.
        if command.trim().is_empty() && pty.is_none() {
            return Err(AgentError::InvalidArgument("command is empty".into()));
        }
        if command.contains('\0') {
            return Err(AgentError::InvalidArgument("command contains a NUL byte".into()));
        }
        if timeout_ms < 0 {
            return Err(AgentError::InvalidArgument(format!(
                "timeout must be 0 (none) or a positive number of milliseconds, got {timeout_ms}"
            )));
        }
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (k, v) in &env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(AgentError::InvalidArgument(format!(
                    "env name {k:?} is not valid (it must be non-empty without '=' or NUL, and its value without NUL)"
                )));
            }
        }
        // Resolved before anything else touches the filesystem: an unknown user runs nothing.
        let user = if user.is_empty() { None } else { Some(crate::user::lookup(&user)?) };
        // The user's home, for a user the request names; the agent's workdir otherwise.
        let base = user.as_ref().map_or_else(|| default_cwd.to_path_buf(), Identity::default_cwd);
        let cwd = if cwd.is_empty() { base } else { base.join(cwd) };
        match std::fs::metadata(&cwd) {
            Err(_) => return Err(AgentError::CwdMissing(cwd)),
            Ok(m) if !m.is_dir() => return Err(AgentError::CwdNotDirectory(cwd)),
            Ok(_) => {}
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
        let output_limit = (output_limit_bytes > 0).then_some(output_limit_bytes);
        // A terminal's input stays open: it is how a user types.
        let keep_stdin_open = keep_stdin_open || pty.is_some();
        Ok(CommandSpec { command, cwd, env, timeout, stdin, keep_stdin_open, output_limit, user, pty })
    }
}
