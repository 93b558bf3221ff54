//! How a command ended, as every reader (events, the spool's end marker, the service)
//! sees it.

use nix::sys::signal::Signal;

/// Exit code reported for a command the agent killed at its deadline (as `timeout(1)`).
pub(crate) const TIMED_OUT_EXIT_CODE: i32 = 124;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Termination {
    Exited(i32),
    Signaled(i32),
    TimedOut { after_ms: u64 },
    Failed(String),
}

/// The end of a command, as readers see it.
#[derive(Clone, Debug)]
pub(crate) struct ExitInfo {
    pub(crate) termination: Termination,
    pub(crate) finished_at_ms: i64,
    /// Died of SIGKILL while the memory cgroup counted an OOM kill.
    pub(crate) oom_killed: bool,
    /// Its output reached the request's `output_limit_bytes` and the agent killed its
    /// process group for it.
    pub(crate) output_limit_reached: bool,
}

/// OOM kills counted by the memory cgroup the agent lives in: in a container,
/// `/sys/fs/cgroup` shows the sandbox's own cgroup (`oom_kill` in cgroup v1's
/// `memory.oom_control`, v2's `memory.events`). `None` outside a memory cgroup.
pub(crate) fn oom_kills() -> Option<u64> {
    ["/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"].iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
    })
}

impl ExitInfo {
    pub(crate) fn exit_code(&self) -> i32 {
        match self.termination {
            Termination::Exited(c) => c,
            Termination::Signaled(s) => 128 + s,
            Termination::TimedOut { .. } => TIMED_OUT_EXIT_CODE,
            Termination::Failed(_) => -1,
        }
    }

    /// Died of SIGKILL, or its shell reported a child that did (137).
    pub(crate) fn killed_by_sigkill(&self) -> bool {
        matches!(self.termination, Termination::Signaled(9) | Termination::Exited(137))
    }

    pub(crate) fn signal(&self) -> i32 {
        match self.termination {
            Termination::Signaled(s) => s,
            Termination::TimedOut { .. } => Signal::SIGKILL as i32,
            _ => 0,
        }
    }

    pub(crate) fn message(&self) -> String {
        if self.output_limit_reached {
            return "output reached its limit; the agent killed its process group".into();
        }
        match &self.termination {
            Termination::Signaled(_) | Termination::Exited(137) if self.oom_killed => {
                "killed by the out-of-memory killer: the sandbox reached its memory limit".into()
            }
            Termination::Exited(_) => String::new(),
            Termination::Signaled(s) => {
                let name = Signal::try_from(*s).map(|s| s.as_str()).unwrap_or("unknown signal");
                format!("killed by signal {s} ({name})")
            }
            Termination::TimedOut { after_ms } => {
                format!("timed out after {after_ms} ms; the agent killed its process group")
            }
            Termination::Failed(why) => why.clone(),
        }
    }
}
