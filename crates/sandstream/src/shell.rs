//! `sandstream shell`: an interactive terminal in a sandbox. The agent runs the user's
//! login shell (or a command) on a pseudo-terminal of this terminal's size
//! (`ExecuteRequest.pty`, proto/PROTOCOL.md); this terminal goes into raw mode so every
//! key reaches it as bytes, its output is written here unchanged, SIGWINCH becomes
//! `ResizePty`, a broken stream is resumed with `Attach`, and this process exits with
//! the shell's exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sandstream_proto::v1::{
    CommandOutput, EventKind, ExecuteRequest, OutputEncoding, PtySize, ResizePtyRequest, SignalRequest,
};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tonic::Code;

use crate::exec::command_line;
use crate::follow::{
    AgentClient, Follow, SILENCE, agent, exit_code, forward_stdin, on_runtime, read_stdin, status_text, transient,
};
use crate::rest::{ApiFlags, Rest, parse_env};
use crate::term::{self, RawMode};

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;
const SIGWINCH: i32 = 28;
/// What Ctrl-C types.
const CTRL_C: u8 = 0x03;

#[derive(Args)]
pub(crate) struct ShellArgs {
    /// The sandbox's id.
    id: String,
    /// A command to run on the terminal instead of the login shell, as `exec` takes it:
    /// one argument is a shell line, several are each quoted for the shell.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    command: Vec<String>,
    /// The working directory (default: the user's home).
    #[arg(long, short = 'w', visible_alias = "workdir")]
    cwd: Option<String>,
    /// An environment variable, K=V (repeatable; a bare K takes this shell's value).
    /// TERM is this terminal's unless given here.
    #[arg(long, short, value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Who the shell runs as: `root`, a user name or a uid (default: the sandbox's user).
    #[arg(long, short)]
    user: Option<String>,
    #[command(flatten)]
    api: ApiFlags,
}

/// `sandstream shell`, on a runtime of its own, as an exit code.
pub(crate) fn main(a: ShellArgs) -> ExitCode {
    on_runtime(shell(a))
}

/// The signals this process handles while the shell runs.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
    winch: Signal,
}

impl Signals {
    fn catch() -> anyhow::Result<Self> {
        let catch = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("catch {name}"));
        Ok(Signals {
            int: catch(SignalKind::interrupt(), "SIGINT")?,
            term: catch(SignalKind::terminate(), "SIGTERM")?,
            hup: catch(SignalKind::hangup(), "SIGHUP")?,
            quit: catch(SignalKind::quit(), "SIGQUIT")?,
            winch: catch(SignalKind::window_change(), "SIGWINCH")?,
        })
    }

    /// The number of the next signal that arrives.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            Some(()) = self.int.recv() => SIGINT,
            Some(()) = self.term.recv() => SIGTERM,
            Some(()) = self.hup.recv() => SIGHUP,
            Some(()) = self.quit.recv() => SIGQUIT,
            Some(()) = self.winch.recv() => SIGWINCH,
            else => std::future::pending().await,
        }
    }
}

async fn shell(a: ShellArgs) -> anyhow::Result<u8> {
    let rest = Rest::new(&a.api)?;
    let client = agent(&rest, &a.id).await?;
    let mut env: std::collections::HashMap<String, String> = a.env.into_iter().collect();
    if let Some(t) = std::env::var("TERM").ok().filter(|t| !t.is_empty()) {
        env.entry("TERM".to_string()).or_insert(t);
    }
    let size = term::size();
    let req = ExecuteRequest {
        command: if a.command.is_empty() { String::new() } else { command_line(&a.command) },
        cwd: a.cwd.unwrap_or_default(),
        env,
        encoding: OutputEncoding::Bytes.into(),
        user: a.user.unwrap_or_default(),
        pty: Some(size),
        ..Default::default()
    };
    let mut signals = Signals::catch()?;
    let mut s = Session::new(Follow::new(client.clone(), a.id), size);
    let mut caller = client;
    let call = caller.execute(req);
    tokio::pin!(call);
    let deadline = tokio::time::Instant::now() + SILENCE;
    let answer = loop {
        tokio::select! {
            r = &mut call => break r,
            _ = tokio::time::sleep_until(deadline) => bail!(
                "sandbox {}'s agent did not answer within {} s; the shell may have started",
                s.f.sandbox,
                SILENCE.as_secs()
            ),
            n = signals.next() => if let Some(code) = s.on_signal(n).await {
                return Ok(code);
            },
        }
    };
    let mut stream = match answer {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == Code::Unavailable => {
            bail!("cannot reach sandbox {}'s agent: {}", s.f.sandbox, status_text(&e))
        }
        Err(e) => bail!("{}", status_text(&e)),
    };
    loop {
        let broken = tokio::select! {
            m = tokio::time::timeout(SILENCE, stream.message()) => match m {
                Ok(Ok(Some(m))) => match s.take(m).await? {
                    Some(code) => return Ok(code),
                    None => continue,
                },
                Ok(Ok(None)) => "the stream ended before the shell did".to_string(),
                Ok(Err(e)) if transient(&e) => status_text(&e),
                Ok(Err(e)) => bail!("{}", status_text(&e)),
                Err(_) => format!("nothing came for {} s", SILENCE.as_secs()),
            },
            n = signals.next() => match s.on_signal(n).await {
                Some(code) => return Ok(code),
                None => continue,
            },
        };
        let mut resume = s.f.resume(&broken)?;
        stream = loop {
            if let Some(resumed) = resume.attempt(&s.f).await? {
                break resumed;
            }
            tokio::select! {
                _ = resume.pause() => {}
                n = signals.next() => if let Some(code) = s.on_signal(n).await {
                    return Ok(code);
                },
            }
        };
    }
}

