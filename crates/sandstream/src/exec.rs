//! `sandstream exec`: runs one command in a sandbox through its agent's `Execute`
//! (proto/PROTOCOL.md), with stdout and stderr apart and byte-exact, the command's exit
//! code as this process's, signals forwarded, stdin forwarded with `-i`, and a broken
//! stream resumed with `Attach` from the offsets already written.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{
    AttachRequest, CloseStdinRequest, CommandOutput, EventKind, ExecuteRequest, ExitStatus, OutputChannel,
    OutputEncoding, SignalRequest, WriteStdinRequest,
};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::rest::{ApiFlags, Rest, parse_env};

/// This process's exit code when sandstream itself could not run the command, or lost it.
pub(crate) const CANNOT_RUN: u8 = 125;
/// The exit code after `--timeout` (as coreutils' `timeout`).
const TIMED_OUT: u8 = 124;
/// Longest silence on a live stream before it counts as broken: the agent sends a
/// keepalive after 10 s without output.
const SILENCE: Duration = Duration::from_secs(45);
/// How long a broken stream is retried before giving up.
const RESUME_FOR: Duration = Duration::from_secs(60);
const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGPIPE: i32 = 13;
const SIGTERM: i32 = 15;

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// The sandbox's id.
    id: String,
    /// The command. One argument is a shell line (`'echo $HOME | wc -c'`); several are
    /// each quoted for the shell and joined, so they reach the program as they are here.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    command: Vec<String>,
    /// The working directory (default: the user's home).
    #[arg(long, short = 'w', visible_alias = "workdir")]
    cwd: Option<String>,
    /// An environment variable for the command, K=V (repeatable; a bare K takes this
    /// shell's value).
    #[arg(long, short, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Who runs it: `root`, a user name or a uid (default: the sandbox's user).
    #[arg(long, short)]
    user: Option<String>,
    /// Seconds after which the sandbox kills the command's process group (exit code 124).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Forward this process's stdin to the command (it reads end-of-file when this stdin
    /// ends). Without it the command's stdin is empty.
    #[arg(long, short)]
    interactive: bool,
    #[command(flatten)]
    api: ApiFlags,
}

