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
use sandstream_proto::v1::exec_service_client::ExecServiceClient;
#[cfg(test)]
use sandstream_proto::v1::{CommandOutput, EventKind, OutputChannel};
use sandstream_proto::v1::{ExecuteRequest, ExitStatus, OutputEncoding, SignalRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

mod follow;
mod limit;
mod plan;

use crate::hub::{CompleteEvent, Event, OutputEvent, PhaseEvent};
use crate::server::AppState;
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::store::{Chunk, ExecutionRow, Receiver, SandboxRow};
use crate::time::{now_ms, rfc3339};
use follow::follow;
#[cfg(test)]
use follow::{COALESCE_MAX, fresh, is_end, merge_waiting};
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
/// HTTP/2 flow-control windows of the connection to each agent, and of each stream on it.
const AGENT_CONNECTION_WINDOW: u32 = 2 << 20;
const AGENT_STREAM_WINDOW: u32 = 1 << 20;
/// Continuous failure to reach a sandbox's agent for this long ends the execution.
const AGENT_GIVE_UP: Duration = Duration::from_secs(30);

/// How an execution ended.
#[derive(Debug, Clone)]
pub(crate) struct Final {
    pub status: ExecStatus,
    pub exit_code: i32,
    pub error: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) type AgentClient = ExecServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Default)]
struct Running {
    sandbox_id: String,
    command_id: Option<String>,
    cancelled: bool,
}

/// Connections to agents and the executions in flight.
#[derive(Default)]
pub(crate) struct Engine {
    channels: Mutex<HashMap<String, (String, Channel)>>,
    running: Mutex<HashMap<String, Running>>,
}

