//! The control API the server calls: create, get, list, kill sandboxes, set their time
//! to live and their SSH access. Every call needs `Authorization: Bearer SECRET`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sandstream_proto::secret::constant_time_eq;

use crate::runner::{Runner, RunnerError};
use sandstream_runner_protocol::{AddSshAccess, CreateSandbox, ErrorBody, ErrorCode, RunnerSandbox, SetTimeout};

impl IntoResponse for RunnerError {
    fn into_response(self) -> Response {
        let code = match &self {
            RunnerError::BadRequest(_) => ErrorCode::BadRequest,
            RunnerError::NotFound(_) => ErrorCode::NotFound,
            RunnerError::Full(_) => ErrorCode::NoCapacity,
            RunnerError::Runtime(_) => ErrorCode::Internal,
        };
        respond(code, self.to_string())
    }
}

/// An error answer: the status is the protocol's for `code` (`ErrorCode::status`), so
/// the server reads it back as the same code.
fn respond(code: ErrorCode, message: String) -> Response {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(error = %message, "runner call failed");
    }
    (status, Json(ErrorBody::new(code, message))).into_response()
}

pub(crate) fn app(runner: Arc<Runner>) -> Router {
    Router::new()
        .route("/sandboxes", get(list).post(create))
        .route("/sandboxes/{id}", get(get_one).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/ssh-access", post(add_ssh_access).put(replace_ssh_passwords))
        .layer(axum::middleware::from_fn_with_state(runner.clone(), auth))
        .with_state(runner)
}

async fn auth(State(runner): State<Arc<Runner>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), runner.cfg.secret.as_bytes()) {
        return respond(ErrorCode::Unauthorized, "wrong or missing runner secret".into());
    }
    next.run(req).await
}

async fn create(
    State(runner): State<Arc<Runner>>,
    Json(req): Json<CreateSandbox>,
) -> Result<(StatusCode, Json<RunnerSandbox>), RunnerError> {
    let sb = tokio::task::spawn_blocking(move || runner.create(&req))
        .await
        .map_err(|e| RunnerError::Runtime(e.to_string()))??;
    tracing::info!(sandbox_id = %sb.id, "sandbox created for the server");
    Ok((StatusCode::CREATED, Json(sb)))
}

async fn kill(State(runner): State<Arc<Runner>>, Path(id): Path<String>) -> Result<StatusCode, RunnerError> {
    tokio::task::spawn_blocking(move || runner.kill(&id)).await.map_err(|e| RunnerError::Runtime(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_one(
    State(runner): State<Arc<Runner>>,
    Path(id): Path<String>,
) -> Result<Json<RunnerSandbox>, RunnerError> {
    runner.get(&id).map(Json)
}

async fn set_timeout(
    State(runner): State<Arc<Runner>>,
    Path(id): Path<String>,
    Json(req): Json<SetTimeout>,
) -> Result<Json<RunnerSandbox>, RunnerError> {
    let sb = tokio::task::spawn_blocking(move || runner.set_timeout(&id, req.timeout_ms))
        .await
        .map_err(|e| RunnerError::Runtime(e.to_string()))??;
    Ok(Json(sb))
}

/// Adds credentials to the sandbox's SSH access.
async fn add_ssh_access(
    State(runner): State<Arc<Runner>>,
    Path(id): Path<String>,
    Json(req): Json<AddSshAccess>,
) -> Result<StatusCode, RunnerError> {
    ssh_access(runner, id, req, false).await
}

/// Replaces the sandbox's SSH passwords with those given (none: every password is
/// revoked); its keys stay.
async fn replace_ssh_passwords(
    State(runner): State<Arc<Runner>>,
    Path(id): Path<String>,
    Json(req): Json<AddSshAccess>,
) -> Result<StatusCode, RunnerError> {
    ssh_access(runner, id, req, true).await
}

async fn ssh_access(
    runner: Arc<Runner>,
    id: String,
    req: AddSshAccess,
    revoke: bool,
) -> Result<StatusCode, RunnerError> {
    tokio::task::spawn_blocking(move || runner.update_ssh_access(&id, &req, revoke))
        .await
        .map_err(|e| RunnerError::Runtime(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(State(runner): State<Arc<Runner>>) -> Json<Vec<RunnerSandbox>> {
    Json(runner.list())
}

#[cfg(test)]
mod tests;
