//! What `exec` and `shell` share to run a command in a sandbox: a client of the sandbox's
//! agent (its address and token from the server's `/connection`), gRPC errors as one
//! line, the output's offsets, resuming a broken stream with `Attach` from them, the
//! command's end as an exit code, and this process's stdin forwarded with `WriteStdin`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{
    AttachRequest, CloseStdinRequest, CommandOutput, ExitStatus, OutputChannel, OutputEncoding, SignalRequest,
    WriteStdinRequest,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::rest::Rest;

/// This process's exit code when sandstream itself could not run the command, or lost it.
pub(crate) const CANNOT_RUN: u8 = 125;
/// The exit code after `--timeout` (as coreutils' `timeout`).
const TIMED_OUT: u8 = 124;
/// Longest silence on a live stream before it counts as broken: the agent sends a
/// keepalive after 10 s without output.
pub(crate) const SILENCE: Duration = Duration::from_secs(45);
/// How long a broken stream is retried before giving up.
const RESUME_FOR: Duration = Duration::from_secs(60);

/// Runs `command` on a runtime of its own: its exit code, or [`CANNOT_RUN`] with its
/// error on stderr.
pub(crate) fn on_runtime(command: impl Future<Output = anyhow::Result<u8>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandstream: cannot start the runtime: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let code = rt.block_on(async {
        match command.await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sandstream: {e:#}");
                CANNOT_RUN
            }
        }
    });
    // A thread still blocked reading stdin must not hold the exit.
    rt.shutdown_background();
    ExitCode::from(code)
}

#[derive(Clone)]
pub(crate) struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) type AgentClient = ExecServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of sandbox `id`'s agent, at the address and with the token the server gives.
pub(crate) async fn agent(rest: &Rest, id: &str) -> anyhow::Result<AgentClient> {
    let conn = rest.json(rest.http.get(rest.sandbox_url(id, &["connection"])?)).await?;
    let (Some(host), Some(port), Some(token)) = (conn["host"].as_str(), conn["port"].as_u64(), conn["token"].as_str())
    else {
        bail!("the server answered without the agent's address: {conn}");
    };
    let address = if host.contains(':') { format!("http://[{host}]:{port}") } else { format!("http://{host}:{port}") };
    let channel = Endpoint::from_shared(address.clone())
        .with_context(|| format!("agent address {address}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        // The agent's frames may be this large (PROTOCOL.md, "Transport").
        .max_frame_size(1 << 20)
        .connect_lazy();
    let bearer = format!("Bearer {token}").parse().context("the sandbox's token is not ASCII")?;
    Ok(ExecServiceClient::with_interceptor(channel, Bearer(bearer)).max_decoding_message_size(16 << 20))
}

/// A gRPC error as one line: the agent's message (it names what was wrong).
pub(crate) fn status_text(s: &Status) -> String {
    let mut text = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_string() };
    // A transport error's message is generic ("tcp connect error"); its causes say more.
    let mut cause = std::error::Error::source(s);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Errors after which the same request may work again: the connection, not the request.
pub(crate) fn transient(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::DeadlineExceeded)
}

/// A command being followed: where it runs, and how much of its output is written here.
pub(crate) struct Follow {
    pub(crate) client: AgentClient,
    pub(crate) sandbox: String,
    /// From the STARTED event.
    pub(crate) command_id: Option<String>,
    /// The next byte of stdout and of stderr not yet written here.
    next: [u64; 2],
}

impl Follow {
    pub(crate) fn new(client: AgentClient, sandbox: String) -> Self {
        Follow { client, sandbox, command_id: None, next: [0, 0] }
    }

    /// Takes the command's id from the first message that has one: true that once.
    pub(crate) fn started(&mut self, m: &CommandOutput) -> bool {
        if self.command_id.is_some() || m.command_id.is_empty() {
            return false;
        }
        self.command_id = Some(m.command_id.clone());
        true
    }

    /// The bytes of output message `m` not written yet (a resumed stream may repeat
    /// some), counted as written, and whether they are stderr's.
    pub(crate) fn fresh<'m>(&mut self, m: &'m CommandOutput) -> (bool, &'m [u8]) {
        let stderr = m.channel == i32::from(OutputChannel::Stderr);
        let next = &mut self.next[usize::from(stderr)];
        let end = m.offset.saturating_add(m.data.len() as u64);
        if end <= *next {
            return (stderr, &[]);
        }
        let skip = usize::try_from(next.saturating_sub(m.offset)).unwrap_or(0);
        *next = end;
        (stderr, &m.data[skip.min(m.data.len())..])
    }

    /// Sends `sig` to the command's process group, in the background.
    pub(crate) fn send_signal(&self, sig: i32) {
        let Some(id) = self.command_id.clone() else { return };
        let mut client = self.client.clone();
        tokio::spawn(async move {
            match client.signal(SignalRequest { command_id: id, signal: sig }).await {
                // It has already exited: its end is on its way.
                Err(s) if s.code() != Code::FailedPrecondition => {
                    eprintln!("sandstream: could not send signal {sig}: {}", status_text(&s));
                }
                _ => {}
            }
        });
    }

    /// Starts resuming the command after `why` broke its stream.
    pub(crate) fn resume(&self, why: &str) -> anyhow::Result<Resume> {
        let Some(id) = self.command_id.clone() else {
            bail!("lost sandbox {}'s agent before the command started ({why}); it may have run", self.sandbox);
        };
        tracing::debug!(command_id = %id, error = why, "stream broken; resuming");
        Ok(Resume {
            id,
            why: why.to_string(),
            deadline: tokio::time::Instant::now() + RESUME_FOR,
            wait: Duration::from_millis(100),
        })
    }
}

