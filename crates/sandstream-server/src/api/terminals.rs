//! `/api/v1/sandboxes/{id}/terminals…`: interactive terminals for clients without gRPC
//! (the playground's Terminal tab). A terminal is a command the agent runs on a
//! pseudo-terminal (protocol v1.4, `ExecuteRequest.pty`): by default the user's login
//! shell. **The agent keeps everything**: the terminal's id is the agent's command id,
//! its output is the command's one output stream, kept and numbered in bytes by the
//! agent, so the server holds no state of its own and a client that reloads (or a
//! server that restarts) picks the output up again from any byte offset
//! (`output.rs`, server-sent events). Input and resizes are plain POSTs, each handed to
//! the agent in the order it arrives.
//!
//! Bounds: at most [`MAX_TERMINALS`] running terminals per sandbox (opened one at a
//! time, `terminal_bounds.rs`), at most [`MAX_STREAMS`] output streams followed per
//! sandbox, at most [`MAX_INPUT_BYTES`] of input per request, each side of a size
//! between 1 and [`MAX_SIDE`]. Another key's sandbox is a 404 on every route, as for
//! files.

pub(crate) mod output;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_proto::v1::{
    ExecuteRequest, ListRequest, OutputEncoding, PtySize, ResizePtyRequest, SignalRequest, WriteStdinRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::files::agent_error::{from_status, unavailable};
use super::sandboxes::owned;
use crate::error::{AppError, AppJson, AppResult, ErrorBody};
use crate::exec::AgentClient;
use crate::state::SandboxState;
use crate::store::Principal;
#[cfg(doc)]
use crate::terminal_bounds::MAX_STREAMS;

/// Most terminals running at once in one sandbox (counted from the agent's list, so
/// terminals opened through the SDK count too).
pub(crate) const MAX_TERMINALS: usize = 8;
/// Most bytes of input one request carries (a paste larger than this is sent in parts).
pub(crate) const MAX_INPUT_BYTES: usize = 64 << 10;
/// The largest side of a terminal, in character cells (the agent's bound).
pub(crate) const MAX_SIDE: u32 = 10_000;

/// `{id}` and `{tid}` in a terminal's path.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TerminalPath {
    /// The sandbox's id.
    id: String,
    /// The terminal's id, as `POST …/terminals` answered it.
    tid: String,
}

/// `POST …/terminals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenBody {
    /// Columns, 1 to 10,000.
    cols: u64,
    /// Rows, 1 to 10,000.
    rows: u64,
    /// Who the shell runs as: `root`, a name from the sandbox's `/etc/passwd` or a uid
    /// (the sandbox's default user, `user`, when absent).
    user: Option<String>,
    /// Working directory (the user's home when absent).
    cwd: Option<String>,
}

/// A terminal, as opened.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Terminal {
    /// Names the terminal in its other routes (the agent's command id).
    id: String,
    /// The shell's process id in the sandbox.
    pid: u32,
    cols: u32,
    rows: u32,
}

/// `POST …/terminals/{tid}/input`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputBody {
    /// What is typed, as text (sent as UTF-8; `"\r"` is Enter, `"\u0003"` Ctrl-C); at
    /// most 65,536 bytes.
    data: String,
}

/// `POST …/terminals/{tid}/resize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SizeBody {
    /// Columns, 1 to 10,000.
    cols: u64,
    /// Rows, 1 to 10,000.
    rows: u64,
}

/// A size the agent takes, or a 400 naming the bound.
fn size(cols: u64, rows: u64) -> AppResult<PtySize> {
    let side = |v: u64| u32::try_from(v).ok().filter(|v| (1..=MAX_SIDE).contains(v));
    match (side(cols), side(rows)) {
        (Some(cols), Some(rows)) => Ok(PtySize { cols, rows }),
        _ => {
            Err(AppError::BadRequest(format!("cols and rows must each be between 1 and {MAX_SIDE}, got {cols}x{rows}")))
        }
    }
}

