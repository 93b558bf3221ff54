//! `/api/v1/sandboxes`: create, list, get, kill, timeout, connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_runner_protocol::{
    AddSshAccess, CreateSandbox, DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_MB, DEFAULT_TEMPLATE, DISK_MB_LIMIT, MAX_SSH_KEYS,
    SshCredential, SshSecret, check_disk_mb, check_envs, check_metadata, check_public_key, check_timeout_ms,
    is_valid_template_name,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::error::{AppError, AppJson, AppResult, ErrorBody, optional_json};
use crate::state::SandboxState;
use crate::store::{Principal, SandboxRow};
use crate::time::{now_ms, rfc3339};

pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// `POST /api/v1/sandboxes`: every field has a default, and the body may be absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// A template some live runner has (`GET /api/v1/templates`); `default` when absent.
    pub template: Option<String>,
    /// Cores, 0.01 to 64.
    pub cpu: Option<f64>,
    /// Memory in MiB, 16 to 262144.
    pub memory_mb: Option<u32>,
    /// The sandbox's disk in MiB (its runner's default when absent).
    pub disk_mb: Option<u32>,
    /// Milliseconds from now until the sandbox is killed (300000 when absent).
    pub timeout_ms: Option<u64>,
    /// Environment variables of every command in the sandbox.
    pub envs: Option<BTreeMap<String, String>>,
    /// Labels kept with the sandbox and shown in its answers.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Whether the sandbox can be reached over SSH (true when absent). Off, its
    /// connection has no `ssh`, and no SSH credential can be made for it.
    pub ssh: Option<bool>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment` lines, at most 16) that log in as
    /// `user` over SSH for as long as the sandbox lives.
    pub ssh_keys: Option<Vec<String>>,
}

/// `POST /api/v1/sandboxes/{id}/timeout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TimeoutBody {
    /// Milliseconds from now until the sandbox is killed.
    timeout_ms: u64,
}

/// A sandbox, as every sandbox route answers it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Sandbox {
    /// The same as `sandboxId`, kept for clients written before it.
    #[schema(deprecated)]
    pub id: String,
    /// The sandbox's id (`sb-` and 10 hex digits); the name every route gives a sandbox.
    pub sandbox_id: String,
    pub template: String,
    pub state: SandboxState,
    /// Cores.
    pub cpu: f64,
    pub memory_mb: u32,
    pub envs: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    pub runner_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it is killed unless its timeout is set again.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// `GET /api/v1/sandboxes/{id}/connection`: where and how to reach the sandbox's agent
/// (gRPC, the token as `authorization: Bearer`), and its SSH server.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Connection {
    pub host: String,
    pub port: u16,
    pub token: String,
    /// Where its SSH server listens (`POST …/ssh-access` makes a credential); null when
    /// the sandbox was created with SSH off.
    pub ssh: Option<SshEndpoint>,
}

/// A sandbox's SSH server.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SshEndpoint {
    pub host: String,
    pub port: u16,
}

pub(crate) fn sandbox_json(sb: &SandboxRow) -> Sandbox {
    Sandbox {
        id: sb.id.clone(),
        sandbox_id: sb.id.clone(),
        template: sb.template.clone(),
        state: sb.state,
        cpu: f64::from(sb.cpu_millis) / 1000.0,
        memory_mb: sb.memory_mb,
        envs: serde_json::from_str(&sb.envs).unwrap_or_default(),
        metadata: serde_json::from_str(&sb.metadata).unwrap_or_default(),
        runner_id: sb.runner_id.clone(),
        created_at: rfc3339(sb.created_at),
        expires_at: rfc3339(sb.expires_at),
    }
}

fn check_timeout(ms: u64) -> AppResult<()> {
    check_timeout_ms(ms).map_err(AppError::BadRequest)
}

/// Creates a sandbox for `p` on the runner with the most room among those that have its
/// template (an unknown template is refused before any runner is asked). On any error
/// nothing of it remains. Counted in `/metrics` by outcome, with its time when it worked.
pub(crate) async fn create_sandbox(state: &AppState, p: &Principal, body: CreateBody) -> AppResult<SandboxRow> {
    let started = std::time::Instant::now();
    let made = try_create_sandbox(state, p, body).await;
    match &made {
        Ok(_) => state.metrics.sandbox_created(started.elapsed()),
        Err(e) => state.metrics.sandbox_create_failed(e.parts().1),
    }
    made
}

