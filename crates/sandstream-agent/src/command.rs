//! One user command: spawning it in its own process group, pumping its pipes into the
//! spool, enforcing its deadline, and recording how it ended.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::ExecConfig;
use crate::error::{AgentError, Result};
use crate::exit::{ExitInfo, Termination, oom_kills};
use crate::output_log::OutputLog;
use crate::pipes::{OutputPipes, Read};
use crate::pty::{self, PtyInput, PtyOutput};
use crate::shell::{Shell, spawn_shell};
use crate::spawn::Process;
use crate::spec::CommandSpec;
use crate::standby::StandbyShell;

/// Longest the pipes are read after the shell exited, however busy they stay.
const MAX_DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

enum StdinOp {
    Write(Vec<u8>, oneshot::Sender<std::io::Result<()>>),
}

/// A command the agent started.
#[derive(Debug)]
pub(crate) struct Command {
    pub(crate) id: String,
    pub(crate) command: String,
    pub(crate) cwd: PathBuf,
    /// The user it runs as, as List reports it: empty for the default user.
    pub(crate) user: String,
    pub(crate) pid: u32,
    pub(crate) started_at_ms: i64,
    pub(crate) log: Arc<OutputLog>,
    stdin: Mutex<Option<mpsc::Sender<StdinOp>>>,
    /// A command on a terminal: its size (as last set) and, while it runs, the agent's
    /// side of it.
    pty: Mutex<Option<(pty::Size, Option<pty::Master>)>>,
}

