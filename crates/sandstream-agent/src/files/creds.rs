//! Per-thread filesystem credentials: how a file operation runs as the user it is for.
//!
//! Security: the agent is root in the sandbox, and a path comes from a client on behalf
//! of a user, through a tree that user's code can change at any moment. Checking
//! permissions in the agent (stat, then open) would be a time-of-check/time-of-use race
//! (a symlink swapped in between, as in CVE-2018-15664 for `docker cp`), and resolving
//! symlinks by hand misses what the kernel knows (bind mounts, /proc magic links). So the
//! agent does not check at all: the thread doing the system call takes the user's
//! *filesystem* credentials, and the kernel checks every component of every path as it
//! would for that user's own process. A symlink in the user's home that points at the
//! agent's token (0600, root's), its spool directory or /proc/1/environ then gives
//! EACCES, never the bytes.
//!
//! The switch is per thread, with raw system calls: `setfsuid` and `setfsgid` act on the
//! calling thread only, and so does the raw `setgroups` (glibc's wrapper broadcasts to
//! every thread of the process, which would change the credentials of the threads
//! serving other requests). Changing the fsuid from 0 to another uid clears
//! CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN, CAP_FSETID and the other
//! filesystem capabilities from the thread's effective set (capabilities(7), "Effect of
//! user ID changes on capabilities"); the guard also clears the rest of the effective
//! set (`capset` is per thread too), so that CAP_SYS_PTRACE cannot open another
//! process's /proc magic links and CAP_SYS_RESOURCE cannot use a file system's reserved
//! blocks. Each switch is verified (`setfsuid` and `setfsgid` report the previous value
//! and nothing else, so they are called again to read the current one), and
//! [`Assumed`] puts the agent's own credentials back when dropped. Should that ever
//! fail, the thread marks itself poisoned and the pool (`pool.rs`) retires it, so no
//! later job runs with another user's credentials.

use std::cell::Cell;
use std::io;

use nix::libc;

/// Who a file operation runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups, exactly (empty for the `--run-as` default, as its commands).
    pub(crate) groups: Vec<u32>,
}

/// The agent's own credentials, read once, which every pool thread returns to.
#[derive(Debug, Clone)]
pub(crate) struct AgentCreds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    groups: Vec<u32>,
    caps: [CapData; 2],
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;
/// What `setfsuid`/`setfsgid` take as "no change, tell me the current value".
const QUERY: u32 = u32::MAX;

thread_local! {
    /// Set when restoring the agent's credentials failed on this thread.
    static POISONED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread failed to get the agent's credentials back (it must not run
/// another job).
pub(crate) fn poisoned() -> bool {
    POISONED.with(Cell::get)
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader { version: CAP_V3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: a valid header and room for the two words version 3 writes.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if r == 0 { Ok(data) } else { Err(io::Error::last_os_error()) }
}

/// Sets the calling thread's capability sets (only this thread's: pid 0).
fn capset(data: &[CapData; 2]) -> io::Result<()> {
    let mut header = CapHeader { version: CAP_V3, pid: 0 };
    // SAFETY: a valid header and the two words version 3 reads.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn setfsuid(uid: u32) -> u32 {
    // SAFETY: a system call with an integer argument; it acts on this thread only.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) as u32 }
}

fn setfsgid(gid: u32) -> u32 {
    // SAFETY: as `setfsuid`.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid) as u32 }
}

/// The raw system call, for this thread only (see the module comment).
fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: a list valid for its length.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl AgentCreds {
    /// The calling thread's credentials (any thread's: the agent never changes its own).
    pub(crate) fn current() -> io::Result<AgentCreds> {
        let groups = nix::unistd::getgroups().map_err(io::Error::from)?.into_iter().map(|g| g.as_raw()).collect();
        Ok(AgentCreds {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            groups,
            caps: capget()?,
        })
    }

    /// Whether the agent can take other users' credentials at all.
    pub(crate) fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// The calling thread runs with a user's filesystem credentials until this is dropped.
#[derive(Debug)]
pub(crate) struct Assumed<'a> {
    agent: &'a AgentCreds,
}

/// Gives the calling thread `creds` for the filesystem, as the module comment says.
/// Only for an agent running as root; an error leaves the thread as it was.
pub(crate) fn assume<'a>(creds: &Creds, agent: &'a AgentCreds) -> io::Result<Assumed<'a>> {
    setgroups(&creds.groups)?;
    // From here on the guard restores whatever was changed.
    let guard = Assumed { agent };
    setfsgid(creds.gid);
    if setfsgid(QUERY) != creds.gid {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot take gid {}", creds.gid)));
    }
    setfsuid(creds.uid);
    if setfsuid(QUERY) != creds.uid {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("cannot take uid {}", creds.uid)));
    }
    if creds.uid != 0 {
        // Permitted stays, so the guard can raise the effective set again.
        let mut none = agent.caps;
        for set in &mut none {
            set.effective = 0;
        }
        capset(&none)?;
    }
    Ok(guard)
}

impl Drop for Assumed<'_> {
    fn drop(&mut self) {
        let a = self.agent;
        // Capabilities first: setgroups and setfsgid need CAP_SETGID back.
        let ok = capset(&a.caps).is_ok() && {
            setfsuid(a.uid);
            setfsgid(a.gid);
            setgroups(&a.groups).is_ok() && setfsuid(QUERY) == a.uid && setfsgid(QUERY) == a.gid
        };
        if !ok {
            tracing::error!("a file thread could not restore the agent's credentials; retiring it");
            POISONED.with(|p| p.set(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on a thread of its own, so nothing else sees its credentials.
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("thread")
    }

    #[test]
    fn a_thread_takes_a_users_file_credentials_and_gives_them_back() {
        let agent = AgentCreds::current().expect("creds");
        if !agent.is_root() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"s").expect("write");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let user = Creds { uid: 65534, gid: 65534, groups: vec![] };
        let (as_user, as_agent_again, other_thread) = on_thread(move || {
            // A thread started before the switch (a new thread would inherit the
            // creator's credentials) reads while this one is the user.
            let (go, wait) = std::sync::mpsc::channel::<()>();
            let other = std::thread::spawn({
                let secret = secret.clone();
                move || wait.recv().is_ok() && std::fs::read(&secret).is_ok()
            });
            let guard = assume(&user, &agent).expect("assume");
            go.send(()).expect("send");
            let other = other.join().expect("other");
            let as_user = std::fs::read(&secret).map_err(|e| e.kind());
            drop(guard);
            assert!(!poisoned());
            (as_user, std::fs::read(&secret).is_ok(), other)
        });
        assert_eq!(as_user, Err(io::ErrorKind::PermissionDenied));
        assert!(as_agent_again, "the agent's credentials came back");
        assert!(other_thread, "another thread kept the agent's credentials meanwhile");
    }
}