async fn try_create_sandbox(state: &AppState, p: &Principal, body: CreateBody) -> AppResult<SandboxRow> {
    let template = body.template.unwrap_or_else(|| DEFAULT_TEMPLATE.into());
    if !is_valid_template_name(&template) {
        return Err(AppError::BadRequest(format!(
            "template {template:?} is not a template name (1 to 64 letters, digits, `_` or `-`)"
        )));
    }
    let cpu = body.cpu.unwrap_or(f64::from(DEFAULT_CPU_MILLIS) / 1000.0);
    if !(0.01..=64.0).contains(&cpu) {
        return Err(AppError::BadRequest(format!("cpu must be between 0.01 and 64 cores, got {cpu}")));
    }
    let memory_mb = body.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if !(16..=262_144).contains(&memory_mb) {
        return Err(AppError::BadRequest(format!("memoryMb must be between 16 and 262144, got {memory_mb}")));
    }
    // Checked against the widest range here; the runner that gets the create checks its
    // own maximum (`--max-disk-mb`) and its 400 names it.
    if let Some(disk_mb) = body.disk_mb {
        check_disk_mb(disk_mb, DISK_MB_LIMIT).map_err(AppError::BadRequest)?;
    }
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    check_timeout(timeout_ms)?;
    let envs = body.envs.unwrap_or_default();
    check_envs(&envs).map_err(AppError::BadRequest)?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata).map_err(AppError::BadRequest)?;
    let ssh = body.ssh.unwrap_or(true);
    let ssh_keys = key_credentials(ssh, body.ssh_keys.unwrap_or_default())?;
    state.throttle.check_sandbox(cpu, memory_mb, timeout_ms)?;
    // What the key's disk quota counts; absent, the runner gives its default.
    let disk_mb = body.disk_mb.unwrap_or(state.cfg.limits.default_disk_mb);
    // Held until the row is stored, like the runner's slot below.
    let _quota = state
        .throttle
        .reserve_tenant(p.tenant(), memory_mb, disk_mb, || state.store.usage_of(p.tenant()).map_err(AppError::from))?;
    // Held until the row is stored: until then the store does not count it.
    let placed = state.registry.place(&template)?;
    let runner = &placed.runner;
    let req = CreateSandbox {
        template: template.clone(),
        cpu_millis: (cpu * 1000.0).round() as u32,
        memory_mb,
        envs,
        pids: None,
        disk_mb: body.disk_mb,
        // The runner kills it at the same time as the monitor here would, also while
        // this server is down or cannot reach it.
        timeout_ms: Some(timeout_ms),
        metadata,
    };
    let created = state.registry.create(runner, &req).await?;
    if !ssh_keys.is_empty() {
        let add = AddSshAccess { credentials: ssh_keys };
        if let Err(e) = state.registry.ssh_access(runner, &created.id, &add, false).await {
            let _ = state.registry.kill(runner, &created.id).await;
            return Err(e);
        }
    }
    let now = now_ms();
    let row = SandboxRow {
        id: created.id.clone(),
        tenant: p.tenant().to_string(),
        runner_id: runner.id.clone(),
        template,
        cpu_millis: req.cpu_millis,
        memory_mb,
        envs: serde_json::to_string(&req.envs).unwrap_or_default(),
        metadata: serde_json::to_string(&req.metadata).unwrap_or_default(),
        state: SandboxState::Running,
        host: created.host,
        port: created.port,
        token: created.token,
        created_at: now,
        expires_at: now + timeout_ms as i64,
        disk_mb,
        ssh_port: if ssh { created.ssh_port.unwrap_or(0) } else { 0 },
    };
    if let Err(e) = state.store.insert_sandbox(&row) {
        let _ = state.registry.kill(runner, &row.id).await;
        return Err(e.into());
    }
    tracing::info!(sandbox_id = %row.id, runner_id = %runner.id, tenant = %row.tenant, "sandbox created");
    Ok(row)
}

