//! The `/api/sandbox/exec` engine: writes the program and its files into the sandbox,
//! runs the install phase and then the program through the sandbox's agent, and turns
//! every output chunk into a stored, numbered socket.io event.
//!
//! **Every chunk is stored before it is emitted**, with the agent byte offsets it brings
//! the execution to, so a client that missed events replays them from SQLite and a
//! restarted server resumes each running execution from the agent (`Attach` from the
//! stored offsets) without losing or repeating a byte.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandstream_proto::utf8::Utf8Carry;
use sandstream_proto::v1::{ExecuteRequest, ExitStatus, OutputEncoding, SignalRequest};
use socketioxide::SocketIo;

mod agents;
mod follow;
mod limit;
mod plan;

use crate::hub::{CompleteEvent, Event, OutputEvent, PhaseEvent};
use crate::metrics::{Metrics, Stream};
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::store::{Chunk, ExecutionRow, Outcome, Receiver, StateStore};
use crate::time::{now_ms, rfc3339};
pub(crate) use agents::{AgentClient, Agents, FileClient};
use follow::follow;
use limit::{limit_reached, within_limit};
pub(crate) use plan::{LANGUAGES, Plan};
use plan::{run_env, write_files};

/// Where programs and their files go in the sandbox (the agent's user's home).
pub(crate) const WORKDIR: &str = "/home/user";
/// Exit code reported for a timed-out run (as `timeout(1)` does).
pub(crate) const TIMEOUT_EXIT: i32 = 124;
/// Exit code reported for a cancelled run (as a shell reports SIGINT).
pub(crate) const CANCEL_EXIT: i32 = 130;
/// How long a live event waits for room in a socket's send buffer before that socket
/// misses it (and resumes later).
const LIVE_PATIENCE: Duration = Duration::from_millis(250);
/// Continuous failure to reach a sandbox's agent for this long ends the execution.
const AGENT_GIVE_UP: Duration = Duration::from_secs(30);

/// An execution that could not run to its program's end, for `why`.
fn failed(why: String) -> Outcome {
    Outcome { status: ExecStatus::Error, exit_code: -1, error: Some(why), oom_killed: false }
}

fn timed_out() -> Outcome {
    Outcome { status: ExecStatus::Timeout, exit_code: TIMEOUT_EXIT, error: None, oom_killed: false }
}

/// A cancelled execution (`POST …/cancel`).
pub(crate) fn cancelled() -> Outcome {
    Outcome { status: ExecStatus::Cancelled, exit_code: CANCEL_EXIT, error: None, oom_killed: false }
}

/// A command of `phase` that the kernel's out-of-memory killer ended (the agent's
/// `oom_killed`): an error, with its exit code (137), and words that name the sandbox's
/// memory limit, so that a bare 137 is never all a user sees.
fn out_of_memory(phase: Phase, exit_code: i32, memory_mb: u32) -> Outcome {
    let what = if phase == Phase::Install { "the dependency installation was" } else { "the program was" };
    Outcome {
        status: ExecStatus::Error,
        exit_code,
        error: Some(format!(
            "{what} killed by the out-of-memory killer: the sandbox reached its memory limit of {memory_mb} MiB"
        )),
        oom_killed: true,
    }
}

#[derive(Default)]
struct Running {
    sandbox_id: String,
    command_id: Option<String>,
    cancelled: bool,
}

/// The executions in flight, and what running them takes: the store (every chunk is
/// committed there first), the socket.io server (then emitted), the connections to the
/// agents, and the output limit.
pub(crate) struct Engine {
    store: Arc<dyn StateStore>,
    io: SocketIo,
    agents: Arc<Agents>,
    /// Bytes of output one execution keeps at most (`--max-output-bytes`).
    max_output_bytes: u64,
    running: Mutex<HashMap<String, Running>>,
    /// Counts ended executions and streamed bytes.
    metrics: Arc<Metrics>,
}

