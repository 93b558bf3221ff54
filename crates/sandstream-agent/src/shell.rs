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
use crate::spawn::{Process, RunAs};
use crate::user::Identity;

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
/// the agent's environment less its secrets plus `env`, as `user` (`None`: the
/// `--run-as` default), with piped stdio; or, given a `terminal` (`pty.rs`), on that
/// terminal in a session of its own, where an empty `script` starts the shell itself
/// as an interactive login shell (`SHELL -i -l`). Without a fork where the kernel
/// allows (`spawn.rs`).
pub(crate) fn spawn_shell(
    cfg: &ExecConfig,
    script: &str,
    cwd: &Path,
    env: &[(String, String)],
    user: Option<&Identity>,
    terminal: Option<&OwnedFd>,
) -> Result<Shell> {
    let spawn_error = |source| AgentError::Spawn { shell: cfg.shell.clone(), source };
    let mut vars = command_env(&cfg.base_env, user, env);
    if let Some(preload) = &cfg.node_preload {
        crate::node_stdio::add_preload(&mut vars, preload);
    }
    let run_as = run_as(cfg, user);
    let args: Vec<&OsStr> = if terminal.is_some() && script.trim().is_empty() {
        vec![OsStr::new("-i"), OsStr::new("-l")]
    } else {
        vec![OsStr::new("-c"), OsStr::new(script)]
    };
    let shell = if crate::spawn::available() && cfg.shell.is_absolute() {
        let (child, pipes) =
            crate::spawn::spawn(&cfg.shell, &args, cwd, &vars, run_as, terminal).map_err(spawn_error)?;
        let (stdin, stdout, stderr) = match pipes {
            Some(p) => {
                (Some(pipe::Sender::from_owned_fd(p.stdin).map_err(spawn_error)?), Some(p.stdout), Some(p.stderr))
            }
            None => (None, None, None),
        };
        Shell { child: Process::Spawned(child), stdin, stdout, stderr }
    } else {
        spawn_shell_with_fork(cfg, &args, cwd, &vars, run_as, terminal)?
    };
    Ok(shell)
}

/// Who the shell runs as: a named user's credentials, the `--run-as` default's (no
/// supplementary groups) when the request named none, or unchanged (`None`) for root
/// when the agent is root already: in a sandbox it is root of the sandbox's own user
/// namespace, and keeps no more than that.
fn run_as<'a>(cfg: &ExecConfig, user: Option<&'a Identity>) -> Option<RunAs<'a>> {
    match user {
        Some(u) if u.uid == 0 && u.gid == 0 && nix::unistd::geteuid().is_root() => None,
        Some(u) => Some(RunAs { uid: u.uid, gid: u.gid, groups: &u.groups }),
        None => cfg.run_as.map(|(uid, gid)| RunAs { uid, gid, groups: &[] }),
    }
}

/// A command's whole environment: the agent's base environment, then the variables that
/// follow its user (`HOME`, `USER`, `LOGNAME`; see `Identity::env`), then the request's
/// `env`, each later one replacing an earlier one of the same name.
fn command_env(
    base: &[(OsString, OsString)],
    user: Option<&Identity>,
    env: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let user_env = user.map(|u| u.env().to_vec()).unwrap_or_default();
    let in_request = |k: &OsStr| env.iter().any(|(e, _)| OsStr::new(e) == k);
    let for_user = |k: &OsStr| user_env.iter().any(|(u, _)| OsStr::new(u) == k);
    let mut vars: Vec<(OsString, OsString)> =
        base.iter().filter(|(k, _)| !in_request(k) && !for_user(k)).cloned().collect();
    vars.extend(
        user_env.into_iter().filter(|(k, _)| !in_request(OsStr::new(k))).filter_map(|(k, v)| Some((k.into(), v?))),
    );
    vars.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
    vars
}

