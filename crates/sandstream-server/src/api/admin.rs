//! Admin routes (keys, runners list) and the runner link (register, heartbeat).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_runner_protocol::{Heartbeat, HeartbeatReply, Register, Registered};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::auth::{Admin, RunnerAuth, hash, new_key, random_hex};
use crate::error::{AppError, AppJson, AppResult, ErrorBody};
use crate::store::RunnerRow;
use crate::time::{now_ms, rfc3339};

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    /// 1 to 128 characters (trimmed).
    name: String,
}

/// A new tenant key: `key` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyCreated {
    id: String,
    name: String,
    key: String,
}

/// A key as the admin lists it (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyInfo {
    id: String,
    name: String,
    admin: bool,
    #[schema(format = DateTime)]
    created_at: String,
    revoked: bool,
}

/// A runner as the admin lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunnerInfo {
    id: String,
    name: String,
    advertise_host: String,
    capacity: u32,
    backend: String,
    /// Its live sandboxes.
    sandboxes: u32,
    #[schema(format = DateTime)]
    last_heartbeat: String,
    /// Heard from within the heartbeat timeout.
    alive: bool,
    /// The templates it reported; null before it reported any.
    templates: Option<Vec<String>>,
}

/// The `{id}` of `/api/v1/keys/{id}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct KeyPath {
    /// The key's id (`key_…`), not the key.
    id: String,
}

/// The `{id}` of `/api/v1/runners/{id}/heartbeat`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct RunnerPath {
    /// The runner's id, as its registration answered.
    id: String,
}

#[utoipa::path(post, path = "/api/v1/keys", operation_id = "createKey", tag = "keys",
    request_body = KeyBody,
    responses(
        (status = 201, description = "The new key", body = KeyCreated),
        (status = 400, description = "A name that is empty or too long", body = ErrorBody),
    ))]
pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AppJson(body): AppJson<KeyBody>,
) -> AppResult<(StatusCode, Json<KeyCreated>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(AppError::BadRequest("name must be 1 to 128 characters".into()));
    }
    let id = format!("key_{}", random_hex(8));
    let key = new_key();
    state.store.insert_key(&id, name, &hash(&key), false, now_ms())?;
    tracing::info!(key_id = %id, "tenant key created");
    Ok((StatusCode::CREATED, Json(KeyCreated { id, name: name.to_string(), key })))
}

#[utoipa::path(get, path = "/api/v1/keys", operation_id = "listKeys", tag = "keys",
    responses((status = 200, description = "Every key, revoked ones included", body = Vec<KeyInfo>)))]
pub(crate) async fn list_keys(State(state): State<Arc<AppState>>, _: Admin) -> AppResult<Json<Vec<KeyInfo>>> {
    let keys = state.store.list_keys()?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyInfo {
                id: k.id,
                name: k.name,
                admin: k.admin,
                created_at: rfc3339(k.created_at),
                revoked: k.revoked,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", operation_id = "revokeKey", tag = "keys", params(KeyPath),
    responses(
        (status = 204, description = "Revoked: its sandboxes are killed and its sockets closed"),
        (status = 400, description = "The admin key itself", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Admin(me): Admin,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if id == me.key_id {
        return Err(AppError::BadRequest("the admin key cannot revoke itself".into()));
    }
    if !crate::tenant::revoke(state.store.as_ref(), &state.io, &state.registry, &id).await? {
        return Err(AppError::NotFound(format!("key {id} not found")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/runners", operation_id = "listRunners", tag = "runners",
    responses((status = 200, description = "Every runner that registered", body = Vec<RunnerInfo>)))]
pub(crate) async fn list_runners(State(state): State<Arc<AppState>>, _: Admin) -> AppResult<Json<Vec<RunnerInfo>>> {
    let now = now_ms();
    let mut out = Vec::new();
    for r in state.store.runners()? {
        out.push(RunnerInfo {
            sandboxes: state.store.live_count(&r.id)?,
            last_heartbeat: rfc3339(r.last_heartbeat),
            alive: state.registry.alive(&r, now),
            templates: state.registry.templates_of(&r.id),
            id: r.id,
            name: r.name,
            advertise_host: r.advertise_host,
            capacity: r.capacity,
            backend: r.backend,
        });
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/runners", operation_id = "registerRunner", tag = "runners",
    request_body = Register,
    responses(
        (status = 201, description = "Registered; heartbeats go to its id", body = Registered),
        (status = 400, description = "A controlUrl that is not http(s)", body = ErrorBody),
    ))]
pub(crate) async fn register_runner(
    State(state): State<Arc<AppState>>,
    _: RunnerAuth,
    AppJson(body): AppJson<Register>,
) -> AppResult<(StatusCode, Json<Registered>)> {
    let url = reqwest::Url::parse(&body.control_url)
        .map_err(|e| AppError::BadRequest(format!("controlUrl {:?}: {e}", body.control_url)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(AppError::BadRequest("controlUrl must be http or https".into()));
    }
    let id = body
        .id
        .filter(|i| i.starts_with("rn-") && i.len() <= 40 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| format!("rn-{}", random_hex(6)));
    let row = RunnerRow {
        id: id.clone(),
        name: body.name,
        control_url: body.control_url.trim_end_matches('/').to_string(),
        advertise_host: body.advertise_host,
        capacity: body.capacity,
        backend: body.backend,
        last_heartbeat: now_ms(),
    };
    state.store.upsert_runner(&row)?;
    state.registry.set_templates(&id, body.templates);
    tracing::info!(runner_id = %id, control = %row.control_url, host = %row.advertise_host, "runner registered");
    state.runner_seen();
    Ok((StatusCode::CREATED, Json(Registered { id })))
}

#[utoipa::path(post, path = "/api/v1/runners/{id}/heartbeat", operation_id = "runnerHeartbeat", tag = "runners", params(RunnerPath),
    request_body = Heartbeat,
    responses(
        (status = 200, description = "The sandboxes the runner must remove", body = HeartbeatReply),
        (status = 404, description = "Unknown runner: register again", body = ErrorBody),
    ))]
pub(crate) async fn heartbeat(
    State(state): State<Arc<AppState>>,
    _: RunnerAuth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Heartbeat>,
) -> AppResult<Json<HeartbeatReply>> {
    match state.heartbeats.reconcile(&id, &body, now_ms())? {
        Some(reply) => {
            state.runner_seen();
            state.metrics.heartbeat();
            Ok(Json(reply))
        }
        None => Err(AppError::NotFound(format!("runner {id} not found; register again"))),
    }
}
