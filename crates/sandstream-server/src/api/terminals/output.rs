//! `GET /api/v1/sandboxes/{id}/terminals/{tid}/output?offset=N`: a terminal's output
//! from byte `offset` on, as server-sent events (`EventSource` sends the page's session
//! cookie). The agent's `Attach` from that offset is the source: what the terminal
//! printed before comes first, then live output, each byte once, in order.
//!
//! Each `output` event carries `{"offset", "data"}`: the bytes (base64) and the offset
//! of their first byte; its SSE `id` is the offset after them, so an `EventSource` that
//! reconnects by itself sends it back as `Last-Event-ID` and resumes exactly there (the
//! header wins over `offset`). When the shell exits a last event `exit` says how
//! (`{"exitCode", "status", "signal", "error"}`); when the connection to the agent
//! breaks first, a last event `end` (`{"reason", "message"}`) says so, and the client
//! connects again from the offset it reached. Comments keep the connection alive.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use base64::Engine as _;
use sandstream_proto::v1::{AttachRequest, CommandOutput, EventKind, ExitStatus, OutputChannel, OutputEncoding};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;

use super::{TerminalPath, agent, terminal_error};
use crate::api::AppState;
use crate::api::files::agent_error::from_status;
use crate::api::files::sse::{Step, forward, json_event};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::store::Principal;

/// `?offset=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OutputQuery {
    /// How many of the terminal's output bytes the client already has (0 when absent:
    /// everything it printed). A `Last-Event-ID` header, when present, wins.
    offset: Option<u64>,
}

/// The data of an `output` event.
#[derive(Debug, Serialize)]
struct Chunk {
    /// Where `data` starts in the terminal's output.
    offset: u64,
    /// The bytes, base64 (standard alphabet, padded).
    data: String,
}

/// The data of the `exit` event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Exit {
    exit_code: i32,
    /// `exited`, `signaled`, `timed_out` or `failed` (the agent lost the shell).
    status: &'static str,
    /// The signal that ended it (`signaled`), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The offset to start from: `Last-Event-ID` (an `EventSource` resuming), else `offset`.
fn start_offset(headers: &HeaderMap, q: Option<u64>) -> AppResult<u64> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| AppError::BadRequest("Last-Event-ID must be a byte offset (a whole number)".into())),
        None => Ok(q.unwrap_or(0)),
    }
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/terminals/{tid}/output", operation_id = "terminalOutput",
    tag = "terminals", params(TerminalPath, OutputQuery),
    responses(
        (status = 200, description = "Server-sent events: `output` (data: `{\"offset\", \"data\"}`, bytes in base64; the event's `id` is the offset after them), then `exit` (data: `{\"exitCode\", \"status\", \"signal\", \"error\"}`) when the shell ended, or `end` (data: `{\"reason\", \"message\"}`) when the stream broke first; comments keep the connection alive", content_type = "text/event-stream", body = String),
        (status = 400, description = "An `offset` or `Last-Event-ID` that is not a number", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such terminal", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 416, description = "`offset` is past what the terminal has printed", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
        (status = 503, description = "The sandbox has 32 output streams open, the most it may", body = ErrorBody),
    ))]
