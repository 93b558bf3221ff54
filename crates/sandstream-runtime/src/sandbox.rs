//! What every sandbox has, whichever backend runs it: where the agent, its token and the
//! user's home are inside, how the agent is started, and its base environment.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::Sandbox;

/// Where the agent binary and its token appear inside every sandbox (read-only binds:
/// the agent is never baked into templates and the sandbox cannot replace it).
pub(crate) const AGENT_PATH: &str = "/.sandstream/agent";
pub(crate) const TOKEN_PATH: &str = "/.sandstream/token";
/// User code runs as this uid/gid, never as root.
pub(crate) const USER_ID: u32 = 1000;
pub(crate) const WORKDIR: &str = "/home/user";
pub(crate) const AGENT_PORT: u16 = 50052;
/// Where the host's CA bundle is bound, when it is.
pub(crate) const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The agent's command line as PID 1 of sandbox `id`.
pub(crate) fn agent_args(id: &str) -> Vec<String> {
    vec![
        AGENT_PATH.into(),
        "--listen".into(),
        format!("0.0.0.0:{AGENT_PORT}"),
        "--token-file".into(),
        TOKEN_PATH.into(),
        "--sandbox-id".into(),
        id.into(),
        "--workdir".into(),
        WORKDIR.into(),
        "--run-as".into(),
        format!("{USER_ID}:{USER_ID}"),
    ]
}

/// The agent's environment (which its commands inherit): the defaults, the CA variable
/// when the host's bundle is bound, then the spec's own variables.
pub(crate) fn agent_env(spec_env: &[(String, String)], host_ca_bound: bool) -> Vec<String> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOME={WORKDIR}"),
        "USER=user".into(),
        "LANG=C.UTF-8".into(),
        "SANDSTREAM_LOG=info".into(),
    ];
    if host_ca_bound {
        // Node ships its own CA list; this adds the host's.
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE_PATH}"));
    }
    env.extend(spec_env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// `Runtime::recover` for any backend: each of `ids` is adopted if it still runs, and
/// removed otherwise.
pub(crate) fn recover_each(
    ids: Vec<String>,
    adopt: impl Fn(&str) -> Option<Sandbox>,
    destroy: impl Fn(&str),
) -> Vec<Sandbox> {
    let mut alive = Vec::new();
    for id in ids {
        match adopt(&id) {
            Some(sb) => {
                tracing::info!(sandbox_id = %id, agent = %sb.agent_addr, "sandbox found running again");
                alive.push(sb);
            }
            None => {
                tracing::info!(sandbox_id = %id, "sandbox left by a previous run is not running; removing it");
                destroy(&id);
            }
        }
    }
    alive
}

/// `bytes` random bytes from the kernel, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::io("random bytes", std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(buf))
}

/// The random part of a sandbox id (`sb-` and 10 hex digits), or None for anything else.
pub(crate) fn suffix_of(id: &str) -> Option<&str> {
    id.strip_prefix("sb-").filter(|s| s.len() == 10 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Makes a new sandbox token and writes it to `dir/token` (created new, mode 0400, read
/// only by root: it is bound into the sandbox for the agent alone). Returns the token and
/// the file.
pub(crate) fn write_token(dir: &Path) -> Result<(String, PathBuf)> {
    let token = random_hex(24)?;
    let token_file = dir.join("token");
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o400)
        .open(&token_file)
        .map_err(|e| Error::io("write token", e))?;
    f.write_all(token.as_bytes()).map_err(|e| Error::io("write token", e))?;
    Ok((token, token_file))
}
