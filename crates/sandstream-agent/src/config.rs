//! The agent's configuration: parsed once from flags and environment, validated before
//! any port is bound.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{AgentError, Result};

/// Environment variable that carries the sandbox token; never passed to commands.
pub const TOKEN_ENV: &str = "SANDSTREAM_AGENT_TOKEN";

/// Command-line flags (each also readable from the environment).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "SANDSTREAM_AGENT_LISTEN", default_value = "0.0.0.0:50052")]
    pub listen: SocketAddr,
    /// The sandbox token clients must present (`authorization: Bearer <token>`).
    /// Prefer --token-file: a flag is visible in the process list.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the sandbox token (surrounding whitespace is ignored).
    #[arg(long, env = "SANDSTREAM_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The sandbox this agent serves; OpenSession for another id is refused.
    #[arg(long, env = "SANDSTREAM_SANDBOX_ID")]
    pub sandbox_id: Option<String>,
    /// Directory for output spool files (emptied at start; keep it off tmpfs so
    /// spooled output costs disk, not memory).
    #[arg(long, env = "SANDSTREAM_AGENT_SPOOL_DIR", default_value = "/var/lib/sandstream-agent/spool")]
    pub spool_dir: PathBuf,
    /// Most bytes of output (stdout and stderr together) kept per command; output past
    /// it is dropped and the cut is reported.
    #[arg(long, env = "SANDSTREAM_AGENT_OUTPUT_CAP", default_value_t = 2 << 30)]
    pub output_cap_bytes: u64,
    /// Finished commands' spools are evicted, oldest first, past this many bytes (the
    /// newest finished command is always kept, so its client can still resume).
    #[arg(long, default_value_t = 1 << 30)]
    pub spool_budget_bytes: u64,
    /// Finished commands are evicted, oldest first, past this many.
    #[arg(long, default_value_t = 1000)]
    pub max_finished: usize,
    /// A keepalive message is sent on a silent command stream after this many ms.
    #[arg(long, default_value_t = 10_000)]
    pub keepalive_ms: u64,
    /// After a command's shell exits, its pipes are drained until they are silent
    /// for this many ms (background children may hold them open).
    #[arg(long, default_value_t = 100)]
    pub exit_drain_ms: u64,
    /// Working directory for commands that give none; relative cwds resolve against it.
    #[arg(long, env = "SANDSTREAM_AGENT_WORKDIR")]
    pub workdir: Option<PathBuf>,
    /// Shell that runs commands as `SHELL -c COMMAND` (default: /bin/bash if present, else /bin/sh).
    #[arg(long)]
    pub shell: Option<PathBuf>,
    /// Keep one bash started in advance and hand it the next command that runs in the
    /// workdir with no env of its own, so that command does not wait for a shell to start
    /// (bash only; proto/PROTOCOL.md lists how such a command differs from `bash -c`).
    #[arg(long, env = "SANDSTREAM_AGENT_STANDBY_SHELL", default_value_t = true, action = clap::ArgAction::Set)]
    pub standby_shell: bool,
    /// Run commands as this user, `UID:GID` (default: the agent's own).
    #[arg(long, env = "SANDSTREAM_AGENT_RUN_AS")]
    pub run_as: Option<String>,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub worker_threads: usize,
    /// On SIGTERM, running commands get SIGTERM, then SIGKILL after this many ms.
    #[arg(long, default_value_t = 3_000)]
    pub shutdown_grace_ms: u64,
    /// File holding the sandbox's deadline, a Unix time in milliseconds; re-read every
    /// second. Once it passes, the agent shuts down as on SIGTERM. A missing file means
    /// no deadline yet. (No environment variable: only the runtime may set it.)
    #[arg(long)]
    pub deadline_file: Option<PathBuf>,
    /// File of NUL-separated `KEY=VALUE` entries added to every command's environment
    /// (the sandbox's own envs), read once at start. Never configures the agent itself.
    /// (No environment variable: the tenant must not be able to point it elsewhere.)
    #[arg(long)]
    pub command_env_file: Option<PathBuf>,
    /// Where the agent writes, at start, the module every command's Node.js programs
    /// preload (`NODE_OPTIONS=--require=PATH`) so their stdout and stderr writes block
    /// and `process.exit()` loses no output (`node_stdio.rs`). Empty: no preload.
    #[arg(long, default_value = "/run/sandstream-agent/node-stdio.cjs")]
    pub node_preload: OsString,
    /// Serve SSH on this address too (a sandbox's is port 2222); off when not given.
    #[arg(long)]
    pub ssh_listen: Option<SocketAddr>,
    /// Who may log in over SSH (`ssh/access.rs`: password hashes and public keys, each
    /// with its user and expiry), read again at every attempt. Required with
    /// --ssh-listen. (No environment variable: only the runtime may set it.)
    #[arg(long)]
    pub ssh_access_file: Option<PathBuf>,
}

