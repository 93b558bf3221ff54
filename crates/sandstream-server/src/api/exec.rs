//! `POST /api/sandbox/exec` (design note 000) and `/api/v1/executions`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::sandboxes::{CreateBody, DEFAULT_TIMEOUT_MS, create_sandbox, owned};
use crate::error::{AppError, AppJson, AppResult, ErrorBody};
use crate::exec::{LANGUAGES, Plan};
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::store::{Chunk, ExecutionRow, Principal, Receiver};
use crate::time::{now_ms, rfc3339};

/// Most `files` one exec request may carry: each is written into the sandbox by a
/// command of its own before the program runs.
pub(crate) const MAX_FILES: usize = 100;

/// `POST /api/sandbox/exec` (design note 000's body, plus `files`, `stdin`, `timeout`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecBody {
    /// The program. Required (an empty one is refused).
    code: Option<String>,
    /// `python`, `javascript` or `typescript`. Required.
    language: Option<String>,
    /// A running sandbox of this key to run in; a new one when absent (note 000's name).
    container_id: Option<String>,
    /// The same as `containerId`; when both are given they must be equal.
    sandbox_id: Option<String>,
    /// A socket.io connection of this key that gets the output instead of the
    /// sandbox's room.
    socket_session_id: Option<String>,
    /// Files written beside the program (relative paths), `requirements.txt` and
    /// `package.json` included.
    files: Option<BTreeMap<String, String>>,
    /// Given to the program on its standard input.
    stdin: Option<String>,
    /// Milliseconds, install included (300000 when absent).
    timeout: Option<u64>,
}

/// The 202 of `POST /api/sandbox/exec`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExecAccepted {
    /// Always `accepted`.
    #[schema(pattern = "^accepted$")]
    status: &'static str,
    data: ExecStarted,
}

/// What runs where: join the sandbox's socket.io room (`join-container`) for the output.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecStarted {
    /// The sandbox it runs in (note 000's name).
    container_id: String,
    /// The same as `containerId`.
    sandbox_id: String,
    execution_id: String,
    message: &'static str,
}

/// An execution, as `GET /api/v1/executions/{id}` and its cancel answer it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Execution {
    /// The execution's id (`exec_` and 16 hex digits).
    id: String,
    /// The sandbox it ran in.
    sandbox_id: String,
    /// The same as `sandboxId`, kept for clients written before it.
    #[schema(deprecated)]
    container_id: String,
    language: String,
    status: ExecStatus,
    /// Where it is, or was when it ended: `install` (files and dependencies) or `run`.
    phase: Phase,
    /// The program's exit code once it exited.
    exit_code: Option<i32>,
    /// Why it failed, in words (an out-of-memory kill names the memory limit).
    error: Option<String>,
    /// Whether the kernel killed it for memory.
    oom_killed: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    duration_ms: Option<i64>,
}

/// A page of an execution's output.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogsPage {
    /// In seq order, at most `limit`.
    chunks: Vec<Chunk>,
    /// True when the execution has ended and this page holds its last chunk.
    complete: bool,
}

fn check_file_name(name: &str) -> AppResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && !name.starts_with(".sandstream");
    if !ok {
        return Err(AppError::BadRequest(format!(
            "file name {name:?} must be a relative path of letters, digits, '.', '_', '-' and '/'"
        )));
    }
    Ok(())
}

pub(crate) fn execution_json(ex: &ExecutionRow) -> Execution {
    Execution {
        id: ex.id.clone(),
        sandbox_id: ex.sandbox_id.clone(),
        container_id: ex.sandbox_id.clone(),
        language: ex.language.clone(),
        status: ex.status,
        phase: if ex.phase == Phase::Prepare { Phase::Install } else { ex.phase },
        exit_code: ex.exit_code,
        error: ex.error.clone(),
        oom_killed: ex.oom_killed,
        created_at: rfc3339(ex.created_at),
        finished_at: ex.finished_at.map(rfc3339),
        duration_ms: ex.finished_at.map(|f| f - ex.created_at),
    }
}

