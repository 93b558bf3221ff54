//! What every sandbox has, whichever backend runs it: where the agent, its token and the
//! user's home are inside, how the agent is started, and its base environment.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::Sandbox;

/// Where the agent binary and its token appear inside every sandbox (read-only binds:
/// the agent is never baked into templates and the sandbox cannot replace it).
pub(crate) const AGENT_PATH: &str = "/.sandstream/agent";
pub(crate) const TOKEN_PATH: &str = "/.sandstream/token";
/// The sandbox's control directory: a per-sandbox directory (0700, root's, in the
/// runtime's tmpfs: `crate::binds`; `STATE/ID/ctl` links to it) bound read-only into the
/// sandbox as a directory, so that a file the runtime replaces by rename there is seen
/// inside at once (a file bind would pin the old inode). Only the runtime writes it;
/// only the agent (root inside) can read it.
pub(crate) const CTL_DIR: &str = "/.sandstream/ctl";
/// In [`CTL_DIR`]: the tenant's environment for every command, `KEY=VALUE` entries each
/// ended by a NUL (as /proc/PID/environ). The agent adds them to its commands'
/// environment, never to its own.
pub(crate) const ENV_FILE: &str = "env";
/// In [`CTL_DIR`]: when the sandbox ends, decimal milliseconds since the Unix epoch
/// (absent: never). The agent re-reads it every second and ends the sandbox once it has
/// passed, so a sandbox whose runner is gone for good still ends.
const DEADLINE_FILE: &str = "deadline";
/// User code runs as this uid/gid, never as root.
pub(crate) const USER_ID: u32 = 1000;
/// Its name (the default template has its passwd entry: `template/machine.rs`).
pub(crate) const USER_NAME: &str = "user";
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
        "--command-env-file".into(),
        format!("{CTL_DIR}/{ENV_FILE}"),
        "--deadline-file".into(),
        format!("{CTL_DIR}/{DEADLINE_FILE}"),
    ]
}

/// The agent's environment (which its commands inherit): the defaults, and the CA
/// variable when the host's bundle is bound. **Never the tenant's variables**: those
/// would configure the agent itself (`SANDSTREAM_AGENT_TOKEN`, `..._SPOOL_DIR`,
/// `..._OUTPUT_CAP`, `SANDSTREAM_LOG`); they go to the control directory's env file.
pub(crate) fn agent_env(host_ca_bound: bool) -> Vec<String> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOME={WORKDIR}"),
        format!("USER={USER_NAME}"),
        format!("LOGNAME={USER_NAME}"),
        "LANG=C.UTF-8".into(),
        "SANDSTREAM_LOG=info".into(),
    ];
    if host_ca_bound {
        // Node ships its own CA list; this adds the host's.
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE_PATH}"));
    }
    env
}

/// Makes the control directory `dir/ctl` (0700) with the tenant's environment in it;
/// returns its path, for the read-only bind at [`CTL_DIR`]. `dir` is the sandbox's
/// directory in the runtime's tmpfs (`crate::binds::prepare`).
pub(crate) fn make_ctl_dir(dir: &Path, env: &[(String, String)]) -> Result<PathBuf> {
    let ctl = dir.join("ctl");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&ctl)
        .map_err(|e| Error::io(format!("create {}", ctl.display()), e))?;
    let mut entries = Vec::new();
    for (k, v) in env {
        entries.extend_from_slice(k.as_bytes());
        entries.push(b'=');
        entries.extend_from_slice(v.as_bytes());
        entries.push(0);
    }
    replace_file(&ctl, ENV_FILE, &entries)?;
    Ok(ctl)
}

/// Writes sandbox directory `dir`'s deadline file (milliseconds since the Unix epoch),
/// or removes it for no deadline (`dir/ctl` is a link to the control directory). Replaced by rename, so the agent reads the old value
/// or the new one, never half of one. [`Error::NotFound`] when the sandbox has no
/// control directory.
pub(crate) fn write_deadline(id: &str, dir: &Path, deadline_ms: Option<i64>) -> Result<()> {
    let ctl = dir.join("ctl");
    if !ctl.is_dir() {
        return Err(Error::NotFound(id.to_string()));
    }
    match deadline_ms {
        Some(ms) => replace_file(&ctl, DEADLINE_FILE, ms.to_string().as_bytes()),
        None => match std::fs::remove_file(ctl.join(DEADLINE_FILE)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("sandbox {id}: remove its deadline"), e)),
        },
    }
}

/// Writes `dir/name` whole (0600, owned by `dir`'s owner: the sandbox's root when its
/// ids are mapped, so that the agent reads it and the sandbox user does not) through a
/// temporary file renamed over it.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let fail = |e| Error::io(format!("write {}", target.display()), e);
    let owner = std::fs::metadata(dir).map_err(fail)?;
    let mut f =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(fail)?;
    std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid())).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(fail)
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
