//! Turns a command's spool into the `CommandOutput` messages a client receives, in
//! either encoding, with keepalives on silence.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sandstream_proto::v1::{CommandOutput, EventKind, ExitStatus, OutputChannel, OutputEncoding};
use tokio_stream::Stream;

use crate::command::Command;
use crate::exit::{ExitInfo, Termination};
use crate::output_log::{Channel, Next, Totals};
use sandstream_proto::utf8::Utf8Carry;

/// A stream of messages, as tonic wants it.
pub(crate) type OutputStream = Pin<Box<dyn Stream<Item = Result<CommandOutput, tonic::Status>> + Send + 'static>>;

fn channel(c: Channel) -> i32 {
    match c {
        Channel::Stdout => OutputChannel::Stdout as i32,
        Channel::Stderr => OutputChannel::Stderr as i32,
    }
}

pub(crate) fn started(command: &Command) -> CommandOutput {
    CommandOutput {
        command_id: command.id.clone(),
        kind: EventKind::Started as i32,
        pid: command.pid,
        ..Default::default()
    }
}

pub(crate) fn ended(command: &Command, exit: &ExitInfo, totals: Totals) -> CommandOutput {
    let status = match exit.termination {
        Termination::Exited(_) => ExitStatus::Exited,
        Termination::Signaled(_) => ExitStatus::Signaled,
        Termination::TimedOut { .. } => ExitStatus::TimedOut,
        Termination::Failed(_) => ExitStatus::Failed,
    };
    let mut error = exit.message();
    let cut = command.log.cut();
    if let Some((reason, dropped)) = &cut {
        let note = format!("output cut: {reason}; {dropped} later bytes were dropped");
        error = if error.is_empty() { note } else { format!("{error}; {note}") };
    }
    CommandOutput {
        command_id: command.id.clone(),
        kind: EventKind::End as i32,
        end: true,
        exit_code: exit.exit_code(),
        status: status as i32,
        signal: exit.signal(),
        error,
        stdout_bytes: totals.stdout,
        stderr_bytes: totals.stderr,
        truncated: cut.is_some(),
        pid: command.pid,
        oom_killed: exit.oom_killed,
        output_limit_reached: exit.output_limit_reached,
        ..Default::default()
    }
}

pub(crate) fn keepalive(command_id: &str) -> CommandOutput {
    CommandOutput { command_id: command_id.to_string(), kind: EventKind::Keepalive as i32, ..Default::default() }
}

/// The output of `command` from the given offsets to its end.
pub(crate) fn command_stream(
    command: Arc<Command>,
    stdout_from: u64,
    stderr_from: u64,
    encoding: OutputEncoding,
    keepalive_every: Duration,
) -> OutputStream {
    let bytes = encoding == OutputEncoding::Bytes;
    Box::pin(async_stream::stream! {
        if bytes {
            yield Ok(started(&command));
        }
        let mut cursor = command.log.cursor(stdout_from, stderr_from);
        let mut carry = [Utf8Carry::default(), Utf8Carry::default()];
        loop {
            let next = match cursor.next(keepalive_every).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(command_id = %command.id, error = %e, "spool read failed");
                    yield Err(tonic::Status::internal(format!("reading the output of command {} failed", command.id)));
                    return;
                }
            };
            match next {
                Next::Chunk { channel: ch, offset, data } => {
                    if bytes {
                        yield Ok(CommandOutput {
                            command_id: command.id.clone(),
                            channel: channel(ch),
                            offset,
                            data,
                            ..Default::default()
                        });
                    } else {
                        let c = &mut carry[ch as usize];
                        let text_offset = offset - c.carried() as u64;
                        let line = c.decode(&data);
                        if !line.is_empty() {
                            yield Ok(CommandOutput {
                                command_id: command.id.clone(),
                                channel: channel(ch),
                                offset: text_offset,
                                line,
                                ..Default::default()
                            });
                        }
                    }
                }
                Next::Cut { reason, dropped } => {
                    let note = format!("output cut: {reason}; {dropped} later bytes were dropped");
                    if bytes {
                        yield Ok(CommandOutput {
                            command_id: command.id.clone(),
                            kind: EventKind::Truncated as i32,
                            truncated: true,
                            error: note,
                            ..Default::default()
                        });
                    } else {
                        // A seed client has only `line`: the marker is text on stderr.
                        yield Ok(CommandOutput {
                            command_id: command.id.clone(),
                            channel: OutputChannel::Stderr as i32,
                            line: format!("\n[sandstream: {note}]\n"),
                            truncated: true,
                            ..Default::default()
                        });
                    }
                }
                Next::Idle => {
                    if bytes {
                        yield Ok(keepalive(&command.id));
                    }
                }
                Next::End { exit, totals } => {
                    if !bytes {
                        for ch in [Channel::Stdout, Channel::Stderr] {
                            let c = &mut carry[ch as usize];
                            let offset = match ch { Channel::Stdout => totals.stdout, Channel::Stderr => totals.stderr } - c.carried() as u64;
                            let line = c.flush();
                            if !line.is_empty() {
                                yield Ok(CommandOutput { command_id: command.id.clone(), channel: channel(ch), offset, line, ..Default::default() });
                            }
                        }
                    }
                    yield Ok(ended(&command, &exit, totals));
                    return;
                }
            }
        }
    })
}
