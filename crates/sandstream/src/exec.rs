//! `sandstream exec`: runs one command in a sandbox through its agent's `Execute`
//! (proto/PROTOCOL.md), with stdout and stderr apart and byte-exact, the command's exit
//! code as this process's, signals forwarded, stdin forwarded with `-i`, and a broken
//! stream resumed with `Attach` from the offsets already written.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use sandstream_proto::v1::{CommandOutput, EventKind, ExecuteRequest, OutputEncoding};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};
use tonic::{Code, Streaming};

use crate::follow::{Follow, SILENCE, agent, exit_code, forward_stdin, on_runtime, read_stdin, status_text, transient};
use crate::rest::{ApiFlags, Rest, parse_env};

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
    on_runtime(exec(a))
}

/// The line the agent's shell runs: one argument as it is, several each quoted.
pub(crate) fn command_line(args: &[String]) -> String {
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
    let stdin = a.interactive.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        read_stdin(tx);
        rx
    });
    let mut run = Run::new(Follow::new(client.clone(), a.id), stdin);
    let mut caller = client;
    let call = caller.execute(req);
    tokio::pin!(call);
    let deadline = tokio::time::Instant::now() + SILENCE;
    let answer = loop {
        let out = tokio::select! {
            r = &mut call => break r,
            _ = tokio::time::sleep_until(deadline) => bail!(
                "sandbox {}'s agent did not answer within {} s; the command may have started",
                run.f.sandbox,
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
            bail!("cannot reach sandbox {}'s agent: {}", run.f.sandbox, status_text(&s))
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
    f: Follow,
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
    fn new(f: Follow, stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>) -> Self {
        Run {
            f,
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
        if self.f.started(&m) {
            if let Some(sig) = self.pending.take() {
                self.f.send_signal(sig);
            }
            if let Some(rx) = self.stdin.take() {
                tokio::spawn(forward_stdin(self.f.client.clone(), m.command_id.clone(), rx, false));
            }
        }
        match EventKind::try_from(m.kind) {
            Ok(EventKind::Output) if !m.end => self.write(&m).await,
            Ok(EventKind::Truncated) => self.note(&m.error).await,
            _ => {}
        }
        if m.end || m.kind == i32::from(EventKind::End) {
            let _ = self.out.flush().await;
            let (code, note) = exit_code(&m);
            if let Some(note) = note {
                self.note(&note).await;
            }
            return Some(code);
        }
        None
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
                // As a local pipeline would: the writer learns its reader is gone.
                self.stdout_gone = true;
                self.f.send_signal(SIGPIPE);
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

    /// SIGINT or SIGTERM reached this process: the first goes to the command, a second
    /// (of either) kills it. True when the user wants out without waiting any longer: a
    /// third one, or a second before the command even started (an agent that does not
    /// answer must not hold the terminal).
    fn signal_from_user(&mut self, sig: i32) -> bool {
        self.signals += 1;
        let started = self.f.command_id.is_some();
        if self.signals >= 3 || (self.signals >= 2 && !started) {
            return true;
        }
        let sig = if self.signals == 1 { sig } else { SIGKILL };
        if started {
            self.f.send_signal(sig);
        } else {
            self.pending = Some(sig);
        }
        false
    }

    /// Stops waiting for the command, as a shell's Ctrl-C would end it: 130.
    async fn give_up(&mut self) -> u8 {
        let what = self.f.command_id.as_deref().map_or_else(|| "the command".to_string(), |id| format!("command {id}"));
        self.note(&format!("stopped waiting; {what} may still run in sandbox {}", self.f.sandbox)).await;
        128 + SIGINT as u8
    }

    /// A stream of the command from the offsets already written, after `why` broke the
    /// last one. `None` when the user stopped waiting meanwhile.
    async fn resume(
        &mut self,
        why: &str,
        int: &mut tokio::signal::unix::Signal,
        term: &mut tokio::signal::unix::Signal,
    ) -> anyhow::Result<Option<Streaming<CommandOutput>>> {
        let mut resume = self.f.resume(why)?;
        loop {
            if let Some(stream) = resume.attempt(&self.f).await? {
                return Ok(Some(stream));
            }
            let out = tokio::select! {
                _ = resume.pause() => false,
                _ = int.recv() => self.signal_from_user(SIGINT),
                _ = term.recv() => self.signal_from_user(SIGTERM),
            };
            if out {
                return Ok(None);
            }
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