impl Engine {
    /// One HTTP/2 connection per sandbox, shared by all its executions.
    pub(crate) fn client(&self, sb: &SandboxRow) -> Result<AgentClient, String> {
        let endpoint = format!("http://{}:{}", sb.host, sb.port);
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(&sb.id) {
            Some((e, ch)) if *e == endpoint => ch.clone(),
            _ => {
                let ch = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| format!("agent address {endpoint}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .keep_alive_while_idle(true)
                    // Output the server has not taken yet waits in the agent's spool, not
                    // here: these windows bound what a sandbox's connection can buffer in
                    // the server's memory (2 MiB), and on a local network they still
                    // carry far more than the server can store and emit.
                    .initial_connection_window_size(Some(AGENT_CONNECTION_WINDOW))
                    .initial_stream_window_size(Some(AGENT_STREAM_WINDOW))
                    .connect_lazy();
                channels.insert(sb.id.clone(), (endpoint, ch.clone()));
                ch
            }
        };
        let token = format!("Bearer {}", sb.token).parse().map_err(|_| "sandbox token is not ASCII".to_string())?;
        Ok(ExecServiceClient::with_interceptor(channel, Bearer(token)).max_decoding_message_size(16 << 20))
    }

    pub(crate) fn forget_sandbox(&self, id: &str) {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
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
    pub(crate) async fn cancel(&self, state: &AppState, exec_id: &str) -> bool {
        let (sandbox_id, command_id) = {
            let mut running = self.lock();
            let Some(r) = running.get_mut(exec_id) else { return false };
            r.cancelled = true;
            (r.sandbox_id.clone(), r.command_id.clone())
        };
        if let Some(cid) = command_id {
            kill_command(state, &sandbox_id, &cid).await;
        }
        true
    }
}

async fn kill_command(state: &AppState, sandbox_id: &str, command_id: &str) {
    let Ok(Some(sb)) = state.store.sandbox(sandbox_id) else { return };
    let Ok(mut client) = state.exec.client(&sb) else { return };
    kill(&mut client, command_id, "a cancelled command").await;
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
    state: Arc<AppState>,
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
    fn new(state: Arc<AppState>, ex: &ExecutionRow) -> Emitter {
        let limit = state.cfg.max_output_bytes;
        // A restarted server counts what the execution stored before.
        let stored = if ex.last_seq == 0 {
            0
        } else {
            state.store.output_bytes(&ex.id).unwrap_or_else(|e| {
                tracing::error!(execution_id = %ex.id, error = %e, "could not count stored output");
                0
            })
        };
        Emitter {
            state,
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
        matches!(self.state.store.sandbox(&self.container_id),
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
        let chunk = match self.state.store.append_chunk(&self.exec_id, chunk, self.stored_offsets()).await {
            Ok(chunk) => chunk,
            Err((e, chunk)) => {
                tracing::error!(execution_id = %self.exec_id, error = %e, "could not store output");
                match chunk {
                    Some(chunk) => chunk,
                    None => return,
                }
            }
        };
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
        crate::hub::send(&self.state.io, &self.receiver, &self.exec_id, event, patience).await;
    }

    fn new_command(&mut self) {
        self.offsets = [0, 0];
        self.carry = [Utf8Carry::default(), Utf8Carry::default()];
    }
}

/// Runs (or, after a restart, carries on) an execution to its end.
pub(crate) async fn drive(state: Arc<AppState>, ex: ExecutionRow) {
    let exec_id = ex.id.clone();
    state.exec.lock().entry(exec_id.clone()).or_default().sandbox_id = ex.sandbox_id.clone();
    let mut em = Emitter::new(state.clone(), &ex);
    let fin = match serde_json::from_str::<Plan>(&ex.plan) {
        Ok(plan) => drive_inner(&state, &ex, &plan, &mut em).await,
        Err(e) => {
            Final { status: ExecStatus::Error, exit_code: -1, error: Some(format!("stored plan unreadable: {e}")) }
        }
    };
    state.exec.lock().remove(&exec_id);
    let now = now_ms();
    if let Err(e) = state.store.finish_execution(&exec_id, fin.status, fin.exit_code, fin.error.as_deref(), now) {
        tracing::error!(execution_id = %exec_id, error = %e, "could not store the result");
    }
    tracing::info!(execution_id = %exec_id, status = %fin.status, exit_code = fin.exit_code, "execution finished");
    let event = CompleteEvent::new(&ex, fin.status, fin.exit_code, fin.error.as_deref(), now, em.seq);
    em.emit(&Event::Complete(event), Duration::from_secs(10)).await;
}

async fn drive_inner(state: &Arc<AppState>, ex: &ExecutionRow, plan: &Plan, em: &mut Emitter) -> Final {
    let fail = |msg: String| Final { status: ExecStatus::Error, exit_code: -1, error: Some(msg) };
    let sb = match state.store.sandbox(&ex.sandbox_id) {
        Ok(Some(sb)) => sb,
        _ => return fail(format!("sandbox {} is gone", ex.sandbox_id)),
    };
    let mut client = match state.exec.client(&sb) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut phase = ex.phase;
    let mut command = ex.command_id.clone();
    if phase == Phase::Prepare {
        if let Err(e) = write_files(&mut client, plan, ex.deadline).await {
            if now_ms() >= ex.deadline {
                return Final { status: ExecStatus::Timeout, exit_code: TIMEOUT_EXIT, error: None };
            }
            return fail(format!("could not write the program into sandbox {}: {e}", sb.id));
        }
        phase = if plan.install.is_some() { Phase::Install } else { Phase::Run };
        command = None;
    }
    loop {
        if state.exec.cancelled(&ex.id) {
            return Final { status: ExecStatus::Cancelled, exit_code: CANCEL_EXIT, error: None };
        }
        let cid = match command.take() {
            Some(cid) => cid,
            None => {
                let remaining = ex.deadline - now_ms();
                if remaining <= 0 {
                    return Final { status: ExecStatus::Timeout, exit_code: TIMEOUT_EXIT, error: None };
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
                };
                let started = match client.start(req).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => return fail(format!("agent refused to start the {phase} command: {}", e.message())),
                };
                em.new_command();
                if let Err(e) = state.store.set_command(&ex.id, phase, &started.command_id, em.seq) {
                    tracing::error!(execution_id = %ex.id, error = %e, "could not store the command id");
                }
                started.command_id
            }
        };
        // A cancel that came before the command was known takes effect now.
        if state.exec.set_command(&ex.id, &cid) {
            kill_command(state, &sb.id, &cid).await;
        }
        let end = match follow(&mut client, &cid, phase, em).await {
            Ok(end) => end,
            Err(e) => return fail(e),
        };
        em.flush(phase).await;
        if let Err(e) = state.store.set_offsets(&ex.id, em.seq, em.stored_offsets()) {
            tracing::warn!(execution_id = %ex.id, error = %e, "could not store offsets");
        }
        if state.exec.cancelled(&ex.id) {
            return Final { status: ExecStatus::Cancelled, exit_code: CANCEL_EXIT, error: None };
        }
        if end.output_limit_reached && !em.cut {
            // The agent's count (raw bytes) reached the limit before the server's (text).
            em.cut = true;
            let note = format!("\n[sandstream: output cut: {}]\n", limit_reached(em.limit));
            em.store_and_emit(1, phase, note).await;
        }
        if em.cut {
            return Final { status: ExecStatus::Error, exit_code: end.exit_code, error: Some(limit_reached(em.limit)) };
        }
        match ExitStatus::try_from(end.status).unwrap_or(ExitStatus::Unspecified) {
            ExitStatus::TimedOut => return Final { status: ExecStatus::Timeout, exit_code: TIMEOUT_EXIT, error: None },
            // Killed with its sandbox: at its time to live the agent itself stops every
            // command before it ends the sandbox, so the end can arrive first.
            ExitStatus::Signaled if em.sandbox_killed() => {
                return fail(format!("sandbox {} was killed while the execution ran", sb.id));
            }
            ExitStatus::Failed => return fail(format!("the {phase} command could not start: {}", end.error)),
            _ => {}
        }
        if phase == Phase::Install {
            if end.exit_code != 0 {
                let msg = format!("dependency installation failed with exit code {}", end.exit_code);
                return Final { status: ExecStatus::Error, exit_code: end.exit_code, error: Some(msg) };
            }
            phase = Phase::Run;
            continue;
        }
        let status = if end.exit_code == 0 { ExecStatus::Success } else { ExecStatus::Error };
        return Final { status, exit_code: end.exit_code, error: None };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(channel: OutputChannel, offset: u64, data: &str) -> CommandOutput {
        CommandOutput {
            kind: EventKind::Output as i32,
            channel: channel as i32,
            offset,
            data: data.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    /// Decodes each gRPC frame of the body as the next of the given messages.
    struct Canned(std::collections::VecDeque<CommandOutput>);

    impl tonic::codec::Decoder for Canned {
        type Item = CommandOutput;
        type Error = tonic::Status;
        fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<CommandOutput>, tonic::Status> {
            use bytes::Buf;
            buf.advance(buf.remaining());
            Ok(self.0.pop_front())
        }
    }

    /// A stream whose messages have all arrived already.
    fn arrived(messages: Vec<CommandOutput>) -> tonic::Streaming<CommandOutput> {
        let mut body = Vec::new();
        for _ in &messages {
            body.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
        }
        tonic::Streaming::new_response(
            Canned(messages.into()),
            axum::body::Body::from(body),
            tonic::codegen::http::StatusCode::OK,
            None,
            None,
        )
    }

    async fn first(stream: &mut tonic::Streaming<CommandOutput>) -> CommandOutput {
        stream.message().await.expect("message").expect("not the end")
    }

    #[tokio::test]
    async fn waiting_messages_of_one_channel_merge_in_order() {
        let end = CommandOutput { kind: EventKind::End as i32, end: true, ..Default::default() };
        let keepalive = CommandOutput { kind: EventKind::Keepalive as i32, ..Default::default() };
        let mut stream = arrived(vec![
            out(OutputChannel::Stdout, 0, "a"),
            out(OutputChannel::Stdout, 1, "bc"),
            keepalive,
            // Resent around a reconnect: only "d" is new.
            out(OutputChannel::Stdout, 2, "cd"),
            out(OutputChannel::Stderr, 0, "x"),
            out(OutputChannel::Stdout, 4, "e"),
            end,
        ]);
        let m = first(&mut stream).await;
        let (merged, next) = merge_waiting(&mut stream, [0, 0], 0, &m.data);
        assert_eq!(merged.as_deref(), Some(&b"abcd"[..]));
        // The other channel ends the merge and is handled next, alone: "e" came after it.
        let x = next.expect("a message was taken").expect("ok").expect("not the end");
        assert_eq!((x.channel, &x.data[..]), (OutputChannel::Stderr as i32, &b"x"[..]));
        let (merged, next) = merge_waiting(&mut stream, [4, 0], 1, &x.data);
        assert_eq!(merged, None);
        let e = next.expect("a message was taken").expect("ok").expect("not the end");
        assert_eq!(&e.data[..], b"e");
        // The end is never merged away.
        let (merged, next) = merge_waiting(&mut stream, [4, 1], 0, &e.data);
        assert_eq!(merged, None);
        assert!(is_end(&next.expect("a message was taken").expect("ok").expect("not the stream's end")));
    }

    #[tokio::test]
    async fn merging_stops_at_the_size_limit() {
        let big = "y".repeat(COALESCE_MAX / 2 - 10);
        let step = big.len() as u64;
        let mut stream = arrived(vec![
            out(OutputChannel::Stdout, 0, &big),
            out(OutputChannel::Stdout, step, &big),
            out(OutputChannel::Stdout, 2 * step, &big),
        ]);
        let m = first(&mut stream).await;
        let (merged, next) = merge_waiting(&mut stream, [0, 0], 0, &m.data);
        assert_eq!(merged.map(|v| v.len()), Some(2 * big.len()));
        let third = next.expect("the third waits for the next chunk").expect("ok").expect("not the end");
        assert_eq!(third.offset, 2 * step);
        // Nothing else comes (the body ends): no merge, and no message.
        let (merged, next) = merge_waiting(&mut stream, [2 * step, 0], 0, &third.data);
        assert!(merged.is_none());
        assert!(!matches!(next, Some(Ok(Some(_)))), "{next:?}");
    }

    #[test]
    fn output_is_kept_up_to_the_limit_and_cut_on_a_character_boundary() {
        // Room for all of it, exactly to the limit: nothing is cut.
        assert_eq!(within_limit("abcd", 6, 10), ("abcd", false));
        assert_eq!(within_limit("", 10, 10), ("", false));
        // Past it: the bytes up to the limit.
        assert_eq!(within_limit("abcdef", 6, 10), ("abcd", true));
        assert_eq!(within_limit("a", 10, 10), ("", true));
        assert_eq!(within_limit("a", 11, 10), ("", true));
        // "é" is two bytes and "€" three: a limit inside one keeps the text before it.
        assert_eq!(within_limit("aé", 8, 10), ("a", true));
        assert_eq!(within_limit("a€b", 7, 10), ("a", true));
        assert_eq!(within_limit("a€b", 6, 10), ("a€", true));
    }

    #[test]
    fn fresh_keeps_only_bytes_not_yet_forwarded() {
        let have = [5, 2];
        // Wholly new, on each channel.
        assert_eq!(fresh(&out(OutputChannel::Stdout, 5, "abc"), &have), Some((0, &b"abc"[..])));
        assert_eq!(fresh(&out(OutputChannel::Stderr, 2, "e"), &have), Some((1, &b"e"[..])));
        // Resent around a reconnect: wholly old, or old then new.
        assert_eq!(fresh(&out(OutputChannel::Stdout, 0, "hello"), &have), None);
        assert_eq!(fresh(&out(OutputChannel::Stdout, 3, "lo world"), &have), Some((0, &b" world"[..])));
        // Not output at all.
        let keepalive = CommandOutput { kind: EventKind::Keepalive as i32, ..Default::default() };
        assert_eq!(fresh(&keepalive, &have), None);
        assert_eq!(fresh(&out(OutputChannel::Stdout, 5, ""), &have), None);
    }
}
