//! The standby shell: one shell started ahead of time that waits for its command.
//! Starting bash is most of what a short command costs (about 1.5 ms of the 2 ms an
//! `Execute("true")` takes on a small VM), so the agent keeps one bash started and hands
//! it the next command that qualifies, then starts the next standby in the background.
//!
//! The standby is started exactly as a command's own shell (`spawn_shell`), in the
//! default cwd with no extra environment, as the default user, so only commands that ask
//! for nothing else qualify. Its `-c` script (`BOOTSTRAP`) reads the command from stdin up to a NUL byte
//! and evals it; bash's `read` takes a pipe one byte at a time, so the user's stdin data,
//! written after the NUL, is left for the command. If the agent dies, the standby reads
//! end-of-file and exits (125) by itself.
//!
//! What a command run by the standby sees differently from a cold `bash -c COMMAND`
//! (also in proto/PROTOCOL.md), none of it removable without giving up the standby:
//! - a syntax error is reported by `eval`: `bash: eval: line 1: syntax error …` where
//!   the cold shell says `bash: -c: line 1: syntax error …` (other messages are equal);
//! - bash stays the parent of the command's last program (a cold `bash -c` execs it in
//!   place), and the shell's command line (`ps`, `/proc/$$/cmdline`) is the bootstrap;
//! - the shell started before the command arrived (its start time in `/proc/$$/stat`;
//!   what bash does at start-up, such as sourcing `$BASH_ENV`, happened then);
//! - HUP, TERM, USR1 and USR2 are trapped (`trap -p` shows it; see `BOOTSTRAP`): the
//!   shell waits for its program and then dies of the signal, so a program that handles
//!   TERM and exits 0 leaves the command killed by signal 15, not exited 0;
//! - before the first command has run, `${PIPESTATUS[@]}` is `0` instead of empty.
//!
//! And the sandbox holds one more idle bash process while a standby waits.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::ExecConfig;
use crate::error::{AgentError, Result};
use crate::shell::{Shell, spawn_shell};
use crate::spec::CommandSpec;

/// The standby's `-c` script. It must stay one line: the command's line numbers (in
/// `$LINENO` and error messages) count from the line of the `eval`.
/// - `__ss_u=$_` keeps what a cold shell has in `$_` at start (from the environment);
///   `__ss_f` gives it back (the last argument of the command before the `eval`) after
///   removing itself and `__ss_u`, so the command finds no variable or function of ours.
/// - The traps: a cold `bash -c` execs the command's last program in place, so a signal
///   sent to the group reaches only that program, which may handle it (a server that
///   stops gracefully on TERM, reloads on HUP) or ignore it. The standby stays its parent
///   and would die of such a signal at once, ending the command while the program runs on
///   unwatched. Trapped, bash waits for its foreground program and then dies of the same
///   signal (so `kill -TERM $$` still kills it). INT needs no trap: bash already dies of
///   it only if its foreground program did.
/// - The command is read into `BASH_EXECUTION_STRING`, where a cold shell has it.
/// - `SECONDS=0`: `$SECONDS` counts from when the command arrived, as in a cold shell.
/// - End-of-file before the NUL (the agent is gone): exit 125.
const BOOTSTRAP: &str = concat!(
    "__ss_u=$_; ",
    "trap 'trap - HUP; kill -HUP $$' HUP; ",
    "trap 'trap - TERM; kill -TERM $$' TERM; ",
    "trap 'trap - USR1; kill -USR1 $$' USR1; ",
    "trap 'trap - USR2; kill -USR2 $$' USR2; ",
    "IFS= read -r -d '' BASH_EXECUTION_STRING || exit 125; ",
    "__ss_f() { unset -f __ss_f; unset __ss_u; SECONDS=0; : \"$1\"; }; ",
    "__ss_f \"$__ss_u\"; ",
    "eval \"$BASH_EXECUTION_STRING\"",
);