/// The `ExecService` of the caller's running sandbox `id`: 404 for another key's or a
/// missing sandbox, 409 when it is not running.
pub(crate) fn agent(state: &AppState, p: &Principal, id: &str) -> AppResult<AgentClient> {
    let sb = owned(state, p, id)?;
    if sb.state != SandboxState::Running {
        return Err(AppError::Conflict(format!("sandbox {id} is {}", sb.state)));
    }
    state.agents.client(&sb).map_err(|e| unavailable(id, e))
}

/// The answer for a call about terminal `tid` that the agent refused with `s`.
pub(crate) fn terminal_error(id: &str, tid: &str, s: &tonic::Status) -> AppError {
    match s.code() {
        // An unknown id, or a command of the sandbox that is not a terminal.
        tonic::Code::NotFound => AppError::NotFound(format!("no terminal {tid} in sandbox {id}")),
        tonic::Code::FailedPrecondition if s.message().contains("does not run on a terminal") => {
            AppError::NotFound(format!("no terminal {tid} in sandbox {id}"))
        }
        // Its shell exited: its input is closed, its terminal hung up.
        tonic::Code::FailedPrecondition => {
            tracing::debug!(sandbox_id = %id, terminal = %tid, error = %s.message(), "terminal has ended");
            AppError::Conflict(format!("terminal {tid} has ended: its shell exited"))
        }
        _ => from_status(id, s),
    }
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/terminals", operation_id = "openTerminal", tag = "terminals",
    params(super::sandboxes::SandboxPath), request_body = OpenBody,
    responses(
        (status = 201, description = "The shell runs; read its output from `…/terminals/{tid}/output`", body = Terminal),
        (status = 400, description = "A size out of range, an unknown user or a missing cwd", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running, or it has 8 terminals running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn open(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    AppJson(body): AppJson<OpenBody>,
) -> AppResult<(StatusCode, Json<Terminal>)> {
    let mut client = agent(&state, &p, &id)?;
    let pty = size(body.cols, body.rows)?;
    let _turn = state.terminals.opening(&id).await;
    let listed = client.list(ListRequest {}).await.map_err(|s| from_status(&id, &s))?.into_inner();
    let running = listed.commands.iter().filter(|c| c.running && c.pty.is_some()).count();
    if running >= MAX_TERMINALS {
        return Err(AppError::Conflict(format!(
            "sandbox {id} has {running} terminals running, the most it may have ({MAX_TERMINALS}); exit or close one first"
        )));
    }
    let req = ExecuteRequest {
        command: String::new(),
        cwd: body.cwd.unwrap_or_default(),
        encoding: OutputEncoding::Bytes as i32,
        keep_stdin_open: true,
        user: body.user.unwrap_or_default(),
        pty: Some(pty),
        ..Default::default()
    };
    let started = client.start(req).await.map_err(|s| from_status(&id, &s))?.into_inner();
    tracing::info!(sandbox_id = %id, terminal = %started.command_id, pid = started.pid, "terminal opened");
    let t = Terminal { id: started.command_id, pid: started.pid, cols: pty.cols, rows: pty.rows };
    Ok((StatusCode::CREATED, Json(t)))
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/terminals/{tid}/input", operation_id = "terminalInput",
    tag = "terminals", params(TerminalPath), request_body = InputBody,
    responses(
        (status = 204, description = "Written to the terminal, after every earlier input"),
        (status = 400, description = "Empty input", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such terminal", body = ErrorBody),
        (status = 409, description = "The terminal's shell has exited, or the sandbox is not running", body = ErrorBody),
        (status = 413, description = "More than 65,536 bytes in one request", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn input(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(TerminalPath { id, tid }): Path<TerminalPath>,
    AppJson(body): AppJson<InputBody>,
) -> AppResult<StatusCode> {
    let mut client = agent(&state, &p, &id)?;
    if body.data.is_empty() {
        return Err(AppError::BadRequest("data must not be empty".into()));
    }
    if body.data.len() > MAX_INPUT_BYTES {
        return Err(AppError::TooLarge(format!(
            "{} bytes of input in one request; send at most {MAX_INPUT_BYTES} at a time",
            body.data.len()
        )));
    }
    let req = WriteStdinRequest { command_id: tid.clone(), data: body.data.into_bytes().into() };
    client.write_stdin(req).await.map_err(|s| terminal_error(&id, &tid, &s))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/terminals/{tid}/resize", operation_id = "resizeTerminal",
    tag = "terminals", params(TerminalPath), request_body = SizeBody,
    responses(
        (status = 204, description = "Resized; the terminal's programs got SIGWINCH"),
        (status = 400, description = "A size out of range", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such terminal", body = ErrorBody),
        (status = 409, description = "The terminal's shell has exited, or the sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn resize(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(TerminalPath { id, tid }): Path<TerminalPath>,
    AppJson(body): AppJson<SizeBody>,
) -> AppResult<StatusCode> {
    let mut client = agent(&state, &p, &id)?;
    let req = ResizePtyRequest { command_id: tid.clone(), size: Some(size(body.cols, body.rows)?) };
    client.resize_pty(req).await.map_err(|s| terminal_error(&id, &tid, &s))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}/terminals/{tid}", operation_id = "closeTerminal",
    tag = "terminals", params(TerminalPath),
    responses(
        (status = 204, description = "The shell was killed (SIGKILL); what still ran on its terminal is hung up (SIGHUP). Its output stays readable"),
        (status = 404, description = "No such sandbox of this key, or no such terminal", body = ErrorBody),
        (status = 409, description = "The terminal's shell has exited already, or the sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn close(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(TerminalPath { id, tid }): Path<TerminalPath>,
) -> AppResult<StatusCode> {
    let mut client = agent(&state, &p, &id)?;
    // Only a terminal: the id of another command of the sandbox is not one.
    let listed = client.list(ListRequest {}).await.map_err(|s| from_status(&id, &s))?.into_inner();
    match listed.commands.iter().find(|c| c.command_id == tid && c.pty.is_some()) {
        None => return Err(AppError::NotFound(format!("no terminal {tid} in sandbox {id}"))),
        Some(c) if !c.running => return Err(AppError::Conflict(format!("terminal {tid} has ended: its shell exited"))),
        Some(_) => {}
    }
    let req = SignalRequest { command_id: tid.clone(), signal: 9 };
    client.signal(req).await.map_err(|s| terminal_error(&id, &tid, &s))?;
    tracing::info!(sandbox_id = %id, terminal = %tid, "terminal closed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_with_a_message_naming_the_bound() {
        assert_eq!(size(80, 24).expect("80x24"), PtySize { cols: 80, rows: 24 });
        assert_eq!(size(1, 10_000).expect("1x10000"), PtySize { cols: 1, rows: 10_000 });
        for (c, r) in [(0, 24), (80, 0), (10_001, 24), (80, u64::MAX), (u64::from(u32::MAX) + 81, 24)] {
            let e = size(c, r).expect_err("out of range");
            assert_eq!(e.parts().0, 400);
            assert_eq!(e.to_string(), format!("cols and rows must each be between 1 and 10000, got {c}x{r}"));
        }
    }

    #[test]
    fn agent_refusals_name_the_terminal() {
        let e = terminal_error("sb-1", "cmd-9", &tonic::Status::not_found("command cmd-9 not found"));
        assert_eq!((e.parts().0.as_u16(), e.to_string()), (404, "no terminal cmd-9 in sandbox sb-1".into()));
        for gone in ["command cmd-9 has already exited", "stdin of command cmd-9 is not open (…)"] {
            let e = terminal_error("sb-1", "cmd-9", &tonic::Status::failed_precondition(gone));
            assert_eq!(
                (e.parts().0.as_u16(), e.to_string()),
                (409, "terminal cmd-9 has ended: its shell exited".into())
            );
        }
        let pipes = tonic::Status::failed_precondition("command cmd-9 does not run on a terminal (start it with pty)");
        assert_eq!(terminal_error("sb-1", "cmd-9", &pipes).parts().0.as_u16(), 404);
    }
}