#[utoipa::path(post, path = "/api/sandbox/exec", operation_id = "exec", tag = "executions",
    request_body = ExecBody,
    responses(
        (status = 202, description = "Accepted; the output streams over socket.io", body = ExecAccepted),
        (status = 400, description = "Missing code or language, an unknown language, a bad file name or timeout, or `containerId` and `sandboxId` that differ", body = ErrorBody),
        (status = 404, description = "No such sandbox or socket of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 413, description = "Code, files and stdin are too large, or too many files", body = ErrorBody),
        (status = 429, description = "The key's quota or rate is reached", body = ErrorBody),
        (status = 503, description = "No live runner has room for a new sandbox", body = ErrorBody),
    ))]
pub(crate) async fn exec(
    State(state): State<Arc<AppState>>,
    p: Principal,
    AppJson(body): AppJson<ExecBody>,
) -> AppResult<(StatusCode, Json<ExecAccepted>)> {
    let (Some(code), Some(language)) = (body.code.filter(|c| !c.is_empty()), body.language.filter(|l| !l.is_empty()))
    else {
        return Err(AppError::BadRequest("Missing required parameters: code and language".into()));
    };
    if !LANGUAGES.contains(&language.as_str()) {
        return Err(AppError::BadRequest(format!(
            "unsupported language {language:?}; supported: {}",
            LANGUAGES.join(", ")
        )));
    }
    let files = body.files.unwrap_or_default();
    if files.len() > MAX_FILES {
        return Err(AppError::TooLarge(format!("{} files; the limit is {MAX_FILES}", files.len())));
    }
    for name in files.keys() {
        check_file_name(name)?;
    }
    let size = code.len()
        + files.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + body.stdin.as_ref().map_or(0, String::len);
    if size > state.cfg.max_code_bytes {
        return Err(AppError::TooLarge(format!(
            "code, files and stdin are {size} bytes; the limit is {} bytes",
            state.cfg.max_code_bytes
        )));
    }
    let timeout = body.timeout.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=24 * 3600 * 1000).contains(&timeout) {
        return Err(AppError::BadRequest(format!("timeout must be between 1 and 86400000 ms, got {timeout}")));
    }
    // A socket named as the receiver must be a connected socket of the caller's own:
    // anything else (another tenant's socket, or once a room name,
    // `container-<another tenant's sandbox>`) would deliver this output to others.
    if let Some(sid) = &body.socket_session_id {
        let own = socketioxide::socket::Sid::from_str(sid)
            .ok()
            .and_then(|sid| state.io.get_socket(sid))
            .and_then(|s| s.extensions.get::<Principal>())
            .is_some_and(|owner| owner.tenant() == p.tenant());
        if !own {
            return Err(AppError::NotFound(format!("socket {sid} not found among this key's connections")));
        }
    }
    let target = match (body.container_id, body.sandbox_id) {
        (Some(c), Some(s)) if c != s => {
            return Err(AppError::BadRequest(format!(
                "containerId {c:?} and sandboxId {s:?} differ; they name the same thing, send one"
            )));
        }
        (c, s) => c.or(s),
    };
    let sandbox = match &target {
        Some(id) => {
            let sb = owned(&state, &p, id).map_err(|_| AppError::NotFound(format!("container {id} not found")))?;
            if sb.state != SandboxState::Running {
                return Err(AppError::Conflict(format!("container {id} is {}; start a new one", sb.state)));
            }
            sb
        }
        None => create_sandbox(&state, &p, CreateBody::default()).await?,
    };
    let plan = Plan::new(&language, code, files, body.stdin);
    let now = now_ms();
    let ex = ExecutionRow {
        id: format!("exec_{}", crate::auth::random_hex(8)),
        tenant: p.tenant().to_string(),
        sandbox_id: sandbox.id.clone(),
        language,
        status: ExecStatus::Running,
        phase: Phase::Prepare,
        exit_code: None,
        error: None,
        plan: serde_json::to_string(&plan).map_err(AppError::internal)?,
        command_id: None,
        stdout_offset: 0,
        stderr_offset: 0,
        last_seq: 0,
        target: match &body.socket_session_id {
            Some(sid) => Receiver::Socket(sid.clone()),
            None => Receiver::Container(sandbox.id.clone()),
        },
        created_at: now,
        deadline: now + timeout as i64,
        finished_at: None,
        oom_killed: false,
    };
    state.store.insert_execution(&ex)?;
    tracing::info!(execution_id = %ex.id, sandbox_id = %sandbox.id, language = %ex.language, "execution accepted");
    let data = ExecStarted {
        container_id: sandbox.id.clone(),
        sandbox_id: sandbox.id.clone(),
        execution_id: ex.id.clone(),
        message: "Execution started. Connect to WebSocket for real-time logs.",
    };
    tokio::spawn(crate::exec::drive(state.exec.clone(), ex));
    Ok((StatusCode::ACCEPTED, Json(ExecAccepted { status: "accepted", data })))
}