/// Longer commands start cold: bash reads the command one byte per system call.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// A command that runs longer than this gets its replacement standby started anyway, so
/// that the commands that come meanwhile find one.
const REFILL_DELAY: Duration = Duration::from_millis(50);
/// Longest a shutdown waits for a standby being started, so that it can kill it too.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// After a standby died before taking a command (or could not start), the next one is
/// started no sooner than this, doubled for each further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A standby taken after waiting this long has survived: the backoff starts over. (One
/// taken sooner may still be dying: under the OOM killer it dies as soon as it runs.)
const SURVIVED: Duration = Duration::from_secs(1);

/// Why a waiting standby could not take a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unusable {
    Exited,
    Unknown,
    Dying,
    WorkdirChanged,
    StdinFailed,
}

impl Unusable {
    fn reason(self) -> &'static str {
        match self {
            Unusable::Exited => "it exited",
            Unusable::Unknown => "cannot tell whether it still runs",
            Unusable::Dying => "it is being killed",
            Unusable::WorkdirChanged => "the workdir is another directory than when it started",
            Unusable::StdinFailed => "its stdin does not take the command",
        }
    }
}

/// A started shell waiting for its command.
struct Standby {
    shell: Shell,
    /// (device, inode) of the default cwd when the shell started in it.
    cwd: (u64, u64),
    started: tokio::time::Instant,
}

#[derive(Default)]
struct Slot {
    standby: Option<Standby>,
    /// A standby is being started (in a blocking thread).
    starting: bool,
    /// The agent is shutting down: no standby is started or handed out any more.
    closed: bool,
    /// The last start failed; until one succeeds, failures are logged at debug level.
    failing: bool,
    /// Standbys in a row that died before taking a command or could not start.
    failures: u32,
    /// No standby is started before this (backoff after failures).
    not_before: Option<tokio::time::Instant>,
    /// A task waits for `not_before` to start one.
    retry_scheduled: bool,
}

impl Slot {
    /// Security: in a sandbox whose memory is full, the OOM killer kills each new standby
    /// at once; refilled without a pause, that was 37,000 OOM kills in one sandbox and a
    /// host load average near 200. So failures back off exponentially.
    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (self.failures - 1).min(16)).min(MAX_BACKOFF);
        self.not_before = Some(tokio::time::Instant::now() + backoff);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }
}

/// At most one standby shell, handed to the next command that qualifies and replaced.
pub(crate) struct StandbyShell {
    cfg: ExecConfig,
    enabled: bool,
    slot: Mutex<Slot>,
}

impl std::fmt::Debug for StandbyShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandbyShell").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

