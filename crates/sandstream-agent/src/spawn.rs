//! Starting a shell without `fork`: `clone(CLONE_VM | CLONE_VFORK)`, the way glibc's
//! `posix_spawn` starts a program. Rust's `Command` forks whenever it must change the
//! user, and a fork of the multi-threaded agent copies its page tables and then pays a
//! copy-on-write fault, with a TLB shootdown across CPUs, for every page either side
//! writes before the child execs: about a third of the agent's CPU per short command
//! (BENCHMARKS.md, issue 2). The child here borrows the agent's memory until it execs,
//! and the agent's thread waits until then.
//!
//! The child runs only system calls on data prepared beforehand: it allocates nothing
//! and takes no lock. Credentials are set with the raw system calls, never glibc's
//! `setuid` (which would signal the agent's own threads). The agent waits for the
//! child through a pidfd, so no other part of the process needs to know of it. Where
//! the kernel has no pidfd (before Linux 5.3) or a seccomp filter refuses it, shells are
//! started by `tokio::process::Command` as before ([`Process::Tokio`]).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The child's stack while it shares the agent's memory. Its frames are a few hundred
/// bytes; glibc's `posix_spawn` uses 32 KiB and more when `PATH` is long.
const CHILD_STACK: usize = 64 * 1024;

/// A started shell process, until it has been reaped.
pub(crate) enum Process {
    Spawned(SpawnedChild),
    Tokio(tokio::process::Child),
}

impl Process {
    /// Its pid, `None` once it has been reaped (the pid may then be another process's).
    pub(crate) fn id(&self) -> Option<u32> {
        match self {
            Process::Spawned(c) => c.status.is_none().then_some(c.pid as u32),
            Process::Tokio(c) => c.id(),
        }
    }

    /// Its status if it has ended (reaping it), `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Process::Spawned(c) => c.try_wait(),
            Process::Tokio(c) => c.try_wait(),
        }
    }

    /// Waits until it ends and reaps it. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Process::Spawned(c) => c.wait().await,
            Process::Tokio(c) => c.wait().await,
        }
    }
}

/// A child started by [`spawn`], watched through its pidfd.
pub(crate) struct SpawnedChild {
    pid: libc::pid_t,
    /// `None` only while being dropped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

impl SpawnedChild {
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        reap(self.pid, &mut self.status)
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = reap(self.pid, &mut self.status)? {
                return Ok(s);
            }
            let Some(pidfd) = &self.pidfd else { return Err(io::Error::other("the child's pidfd is gone")) };
            // A pidfd turns readable when its process ends, and stays so.
            let mut ready = pidfd.readable().await?;
            if let Some(s) = reap(self.pid, &mut self.status)? {
                return Ok(s);
            }
            ready.clear_ready();
        }
    }
}

/// Reaps `pid` if it has ended, once: the status is kept in `status`.
fn reap(pid: libc::pid_t, status: &mut Option<ExitStatus>) -> io::Result<Option<ExitStatus>> {
    if let Some(s) = *status {
        return Ok(Some(s));
    }
    let mut raw = 0;
    // SAFETY: plain waitpid; the pid stays this child's (a zombie at worst) until reaped here.
    match unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) } {
        0 => Ok(None),
        -1 => Err(io::Error::last_os_error()),
        _ => {
            let s = ExitStatus::from_raw(raw);
            *status = Some(s);
            Ok(Some(s))
        }
    }
}

impl Drop for SpawnedChild {
    /// A child dropped while it runs is reaped in the background once it ends (as tokio
    /// does with its own), so it never stays a zombie.
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut orphan = SpawnedChild { pid: self.pid, pidfd: self.pidfd.take(), status: None };
            rt.spawn(async move {
                let _ = orphan.wait().await;
            });
        }
    }
}

/// Set to `fork` to start shells with `tokio::process::Command` even where [`spawn`]
/// works: an escape hatch, and how the tests cover that path.
pub(crate) const SPAWN_ENV: &str = "SANDSTREAM_AGENT_SPAWN";

/// Whether shells can be started by [`spawn`] here: the kernel gives pidfds (Linux 5.3)
/// and no seccomp filter refuses them, and [`SPAWN_ENV`] does not ask for fork. Asked once.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os(SPAWN_ENV).is_some_and(|v| v == "fork") {
            tracing::info!("{SPAWN_ENV}=fork: shells are started with fork");
            return false;
        }
        match pidfd_open(std::process::id() as libc::pid_t) {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(error = %e, "no pidfd: shells are started with fork");
                false
            }
        }
    })
}

