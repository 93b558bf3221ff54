//! `POST /api/sandbox/exec` (design note 000) and `/api/v1/executions`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::sandboxes::{CreateBody, DEFAULT_TIMEOUT_MS, create_sandbox, owned};
use crate::error::{AppError, AppJson, AppResult};
use crate::exec::{LANGUAGES, Plan};
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::store::{ExecutionRow, Principal, Receiver};
use crate::time::{now_ms, rfc3339};

/// Most `files` one exec request may carry: each is written into the sandbox by a
/// command of its own before the program runs.
pub(crate) const MAX_FILES: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecBody {
    code: Option<String>,
    language: Option<String>,
    container_id: Option<String>,
    socket_session_id: Option<String>,
    files: Option<BTreeMap<String, String>>,
    stdin: Option<String>,
    timeout: Option<u64>,
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

pub(crate) fn execution_json(ex: &ExecutionRow) -> Value {
    json!({
        "id": ex.id,
        "containerId": ex.sandbox_id,
        "language": ex.language,
        "status": ex.status,
        "phase": if ex.phase == Phase::Prepare { Phase::Install } else { ex.phase },
        "exitCode": ex.exit_code,
        "error": ex.error,
        "oomKilled": ex.oom_killed,
        "createdAt": rfc3339(ex.created_at),
        "finishedAt": ex.finished_at.map(rfc3339),
        "durationMs": ex.finished_at.map(|f| f - ex.created_at),
    })
}

pub(crate) async fn exec(
    State(state): State<Arc<AppState>>,
    p: Principal,
    AppJson(body): AppJson<ExecBody>,
) -> AppResult<(StatusCode, Json<Value>)> {
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
    let sandbox = match &body.container_id {
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
    let data = json!({
        "containerId": sandbox.id,
        "executionId": ex.id,
        "message": "Execution started. Connect to WebSocket for real-time logs.",
    });
    tokio::spawn(crate::exec::drive(state.exec.clone(), ex));
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "accepted", "data": data}))))
}

fn owned_execution(state: &AppState, p: &Principal, id: &str) -> AppResult<ExecutionRow> {
    match state.store.execution(id)? {
        Some(ex) if ex.tenant == p.tenant() => Ok(ex),
        _ => Err(AppError::NotFound(format!("execution {id} not found"))),
    }
}

pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    Ok(Json(execution_json(&owned_execution(&state, &p, &id)?)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogsQuery {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn logs(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(format!("query: {}", e.body_text())))?;
    let ex = owned_execution(&state, &p, &id)?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 10_000);
    let chunks = state.store.chunks(&id, q.after_seq.unwrap_or(0), limit)?;
    let complete = ex.status != ExecStatus::Running && chunks.len() < limit;
    Ok(Json(json!({"chunks": chunks, "complete": complete})))
}

pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<Value>)> {
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