impl StandbyShell {
    pub(crate) fn new(cfg: &ExecConfig) -> Arc<StandbyShell> {
        // dash and busybox sh have no `read -d`: only bash runs the bootstrap.
        let enabled = cfg.standby_shell && cfg.shell.file_name().is_some_and(|n| n == "bash");
        Arc::new(StandbyShell { cfg: cfg.clone(), enabled, slot: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The standby started in the default cwd with the agent's environment, as the
    /// default user, so it can run only a command that asks for nothing else.
    pub(crate) fn qualifies(&self, spec: &CommandSpec) -> bool {
        self.enabled
            && spec.env.is_empty()
            && spec.user.is_none()
            && spec.pty.is_none()
            && spec.cwd == self.cfg.default_cwd
            && spec.command.len() < MAX_COMMAND_BYTES
    }

    /// Hands `spec`'s command to the waiting standby: returns its shell and what of the
    /// command its stdin pipe has not taken yet (to be written before the user's stdin).
    /// `None` (start the command cold) when `spec` does not qualify, no standby waits,
    /// or the waiting one is unusable (it died or is being killed, its stdin fails, or
    /// the default cwd is another directory now); an unusable one is killed and reaped.
    /// Only one caller gets a standby.
    pub(crate) fn take(self: &Arc<Self>, spec: &CommandSpec) -> Option<(Shell, Vec<u8>)> {
        if !self.qualifies(spec) {
            return None;
        }
        let standby = {
            let mut slot = self.lock();
            if slot.closed {
                return None;
            }
            slot.standby.take()
        };
        // No refill here: the caller starts the next standby once this command is done
        // or has run for a while (`refill_after`), so the new shell's start-up does not
        // compete with the command for the CPU.
        let survived = standby.as_ref().is_some_and(|s| s.started.elapsed() >= SURVIVED);
        match standby.map(|s| s.hand_over(&spec.command, &self.cfg.default_cwd))? {
            Ok((shell, unsent)) => {
                tracing::debug!(pid = shell.child.id(), "command handed to the standby shell");
                if survived {
                    self.lock().succeeded();
                }
                Some((shell, unsent))
            }
            Err(why) => {
                tracing::debug!(reason = why.reason(), "standby shell unusable; starting the command in a new shell");
                if why != Unusable::WorkdirChanged {
                    self.lock().failed();
                }
                None
            }
        }
    }

    /// Runs `command` (a command that qualified, so the slot is empty or soon will be),
    /// then starts the next standby: when `command` ends, or after [`REFILL_DELAY`] if it
    /// runs longer. Starting bash costs about as much CPU as a short command takes in
    /// all, and on a small machine a start right away would take it from that command.
    /// `command` resolves to whether it died of SIGKILL: then the standby it may have
    /// taken counts as failed (the OOM killer takes a standby as soon as its command
    /// runs, when the sandbox's memory is full), and the next start backs off.
    pub(crate) async fn refill_after(self: Arc<Self>, command: impl Future<Output = bool>) {
        tokio::pin!(command);
        let killed = tokio::select! {
            killed = &mut command => killed,
            () = tokio::time::sleep(REFILL_DELAY) => {
                self.refill();
                command.await
            }
        };
        if killed {
            self.lock().failed();
        }
        // A no-op when one waits or is being started.
        self.refill();
    }

    /// Starts a standby in a blocking thread, unless one waits or is being started.
    /// Starting a process costs the agent a fork and waiting for the exec: never on a
    /// request's path.
    pub(crate) fn refill(self: &Arc<Self>) {
        if !self.enabled {
            return;
        }
        {
            let mut slot = self.lock();
            if slot.closed || slot.starting || slot.standby.is_some() {
                return;
            }
            if let Some(at) = slot.not_before.filter(|at| *at > tokio::time::Instant::now()) {
                // Backing off: one task starts it when the pause is over.
                if !slot.retry_scheduled
                    && let Ok(rt) = tokio::runtime::Handle::try_current()
                {
                    slot.retry_scheduled = true;
                    let this = self.clone();
                    rt.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        this.lock().retry_scheduled = false;
                        this.refill();
                    });
                }
                return;
            }
            slot.starting = true;
        }
        let this = self.clone();
        if let Err(e) = tokio::runtime::Handle::try_current().map(|rt| rt.spawn_blocking(move || this.start())) {
            self.lock().starting = false;
            tracing::debug!(error = %e, "no runtime to start a standby shell in");
        }
    }

    fn start(&self) {
        let started = Standby::spawn(&self.cfg);
        let mut slot = self.lock();
        slot.starting = false;
        match started {
            // Killed while the lock is held, so a shutdown that saw `starting` end finds it dead.
            Ok(standby) if slot.closed || slot.standby.is_some() => standby.discard(),
            Ok(standby) => {
                tracing::debug!(pid = standby.shell.child.id(), "standby shell started");
                slot.failing = false;
                slot.standby = Some(standby);
            }
            Err(e) if slot.failing => {
                slot.failed();
                tracing::debug!(error = %e, "could not start a standby shell");
            }
            Err(e) => {
                slot.failed();
                slot.failing = true;
                tracing::warn!(error = %e, "could not start a standby shell; commands start in a new shell meanwhile");
            }
        }
    }

    /// At shutdown: no standby is started any more, and the waiting one is killed and
    /// reaped (one being started is killed by its starter once it sees `closed`).
    pub(crate) async fn close(&self) {
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let (standby, starting) = {
                let mut slot = self.lock();
                slot.closed = true;
                (slot.standby.take(), slot.starting)
            };
            if let Some(standby) = standby {
                standby.kill().await;
            }
            if !starting || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Standby {
    fn spawn(cfg: &ExecConfig) -> Result<Standby> {
        // Taken before the shell starts: should the directory be replaced meanwhile, the
        // check at hand-over finds another inode and discards the shell, never the reverse.
        let cwd = dir_id(&cfg.default_cwd)
            .map_err(|e| AgentError::io(format!("stat workdir {}", cfg.default_cwd.display()), e))?;
        let shell = spawn_shell(cfg, BOOTSTRAP, &cfg.default_cwd, &[], None, None)?;
        Ok(Standby { shell, cwd, started: tokio::time::Instant::now() })
    }

    /// Writes the command and its NUL to the shell's stdin, unless the shell is unusable.
    fn hand_over(mut self, command: &str, default_cwd: &Path) -> Result<(Shell, Vec<u8>), Unusable> {
        match self.shell.child.try_wait() {
            Ok(None) => {}
            // try_wait reaped it.
            Ok(Some(_)) => return Err(Unusable::Exited),
            Err(_) => {
                self.discard();
                return Err(Unusable::Unknown);
            }
        }
        // Killed but not dead yet (a `kill -9` or the OOM killer, while the CPU is busy
        // elsewhere): given the command, it would die of it.
        if self.shell.child.id().is_some_and(dying) {
            self.discard();
            return Err(Unusable::Dying);
        }
        if dir_id(default_cwd).ok() != Some(self.cwd) {
            self.discard();
            return Err(Unusable::WorkdirChanged);
        }
        let mut message = Vec::with_capacity(command.len() + 1);
        message.extend_from_slice(command.as_bytes());
        message.push(0);
        let written = match &self.shell.stdin {
            Some(pipe) => write_some(pipe.as_fd(), &message),
            None => Err(Errno::EBADF),
        };
        match written {
            Ok(n) => {
                message.drain(..n);
                Ok((self.shell, message))
            }
            Err(_) => {
                self.discard();
                Err(Unusable::StdinFailed)
            }
        }
    }

    /// SIGKILL to the shell's group (it is alone in it), unless it was already reaped
    /// (then its pid may belong to another process).
    fn kill_group(&mut self) {
        if let Ok(None) = self.shell.child.try_wait()
            && let Some(pid) = self.shell.child.id()
        {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Kills the shell and reaps it in the background.
    fn discard(mut self) {
        self.kill_group();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = self.shell.child.wait().await;
                });
            }
            // Dropped, its stdin closes: if the kill failed it reads end-of-file and exits.
            Err(_) => drop(self),
        }
    }

    /// Kills the shell and waits until it is reaped.
    async fn kill(mut self) {
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.shell.child.wait()).await;
    }
}

/// One write to the non-blocking pipe. The pipe is new and empty, so it takes the whole
/// command at once unless the kernel gave it less room than usual; 0 if it is full.
fn write_some(fd: BorrowedFd<'_>, data: &[u8]) -> nix::Result<usize> {
    loop {
        match nix::unistd::write(fd, data) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            r => return r,
        }
    }
}

/// Whether process `pid`, not reaped yet, is on its way out: a dead or exiting task
/// (`PF_EXITING` in its flags) or one with SIGKILL pending (a fatal signal is added to
/// every thread's own pending set, which `/proc/PID/stat` shows). Without /proc: false.
fn dying(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (Signal::SIGKILL as u64 - 1);
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Fields after the ")" that closes the command name: state (3rd field of the line),
    // ... flags (9th), ... signal (31st).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let number = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    matches!(fields.first(), Some(&("Z" | "X" | "x"))) || number(9) & PF_EXITING != 0 || number(31) & SIGKILL_BIT != 0
}

fn dir_id(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}