/// The credentials the public keys given at create become (they log in as `user` for
/// as long as the sandbox lives). A 400 for a malformed key, too many, or keys for a
/// sandbox with SSH off.
pub(crate) fn key_credentials(ssh: bool, keys: Vec<String>) -> AppResult<Vec<SshCredential>> {
    if !ssh && !keys.is_empty() {
        return Err(AppError::BadRequest("sshKeys need SSH: drop them or leave ssh on".into()));
    }
    if keys.len() > MAX_SSH_KEYS {
        return Err(AppError::BadRequest(format!("sshKeys: at most {MAX_SSH_KEYS} keys, got {}", keys.len())));
    }
    keys.into_iter()
        .map(|k| {
            let k = k.trim().to_string();
            check_public_key(&k).map_err(AppError::BadRequest)?;
            Ok(SshCredential { user: "user".into(), expires_at: None, secret: SshSecret::PublicKey(k) })
        })
        .collect()
}

/// The runner sandbox `sb` runs on.
pub(crate) fn runner_of(state: &AppState, sb: &SandboxRow) -> AppResult<crate::store::RunnerRow> {
    state
        .store
        .runner(&sb.runner_id)?
        .ok_or_else(|| AppError::internal(format!("runner {} of sandbox {} is unknown", sb.runner_id, sb.id)))
}

/// The caller's sandbox `id`; another tenant's is as unknown as a missing one.
pub(crate) fn owned(state: &AppState, p: &Principal, id: &str) -> AppResult<SandboxRow> {
    match state.store.sandbox(id)? {
        Some(sb) if sb.tenant == p.tenant() => Ok(sb),
        _ => Err(AppError::NotFound(format!("sandbox {id} not found"))),
    }
}

#[utoipa::path(post, path = "/api/v1/sandboxes", operation_id = "createSandbox", tag = "sandboxes",
    request_body = Option<CreateBody>,
    responses(
        (status = 201, description = "Created and running", body = Sandbox),
        (status = 400, description = "A field out of range, a malformed SSH key, or an unknown template", body = ErrorBody),
        (status = 429, description = "The key's quota or rate is reached", body = ErrorBody),
        (status = 503, description = "No live runner has room", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<(StatusCode, Json<Sandbox>)> {
    // Every field has a default, so an empty body is a valid request.
    let body: CreateBody = optional_json(body)?;
    let row = create_sandbox(&state, &p, body).await?;
    Ok((StatusCode::CREATED, Json(sandbox_json(&row))))
}

#[utoipa::path(get, path = "/api/v1/sandboxes", operation_id = "listSandboxes", tag = "sandboxes",
    responses((status = 200, description = "The key's sandboxes, killed ones included", body = Vec<Sandbox>)))]
pub(crate) async fn list(State(state): State<Arc<AppState>>, p: Principal) -> AppResult<Json<Vec<Sandbox>>> {
    let rows = state.store.sandboxes_of(p.tenant())?;
    Ok(Json(rows.iter().map(sandbox_json).collect()))
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}", operation_id = "getSandbox", tag = "sandboxes", params(SandboxPath),
    responses(
        (status = 200, description = "The sandbox", body = Sandbox),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Sandbox>> {
    Ok(Json(sandbox_json(&owned(&state, &p, &id)?)))
}

#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", operation_id = "killSandbox", tag = "sandboxes", params(SandboxPath),
    responses(
        (status = 204, description = "Killed (also when it already was)"),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
    ))]