/// What the execution engine needs.
#[derive(Debug, Clone)]
pub(crate) struct ExecConfig {
    pub(crate) shell: PathBuf,
    pub(crate) default_cwd: PathBuf,
    pub(crate) spool_dir: PathBuf,
    pub(crate) output_cap: u64,
    pub(crate) spool_budget: u64,
    pub(crate) max_finished: usize,
    pub(crate) exit_drain_grace: Duration,
    pub(crate) run_as: Option<(u32, u32)>,
    /// Every command's environment before its own `env`: the agent's, less its secrets
    /// (the token variables), taken once at start.
    pub(crate) base_env: Arc<[(OsString, OsString)]>,
    /// Whether a standby shell may wait for the next command (see `standby.rs`).
    pub(crate) standby_shell: bool,
    /// The Node.js stdio module every command preloads (`node_stdio.rs`); `None` once
    /// it could not be written.
    pub(crate) node_preload: Option<PathBuf>,
}

/// Where SSH is served and who may log in (`ssh/`).
#[derive(Debug, Clone)]
pub(crate) struct SshConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) access_file: PathBuf,
}

/// Prefix of every variable that configures the agent; none reaches a command.
const AGENT_ENV_PREFIX: &str = "SANDSTREAM_AGENT_";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub(crate) token: String,
    pub(crate) sandbox_id: Option<String>,
    pub(crate) exec: ExecConfig,
    pub(crate) keepalive: Duration,
    pub worker_threads: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) deadline_file: Option<PathBuf>,
    /// SSH, when served.
    pub(crate) ssh: Option<SshConfig>,
    /// Problems found while reading the config, logged once logging is set up.
    pub(crate) warnings: Vec<String>,
}

impl AgentArgs {
    /// Validates the flags. Reads the token file but touches nothing else.
    pub fn into_config(self) -> Result<AgentConfig> {
        let token = match (self.token, self.token_file) {
            (Some(_), Some(_)) => {
                return Err(AgentError::Config("give --token or --token-file, not both".into()));
            }
            (Some(t), None) => t,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|e| AgentError::Config(format!("cannot read token file {}: {e}", path.display())))?
                .trim()
                .to_string(),
            (None, None) => {
                return Err(AgentError::Config(format!(
                    "no sandbox token: set {TOKEN_ENV}, --token or --token-file (the agent never runs unauthenticated)"
                )));
            }
        };
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AgentError::Config(
                "the sandbox token must be at least 16 characters with no whitespace".into(),
            ));
        }
        let shell = match self.shell {
            Some(s) => s,
            None if std::path::Path::new("/bin/bash").exists() => "/bin/bash".into(),
            None => "/bin/sh".into(),
        };
        if !shell.exists() {
            return Err(AgentError::Config(format!("shell {} does not exist", shell.display())));
        }
        let default_cwd = match self.workdir {
            Some(w) => w,
            None => std::env::current_dir().map_err(|e| AgentError::Config(format!("no current directory: {e}")))?,
        };
        if !default_cwd.is_absolute() || !default_cwd.is_dir() {
            return Err(AgentError::Config(format!(
                "workdir {} must be an existing absolute directory",
                default_cwd.display()
            )));
        }
        let run_as = self.run_as.as_deref().map(parse_run_as).transpose()?;
        if self.worker_threads == 0 {
            return Err(AgentError::Config("--worker-threads must be at least 1".into()));
        }
        if self.output_cap_bytes == 0 {
            return Err(AgentError::Config("--output-cap-bytes must be positive".into()));
        }
        let node_preload = PathBuf::from(self.node_preload);
        let node_preload = if node_preload.as_os_str().is_empty() {
            None
        } else if crate::node_stdio::usable_path(&node_preload) {
            Some(node_preload)
        } else {
            return Err(AgentError::Config(format!(
                "--node-preload {} must be an absolute path without whitespace, quotes or backslashes",
                node_preload.display()
            )));
        };
        let ssh = match (self.ssh_listen, self.ssh_access_file) {
            (None, _) => None,
            (Some(listen), Some(access_file)) if access_file.is_absolute() => Some(SshConfig { listen, access_file }),
            (Some(_), _) => {
                return Err(AgentError::Config("--ssh-listen needs --ssh-access-file, an absolute path".into()));
            }
        };
        let mut warnings = Vec::new();
        let base_env = command_base_env(std::env::vars_os(), self.command_env_file.as_deref(), &shell, &mut warnings)?;
        Ok(AgentConfig {
            listen: self.listen,
            token,
            sandbox_id: self.sandbox_id.filter(|s| !s.is_empty()),
            exec: ExecConfig {
                shell,
                default_cwd,
                spool_dir: self.spool_dir,
                output_cap: self.output_cap_bytes,
                spool_budget: self.spool_budget_bytes,
                max_finished: self.max_finished.max(1),
                exit_drain_grace: Duration::from_millis(self.exit_drain_ms),
                run_as,
                base_env,
                standby_shell: self.standby_shell,
                node_preload,
            },
            keepalive: Duration::from_millis(self.keepalive_ms.max(1)),
            worker_threads: self.worker_threads,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            deadline_file: self.deadline_file,
            ssh,
            warnings,
        })
    }
}