/// Attaching again to a command whose stream broke, from the offsets already written:
/// tried until the agent answers, for [`RESUME_FOR`] while it cannot be reached, with
/// waits doubling up to 2 s. The caller waits [`Resume::pause`] between tries, so it can
/// handle its own events meanwhile.
pub(crate) struct Resume {
    id: String,
    why: String,
    deadline: tokio::time::Instant,
    wait: Duration,
}

impl Resume {
    /// One try: the new stream, `None` to try again after [`Self::pause`], or an error
    /// when the agent refuses or the time is up.
    pub(crate) async fn attempt(&mut self, f: &Follow) -> anyhow::Result<Option<Streaming<CommandOutput>>> {
        let req = AttachRequest {
            command_id: self.id.clone(),
            stdout_offset: f.next[0],
            stderr_offset: f.next[1],
            encoding: OutputEncoding::Bytes.into(),
        };
        let last = match f.client.clone().attach(req).await {
            Ok(r) => return Ok(Some(r.into_inner())),
            Err(s) if transient(&s) => status_text(&s),
            Err(s) => bail!("lost command {} in sandbox {}: {}", self.id, f.sandbox, status_text(&s)),
        };
        if tokio::time::Instant::now() + self.wait > self.deadline {
            bail!(
                "lost sandbox {}'s agent ({}; then {last}); command {} may still run there",
                f.sandbox,
                self.why,
                self.id
            );
        }
        Ok(None)
    }

    /// The wait before the next try.
    pub(crate) fn pause(&mut self) -> tokio::time::Sleep {
        let wait = self.wait;
        self.wait = (wait * 2).min(Duration::from_secs(2));
        tokio::time::sleep(wait)
    }
}

/// The exit code the END message `m` gives this process, and a note to print when the
/// sandbox ended the command (a timeout, memory, the output limit) or it did not run.
pub(crate) fn exit_code(m: &CommandOutput) -> (u8, Option<String>) {
    let code = match ExitStatus::try_from(m.status) {
        Ok(ExitStatus::Exited | ExitStatus::Signaled) => u8::try_from(m.exit_code).unwrap_or(CANNOT_RUN),
        Ok(ExitStatus::TimedOut) => TIMED_OUT,
        _ => CANNOT_RUN,
    };
    let said =
        m.status == i32::from(ExitStatus::TimedOut) || m.oom_killed || m.output_limit_reached || code == CANNOT_RUN;
    let note = said
        .then(|| if m.error.is_empty() { format!("the command ended with {}", m.exit_code) } else { m.error.clone() });
    (code, note)
}

/// Reads this process's stdin into `tx` on a thread of its own (a blocked read never
/// holds the exit), in chunks as they come; `tx` is dropped at end-of-file.
pub(crate) fn read_stdin(tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
}

/// Writes `rx`'s chunks to command `id`'s stdin in order. For a pipe (`terminal`
/// false) a write that fails ends the forwarding, and the end of the chunks or a failure
/// closes the command's stdin, so it is not left waiting. For a terminal the input is
/// never closed (its end is a typed ^D), and a write that failed on the connection is
/// tried again until the agent answers or [`RESUME_FOR`] passes, so keys typed while the
/// connection is re-made arrive; `WriteStdin` has no offset to make that exact, so a key
/// sent just as a connection broke may, rarely, arrive twice. A command that stopped
/// reading is not an error.
pub(crate) async fn forward_stdin(
    mut client: AgentClient,
    id: String,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    terminal: bool,
) {
    'chunks: while let Some(data) = rx.recv().await {
        let data = bytes::Bytes::from(data);
        let deadline = tokio::time::Instant::now() + RESUME_FOR;
        loop {
            match client.write_stdin(WriteStdinRequest { command_id: id.clone(), data: data.clone() }).await {
                Ok(_) => continue 'chunks,
                Err(s) if s.code() == Code::FailedPrecondition => return,
                Err(s) if terminal && transient(&s) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => {
                    eprintln!("sandstream: stdin: {}", status_text(&s));
                    break 'chunks;
                }
            }
        }
    }
    if terminal {
        return;
    }
    for _ in 0..20 {
        match client.close_stdin(CloseStdinRequest { command_id: id.clone() }).await {
            Err(s) if transient(&s) => tokio::time::sleep(Duration::from_millis(500)).await,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(channel: OutputChannel, offset: u64, data: &'static [u8]) -> CommandOutput {
        CommandOutput { channel: channel.into(), offset, data: bytes::Bytes::from_static(data), ..Default::default() }
    }

    #[tokio::test]
    async fn a_resumed_stream_writes_each_byte_once_per_stream() {
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let client = ExecServiceClient::with_interceptor(channel, Bearer("Bearer k".parse().expect("ascii")));
        let mut f = Follow::new(client, "sb-1".into());
        assert_eq!(f.fresh(&output(OutputChannel::Stdout, 0, b"abc")), (false, &b"abc"[..]));
        // Repeated in part after a resume, then wholly, then past what was written.
        assert_eq!(f.fresh(&output(OutputChannel::Stdout, 1, b"bcde")), (false, &b"de"[..]));
        assert_eq!(f.fresh(&output(OutputChannel::Stdout, 0, b"abcde")), (false, &b""[..]));
        assert_eq!(f.fresh(&output(OutputChannel::Stderr, 0, b"x")), (true, &b"x"[..]));
        assert_eq!(f.fresh(&output(OutputChannel::Stdout, 5, b"f")), (false, &b"f"[..]));
        assert!(f.resume("cut").is_err(), "no command to resume before it started");
    }
}
