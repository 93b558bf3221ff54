//! Admin routes (keys, runners list) and the runner link (register, heartbeat).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_runner_protocol::{Heartbeat, HeartbeatReply, Register, Registered};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::auth::{Admin, RunnerAuth, hash, new_key, random_hex};
use crate::error::{AppError, AppJson, AppResult};
use crate::store::RunnerRow;
use crate::time::{now_ms, rfc3339};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    name: String,
}

pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    _: Admin,
    AppJson(body): AppJson<KeyBody>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(AppError::BadRequest("name must be 1 to 128 characters".into()));
    }
    let id = format!("key_{}", random_hex(8));
    let key = new_key();
    state.store.insert_key(&id, name, &hash(&key), false, now_ms())?;
    tracing::info!(key_id = %id, "tenant key created");
    Ok((StatusCode::CREATED, Json(json!({"id": id, "name": name, "key": key}))))
}

pub(crate) async fn list_keys(State(state): State<Arc<AppState>>, _: Admin) -> AppResult<Json<Value>> {
    let keys = state.store.list_keys()?;
    Ok(Json(Value::Array(
        keys.iter()
            .map(|k| {
                json!({"id": k.id, "name": k.name, "admin": k.admin, "createdAt": rfc3339(k.created_at), "revoked": k.revoked})
            })
            .collect(),
    )))
}

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

pub(crate) async fn list_runners(State(state): State<Arc<AppState>>, _: Admin) -> AppResult<Json<Value>> {
    let now = now_ms();
    let mut out = Vec::new();
    for r in state.store.runners()? {
        out.push(json!({
            "id": r.id, "name": r.name, "advertiseHost": r.advertise_host, "capacity": r.capacity,
            "backend": r.backend, "sandboxes": state.store.live_count(&r.id)?,
            "lastHeartbeat": rfc3339(r.last_heartbeat), "alive": state.registry.alive(&r, now),
            "templates": state.registry.templates_of(&r.id),
        }));
    }
    Ok(Json(Value::Array(out)))
}

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