/// One shell: what has been written of it, and this terminal's state.
struct Session {
    f: Follow,
    /// Stdin's terminal in raw mode while the shell runs; dropping it restores it.
    raw: Option<RawMode>,
    /// The shell's input: stdin's chunks and Ctrl-C for SIGINT, in order; from its start.
    input: Option<mpsc::Sender<Vec<u8>>>,
    /// The terminal's size; the resizer sends each change to the agent.
    size: watch::Sender<PtySize>,
    /// This process's stdout is gone: output is dropped and the shell hung up.
    stdout_gone: bool,
    out: tokio::io::Stdout,
    err: tokio::io::Stderr,
}

impl Session {
    fn new(f: Follow, size: PtySize) -> Self {
        Session {
            f,
            raw: None,
            input: None,
            size: watch::channel(size).0,
            stdout_gone: false,
            out: tokio::io::stdout(),
            err: tokio::io::stderr(),
        }
    }

    /// Handles one message; the exit code once the shell ended.
    async fn take(&mut self, m: CommandOutput) -> anyhow::Result<Option<u8>> {
        if self.f.started(&m) {
            self.begin(&m.command_id)?;
        }
        match EventKind::try_from(m.kind) {
            Ok(EventKind::Output) if !m.end => self.write(&m).await,
            Ok(EventKind::Truncated) => self.note(&m.error).await,
            _ => {}
        }
        if m.end || m.kind == i32::from(EventKind::End) {
            let _ = self.out.flush().await;
            self.raw = None;
            let (code, note) = exit_code(&m);
            if let Some(note) = note {
                self.note(&note).await;
            }
            return Ok(Some(code));
        }
        Ok(None)
    }

    /// The shell started as command `id`: raw mode, and input and resizes flow to it.
    fn begin(&mut self, id: &str) -> anyhow::Result<()> {
        match RawMode::enter() {
            Ok(raw) => self.raw = raw,
            Err(e) => {
                self.f.send_signal(SIGHUP);
                return Err(e.context("put this terminal in raw mode"));
            }
        }
        let (tx, rx) = mpsc::channel(4);
        read_stdin(tx.clone());
        self.input = Some(tx);
        tokio::spawn(forward_stdin(self.f.client.clone(), id.to_string(), rx, true));
        tokio::spawn(resize(self.f.client.clone(), id.to_string(), self.size.subscribe()));
        Ok(())
    }

    /// Writes the part of `m`'s bytes not written yet.
    async fn write(&mut self, m: &CommandOutput) {
        let (stderr, data) = self.f.fresh(m);
        if stderr {
            let _ = self.err.write_all(data).await;
            let _ = self.err.flush().await;
        } else if !self.stdout_gone {
            let wrote = match self.out.write_all(data).await {
                Ok(()) => self.out.flush().await,
                Err(e) => Err(e),
            };
            if wrote.is_err() {
                // The terminal is gone: hang up, as closing a terminal window does.
                self.stdout_gone = true;
                self.f.send_signal(SIGHUP);
            }
        }
    }

    /// A note of sandstream's own on stderr, on a line of its own in raw mode too.
    async fn note(&mut self, text: &str) {
        if !text.is_empty() {
            let end = if self.raw.is_some() { "\r\n" } else { "\n" };
            let _ = self.err.write_all(format!("sandstream: {text}{end}").as_bytes()).await;
            let _ = self.err.flush().await;
        }
    }

    /// Signal `n` reached this process; the exit code when it ends the session. A
    /// resize goes to the shell; SIGINT (Ctrl-C of a terminal not in raw mode) is typed
    /// as Ctrl-C; SIGTERM, SIGHUP and SIGQUIT hang the shell up and end the session.
    /// Before the shell started, any but a resize stops waiting for it.
    async fn on_signal(&mut self, n: i32) -> Option<u8> {
        if n == SIGWINCH {
            let now = term::size();
            self.size.send_if_modified(|size| std::mem::replace(size, now) != now);
            return None;
        }
        let Some(id) = self.f.command_id.clone() else {
            self.note(&format!("stopped waiting; the shell may still start in sandbox {}", self.f.sandbox)).await;
            return Some(128 + n as u8);
        };
        if n == SIGINT {
            if let Some(input) = self.input.clone() {
                tokio::spawn(async move { input.send(vec![CTRL_C]).await });
            }
            return None;
        }
        let mut client = self.f.client.clone();
        let hang_up = client.signal(SignalRequest { command_id: id, signal: SIGHUP });
        let _ = tokio::time::timeout(Duration::from_secs(5), hang_up).await;
        self.raw = None;
        Some(128 + n as u8)
    }
}

/// Sends each new size of `size` to command `id`'s terminal, the latest first: sizes
/// that changed meanwhile are skipped. Ends with the command.
async fn resize(mut client: AgentClient, id: String, mut size: watch::Receiver<PtySize>) {
    while size.changed().await.is_ok() {
        let now = *size.borrow_and_update();
        loop {
            match client.resize_pty(ResizePtyRequest { command_id: id.clone(), size: Some(now) }).await {
                Ok(_) => break,
                Err(s) if s.code() == Code::FailedPrecondition || s.code() == Code::NotFound => return,
                Err(s) if transient(&s) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if size.has_changed().unwrap_or(true) {
                        break;
                    }
                }
                Err(s) => {
                    tracing::warn!(error = %status_text(&s), "cannot resize the terminal");
                    break;
                }
            }
        }
    }
}