/// Sets every signal's disposition to the default, the ones the caller ignores too.
///
/// # Safety
/// Only for a child between fork (or clone) and exec: the handlers it drops may be the
/// process's own.
pub(crate) unsafe fn default_all_signals() {
    // The raw call, as glibc's wrapper refuses the signals it reserves (32, 33). A zeroed
    // kernel `struct sigaction` is SIG_DFL with no flags on every architecture.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: a valid sigaction buffer; the caller's contract covers the rest.
            unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), std::ptr::null_mut::<u64>(), 8) };
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The credentials a shell takes before it execs: `uid`, `gid` and exactly the
/// supplementary groups `groups` (none: an empty list).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs<'a> {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: &'a [libc::gid_t],
}

/// What the child needs, prepared by the parent: pointers into the parent's memory,
/// which the child shares and the parent does not touch until the child has exec'd.
struct ChildPlan<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// The child's ends of its stdin, stdout and stderr pipes, or its terminal three
    /// times (all >= 3).
    stdio: [RawFd; 3],
    /// `stdio` is a terminal: the child starts a session and takes it as its
    /// controlling terminal.
    terminal: bool,
    /// Who to run as; `None`: as the agent.
    run_as: Option<RunAs<'a>>,
    /// The errno of the step that failed, written by the child before it exits.
    error: AtomicI32,
}

/// The pipes of a spawned shell, the agent's ends.
pub(crate) struct Pipes {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Starts `program` with `args` (its `argv[0]` is `program`) in `cwd`, with exactly the
/// environment `env`, in a new process group, as `run_as` if given, with stdin, stdout
/// and stderr on new pipes (returned), or, given a `terminal` (the command's side of a
/// pseudo-terminal, `pty.rs`), in a new session with that terminal as its controlling
/// terminal and stdin, stdout and stderr. Returns once the program has been exec'd (or
/// its start failed, with the failing step's error). Every signal's disposition is the
/// default and the signal mask is empty in the new program.
pub(crate) fn spawn(
    program: &Path,
    args: &[&OsStr],
    cwd: &Path,
    env: &[(OsString, OsString)],
    run_as: Option<RunAs<'_>>,
    terminal: Option<&OwnedFd>,
) -> io::Result<(SpawnedChild, Option<Pipes>)> {
    let c = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let program_c = c(program.as_os_str())?;
    let argv_c: Vec<CString> =
        std::iter::once(Ok(program_c.clone())).chain(args.iter().map(|a| c(a))).collect::<io::Result<_>>()?;
    let envp_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            c(&kv)
        })
        .collect::<io::Result<_>>()?;
    let cwd_c = c(cwd.as_os_str())?;
    let argv: Vec<*const libc::c_char> =
        argv_c.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> =
        envp_c.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

    let pipes = match terminal {
        Some(_) => None,
        None => {
            let (in_r, in_w) = pipe()?;
            // Output pipes keep the program's order between them (`pipes.rs`).
            let (out_r, out_w) = crate::pipes::output_pipe(above_stdio)?;
            let (err_r, err_w) = crate::pipes::output_pipe(above_stdio)?;
            Some((Pipes { stdin: in_w, stdout: out_r, stderr: err_r }, [in_r, out_w, err_w]))
        }
    };
    let stdio = match (&pipes, terminal) {
        (Some((_, ends)), _) => ends.each_ref().map(|fd| fd.as_raw_fd()),
        (None, Some(t)) => [t.as_raw_fd(); 3],
        (None, None) => unreachable!("pipes are made when there is no terminal"),
    };
    let plan = ChildPlan {
        program: program_c.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd_c.as_ptr(),
        stdio,
        terminal: terminal.is_some(),
        run_as,
        error: AtomicI32::new(0),
    };
    // Left uninitialised: the child touches only the pages it uses. The stack grows down
    // from its (16-byte aligned) end.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let top = ((stack.as_mut_ptr() as usize + CHILD_STACK) & !15) as *mut libc::c_void;

    let pid = unsafe {
        // No signal handler of the agent may run in the child while it shares the
        // agent's memory: all are blocked here, the child resets them before unblocking.
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &plan as *const ChildPlan as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    // The child has exec'd or exited: its ends of the pipes are ours to close.
    let pipes = pipes.map(|(ours, _child_ends)| ours);
    drop(stack);
    let failed = plan.error.load(Ordering::Acquire);
    if failed != 0 {
        let mut raw = 0;
        unsafe { libc::waitpid(pid, &mut raw, 0) };
        return Err(io::Error::from_raw_os_error(failed));
    }
    // SAFETY: the OwnedFd moves into the AsyncFd, which closes it only when dropped.
    let register = |fd| unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from);
    let pidfd = match pidfd_open(pid).and_then(register) {
        Ok(fd) => fd,
        Err(e) => {
            // Not expected once `available()` said yes; never leave the child unwatched.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(e);
        }
    };
    let child = SpawnedChild { pid, pidfd: Some(pidfd), status: None };
    Ok((child, pipes))
}