/// `sandstream exec`, on a runtime of its own, as an exit code.
pub(crate) fn main(a: ExecArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandstream: cannot start the runtime: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let code = rt.block_on(async {
        match exec(a).await {
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

/// The line the agent's shell runs: one argument as it is, several each quoted.
fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "),
    }
}

/// `s` as one shell word that means exactly `s`.
fn shell_quote(s: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:,+@%^".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type AgentClient = ExecServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of sandbox `id`'s agent, at the address and with the token the server gives.
async fn agent(rest: &Rest, id: &str) -> anyhow::Result<AgentClient> {
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
fn status_text(s: &Status) -> String {
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
fn transient(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::DeadlineExceeded)
}

async fn exec(a: ExecArgs) -> anyhow::Result<u8> {
    let rest = Rest::new(&a.api)?;
    let client = agent(&rest, &a.id).await?;
    let timeout = match a.timeout {
        Some(secs) => i64::try_from(secs).ok().and_then(|s| s.checked_mul(1000)).context("--timeout is too large")?,
        None => 0,
    };
    let req = ExecuteRequest {
        command: command_line(&a.command),
        cwd: a.cwd.unwrap_or_default(),
        env: a.env.into_iter().collect(),
        timeout,
        encoding: OutputEncoding::Bytes.into(),
        keep_stdin_open: a.interactive,
        user: a.user.unwrap_or_default(),
        ..Default::default()
    };
    // From here Ctrl-C goes to the command, not to this process.
    let mut int = signal(SignalKind::interrupt()).context("catch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("catch SIGTERM")?;
    let stdin = a.interactive.then(read_stdin);
    let mut run = Run::new(client.clone(), a.id, stdin);
    let mut caller = client.clone();
    let call = caller.execute(req);
    tokio::pin!(call);
    let deadline = tokio::time::Instant::now() + SILENCE;
    let answer = loop {
        let out = tokio::select! {
            r = &mut call => break r,
            _ = tokio::time::sleep_until(deadline) => bail!(
                "sandbox {}'s agent did not answer within {} s; the command may have started",
                run.sandbox,
                SILENCE.as_secs()
            ),
            _ = int.recv() => run.signal_from_user(SIGINT),
            _ = term.recv() => run.signal_from_user(SIGTERM),
        };
        if out {
            return Ok(run.give_up().await);
        }
    };
    let mut stream = match answer {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unavailable => {
            bail!("cannot reach sandbox {}'s agent: {}", run.sandbox, status_text(&s))
        }
        Err(s) => bail!("{}", status_text(&s)),
    };
    loop {
        let broken = tokio::select! {
            m = tokio::time::timeout(SILENCE, stream.message()) => match m {
                Ok(Ok(Some(m))) => match run.take(m).await {
                    Some(code) => return Ok(code),
                    None => continue,
                },
                Ok(Ok(None)) => "the stream ended before the command did".to_string(),
                Ok(Err(s)) if transient(&s) => status_text(&s),
                Ok(Err(s)) => bail!("{}", status_text(&s)),
                Err(_) => format!("nothing came for {} s", SILENCE.as_secs()),
            },
            _ = int.recv() => match run.signal_from_user(SIGINT) {
                true => return Ok(run.give_up().await),
                false => continue,
            },
            _ = term.recv() => match run.signal_from_user(SIGTERM) {
                true => return Ok(run.give_up().await),
                false => continue,
            },
        };
        match run.resume(&broken, &mut int, &mut term).await? {
            Some(resumed) => stream = resumed,
            None => return Ok(run.give_up().await),
        }
    }
}

/// What one `exec` has seen of its command.
struct Run {
    client: AgentClient,
    sandbox: String,
    /// From the STARTED event.
    command_id: Option<String>,
    /// The next byte of stdout and of stderr not yet written here.
    next: [u64; 2],
    /// Signals the user sent; the first is forwarded, later ones become SIGKILL.
    signals: u32,
    /// A signal to send once the command's id is known.
    pending: Option<i32>,
    /// This process's stdout is gone (a closed pipe): output for it is dropped.
    stdout_gone: bool,
    /// `-i`: this process's stdin, until it is handed to the forwarder.
    stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    out: tokio::io::Stdout,
    err: tokio::io::Stderr,
}

impl Run {
    fn new(client: AgentClient, sandbox: String, stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>) -> Self {
        Run {
            client,
            sandbox,
            command_id: None,
            next: [0, 0],
            signals: 0,
            pending: None,
            stdout_gone: false,
            stdin,
            out: tokio::io::stdout(),
            err: tokio::io::stderr(),
        }
    }

    /// Handles one message; the exit code once the command ended.
    async fn take(&mut self, m: CommandOutput) -> Option<u8> {
        if self.command_id.is_none() && !m.command_id.is_empty() {
            self.command_id = Some(m.command_id.clone());
            if let Some(sig) = self.pending.take() {
                self.send_signal(sig);
            }
            if let Some(rx) = self.stdin.take() {
                tokio::spawn(forward_stdin(self.client.clone(), m.command_id.clone(), rx));
            }
        }
        match EventKind::try_from(m.kind) {
            Ok(EventKind::Output) if !m.end => self.write(&m).await,
            Ok(EventKind::Truncated) => self.note(&m.error).await,
            _ => {}
        }
        if m.end || m.kind == i32::from(EventKind::End) {
            return Some(self.end(&m).await);
        }
        None
    }

    /// Writes the part of `m`'s bytes not written yet (a resumed stream may repeat some).
    async fn write(&mut self, m: &CommandOutput) {
        let stderr = m.channel == i32::from(OutputChannel::Stderr);
        let next = &mut self.next[usize::from(stderr)];
        let end = m.offset.saturating_add(m.data.len() as u64);
        if end <= *next {
            return;
        }
        let skip = usize::try_from(next.saturating_sub(m.offset)).unwrap_or(0);
        let data = &m.data[skip.min(m.data.len())..];
        *next = end;
        if stderr {
            let _ = self.err.write_all(data).await;
            let _ = self.err.flush().await;
        } else if !self.stdout_gone {
            let wrote = match self.out.write_all(data).await {
                Ok(()) => self.out.flush().await,
                Err(e) => Err(e),
            };
            if wrote.is_err() {
                // As a local pipeline would: the writer learns its reader is gone.
                self.stdout_gone = true;
                self.send_signal(SIGPIPE);
            }
        }
    }

    /// A note of sandstream's own on stderr.
    async fn note(&mut self, text: &str) {
        if !text.is_empty() {
            let _ = self.err.write_all(format!("sandstream: {text}\n").as_bytes()).await;
            let _ = self.err.flush().await;
        }
    }

    /// The exit code of the END message `m`, with a note when the sandbox ended it.
    async fn end(&mut self, m: &CommandOutput) -> u8 {
        let _ = self.out.flush().await;
        let code = match ExitStatus::try_from(m.status) {
            Ok(ExitStatus::Exited | ExitStatus::Signaled) => u8::try_from(m.exit_code).unwrap_or(CANNOT_RUN),
            Ok(ExitStatus::TimedOut) => TIMED_OUT,
            _ => CANNOT_RUN,
        };
        let said =
            m.status == i32::from(ExitStatus::TimedOut) || m.oom_killed || m.output_limit_reached || code == CANNOT_RUN;
        if said {
            let why =
                if m.error.is_empty() { format!("the command ended with {}", m.exit_code) } else { m.error.clone() };
            self.note(&why).await;
        }
        code
    }

    /// SIGINT or SIGTERM reached this process: the first goes to the command, a second
    /// (of either) kills it. True when the user wants out without waiting any longer: a
    /// third one, or a second before the command even started (an agent that does not
    /// answer must not hold the terminal).
    fn signal_from_user(&mut self, sig: i32) -> bool {
        self.signals += 1;
        if self.signals >= 3 || (self.signals >= 2 && self.command_id.is_none()) {
            return true;
        }
        let sig = if self.signals == 1 { sig } else { SIGKILL };
        if self.command_id.is_some() {
            self.send_signal(sig);
        } else {
            self.pending = Some(sig);
        }
        false
    }

    /// Stops waiting for the command, as a shell's Ctrl-C would end it: 130.
    async fn give_up(&mut self) -> u8 {
        let what = self.command_id.as_deref().map_or_else(|| "the command".to_string(), |id| format!("command {id}"));
        self.note(&format!("stopped waiting; {what} may still run in sandbox {}", self.sandbox)).await;
        128 + SIGINT as u8
    }

    /// Sends `sig` to the command's process group, in the background.
    fn send_signal(&self, sig: i32) {
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

    /// A stream of the command from the offsets already written, after `why` broke the
    /// last one; retried for [`RESUME_FOR`] while the agent cannot be reached. `None`
    /// when the user stopped waiting meanwhile.
    async fn resume(
        &mut self,
        why: &str,
        int: &mut tokio::signal::unix::Signal,
        term: &mut tokio::signal::unix::Signal,
    ) -> anyhow::Result<Option<Streaming<CommandOutput>>> {
        let Some(id) = self.command_id.clone() else {
            bail!("lost sandbox {}'s agent before the command started ({why}); it may have run", self.sandbox);
        };
        tracing::debug!(command_id = %id, error = why, "stream broken; resuming");
        let deadline = tokio::time::Instant::now() + RESUME_FOR;
        let mut wait = Duration::from_millis(100);
        loop {
            let req = AttachRequest {
                command_id: id.clone(),
                stdout_offset: self.next[0],
                stderr_offset: self.next[1],
                encoding: OutputEncoding::Bytes.into(),
            };
            let last = match self.client.clone().attach(req).await {
                Ok(r) => return Ok(Some(r.into_inner())),
                Err(s) if transient(&s) => status_text(&s),
                Err(s) => bail!("lost command {id} in sandbox {}: {}", self.sandbox, status_text(&s)),
            };
            if tokio::time::Instant::now() + wait > deadline {
                bail!("lost sandbox {}'s agent ({why}; then {last}); command {id} may still run there", self.sandbox);
            }
            let out = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = int.recv() => self.signal_from_user(SIGINT),
                _ = term.recv() => self.signal_from_user(SIGTERM),
            };
            if out {
                return Ok(None);
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}

/// This process's stdin, read on a thread of its own (a blocked read never holds the
/// exit), in chunks; the channel closes at end-of-file.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
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
    rx
}

/// Writes stdin's chunks to the command in order, then closes its stdin. A write that
/// fails ends the forwarding and closes the command's stdin, so it is not left waiting;
/// a command that stopped reading is not an error.
async fn forward_stdin(mut client: AgentClient, id: String, mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>) {
    while let Some(data) = rx.recv().await {
        match client.write_stdin(WriteStdinRequest { command_id: id.clone(), data: data.into() }).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::FailedPrecondition => return,
            Err(s) => {
                eprintln!("sandstream: stdin: {}", status_text(&s));
                break;
            }
        }
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

    #[test]
    fn several_arguments_reach_the_program_as_they_are() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&args(&["echo $HOME | wc -c"])), "echo $HOME | wc -c");
        assert_eq!(command_line(&args(&["printf", "%s\\n", "a b"])), r"printf '%s\n' 'a b'");
        assert_eq!(command_line(&args(&["echo", "it's", "", "A=b", "~", "-n"])), r"echo 'it'\''s' '' 'A=b' '~' -n");
        assert_eq!(command_line(&args(&["ls", "/tmp/x.y"])), "ls /tmp/x.y");
    }
}
