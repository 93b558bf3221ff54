//! Starting a user shell (`SHELL -c script`) with its pipes: the one way every
//! command's shell starts, whether it runs the command at once or waits as the standby
//! shell.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use tokio::net::unix::pipe;

use crate::config::ExecConfig;
use crate::error::{AgentError, Result};
use crate::spawn::Process;

/// A started shell and its pipes.
pub(crate) struct Shell {
    pub(crate) child: Process,
    pub(crate) stdin: Option<pipe::Sender>,
    /// The read ends of the output pipes (`pipes.rs`: packet mode, one page, in step).
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
}

/// Starts `SHELL -c script` the way every command's shell starts, whether it runs the
/// command itself or waits as the standby shell: in `cwd`, in a new process group, with
/// the agent's environment less its secrets plus `env`, as the `run_as` user, with
/// piped stdio. Without a fork where the kernel allows (`spawn.rs`).
pub(crate) fn spawn_shell(cfg: &ExecConfig, script: &str, cwd: &Path, env: &[(String, String)]) -> Result<Shell> {
    let spawn_error = |source| AgentError::Spawn { shell: cfg.shell.clone(), source };
    let shell = if crate::spawn::available() && cfg.shell.is_absolute() {
        let mut vars: Vec<(OsString, OsString)> =
            cfg.base_env.iter().filter(|(k, _)| !env.iter().any(|(e, _)| OsStr::new(e) == k)).cloned().collect();
        vars.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
        let args = [OsStr::new("-c"), OsStr::new(script)];
        let (child, pipes) = crate::spawn::spawn(&cfg.shell, &args, cwd, &vars, cfg.run_as).map_err(spawn_error)?;
        let stdin = pipe::Sender::from_owned_fd(pipes.stdin).map_err(spawn_error)?;
        Shell {
            child: Process::Spawned(child),
            stdin: Some(stdin),
            stdout: Some(pipes.stdout),
            stderr: Some(pipes.stderr),
        }
    } else {
        spawn_shell_with_fork(cfg, script, cwd, env)?
    };
    Ok(shell)
}

/// [`spawn_shell`] through `tokio::process::Command`, which forks.
fn spawn_shell_with_fork(cfg: &ExecConfig, script: &str, cwd: &Path, env: &[(String, String)]) -> Result<Shell> {
    let spawn_error = |source| AgentError::Spawn { shell: cfg.shell.clone(), source };
    // The same output pipes as `spawn` makes (`pipes.rs`); the standard library moves
    // the child's ends to 1 and 2.
    let (out_r, out_w) = crate::pipes::output_pipe(Ok).map_err(spawn_error)?;
    let (err_r, err_w) = crate::pipes::output_pipe(Ok).map_err(spawn_error)?;
    let mut cmd = tokio::process::Command::new(&cfg.shell);
    cmd.arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_clear()
        .envs(cfg.base_env.iter().map(|(k, v)| (k, v)))
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Its own process group, so a timeout or kill reaches grandchildren too.
        .process_group(0)
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .kill_on_drop(false);
    // Always a pipe, closed at once when there is nothing to send: the command reads
    // end-of-file just as from /dev/null, which a bare rootfs may not have.
    cmd.stdin(Stdio::piped());
    let run_as = cfg.run_as;
    let cwd_c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str()))
        .map_err(|e| spawn_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: in the forked child, before exec; system calls only.
    unsafe {
        cmd.pre_exec(move || {
            crate::spawn::default_all_signals();
            // While still root: once the user, /proc/self is no longer its to write.
            crate::spawn::raise_oom_score();
            if let Some((uid, gid)) = run_as {
                crate::spawn::become_user(uid, gid)?;
                // The standard library entered `cwd` as root; the user must be able to.
                if nix::libc::chdir(cwd_c.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let stdin = child.stdin.take().map(|p| p.into_owned_fd().and_then(pipe::Sender::from_owned_fd)).transpose();
    // `cmd` holds the child's ends until dropped: the pipes must reach end of file.
    drop(cmd);
    Ok(Shell {
        child: Process::Tokio(child),
        stdin: stdin.map_err(spawn_error)?,
        stdout: Some(out_r),
        stderr: Some(err_r),
    })
}