/// A close-on-exec pipe whose ends are not 0, 1 or 2 (the child moves its ends there).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// OOM score adjustment of every process the agent starts: when a sandbox reaches its
/// memory limit the kernel kills user code, not the agent (PID 1, whose death would end
/// the sandbox and cut every client off). Raising a score needs no privilege, unlike
/// lowering the agent's, which some hosts do not allow (no CAP_SYS_RESOURCE).
pub(crate) const USER_OOM_SCORE_ADJ: &[u8] = b"500";

/// Sets the calling process's OOM score adjustment to [`USER_OOM_SCORE_ADJ`]. Best
/// effort (a host without /proc): raw system calls only, safe between fork or vfork
/// and exec.
pub(crate) fn raise_oom_score() {
    let value = USER_OOM_SCORE_ADJ;
    // SAFETY: open, write and close on a static path and buffer.
    unsafe {
        let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
        }
    }
}

/// Gives up root for `run_as`: its supplementary groups exactly (none for the
/// `--run-as` default, as `Command::uid` leaves a process started by root; a named
/// user's from /etc/group, as `initgroups` would), then its gid, then its uid. Groups
/// first: once the uid is not root, the process may no longer change them, and a group
/// kept from the agent (root's) would let the command into what that group owns.
/// Raw system calls: glibc's wrappers would act on all of the agent's threads (with
/// vfork, the child shares them). Allocates nothing, so safe between vfork and exec.
pub(crate) fn become_user(run_as: RunAs<'_>) -> io::Result<()> {
    // SAFETY: system calls with plain integer arguments and a list valid for its length.
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, run_as.groups.len(), run_as.groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setgid, run_as.gid) != 0
            || libc::syscall(libc::SYS_setuid, run_as.uid) != 0
    };
    if failed { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The child, on its own stack in the agent's memory, until `execve`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive until this exec's or exits (the
    // parent waits: CLONE_VFORK). Only async-signal-safe calls follow.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    let fail = |step_errno: libc::c_int| -> libc::c_int {
        plan.error.store(step_errno.max(1), Ordering::Release);
        unsafe { libc::_exit(127) }
    };
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    unsafe {
        // Handlers point into the agent's code and data: default them all, and what the
        // agent ignores or inherited ignored too (SIGPIPE, which Rust's runtime ignores),
        // so user code starts with every signal at its default; then unblock everything.
        default_all_signals();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &none, std::ptr::null_mut::<libc::sigset_t>(), 8);

        // Its own process group, so a timeout or kill reaches grandchildren too; on a
        // terminal its own session, whose group that is as well.
        let grouped = if plan.terminal { libc::setsid() } else { libc::setpgid(0, 0) };
        if grouped < 0 {
            return fail(errno());
        }
        raise_oom_score();
        if let Some(run_as) = plan.run_as
            && become_user(run_as).is_err()
        {
            return fail(errno());
        }
        if libc::chdir(plan.cwd) != 0 {
            return fail(errno());
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            // dup2 leaves the copy without close-on-exec; the originals close at exec.
            if libc::dup2(fd, target as libc::c_int) < 0 {
                return fail(errno());
            }
        }
        if plan.terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            return fail(errno());
        }
        libc::execve(plan.program, plan.argv, plan.envp);
        fail(errno())
    }
}