/// Every command's environment before its request's own `env`: the agent's environment
/// without the variables that configure the agent (`SANDSTREAM_AGENT_*`, among them the
/// token), then the entries of `command_env_file` (later ones win), and `SHELL` (the
/// shell commands run in) when neither set it, as `login` sets it. Without `SHELL` bash
/// looks up its user in /etc/passwd at every start, which hangs every command once root
/// inside has made that file a FIFO.
///
/// Security: the sandbox's create-time envs are the tenant's. They come in this file,
/// never in the agent's own environment, so a tenant cannot set the agent's token, cap,
/// spool dir or log level (`SANDSTREAM_AGENT_TOKEN`, `SANDSTREAM_LOG=trace`, ...); they
/// only reach commands, which run as the tenant anyway.
fn command_base_env(
    agent_env: impl IntoIterator<Item = (OsString, OsString)>,
    command_env_file: Option<&std::path::Path>,
    shell: &std::path::Path,
    warnings: &mut Vec<String>,
) -> Result<Arc<[(OsString, OsString)]>> {
    use std::os::unix::ffi::OsStrExt;
    let mut env: Vec<(OsString, OsString)> =
        agent_env.into_iter().filter(|(k, _)| !k.as_bytes().starts_with(AGENT_ENV_PREFIX.as_bytes())).collect();
    if let Some(path) = command_env_file {
        read_command_env_file(path, &mut env, warnings)?;
    }
    if !env.iter().any(|(k, _)| k == "SHELL") {
        env.push(("SHELL".into(), shell.into()));
    }
    Ok(env.into())
}

/// Adds the `NAME=value` entries of `path` (NUL-separated; a missing file adds nothing)
/// to `env`, each replacing an earlier one of its name.
fn read_command_env_file(
    path: &std::path::Path,
    env: &mut Vec<(OsString, OsString)>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(AgentError::Config(format!("cannot read command env file {}: {e}", path.display())));
        }
    };
    for (i, entry) in bytes.split(|b| *b == 0).enumerate().filter(|(_, e)| !e.is_empty()) {
        let Some(eq) = entry.iter().position(|b| *b == b'=').filter(|eq| *eq > 0) else {
            warnings.push(format!("command env file {}: entry {} has no NAME= and is skipped", path.display(), i + 1));
            continue;
        };
        let key = OsString::from_vec(entry[..eq].to_vec());
        let value = OsString::from_vec(entry[eq + 1..].to_vec());
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
    }
    Ok(())
}