impl std::fmt::Debug for StdinOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdinOp")
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Command {
    /// Starts `spec` under the shell, in a new process group, and returns once the
    /// process exists: a fresh shell, or the standby shell when one waits and `spec`
    /// qualifies (see `standby.rs`). The returned future supervises it until it ends;
    /// the caller must spawn it.
    pub(crate) fn spawn(
        id: String,
        spec: CommandSpec,
        cfg: &ExecConfig,
        standby: &Arc<StandbyShell>,
    ) -> Result<(Arc<Command>, impl Future<Output = ()> + Send + 'static)> {
        // A waiting standby shell spares the command the shell's start-up; it has been
        // sent the command already, all but `unsent` if its pipe took only part of it.
        let qualifies = standby.qualifies(&spec);
        let terminal = spec.pty.map(|size| open_terminal(&id, size, cfg, &spec)).transpose()?;
        let (shell, unsent) = match standby.take(&spec) {
            Some(taken) => taken,
            None => {
                let (env, slave) = match &terminal {
                    Some((_, slave)) => (with_term(&spec.env), Some(slave)),
                    None => (spec.env.clone(), None),
                };
                (spawn_shell(cfg, &spec.command, &spec.cwd, &env, spec.user.as_ref(), slave)?, Vec::new())
            }
        };
        // Only the command may hold its terminal's side: its end is the output's end.
        let master = terminal.map(|(master, _slave)| master);
        let Shell { child, stdin, stdout, stderr } = shell;
        let pid = child.id().unwrap_or(0);
        let output = match &master {
            Some(m) => Ok(Output::Pty(PtyOutput::new(m.clone()))),
            None => OutputPipes::new(stdout, stderr).map(Output::Pipes),
        };
        let output = output.map_err(|e| {
            // Nothing would read its output: it must not run on unseen.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            AgentError::io(format!("watch the output of command {id}"), e)
        })?;

        let stdin_tx = match (&master, stdin) {
            (Some(m), _) => Some(start_stdin_pump(PtyInput(m.clone()))),
            (None, pipe) => pipe.map(start_stdin_pump),
        };
        if let Some(tx) = &stdin_tx {
            for data in [unsent, spec.stdin] {
                if !data.is_empty() {
                    let (ack, _) = oneshot::channel();
                    // The channel is new and holds at most these two, so try_send cannot find it full.
                    let _ = tx.try_send(StdinOp::Write(data, ack));
                }
            }
        }
        let stdin = if spec.keep_stdin_open { stdin_tx } else { None };

        let spool = cfg.spool_dir.join(format!("{id}.log"));
        // The agent's own cap bounds a request's limit too; with a limit, reaching the
        // cap kills the command, so a program whose client went away cannot write on.
        let log = match spec.output_limit {
            Some(limit) if limit < cfg.output_cap => OutputLog::limited(spool, limit),
            _ => OutputLog::new(spool, cfg.output_cap),
        };
        let kill_at_cap = spec.output_limit.is_some();
        let command = Arc::new(Command {
            id,
            command: spec.command,
            cwd: spec.cwd,
            user: spec.user.as_ref().map(|u| u.display_name()).unwrap_or_default(),
            pid,
            started_at_ms: now_ms(),
            log,
            stdin: Mutex::new(stdin),
            pty: Mutex::new(spec.pty.map(|size| (size, master))),
        });
        let deadline = spec.timeout.map(|t| (Instant::now() + t, t));
        let limits = Limits { deadline, kill_at_cap, drain_grace: cfg.exit_drain_grace };
        let supervise = supervise(command.clone(), child, output, limits);
        // A command that could use the standby (took it, or found none) starts the next one.
        let standby = qualifies.then(|| standby.clone());
        let supervise_of = command.clone();
        let run = async move {
            match standby {
                Some(standby) => {
                    let ended = supervise_of.clone();
                    let killed = async move {
                        supervise.await;
                        ended.log.exit().is_some_and(|e| e.killed_by_sigkill())
                    };
                    standby.refill_after(killed).await;
                }
                None => supervise.await,
            }
        };
        Ok((command, run))
    }

    pub(crate) fn is_running(&self) -> bool {
        self.log.exit().is_none()
    }

    /// Sends `signal` to the command's whole process group.
    pub(crate) fn signal(&self, signal: Signal) -> Result<()> {
        if !self.is_running() {
            return Err(AgentError::AlreadyExited(self.id.clone()));
        }
        match killpg(Pid::from_raw(self.pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(AgentError::io(format!("signal command {}", self.id), e.into())),
        }
    }

    /// Writes to the command's stdin; waits until the pipe took the bytes.
    pub(crate) async fn write_stdin(&self, data: Vec<u8>) -> Result<()> {
        let tx = self.stdin_sender()?;
        let (ack, done) = oneshot::channel();
        tx.send(StdinOp::Write(data, ack)).await.map_err(|_| AgentError::StdinClosed(self.id.clone()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            // EPIPE: the reading end is gone (the command exited or closed fd 0). That is the
            // command's state, not an agent failure: FAILED_PRECONDITION, not INTERNAL.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(AgentError::StdinGone(self.id.clone())),
            Ok(Err(e)) => Err(AgentError::io(format!("write stdin of command {}", self.id), e)),
            Err(_) => Err(AgentError::StdinClosed(self.id.clone())),
        }
    }

    /// Closes stdin: once queued writes are done the command reads end-of-file.
    pub(crate) fn close_stdin(&self) -> Result<()> {
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        guard.take().map(drop).ok_or_else(|| AgentError::StdinClosed(self.id.clone()))
    }

    /// The size of its terminal; `None` for a command on pipes.
    pub(crate) fn pty_size(&self) -> Option<pty::Size> {
        self.pty.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(size, _)| *size)
    }

    /// Changes the size of the command's terminal.
    pub(crate) fn resize(&self, size: pty::Size) -> Result<()> {
        let mut guard = self.pty.lock().unwrap_or_else(|p| p.into_inner());
        let Some((current, master)) = guard.as_mut() else { return Err(AgentError::NoTerminal(self.id.clone())) };
        let Some(master) = master.as_ref().filter(|_| self.is_running()) else {
            return Err(AgentError::AlreadyExited(self.id.clone()));
        };
        pty::set_size(std::os::fd::AsRawFd::as_raw_fd(master), size)
            .map_err(|e| AgentError::io(format!("resize the terminal of command {}", self.id), e))?;
        *current = size;
        Ok(())
    }

    /// Lets go of the command's terminal once it ended: whatever still runs on it is
    /// hung up (SIGHUP), and input is refused.
    fn hang_up(&self) {
        let mut pty = self.pty.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, master)) = pty.as_mut()
            && master.take().is_some()
        {
            self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    fn stdin_sender(&self) -> Result<mpsc::Sender<StdinOp>> {
        let guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| AgentError::StdinClosed(self.id.clone()))
    }
}

/// The command's side of a new terminal of `size`, owned by the user it runs as.
fn open_terminal(id: &str, size: pty::Size, cfg: &ExecConfig, spec: &CommandSpec) -> Result<(pty::Master, OwnedFd)> {
    let owner = spec.user.as_ref().map(|u| u.uid).or(cfg.run_as.map(|(uid, _)| uid));
    pty::open(size, owner).map_err(|e| match e.raw_os_error() {
        // The sandbox's /dev/pts is full (its `max=`), or the host's pool is.
        Some(nix::libc::ENOSPC) => AgentError::NoTerminalLeft,
        _ => AgentError::io(format!("open a terminal for command {id}"), e),
    })
}

/// A terminal program needs to know what it talks to: TERM, unless the request set it.
fn with_term(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    env
}

fn start_stdin_pump(input: impl AsyncWrite + Unpin + Send + 'static) -> mpsc::Sender<StdinOp> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pump_stdin(input, rx));
    tx
}

