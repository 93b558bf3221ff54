//! Admin routes (keys, runners list) and the runner link (register, heartbeat).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sandstream_runner_protocol::{Heartbeat, HeartbeatReply, Register, Registered};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::SandboxState;
use crate::auth::{Admin, RunnerAuth, hash, new_key, random_hex};
use crate::error::{AppError, AppJson, AppResult};
use crate::server::AppState;
use crate::store::RunnerRow;
use crate::time::{now_ms, rfc3339};

/// A sandbox a runner reports but the server does not know is removed only after this
/// long: its creation may still be on its way back to the server.
const UNKNOWN_GRACE_MS: i64 = 30_000;

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
    if !state.store.revoke_key(&id)? {
        return Err(AppError::NotFound(format!("key {id} not found")));
    }
    let closed = crate::hub::disconnect_key(&state.io, &id);
    // A key is a tenant: no other key can reach its sandboxes, so none would be left to
    // stop the ones it made (and whoever holds their agents' tokens could go on using
    // them until their timeout). They go with it.
    let mut kills = tokio::task::JoinSet::new();
    for sb in state.store.sandboxes_of(&id)? {
        let state = state.clone();
        kills.spawn(async move { (crate::registry::kill_sandbox(&state, &sb).await, sb.id) });
    }
    let mut killed = 0;
    while let Some(done) = kills.join_next().await {
        match done {
            Ok((Ok(()), _)) => killed += 1,
            Ok((Err(e), sandbox_id)) => {
                tracing::error!(%sandbox_id, error = %e, "could not kill a revoked key's sandbox")
            }
            Err(e) => tracing::error!(error = %e, "a kill of a revoked key's sandbox failed"),
        }
    }
    tracing::info!(key_id = %id, sockets_closed = closed, sandboxes_killed = killed, "key revoked");
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

/// Clock difference allowed between a runner and this server when a heartbeat's list is
/// compared with creation times.
const CLOCK_SLACK_MS: i64 = 1_000;

/// Whether a sandbox created (on this server's clock) at `created_at` and missing from a
/// heartbeat is gone. A list read after the sandbox was created would have it, so it is
/// gone at once (a dead agent shows within a heartbeat, not 30 s later). A list read
/// before could simply predate it; a runner that does not say when it read its list
/// gets the old grace.
fn gone(created_at: i64, taken_at: Option<i64>, now: i64) -> bool {
    match taken_at {
        Some(t) => created_at + CLOCK_SLACK_MS < t,
        None => now - created_at > UNKNOWN_GRACE_MS,
    }
}

pub(crate) async fn heartbeat(
    State(state): State<Arc<AppState>>,
    _: RunnerAuth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Heartbeat>,
) -> AppResult<Json<HeartbeatReply>> {
    let now = now_ms();
    if !state.store.touch_runner(&id, now)? {
        return Err(AppError::NotFound(format!("runner {id} not found; register again")));
    }
    state.runner_seen();
    state.registry.set_templates(&id, body.templates.clone());
    let reported: HashSet<&str> = body.sandboxes.iter().map(|s| s.id.as_str()).collect();
    let mut reply = HeartbeatReply::default();
    let mut unknown = state.unknown_since.lock().unwrap_or_else(|p| p.into_inner());
    for s in &body.sandboxes {
        match state.store.sandbox(&s.id)? {
            Some(sb) if sb.runner_id == id && sb.state != SandboxState::Killed => {
                unknown.remove(&s.id);
                if sb.state != SandboxState::Running || sb.host != s.host || sb.port != s.port || sb.token != s.token {
                    tracing::info!(sandbox_id = %s.id, runner_id = %id, "sandbox reachable again");
                    state.store.set_sandbox_conn(&s.id, &s.host, s.port, &s.token)?;
                    state.exec.forget_sandbox(&s.id);
                }
            }
            _ => {
                let since = *unknown.entry(s.id.clone()).or_insert(now);
                if now - since >= UNKNOWN_GRACE_MS {
                    reply.kill.push(s.id.clone());
                    unknown.remove(&s.id);
                }
            }
        }
    }
    drop(unknown);
    for sb in state.store.sandboxes_on(&id)? {
        if !reported.contains(sb.id.as_str()) && gone(sb.created_at, body.taken_at, now) {
            tracing::warn!(sandbox_id = %sb.id, runner_id = %id, "runner no longer has this sandbox");
            state.store.set_sandbox_state(&sb.id, SandboxState::Killed)?;
            state.exec.forget_sandbox(&sb.id);
        }
    }
    Ok(Json(reply))
}

#[cfg(test)]
mod tests {
    use super::gone;

    #[test]
    fn a_sandbox_missing_from_a_list_read_after_its_creation_is_gone_at_once() {
        let created = 1_000_000;
        // Read 5 s after the creation: gone, however young the sandbox.
        assert!(gone(created, Some(created + 5_000), created + 5_010));
        // Read before it (or within the clock slack): the list may predate it.
        assert!(!gone(created, Some(created - 100), created + 50));
        assert!(!gone(created, Some(created + 900), created + 950));
        // A runner that does not say when: the old 30 s grace.
        assert!(!gone(created, None, created + 29_000));
        assert!(gone(created, None, created + 31_000));
    }
}
