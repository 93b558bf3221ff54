//! `sandstream ssh`: OpenSSH into a sandbox with a fresh short-lived password
//! (`POST /api/v1/sandboxes/{id}/ssh-access`). The password reaches `ssh` through
//! `SSH_ASKPASS` pointing back at this binary, never through its command line or a file:
//! run as the askpass program (with [`ASKPASS_VAR`] set), `sandstream` prints it and exits.

use std::os::unix::process::CommandExt;

use anyhow::Context;
use clap::Args;

use crate::rest::{ApiFlags, Rest};

/// Set (to the password) only in the environment of the `ssh` this command starts: a
/// `sandstream` started with it is the askpass program.
pub(crate) const ASKPASS_VAR: &str = "SANDSTREAM_SSH_ASKPASS_PASSWORD";

#[derive(Args)]
pub(crate) struct SshArgs {
    /// The sandbox's id.
    id: String,
    /// Who to log in as: `user` (the sandbox's user) or `root`.
    #[arg(long, short, default_value = "user")]
    user: String,
    /// How long the password works, in seconds (it is made for this login alone).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// What follows `--` goes to `ssh` after the destination: a remote command, as
    /// `ssh HOST CMD…` takes it (none: an interactive login shell).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    command: Vec<String>,
    /// The OpenSSH client to run.
    #[arg(long, env = "SANDSTREAM_SSH", default_value = "ssh")]
    ssh: String,
    #[command(flatten)]
    api: ApiFlags,
}

/// When this process is the askpass program of a `sandstream ssh`: prints the password
/// and returns true.
pub(crate) fn askpass() -> bool {
    match std::env::var(ASKPASS_VAR) {
        Ok(pw) => {
            println!("{pw}");
            true
        }
        Err(_) => false,
    }
}

/// `sandstream ssh`: on success it becomes `ssh` (whose exit code is the command's, or
/// 255 for SSH's own failures); this returns only on failure.
pub(crate) async fn run(a: SshArgs) -> anyhow::Result<()> {
    let rest = Rest::new(&a.api)?;
    let url = rest.sandbox_url(&a.id, &["ssh-access"])?;
    let body = serde_json::json!({ "user": a.user, "timeoutMs": a.timeout.saturating_mul(1000) });
    let access = rest.json(rest.http.post(url).json(&body)).await.context("make an SSH credential")?;
    let field = |k: &str| access[k].as_str().map(String::from).with_context(|| format!("the answer has no {k}"));
    let (host, user, password) = (field("host")?, field("username")?, field("password")?);
    let port = access["port"].as_u64().context("the answer has no port")?;
    let me = std::env::current_exe().context("find this program, for SSH_ASKPASS")?;
    let err = std::process::Command::new(&a.ssh)
        .args(["-p", &port.to_string()])
        // Every sandbox makes its own host key when it starts: there is nothing to pin.
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        // The password alone: keys in an agent would use up the server's attempts.
        .args(["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .arg(format!("{user}@{host}"))
        .args(&a.command)
        .env("SSH_ASKPASS", me)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(ASKPASS_VAR, password)
        .exec();
    Err(err).with_context(|| format!("run {}", a.ssh))
}