impl Engine {
    pub(crate) fn new(
        store: Arc<dyn StateStore>,
        io: SocketIo,
        agents: Arc<Agents>,
        max_output_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Engine {
        Engine { store, io, agents, max_output_bytes, running: Mutex::new(HashMap::new()), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the command an execution runs now; true when it was already cancelled.
    fn set_command(&self, exec_id: &str, command_id: &str) -> bool {
        let mut running = self.lock();
        let r = running.entry(exec_id.to_string()).or_default();
        r.command_id = Some(command_id.to_string());
        r.cancelled
    }

    fn cancelled(&self, exec_id: &str) -> bool {
        self.lock().get(exec_id).is_some_and(|r| r.cancelled)
    }

    /// Marks an execution cancelled and kills its current command's process group.
    /// False when it is not running on this server.
    pub(crate) async fn cancel(&self, exec_id: &str) -> bool {
        let (sandbox_id, command_id) = {
            let mut running = self.lock();
            let Some(r) = running.get_mut(exec_id) else { return false };
            r.cancelled = true;
            (r.sandbox_id.clone(), r.command_id.clone())
        };
        if let Some(cid) = command_id {
            self.kill_command(&sandbox_id, &cid).await;
        }
        true
    }

    async fn kill_command(&self, sandbox_id: &str, command_id: &str) {
        let Ok(Some(sb)) = self.store.sandbox(sandbox_id) else { return };
        let Ok(mut client) = self.agents.client(&sb) else { return };
        kill(&mut client, command_id, "a cancelled command").await;
    }
}

/// Kills a command's process group; `what` names it in the log.
async fn kill(client: &mut AgentClient, command_id: &str, what: &str) {
    let req = SignalRequest { command_id: command_id.to_string(), signal: 9 };
    match client.signal(req).await {
        Ok(_) => {}
        // It ended on its own meanwhile.
        Err(e) if e.code() == tonic::Code::FailedPrecondition => {}
        Err(e) => tracing::warn!(command_id, error = %e, "could not kill {what}"),
    }
}

/// Numbers, stores and emits one execution's output.
struct Emitter {
    engine: Arc<Engine>,
    exec_id: String,
    container_id: String,
    /// The sandbox's sockets, or the one socket named by `socketSessionId`; sockets
    /// that resumed the execution get its events too.
    receiver: Receiver,
    seq: u64,
    carry: [Utf8Carry; 2],
    /// Bytes received per channel of the current phase's command.
    offsets: [u64; 2],
    /// Bytes of output this execution keeps at most (`--max-output-bytes`).
    limit: u64,
    /// Bytes of output stored so far, all phases together.
    stored: u64,
    /// The output reached the limit: nothing more is kept, and the program is stopped.
    cut: bool,
    /// The command was sent SIGKILL because of the cut.
    stopped: bool,
}

impl Emitter {
    fn new(engine: Arc<Engine>, ex: &ExecutionRow) -> Emitter {
        let limit = engine.max_output_bytes;
        // A restarted server counts what the execution stored before.
        let stored = if ex.last_seq == 0 {
            0
        } else {
            engine.store.output_bytes(&ex.id).unwrap_or_else(|e| {
                tracing::error!(execution_id = %ex.id, error = %e, "could not count stored output");
                0
            })
        };
        Emitter {
            engine,
            exec_id: ex.id.clone(),
            container_id: ex.sandbox_id.clone(),
            receiver: ex.target.clone(),
            seq: ex.last_seq,
            carry: [Utf8Carry::default(), Utf8Carry::default()],
            offsets: [ex.stdout_offset, ex.stderr_offset],
            limit,
            stored,
            cut: stored >= limit,
            stopped: false,
        }
    }

    /// Offsets of what is stored: bytes held back mid-character are fetched again after
    /// a restart, never skipped.
    fn stored_offsets(&self) -> (u64, u64) {
        (self.offsets[0] - self.carry[0].carried() as u64, self.offsets[1] - self.carry[1].carried() as u64)
    }

    /// Takes bytes received on `channel`: counts them, and returns them decoded (a
    /// character split across reads waits in the carry for its last bytes).
    fn take(&mut self, channel: usize, data: &[u8]) -> String {
        self.offsets[channel] += data.len() as u64;
        self.carry[channel].decode(data)
    }

    async fn flush(&mut self, phase: Phase) {
        for channel in 0..2 {
            let text = self.carry[channel].flush();
            self.push(channel, phase, text).await;
        }
    }

    /// Whether the execution's sandbox is marked killed (a lost one may come back).
    /// Whether the sandbox was killed, or reached its time to live (its agent then ends
    /// it by itself, possibly before the runner and this server have marked it).
    fn sandbox_killed(&self) -> bool {
        matches!(self.engine.store.sandbox(&self.container_id),
            Ok(Some(sb)) if sb.state == SandboxState::Killed || sb.expires_at <= now_ms())
    }

    /// Counts bytes received on `channel` after the output was cut: they are not kept.
    fn skip(&mut self, channel: usize, len: usize) {
        self.offsets[channel] += len as u64;
    }

    /// Stores and emits a chunk, or the part of it within the output limit followed by
    /// a note on stderr that the output was cut; nothing after that.
    async fn push(&mut self, channel: usize, phase: Phase, data: String) {
        if data.is_empty() || self.cut {
            return;
        }
        let (kept, cut) = within_limit(&data, self.stored, self.limit);
        let kept = kept.len();
        if !cut {
            return self.store_and_emit(channel, phase, data).await;
        }
        let mut data = data;
        data.truncate(kept);
        self.store_and_emit(channel, phase, data).await;
        self.cut = true;
        let note = format!("\n[sandstream: output cut: {}]\n", limit_reached(self.limit));
        self.store_and_emit(1, phase, note).await;
    }

    async fn store_and_emit(&mut self, channel: usize, phase: Phase, data: String) {
        if data.is_empty() {
            return;
        }
        self.stored += data.len() as u64;
        self.seq += 1;
        let kind = if channel == 0 { "stdout" } else { "stderr" };
        let chunk = Chunk { seq: self.seq, kind: kind.into(), phase, data };
        // Stored (committed) first, emitted second: a replay can never miss what a live
        // client was shown.
        let chunk = match self.engine.store.append_chunk(&self.exec_id, chunk, self.stored_offsets()).await {
            Ok(chunk) => chunk,
            Err((e, chunk)) => {
                tracing::error!(execution_id = %self.exec_id, error = %e, "could not store output");
                match chunk {
                    Some(chunk) => chunk,
                    None => return,
                }
            }
        };
        self.engine.metrics.streamed(if channel == 0 { Stream::Stdout } else { Stream::Stderr }, chunk.data.len());
        let event = Event::Output(OutputEvent::new(&self.exec_id, &self.container_id, &chunk));
        self.emit(&event, LIVE_PATIENCE).await;
    }

    async fn phase(&self, phase: Phase) {
        let event = PhaseEvent {
            execution_id: &self.exec_id,
            container_id: &self.container_id,
            phase,
            timestamp: rfc3339(now_ms()),
        };
        self.emit(&Event::Phase(event), LIVE_PATIENCE).await;
    }

    async fn emit(&self, event: &Event<'_>, patience: Duration) {
        crate::hub::send(&self.engine.io, &self.receiver, &self.exec_id, event, patience).await;
    }

    fn new_command(&mut self) {
        self.offsets = [0, 0];
        self.carry = [Utf8Carry::default(), Utf8Carry::default()];
    }
}

/// Runs (or, after a restart, carries on) an execution to its end.
pub(crate) async fn drive(engine: Arc<Engine>, ex: ExecutionRow) {
    let exec_id = ex.id.clone();
    engine.lock().entry(exec_id.clone()).or_default().sandbox_id = ex.sandbox_id.clone();
    let mut em = Emitter::new(engine.clone(), &ex);
    let fin = match serde_json::from_str::<Plan>(&ex.plan) {
        Ok(plan) => drive_inner(&engine, &ex, &plan, &mut em).await,
        Err(e) => failed(format!("stored plan unreadable: {e}")),
    };
    engine.lock().remove(&exec_id);
    let now = now_ms();
    if let Err(e) = engine.store.finish_execution(&exec_id, &fin, now) {
        tracing::error!(execution_id = %exec_id, error = %e, "could not store the result");
    }
    tracing::info!(execution_id = %exec_id, status = %fin.status, exit_code = fin.exit_code, oom_killed = fin.oom_killed,
        "execution finished");
    engine.metrics.execution_finished(fin.status);
    let event = CompleteEvent::new(&ex, &fin, now, em.seq);
    em.emit(&Event::Complete(event), Duration::from_secs(10)).await;
}

async fn drive_inner(engine: &Engine, ex: &ExecutionRow, plan: &Plan, em: &mut Emitter) -> Outcome {
    let sb = match engine.store.sandbox(&ex.sandbox_id) {
        Ok(Some(sb)) => sb,
        _ => return failed(format!("sandbox {} is gone", ex.sandbox_id)),
    };
    let mut client = match engine.agents.client(&sb) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let mut phase = ex.phase;
    let mut command = ex.command_id.clone();
    if phase == Phase::Prepare {
        if let Err(e) = write_files(&mut client, plan, ex.deadline).await {
            if now_ms() >= ex.deadline {
                return timed_out();
            }
            return failed(format!("could not write the program into sandbox {}: {e}", sb.id));
        }
        phase = if plan.install.is_some() { Phase::Install } else { Phase::Run };
        command = None;
    }
    loop {
        if engine.cancelled(&ex.id) {
            return cancelled();
        }
        let cid = match command.take() {
            Some(cid) => cid,
            None => {
                let remaining = ex.deadline - now_ms();
                if remaining <= 0 {
                    return timed_out();
                }
                let cmd =
                    if phase == Phase::Install { plan.install.clone().unwrap_or_default() } else { plan.run.clone() };
                let stdin = if phase == Phase::Run { plan.stdin.clone().unwrap_or_default() } else { String::new() };
                em.phase(phase).await;
                let req = ExecuteRequest {
                    command: cmd,
                    cwd: WORKDIR.into(),
                    env: run_env(),
                    timeout: remaining,
                    encoding: OutputEncoding::Bytes as i32,
                    stdin: stdin.into_bytes(),
                    keep_stdin_open: false,
                    // The agent's own cap; the server's --max-output-bytes is not passed yet.
                    // The agent stops the program one byte past what this execution may
                    // still keep, so the Emitter cuts and notes it as usual; and it does so
                    // whether or not this server is following.
                    output_limit_bytes: em.limit.saturating_sub(em.stored).saturating_add(1),
                    // The sandbox's default user, as before the field existed.
                    user: String::new(),
                    pty: None,
                };
                let started = match client.start(req).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => return failed(format!("agent refused to start the {phase} command: {}", e.message())),
                };
                em.new_command();
                if let Err(e) = engine.store.set_command(&ex.id, phase, &started.command_id, em.seq) {
                    tracing::error!(execution_id = %ex.id, error = %e, "could not store the command id");
                }
                started.command_id
            }
        };
        // A cancel that came before the command was known takes effect now.
        if engine.set_command(&ex.id, &cid) {
            engine.kill_command(&sb.id, &cid).await;
        }
        let end = match follow(&mut client, &cid, phase, em).await {
            Ok(end) => end,
            Err(e) => return failed(e),
        };
        em.flush(phase).await;
        if let Err(e) = engine.store.set_offsets(&ex.id, em.seq, em.stored_offsets()) {
            tracing::warn!(execution_id = %ex.id, error = %e, "could not store offsets");
        }
        if engine.cancelled(&ex.id) {
            return cancelled();
        }
        if end.output_limit_reached && !em.cut {
            // The agent's count (raw bytes) reached the limit before the server's (text).
            em.cut = true;
            let note = format!("\n[sandstream: output cut: {}]\n", limit_reached(em.limit));
            em.store_and_emit(1, phase, note).await;
        }
        if em.cut {
            let error = Some(limit_reached(em.limit));
            return Outcome { status: ExecStatus::Error, exit_code: end.exit_code, error, oom_killed: false };
        }
        match ExitStatus::try_from(end.status).unwrap_or(ExitStatus::Unspecified) {
            ExitStatus::TimedOut => return timed_out(),
            // Killed with its sandbox: at its time to live the agent itself stops every
            // command before it ends the sandbox, so the end can arrive first.
            ExitStatus::Signaled if em.sandbox_killed() => {
                return failed(format!("sandbox {} was killed while the execution ran", sb.id));
            }
            ExitStatus::Failed => return failed(format!("the {phase} command could not start: {}", end.error)),
            _ => {}
        }
        if end.oom_killed {
            return out_of_memory(phase, end.exit_code, sb.memory_mb);
        }
        if phase == Phase::Install {
            if end.exit_code != 0 {
                let error = Some(format!("dependency installation failed with exit code {}", end.exit_code));
                return Outcome { status: ExecStatus::Error, exit_code: end.exit_code, error, oom_killed: false };
            }
            phase = Phase::Run;
            continue;
        }
        let status = if end.exit_code == 0 { ExecStatus::Success } else { ExecStatus::Error };
        return Outcome { status, exit_code: end.exit_code, error: None, oom_killed: false };
    }
}