/// [`spawn_shell`] through `tokio::process::Command`, which forks.
fn spawn_shell_with_fork(
    cfg: &ExecConfig,
    args: &[&OsStr],
    cwd: &Path,
    vars: &[(OsString, OsString)],
    run_as: Option<RunAs<'_>>,
    terminal: Option<&OwnedFd>,
) -> Result<Shell> {
    let spawn_error = |source| AgentError::Spawn { shell: cfg.shell.clone(), source };
    let mut cmd = tokio::process::Command::new(&cfg.shell);
    cmd.args(args).current_dir(cwd).env_clear().envs(vars.iter().map(|(k, v)| (k, v))).kill_on_drop(false);
    let outputs = match terminal {
        Some(t) => {
            let copy = || t.try_clone().map(Stdio::from).map_err(spawn_error);
            cmd.stdin(copy()?).stdout(copy()?).stderr(copy()?);
            None
        }
        None => {
            // The same output pipes as `spawn` makes (`pipes.rs`); the standard library
            // moves the child's ends to 1 and 2.
            let (out_r, out_w) = crate::pipes::output_pipe(Ok).map_err(spawn_error)?;
            let (err_r, err_w) = crate::pipes::output_pipe(Ok).map_err(spawn_error)?;
            // Its own process group, so a timeout or kill reaches grandchildren too.
            cmd.process_group(0).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
            // Always a pipe, closed at once when there is nothing to send: the command
            // reads end-of-file just as from /dev/null, which a bare rootfs may not have.
            cmd.stdin(Stdio::piped());
            Some((out_r, err_r))
        }
    };
    let on_terminal = terminal.is_some();
    // Owned by the closure, which runs in the forked child: nothing is allocated there.
    let run_as = run_as.map(|r| (r.uid, r.gid, r.groups.to_vec()));
    let cwd_c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str()))
        .map_err(|e| spawn_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: in the forked child, before exec; system calls only.
    unsafe {
        cmd.pre_exec(move || {
            crate::spawn::default_all_signals();
            // On a terminal: a session of its own (so a process group too) whose
            // controlling terminal it is; the standard library put it on fds 0 to 2.
            if on_terminal && (nix::libc::setsid() < 0 || nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            // While still root: once the user, /proc/self is no longer its to write.
            crate::spawn::raise_oom_score();
            if let Some((uid, gid, groups)) = &run_as {
                crate::spawn::become_user(RunAs { uid: *uid, gid: *gid, groups })?;
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
    let (stdout, stderr) = outputs.map_or((None, None), |(o, e)| (Some(o), Some(e)));
    Ok(Shell { child: Process::Tokio(child), stdin: stdin.map_err(spawn_error)?, stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(vars: &[(OsString, OsString)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
    }

    #[test]
    fn home_user_and_logname_follow_the_user_and_the_request_env_wins() {
        let base: Vec<(OsString, OsString)> =
            [("PATH", "/bin"), ("HOME", "/home/user"), ("USER", "user"), ("LOGNAME", "user"), ("LANG", "C.UTF-8")]
                .map(|(k, v)| (k.into(), v.into()))
                .to_vec();
        let own = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let s = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        // The default user: the base environment as it is, the request's on top.
        assert_eq!(
            pairs(&command_env(&base, None, &own("LANG", "x"))),
            s(&[("PATH", "/bin"), ("HOME", "/home/user"), ("USER", "user"), ("LOGNAME", "user"), ("LANG", "x")])
        );
        let root = crate::user::resolve("root", None, None).expect("root");
        assert_eq!(
            pairs(&command_env(&base, Some(&root), &[])),
            s(&[("PATH", "/bin"), ("LANG", "C.UTF-8"), ("HOME", "/root"), ("USER", "root"), ("LOGNAME", "root")])
        );
        assert_eq!(
            pairs(&command_env(&base, Some(&root), &own("HOME", "/tmp"))),
            s(&[("PATH", "/bin"), ("LANG", "C.UTF-8"), ("USER", "root"), ("LOGNAME", "root"), ("HOME", "/tmp")])
        );
        // A uid without a name: no USER or LOGNAME saying someone else's.
        let stranger = crate::user::resolve("4242", None, None).expect("uid");
        assert_eq!(
            pairs(&command_env(&base, Some(&stranger), &[])),
            s(&[("PATH", "/bin"), ("LANG", "C.UTF-8"), ("HOME", "/")])
        );
    }
}