pub(crate) async fn output(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(TerminalPath { id, tid }): Path<TerminalPath>,
    q: Result<Query<OutputQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<impl IntoResponse> {
    let mut client = agent(&state, &p, &id)?;
    let q = q.map(|Query(q)| q).map_err(|e| AppError::BadRequest(format!("query: {}", e.body_text())))?;
    let offset = start_offset(&headers, q.offset)?;
    let counted = state.terminals.stream(&id)?;
    // Only terminals: a command on pipes is not followed here.
    let listed = client.list(sandstream_proto::v1::ListRequest {}).await.map_err(|s| from_status(&id, &s))?;
    if !listed.into_inner().commands.iter().any(|c| c.command_id == tid && c.pty.is_some()) {
        return Err(AppError::NotFound(format!("no terminal {tid} in sandbox {id}")));
    }
    let req = AttachRequest {
        command_id: tid.clone(),
        stdout_offset: offset,
        stderr_offset: 0,
        encoding: OutputEncoding::Bytes as i32,
    };
    let stream = client.attach(req).await.map_err(|s| terminal_error(&id, &tid, &s))?.into_inner();
    Ok(Sse::new(events(id, offset, stream, counted)))
}

/// What one agent message becomes: an event to send (and the offset after it), or nothing.
fn event(m: &CommandOutput, have: &mut u64) -> Option<Event> {
    if m.end || m.kind == EventKind::End as i32 {
        let status = match ExitStatus::try_from(m.status).unwrap_or(ExitStatus::Unspecified) {
            ExitStatus::Signaled => "signaled",
            ExitStatus::TimedOut => "timed_out",
            ExitStatus::Failed => "failed",
            _ => "exited",
        };
        let exit = Exit {
            exit_code: m.exit_code,
            status,
            signal: (status == "signaled").then_some(m.signal),
            error: (!m.error.is_empty()).then(|| m.error.clone()),
        };
        return Some(json_event("exit", &exit));
    }
    if m.kind == EventKind::Keepalive as i32 {
        return Some(Event::default().comment("keepalive"));
    }
    if m.kind != EventKind::Output as i32 || m.channel != OutputChannel::Stdout as i32 || m.data.is_empty() {
        return None;
    }
    // Bytes before `have` were sent already (or the client had them): skip them.
    let end = m.offset.saturating_add(m.data.len() as u64);
    if end <= *have {
        return None;
    }
    let skip = usize::try_from(have.saturating_sub(m.offset)).unwrap_or(usize::MAX).min(m.data.len());
    let start = m.offset.max(*have);
    *have = end;
    let data = base64::engine::general_purpose::STANDARD.encode(&m.data[skip..]);
    Some(json_event("output", &Chunk { offset: start, data }).id(end.to_string()))
}

/// The agent's messages as events, ending with `exit` or `end` (`sse.rs`); the stream is
/// counted out when the forwarding ends.
fn events(
    id: String,
    mut have: u64,
    stream: tonic::Streaming<CommandOutput>,
    counted: crate::terminal_bounds::Stream,
) -> ReceiverStream<Result<Event, Infallible>> {
    let step = move |m: &CommandOutput| {
        let last = m.end || m.kind == EventKind::End as i32;
        match event(m, &mut have) {
            Some(e) if last => Step::Last(e),
            e => Step::Send(e),
        }
    };
    forward(id, stream, "the agent ended the stream", step, counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(offset: u64, data: &[u8]) -> CommandOutput {
        CommandOutput { kind: EventKind::Output as i32, offset, data: data.to_vec().into(), ..Default::default() }
    }

    fn wire(e: Option<Event>) -> Option<String> {
        e.map(|e: Event| {
            let body = Sse::new(tokio_stream::once(Ok::<_, Infallible>(e))).into_response().into_body();
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let bytes = rt.block_on(axum::body::to_bytes(body, 1 << 16)).expect("body");
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        })
    }

    #[test]
    fn output_is_sent_once_with_its_offsets() {
        let mut have = 3;
        // Bytes the client has are skipped, the rest is sent with where it starts.
        assert_eq!(
            wire(event(&out(0, b"abc\r\n"), &mut have)).as_deref(),
            Some("event: output\ndata: {\"offset\":3,\"data\":\"DQo=\"}\nid: 5\n\n")
        );
        assert_eq!(have, 5);
        assert_eq!(wire(event(&out(2, b"c\r\n"), &mut have)), None);
        assert_eq!(wire(event(&out(5, b"$ "), &mut have)).as_deref().map(|s| s.contains("id: 7")), Some(true));
        let keepalive = CommandOutput { kind: EventKind::Keepalive as i32, ..Default::default() };
        assert_eq!(wire(event(&keepalive, &mut have)).as_deref(), Some(": keepalive\n\n"));
        let end = CommandOutput {
            kind: EventKind::End as i32,
            end: true,
            exit_code: 130,
            status: ExitStatus::Signaled as i32,
            signal: 2,
            ..Default::default()
        };
        assert_eq!(
            wire(event(&end, &mut have)).as_deref(),
            Some("event: exit\ndata: {\"exitCode\":130,\"status\":\"signaled\",\"signal\":2}\n\n")
        );
    }

    #[test]
    fn last_event_id_wins_over_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(start_offset(&h, Some(4)).expect("query"), 4);
        assert_eq!(start_offset(&h, None).expect("none"), 0);
        h.insert("last-event-id", "17".parse().expect("header"));
        assert_eq!(start_offset(&h, Some(4)).expect("header"), 17);
        h.insert("last-event-id", "x".parse().expect("header"));
        assert_eq!(start_offset(&h, Some(4)).expect_err("not a number").parts().0, 400);
    }
}
