//! `/api/v1/sandboxes/{id}/ssh-access`: short-lived SSH passwords for a sandbox, and
//! their revocation (the public keys given at create are `sandboxes.rs`'s). The server keeps no
//! credential: it hands each to the sandbox's runner, which writes the sandbox's access
//! file, and keeps of a password only its SHA-256 there.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_runner_protocol::{AddSshAccess, SSH_USERS, SshCredential, SshSecret};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::sandboxes::{SandboxPath, owned, runner_of};
use crate::error::{AppError, AppResult, ErrorBody, optional_json};
use crate::state::SandboxState;
use crate::store::{Principal, SandboxRow};
use crate::time::{now_ms, rfc3339};

/// How long a password works when the request does not say: one hour.
const DEFAULT_ACCESS_MS: u64 = 3_600_000;
/// The longest lifetime a request may ask for: a day (and never past the sandbox's end).
const MAX_ACCESS_MS: u64 = 86_400_000;

/// `POST /api/v1/sandboxes/{id}/ssh-access`: every field has a default, and the body may
/// be absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AccessBody {
    /// Who the password logs in as: `user` (the default) or `root`.
    pub user: Option<String>,
    /// How long it works, in milliseconds, 1000 to 86400000 (3600000 when absent); never
    /// past the sandbox's own end.
    pub timeout_ms: Option<u64>,
}

/// A new SSH credential for one sandbox.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SshAccess {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Shown once: only its hash is kept, in the sandbox.
    pub password: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The line to paste (it asks for the password).
    pub command: String,
}

/// The caller's running sandbox `id` that has SSH.
fn ssh_sandbox(state: &AppState, p: &Principal, id: &str) -> AppResult<SandboxRow> {
    let sb = owned(state, p, id)?;
    if sb.state != SandboxState::Running {
        return Err(AppError::Conflict(format!("sandbox {id} is {}", sb.state)));
    }
    if sb.ssh_port == 0 {
        return Err(AppError::Conflict(format!("sandbox {id} has no SSH (it was created with ssh off)")));
    }
    Ok(sb)
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/ssh-access", operation_id = "createSshAccess", tag = "sandboxes",
    params(SandboxPath), request_body = Option<AccessBody>,
    responses(
        (status = 201, description = "A password that logs in to this sandbox only, until `expiresAt`", body = SshAccess),
        (status = 400, description = "An unknown user, or a lifetime out of range", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running, or has SSH off", body = ErrorBody),
    ))]
pub(crate) async fn create_access(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<(StatusCode, Json<SshAccess>)> {
    let body: AccessBody = optional_json(body)?;
    let user = body.user.unwrap_or_else(|| "user".into());
    if !SSH_USERS.contains(&user.as_str()) {
        return Err(AppError::BadRequest(format!("user must be one of {SSH_USERS:?}, got {user:?}")));
    }
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_ACCESS_MS);
    if !(1000..=MAX_ACCESS_MS).contains(&timeout_ms) {
        return Err(AppError::BadRequest(format!(
            "timeoutMs must be between 1000 and {MAX_ACCESS_MS}, got {timeout_ms}"
        )));
    }
    let sb = ssh_sandbox(&state, &p, &id)?;
    let expires_at = (now_ms() + timeout_ms as i64).min(sb.expires_at);
    let password = crate::auth::random_hex(16);
    let credential = SshCredential {
        user: user.clone(),
        expires_at: Some(expires_at),
        secret: SshSecret::PasswordSha256(crate::auth::hash(&password)),
    };
    let runner = runner_of(&state, &sb)?;
    state.registry.ssh_access(&runner, &id, &AddSshAccess { credentials: vec![credential] }, false).await?;
    tracing::info!(sandbox_id = %id, %user, expires_at, "SSH access granted");
    let command = format!("ssh -p {} {user}@{}", sb.ssh_port, sb.host);
    let access = SshAccess {
        host: sb.host,
        port: sb.ssh_port,
        username: user,
        password,
        expires_at: rfc3339(expires_at),
        command,
    };
    Ok((StatusCode::CREATED, Json(access)))
}

#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}/ssh-access", operation_id = "revokeSshAccess", tag = "sandboxes",
    params(SandboxPath),
    responses(
        (status = 204, description = "Every SSH password of the sandbox stops working now; its keys stay"),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running, or has SSH off", body = ErrorBody),
    ))]
pub(crate) async fn revoke_access(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let sb = ssh_sandbox(&state, &p, &id)?;
    let runner = runner_of(&state, &sb)?;
    state.registry.ssh_access(&runner, &id, &AddSshAccess { credentials: Vec::new() }, true).await?;
    tracing::info!(sandbox_id = %id, "SSH passwords revoked");
    Ok(StatusCode::NO_CONTENT)
}