fn owned_execution(state: &AppState, p: &Principal, id: &str) -> AppResult<ExecutionRow> {
    match state.store.execution(id)? {
        Some(ex) if ex.tenant == p.tenant() => Ok(ex),
        _ => Err(AppError::NotFound(format!("execution {id} not found"))),
    }
}

#[utoipa::path(get, path = "/api/v1/executions/{id}", operation_id = "getExecution", tag = "executions", params(ExecutionPath),
    responses(
        (status = 200, description = "The execution", body = Execution),
        (status = 404, description = "No such execution of this key", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Execution>> {
    Ok(Json(execution_json(&owned_execution(&state, &p, &id)?)))
}

/// The `{id}` of the execution routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct ExecutionPath {
    /// The execution's id (`executionId` of the exec answer).
    id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// Chunks after this seq (0 when absent: from the first).
    after_seq: Option<u64>,
    /// At most this many chunks, 1 to 10000 (10000 when absent).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", operation_id = "getExecutionLogs", tag = "executions", params(ExecutionPath, LogsQuery),
    responses(
        (status = 200, description = "A page of the stored output", body = LogsPage),
        (status = 400, description = "A query that is not numbers", body = ErrorBody),
        (status = 404, description = "No such execution of this key", body = ErrorBody),
    ))]
pub(crate) async fn logs(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<LogsPage>> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(format!("query: {}", e.body_text())))?;
    let ex = owned_execution(&state, &p, &id)?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 10_000);
    let chunks = state.store.chunks(&id, q.after_seq.unwrap_or(0), limit)?;
    let complete = ex.status != ExecStatus::Running && chunks.len() < limit;
    Ok(Json(LogsPage { chunks, complete }))
}

#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", operation_id = "cancelExecution", tag = "executions", params(ExecutionPath),
    responses(
        (status = 202, description = "Cancelled; the execution as it stands", body = Execution),
        (status = 404, description = "No such execution of this key", body = ErrorBody),
        (status = 409, description = "It already finished", body = ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<Execution>)> {
    let ex = owned_execution(&state, &p, &id)?;
    if ex.status != ExecStatus::Running {
        return Err(AppError::Conflict(format!("execution {id} already finished: {}", ex.status)));
    }
    if !state.exec.cancel(&id).await {
        state.store.finish_execution(&id, &crate::exec::cancelled(), now_ms())?;
        state.metrics.execution_finished(ExecStatus::Cancelled);
    }
    tracing::info!(execution_id = %id, "execution cancelled by its owner");
    Ok((StatusCode::ACCEPTED, Json(execution_json(&owned_execution(&state, &p, &id)?))))
}
