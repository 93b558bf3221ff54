//! What every sandbox has, whichever backend runs it: where the agent, its token and the
//! user's home are inside, how the agent is started, and its base environment.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::Sandbox;
use sandstream_runner_protocol::{MAX_SSH_CREDENTIALS, SshCredential, SshSecret};

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
/// In [`CTL_DIR`]: who may log in over SSH, one credential per line (the agent's
/// `--ssh-access-file`, read at every attempt; absent: no one).
pub(crate) const SSH_ACCESS_FILE: &str = "ssh";
/// User code runs as this uid/gid, never as root.
pub(crate) const USER_ID: u32 = 1000;
/// Its name (the default template has its passwd entry: `template/machine.rs`).
pub(crate) const USER_NAME: &str = "user";
pub(crate) const WORKDIR: &str = "/home/user";
pub(crate) const AGENT_PORT: u16 = 50052;
/// The agent's SSH server, inside every sandbox (design note 002).
pub(crate) const SSH_PORT: u16 = 2222;
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
        "--ssh-listen".into(),
        format!("0.0.0.0:{SSH_PORT}"),
        "--ssh-access-file".into(),
        format!("{CTL_DIR}/{SSH_ACCESS_FILE}"),
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

/// `Runtime::update_ssh_access` for any backend, on sandbox directory `dir`: adds
/// `add` to its SSH access file (after removing every password when
/// `revoke_passwords`), dropping the credentials that have expired; past
/// [`MAX_SSH_CREDENTIALS`] the oldest passwords go first, and when keys alone are over it
/// the change is refused. Replaced by rename: the agent reads the old file or the new
/// one. [`Error::NotFound`] when the sandbox has no control directory.
pub(crate) fn update_ssh_access(id: &str, dir: &Path, add: &[SshCredential], revoke_passwords: bool) -> Result<()> {
    // Read, change, write: two calls at once would lose one's change.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let ctl = dir.join("ctl");
    if suffix_of(id).is_none() || !ctl.is_dir() {
        return Err(Error::NotFound(id.to_string()));
    }
    if let Some(e) = add.iter().find_map(|c| c.check().err()) {
        return Err(Error::InvalidSpec(e));
    }
    let old = match std::fs::read_to_string(ctl.join(SSH_ACCESS_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("sandbox {id}: read its SSH access"), e)),
    };
    let is_password = |c: &SshCredential| matches!(c.secret, SshSecret::PasswordSha256(_));
    let mut all: Vec<SshCredential> = old.lines().filter_map(SshCredential::from_access_line).collect();
    if revoke_passwords {
        all.retain(|c| !is_password(c));
    }
    all.extend(add.iter().cloned());
    let now = now_ms();
    all.retain(|c| !c.expired(now));
    while all.len() > MAX_SSH_CREDENTIALS {
        let Some(oldest) = all.iter().position(is_password) else {
            return Err(Error::InvalidSpec(format!("sandbox {id}: at most {MAX_SSH_CREDENTIALS} SSH keys")));
        };
        all.remove(oldest);
    }
    let text: String = all.iter().map(|c| c.access_line() + "\n").collect();
    replace_file(&ctl, SSH_ACCESS_FILE, text.as_bytes())
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

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn password(user: &str, expires_at: Option<i64>, n: u8) -> SshCredential {
        SshCredential {
            user: user.into(),
            expires_at,
            secret: SshSecret::PasswordSha256(format!("{n:02x}").repeat(32)),
        }
    }

    fn key(n: u8) -> SshCredential {
        let line = format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:02}xxxxxxxxxxxxxxxxxxxxxxxx k{n}");
        SshCredential { user: "user".into(), expires_at: None, secret: SshSecret::PublicKey(line) }
    }

    fn access_file(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("ctl").join(SSH_ACCESS_FILE))
            .expect("read")
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn ssh_access_adds_revokes_expires_and_bounds_its_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = "sb-0123456789";
        assert!(matches!(update_ssh_access(id, dir.path(), &[key(1)], false), Err(Error::NotFound(_))));
        make_ctl_dir(dir.path(), &[]).expect("ctl");
        let later = now_ms() + 60_000;
        update_ssh_access(id, dir.path(), &[key(1), password("user", Some(later), 2)], false).expect("add");
        update_ssh_access(id, dir.path(), &[password("root", None, 3)], false).expect("add");
        let lines = access_file(dir.path());
        assert_eq!(
            lines,
            [
                key(1).access_line(),
                password("user", Some(later), 2).access_line(),
                password("root", None, 3).access_line()
            ]
        );
        assert!(lines[1].starts_with(&format!("password user {later} ")), "{lines:?}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ctl").join(SSH_ACCESS_FILE)).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "only the agent (root inside) reads it");

        // Expired ones go at the next change; revoking keeps the keys.
        update_ssh_access(id, dir.path(), &[password("user", Some(1), 4)], false).expect("add");
        assert_eq!(access_file(dir.path()).len(), 3, "an already expired password is not kept");
        update_ssh_access(id, dir.path(), &[], true).expect("revoke");
        assert_eq!(access_file(dir.path()), [key(1).access_line()]);

        // Past the bound the oldest passwords give way; keys alone over it are refused.
        for n in 0..MAX_SSH_CREDENTIALS as u8 + 5 {
            update_ssh_access(id, dir.path(), &[password("user", None, n)], false).expect("add");
        }
        let lines = access_file(dir.path());
        assert_eq!(lines.len(), MAX_SSH_CREDENTIALS);
        assert_eq!(lines[0], key(1).access_line(), "the key stays");
        assert_eq!(lines[1], password("user", None, 6).access_line(), "the six oldest passwords went");
        let keys: Vec<_> = (0..MAX_SSH_CREDENTIALS as u8 + 1).map(key).collect();
        assert!(matches!(update_ssh_access(id, dir.path(), &keys, true), Err(Error::InvalidSpec(_))));
        assert_eq!(access_file(dir.path()).len(), MAX_SSH_CREDENTIALS, "a refused change changes nothing");

        // A malformed credential never reaches the file (a newline would add a line).
        let evil = SshCredential {
            secret: SshSecret::PublicKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\nkey root 0 x".into()),
            ..key(2)
        };
        assert!(matches!(update_ssh_access(id, dir.path(), &[evil], false), Err(Error::InvalidSpec(_))));
        assert!(!access_file(dir.path()).iter().any(|l| l.contains("root 0 x")));
    }
}