async fn pump_stdin(mut pipe: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<StdinOp>) {
    while let Some(StdinOp::Write(data, ack)) = rx.recv().await {
        let r = pipe.write_all(&data).await;
        let failed = r.is_err();
        let _ = ack.send(r);
        if failed {
            break;
        }
    }
    // Dropping the pipe closes the command's stdin.
}

/// Where a command's output comes from.
enum Output {
    Pipes(OutputPipes),
    Pty(PtyOutput),
}

impl Output {
    fn is_open(&self) -> bool {
        match self {
            Output::Pipes(p) => p.is_open(),
            Output::Pty(p) => p.is_open(),
        }
    }

    async fn next(&mut self) -> Read {
        match self {
            Output::Pipes(p) => p.next().await,
            Output::Pty(p) => p.next().await,
        }
    }
}

/// What ends a command besides its own exit.
struct Limits {
    /// When the command is killed, and its timeout.
    deadline: Option<(Instant, Duration)>,
    /// Kill the command once its log reached its cap (the request set a limit).
    kill_at_cap: bool,
    /// After the shell exits, pipes are drained until silent this long.
    drain_grace: Duration,
}

/// Pumps both pipes into the spool, in the order the program wrote them (`pipes.rs`),
/// until the command has exited and its pipes are drained, killing its process group at
/// the deadline or when its output reached the request's limit.
async fn supervise(command: Arc<Command>, mut child: Process, mut pipes: Output, limits: Limits) {
    let Limits { deadline, kill_at_cap, drain_grace } = limits;
    let mut output_limit_reached = false;
    // The limit exists so that output nobody reads cannot fill the sandbox's disk or keep
    // a runaway program busy: the whole group goes, as at a timeout.
    let mut on_append = |reached_cap: bool, status_known: bool| {
        if reached_cap && kill_at_cap && !output_limit_reached {
            tracing::info!("output limit reached; killing the process group");
            let _ = killpg(Pid::from_raw(command.pid as i32), Signal::SIGKILL);
            output_limit_reached = !status_known;
        }
    };
    let mut status: Option<std::io::Result<std::process::ExitStatus>> = None;
    let mut timed_out: Option<Duration> = None;
    // After the leader exits, background children may keep the pipes open; we drain
    // while data keeps coming and stop after `drain_grace` of silence.
    let mut drain_deadline = Instant::now();
    // ...but a child that never stops writing cannot keep the command open forever.
    let mut drain_cap = Instant::now() + Duration::from_secs(365 * 86_400);
    let mut deadline_fired = false;
    let oom_before = oom_kills();
    loop {
        if !pipes.is_open() && status.is_some() {
            break;
        }
        let deadline_at = deadline.map(|(at, _)| at).unwrap_or_else(Instant::now);
        tokio::select! {
            r = pipes.next() => if let Read::Data(channel, data) = r {
                on_append(command.log.append(channel, data), status.is_some());
                drain_deadline = (Instant::now() + drain_grace).min(drain_cap);
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                drain_cap = Instant::now() + MAX_DRAIN_AFTER_EXIT.max(drain_grace);
                drain_deadline = Instant::now() + drain_grace;
            }
            _ = tokio::time::sleep_until(deadline_at), if deadline.is_some() && !deadline_fired => {
                // The deadline kills the whole group, also background children left behind
                // by a shell that already exited; only a still-running command timed out.
                tracing::info!("deadline reached; killing the process group");
                let _ = killpg(Pid::from_raw(command.pid as i32), Signal::SIGKILL);
                deadline_fired = true;
                if status.is_none() {
                    timed_out = deadline.map(|(_, t)| t);
                }
            }
            _ = tokio::time::sleep_until(drain_deadline), if status.is_some() => {
                tracing::debug!("pipes still open after the command exited; stopping capture");
                break;
            }
        }
    }
    let termination = match (timed_out, status) {
        (Some(t), _) => Termination::TimedOut { after_ms: t.as_millis() as u64 },
        (None, Some(Ok(s))) => match (s.code(), s.signal()) {
            (Some(code), _) => Termination::Exited(code),
            (None, Some(sig)) => Termination::Signaled(sig),
            (None, None) => Termination::Failed(format!("unknown wait status {s:?}")),
        },
        (None, Some(Err(e))) => Termination::Failed(format!("could not wait for the command: {e}")),
        (None, None) => Termination::Failed("the command was lost".into()),
    };
    // A shell reports a child the OOM killer took as exit 137; the shell itself as SIGKILL.
    let killed = matches!(termination, Termination::Signaled(9) | Termination::Exited(137));
    let oom_killed = killed && oom_kills().zip(oom_before).is_some_and(|(after, before)| after > before);
    let exit = ExitInfo { termination, finished_at_ms: now_ms(), oom_killed, output_limit_reached };
    tracing::info!(exit_code = exit.exit_code(), oom_killed, "command ended");
    command.hang_up();
    command.log.finish(exit);
}