pub(crate) async fn kill(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let sb = owned(&state, &p, &id)?;
    if sb.state != SandboxState::Killed {
        state.registry.kill_sandbox(&sb).await?;
        tracing::info!(sandbox_id = %id, "sandbox killed by its owner");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/timeout", operation_id = "setSandboxTimeout", tag = "sandboxes", params(SandboxPath),
    request_body = TimeoutBody,
    responses(
        (status = 200, description = "The sandbox with its new `expiresAt`", body = Sandbox),
        (status = 400, description = "A timeout out of range, or past the longest lifetime a sandbox may have", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox was killed", body = ErrorBody),
    ))]
pub(crate) async fn set_timeout(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    AppJson(body): AppJson<TimeoutBody>,
) -> AppResult<Json<Sandbox>> {
    check_timeout(body.timeout_ms)?;
    let sb = owned(&state, &p, &id)?;
    if sb.state == SandboxState::Killed {
        return Err(AppError::Conflict(format!("sandbox {id} was killed")));
    }
    // However often it is extended, a sandbox lives at most the configured lifetime.
    state.throttle.check_lifetime(u64::try_from(now_ms() - sb.created_at).unwrap_or(0), body.timeout_ms)?;
    // The runner first: a sandbox whose runner was not told would die at the old time.
    let runner = runner_of(&state, &sb)?;
    state.registry.set_timeout(&runner, &id, body.timeout_ms).await?;
    state.store.set_sandbox_expiry(&id, now_ms() + body.timeout_ms as i64)?;
    Ok(Json(sandbox_json(&owned(&state, &p, &id)?)))
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/connection", operation_id = "getSandboxConnection", tag = "sandboxes", params(SandboxPath),
    responses(
        (status = 200, description = "Where the agent listens and its token", body = Connection),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
    ))]
pub(crate) async fn connection(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Connection>> {
    let sb = owned(&state, &p, &id)?;
    if sb.state != SandboxState::Running {
        return Err(AppError::Conflict(format!("sandbox {id} is {}", sb.state)));
    }
    let ssh = (sb.ssh_port != 0).then(|| SshEndpoint { host: sb.host.clone(), port: sb.ssh_port });
    Ok(Json(Connection { host: sb.host, port: sb.port, token: sb.token, ssh }))
}

/// The `{id}` of the sandbox routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct SandboxPath {
    /// The sandbox's `sandboxId`.
    id: String,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    const KEY: &str = "ss_sandboxes_test_admin_key";

    /// POST /api/v1/sandboxes with `body` to a fresh server without runners.
    async fn create(body: Value) -> (u16, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = crate::server::app_for_tests(dir.path(), KEY).expect("app");
        crate::server::call_for_tests(&app, "POST", "/api/v1/sandboxes", Some(KEY), Some(body)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disk_size_out_of_range_is_a_400_naming_the_limit_before_any_runner_is_asked() {
        for (disk_mb, says) in [
            (json!(0), "diskMb must be between 16 and 1048576, got 0"),
            (json!(15), "diskMb must be between 16 and 1048576, got 15"),
            (json!(1_048_577), "diskMb must be between 16 and 1048576, got 1048577"),
        ] {
            let (status, err) = create(json!({"diskMb": disk_mb})).await;
            assert_eq!(status, 400, "{err}");
            assert_eq!(err["message"], says, "{err}");
        }
        // Not a u32 at all: refused by the JSON parser, as for every numeric field.
        let (status, err) = create(json!({"diskMb": -1})).await;
        assert_eq!(status, 400, "{err}");
        // In range, the request gets as far as placement (no runner here).
        let (status, err) = create(json!({"diskMb": 64})).await;
        assert_ne!(status, 400, "{err}");
    }

    /// A body past the server's body limit is refused in the JSON error shape of every
    /// error (it was axum's plain text), here and on the other route whose body may be
    /// absent; a body under the limit gets past it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_over_the_limit_is_a_json_413() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = crate::server::app_for_tests(dir.path(), KEY).expect("app");
        let huge = json!({"envs": {"A": "x".repeat(4 << 20)}});
        for path in ["/api/v1/sandboxes", "/api/v1/login-links"] {
            let (status, err) = crate::server::call_for_tests(&app, "POST", path, Some(KEY), Some(huge.clone())).await;
            assert_eq!(status, 413, "{path}: {err}");
            assert_eq!(err, json!({"status": "error", "code": "too_large", "message": "request body is too large"}));
        }
        let (status, err) = create(json!({"envs": {"A": "x".repeat(1 << 10)}})).await;
        assert_ne!(status, 413, "{err}");
    }
}
