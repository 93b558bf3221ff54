//! Following a command: attaching to it from the execution's offsets, merging what
//! already arrived into larger chunks, and attaching again when the stream breaks.

use std::time::Duration;

use sandstream_proto::v1::{AttachRequest, CommandOutput, EventKind, OutputChannel, OutputEncoding};

use super::agents::AgentClient;
use super::{AGENT_GIVE_UP, Emitter, kill};
use crate::state::Phase;

/// Most bytes merged into one chunk from agent messages that had already arrived: the
/// size of a pipe's buffer, which bounds most agent messages anyway, so chunks (and the
/// memory each holds in flight) stay as large as they were without merging.
const COALESCE_MAX: usize = 64 << 10;

fn is_end(m: &CommandOutput) -> bool {
    m.end || m.kind == EventKind::End as i32
}

/// The channel of an output message and its bytes past `have` (the offsets already
/// forwarded: the agent resends around a reconnect); `None` when it brings nothing new.
fn fresh<'m>(m: &'m CommandOutput, have: &[u64; 2]) -> Option<(usize, &'m [u8])> {
    if m.kind != EventKind::Output as i32 || m.data.is_empty() {
        return None;
    }
    let ch = usize::from(m.channel == OutputChannel::Stderr as i32);
    let end = m.offset + m.data.len() as u64;
    if end <= have[ch] {
        return None;
    }
    let skip = have[ch].saturating_sub(m.offset) as usize;
    Some((ch, &m.data[skip..]))
}

/// The stream's next message if it has already arrived; `None` when it would wait.
/// (`Streaming::message` is `poll_next` underneath, so this loses nothing.)
fn ready_message(stream: &mut tonic::Streaming<CommandOutput>) -> Option<Result<Option<CommandOutput>, tonic::Status>> {
    use tokio_stream::Stream;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(stream).poll_next(&mut cx) {
        std::task::Poll::Ready(Some(r)) => Some(r.map(Some)),
        std::task::Poll::Ready(None) => Some(Ok(None)),
        std::task::Poll::Pending => None,
    }
}

/// A message of the agent's stream, as `Streaming::message` returns it.
type Message = Result<Option<CommandOutput>, tonic::Status>;

/// Merges into `first` (new output of channel `ch`, which starts at `have[ch]`) the
/// messages already waiting on `stream` that continue it, up to [`COALESCE_MAX`] bytes.
/// Returns the merged bytes (`None` when nothing joined `first`) and the message that
/// ended the merge, if one was taken off the stream: it is the next to handle.
fn merge_waiting(
    stream: &mut tonic::Streaming<CommandOutput>,
    mut have: [u64; 2],
    ch: usize,
    first: &[u8],
) -> (Option<Vec<u8>>, Option<Message>) {
    let mut len = first.len();
    have[ch] += len as u64;
    let mut merged: Option<Vec<u8>> = None;
    while len < COALESCE_MAX {
        let Some(next) = ready_message(stream) else { break };
        let m = match next {
            Ok(Some(m)) if !is_end(&m) => m,
            other => return (merged, Some(other)),
        };
        if m.kind != EventKind::Output as i32 || m.data.is_empty() {
            continue; // a keepalive
        }
        match fresh(&m, &have) {
            None => {}
            Some((c, more)) if c == ch && len + more.len() <= COALESCE_MAX => {
                merged.get_or_insert_with(|| first.to_vec()).extend_from_slice(more);
                len += more.len();
                have[ch] += more.len() as u64;
            }
            // The other channel, or too much: the next chunk.
            Some(_) => return (merged, Some(Ok(Some(m)))),
        }
    }
    (merged, None)
}

/// Whether a broken Attach is attached again from the stored offsets. A stream breaks
/// in many ways while its command runs on (a dropped or reset connection, an HTTP/2
/// protocol error under a flood, a GOAWAY, a deadline): each is a reason to attach
/// again, never to end the execution. Only answers that say the request itself is wrong
/// (the command is unknown, the token refused, the offsets out of range) end it.
fn reattachable(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::OutOfRange
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unimplemented
    )
}

/// Attaches to a command from the emitter's offsets and forwards its output until it
/// ends; reconnects when the connection drops.
///
/// Messages that arrived while the previous chunk was being stored and emitted, on the
/// same channel, become one chunk (up to [`COALESCE_MAX`]): a server that falls behind
/// stores and emits fewer, larger chunks instead of falling further behind. The bytes
/// and their order are the same either way; a quiet stream still gets a chunk per message.
pub(super) async fn follow(
    client: &mut AgentClient,
    cid: &str,
    phase: Phase,
    em: &mut Emitter,
) -> Result<CommandOutput, String> {
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let req = AttachRequest {
            command_id: cid.to_string(),
            stdout_offset: em.offsets[0],
            stderr_offset: em.offsets[1],
            encoding: OutputEncoding::Bytes as i32,
        };
        let err = match client.attach(req).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                // A message taken while merging that belongs to the next chunk.
                let mut held = None;
                loop {
                    if em.cut && !em.stopped {
                        em.stopped = true;
                        kill(client, cid, "a command past the output limit").await;
                    }
                    let next = match held.take() {
                        Some(n) => n,
                        None => stream.message().await,
                    };
                    match next {
                        Ok(Some(m)) => {
                            failing_since = None;
                            if is_end(&m) {
                                return Ok(m);
                            }
                            let Some((ch, data)) = fresh(&m, &em.offsets) else { continue };
                            if em.cut {
                                // What is left until the stopped program's end is not kept.
                                em.skip(ch, data.len());
                                continue;
                            }
                            let merged;
                            (merged, held) = merge_waiting(&mut stream, em.offsets, ch, data);
                            // Decoded now, so the received buffers are freed before the wait.
                            let text = em.take(ch, merged.as_deref().unwrap_or(data));
                            drop((merged, m));
                            em.push(ch, phase, text).await;
                        }
                        Ok(None) => break tonic::Status::unavailable("stream ended without an end event"),
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        if !reattachable(err.code()) {
            return Err(format!("agent: {}", err.message()));
        }
        // Killed (deleted, past its timeout, its key revoked, or dead): its agent will
        // not come back, so the execution ends now, saying so.
        if em.sandbox_killed() {
            return Err(format!("sandbox {} was killed while the execution ran", em.container_id));
        }
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() > AGENT_GIVE_UP {
            // Nobody follows it any more: it must not run on unseen (and unbounded).
            kill(client, cid, "a command the server lost").await;
            return Err(format!(
                "lost the sandbox's agent for {} s ({}); the command was stopped",
                AGENT_GIVE_UP.as_secs(),
                err.message()
            ));
        }
        tracing::debug!(command_id = cid, error = %err, "agent stream broke; attaching again from the stored offsets");
        tokio::time::sleep(Duration::from_millis(250)).await;
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
