//! PID 1 duty. Inside a sandbox the agent is usually the first process: the kernel
//! reparents every orphaned process to PID 1 and expects it to reap them (or zombies
//! pile up until the pid limit is hit), and it delivers to PID 1 only the signals that
//! have handlers. So when the agent finds itself PID 1 it forks: the parent stays PID 1,
//! reaps every child and forwards termination signals; the agent runs in the child.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

/// Returns at once unless this process is PID 1; then returns only in the forked
/// agent process, while PID 1 reaps and forwards signals until the agent exits.
pub fn become_init_if_pid1() -> std::io::Result<()> {
    if getpid() != Pid::from_raw(1) {
        return Ok(());
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    // SAFETY: called from main before any thread (or the tokio runtime) is started, so
    // the child is a complete copy of a single-threaded process.
    match unsafe { fork() }? {
        ForkResult::Child => {
            sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => reap_forever(child, &set),
    }
}

fn reap_forever(agent: Pid, set: &SigSet) -> ! {
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(agent, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == agent => std::process::exit(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == agent => std::process::exit(128 + s as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(_) => std::process::exit(1),
            }
        }
    }
}