fn parse_run_as(s: &str) -> Result<(u32, u32)> {
    let bad = || AgentError::Config(format!("--run-as takes UID:GID, got {s:?}"));
    let (u, g) = s.split_once(':').ok_or_else(bad)?;
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn parse(extra: &[&str]) -> Result<AgentConfig> {
        let mut argv = vec!["agent", "--workdir", "/"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("flags parse").args.into_config()
    }

    #[test]
    fn refuses_to_run_without_a_token() {
        // SAFETY-free: the test does not rely on the process environment having no token,
        // because --token-file and --token are both absent and the env var is unset in CI.
        if std::env::var_os(TOKEN_ENV).is_some() {
            return;
        }
        let err = parse(&[]).expect_err("no token");
        assert!(err.to_string().contains("no sandbox token"), "{err}");
    }

    #[test]
    fn rejects_short_tokens_and_bad_run_as() {
        assert!(parse(&["--token", "short"]).is_err());
        let err = parse(&["--token", "0123456789abcdef", "--run-as", "1000"]).expect_err("bad run-as");
        assert!(err.to_string().contains("UID:GID"), "{err}");
        let cfg = parse(&["--token", "0123456789abcdef", "--run-as", "1000:1001"]).expect("valid");
        assert_eq!(cfg.exec.run_as, Some((1000, 1001)));
    }

    #[test]
    fn command_env_comes_from_the_file_and_never_carries_agent_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("envs");
        std::fs::write(&file, b"FOO=bar\0PATH=/x\0broken\0=novalue\0EMPTY=\0FOO=baz=qux\0\0").expect("write");
        let agent_env =
            [("PATH", "/usr/bin"), ("SANDSTREAM_AGENT_TOKEN", "t"), ("SANDSTREAM_AGENT_CAP", "1"), ("HOME", "/root")]
                .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut warnings = vec![];
        let bash = std::path::Path::new("/bin/bash");
        let pairs = |env: Arc<[(OsString, OsString)]>| -> Vec<(String, String)> {
            env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
        };
        let want = |w: &[(&str, &str)]| w.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let env = command_base_env(agent_env.clone(), Some(&file), bash, &mut warnings).expect("env");
        assert_eq!(
            pairs(env),
            want(&[("HOME", "/root"), ("PATH", "/x"), ("EMPTY", ""), ("FOO", "baz=qux"), ("SHELL", "/bin/bash")])
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let none = command_base_env(agent_env.clone(), Some(&dir.path().join("absent")), bash, &mut warnings);
        assert_eq!(pairs(none.expect("env")), want(&[("PATH", "/usr/bin"), ("HOME", "/root"), ("SHELL", "/bin/bash")]));
        // A SHELL of the agent's environment or of the file is kept.
        std::fs::write(&file, b"SHELL=/bin/zsh\0").expect("write");
        let env = command_base_env(agent_env.clone(), Some(&file), bash, &mut warnings).expect("env");
        assert_eq!(pairs(env), want(&[("PATH", "/usr/bin"), ("HOME", "/root"), ("SHELL", "/bin/zsh")]));
        let mut with_shell = agent_env.to_vec();
        with_shell.push(("SHELL".into(), "/bin/sh".into()));
        let env = command_base_env(with_shell, None, bash, &mut warnings).expect("env");
        assert_eq!(pairs(env), want(&[("PATH", "/usr/bin"), ("HOME", "/root"), ("SHELL", "/bin/sh")]));
    }

    #[test]
    fn the_node_preload_is_an_absolute_path_node_options_can_carry_or_nothing() {
        let token = ["--token", "0123456789abcdef"];
        let preload = |p: &str| parse(&[&token[..], &["--node-preload", p]].concat()).map(|c| c.exec.node_preload);
        assert_eq!(preload("/run/x/node.cjs").expect("valid"), Some("/run/x/node.cjs".into()));
        assert_eq!(preload("").expect("off"), None);
        for bad in ["node.cjs", "/a b/node.cjs"] {
            let err = preload(bad).expect_err(bad).to_string();
            assert!(err.contains("--node-preload"), "{err}");
        }
    }

    #[test]
    fn ssh_needs_an_absolute_access_file() {
        let token = ["--token", "0123456789abcdef"];
        let ssh = |extra: &[&str]| parse(&[&token[..], extra].concat()).map(|c| c.ssh.map(|s| s.access_file));
        assert_eq!(ssh(&[]).expect("off"), None);
        let on = ssh(&["--ssh-listen", "127.0.0.1:2222", "--ssh-access-file", "/ctl/ssh"]).expect("on");
        assert_eq!(on, Some("/ctl/ssh".into()));
        for bad in
            [&["--ssh-listen", "127.0.0.1:2222"][..], &["--ssh-listen", "127.0.0.1:2222", "--ssh-access-file", "ssh"]]
        {
            let err = ssh(bad).expect_err("refused").to_string();
            assert!(err.contains("--ssh-access-file"), "{err}");
        }
    }

    #[test]
    fn the_standby_shell_is_on_unless_turned_off() {
        let token = ["--token", "0123456789abcdef"];
        // The default holds unless the environment sets it (the flag beats the variable).
        if std::env::var_os("SANDSTREAM_AGENT_STANDBY_SHELL").is_none() {
            assert!(parse(&token).expect("valid").exec.standby_shell);
        }
        for (value, on) in [("false", false), ("true", true)] {
            let cfg = parse(&[&token[..], &["--standby-shell", value]].concat()).expect("valid");
            assert_eq!(cfg.exec.standby_shell, on);
        }
        let Err(e) = Cli::try_parse_from(["agent", "--standby-shell", "maybe"]) else { panic!("maybe is no bool") };
        assert!(e.to_string().contains("possible values: true, false"), "{e}");
    }
}
