//! Runners as the server sees them: placement, calls to a runner's control API, and the
//! background duties (runners gone silent, sandboxes past their TTL).

use std::sync::Arc;
use std::time::Duration;

use sandstream_runner::api::{CreateSandbox, RunnerSandbox};

use crate::error::{AppError, AppResult};
use crate::server::AppState;
use crate::store::{RunnerRow, SandboxRow};
use crate::time::now_ms;

pub(crate) struct Registry {
    http: reqwest::Client,
    secret: String,
    heartbeat_timeout_ms: i64,
}

impl Registry {
    pub(crate) fn new(secret: String, heartbeat_timeout: Duration) -> Registry {
        // Creating a sandbox may wait for a template build on a fresh runner.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap_or_default();
        Registry { http, secret, heartbeat_timeout_ms: heartbeat_timeout.as_millis() as i64 }
    }

    pub(crate) fn alive(&self, r: &RunnerRow, now: i64) -> bool {
        now - r.last_heartbeat <= self.heartbeat_timeout_ms
    }

    /// The live runner with the most free capacity.
    pub(crate) fn place(&self, state: &AppState) -> AppResult<RunnerRow> {
        let now = now_ms();
        let mut best: Option<(i64, RunnerRow)> = None;
        let mut any = false;
        for r in state.store.runners()? {
            if !self.alive(&r, now) {
                continue;
            }
            any = true;
            let free = i64::from(r.capacity) - i64::from(state.store.live_count(&r.id)?);
            if free > 0 && best.as_ref().is_none_or(|(f, _)| free > *f) {
                best = Some((free, r));
            }
        }
        match best {
            Some((_, r)) => Ok(r),
            None if any => Err(AppError::NoCapacity("every runner is at capacity; try again later".into())),
            None => Err(AppError::NoCapacity("no runner is connected; start one with `sandstream runner`".into())),
        }
    }

    pub(crate) async fn create(&self, runner: &RunnerRow, req: &CreateSandbox) -> AppResult<RunnerSandbox> {
        let resp = self
            .http
            .post(format!("{}/sandboxes", runner.control_url))
            .bearer_auth(&self.secret)
            .json(req)
            .send()
            .await
            .map_err(|e| AppError::internal(format!("runner {} unreachable: {e}", runner.id)))?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| AppError::internal(format!("runner {} answer: {e}", runner.id)));
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or("runner refused").to_string();
        Err(match status.as_u16() {
            400 => AppError::BadRequest(message),
            503 => AppError::NoCapacity(message),
            _ => AppError::internal(format!("runner {}: {status}: {message}", runner.id)),
        })
    }

    /// Kills a sandbox on its runner; one the runner no longer has counts as killed.
    pub(crate) async fn kill(&self, runner: &RunnerRow, id: &str) -> AppResult<()> {
        let resp = self
            .http
            .delete(format!("{}/sandboxes/{id}", runner.control_url))
            .bearer_auth(&self.secret)
            .send()
            .await
            .map_err(|e| AppError::internal(format!("runner {} unreachable: {e}", runner.id)))?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            s => Err(AppError::internal(format!("runner {}: kill {id}: {s}", runner.id))),
        }
    }
}

/// Kills a sandbox everywhere: on its runner (when reachable) and in the state.
pub(crate) async fn kill_sandbox(state: &AppState, sb: &SandboxRow) -> AppResult<()> {
    if let Some(runner) = state.store.runner(&sb.runner_id)?
        && let Err(e) = state.registry.kill(&runner, &sb.id).await
    {
        // The runner's next heartbeat lists it; the server then tells it to go.
        tracing::warn!(sandbox_id = %sb.id, error = %e, "runner did not confirm the kill");
    }
    state.store.set_sandbox_state(&sb.id, "killed")?;
    state.exec.forget_sandbox(&sb.id);
    Ok(())
}

/// Once a second: runners that went silent have their sandboxes marked lost; sandboxes
/// past their TTL are killed.
pub(crate) async fn monitor(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = monitor_once(&state).await {
            tracing::warn!(error = %e, "monitor pass failed");
        }
    }
}

async fn monitor_once(state: &AppState) -> AppResult<()> {
    let now = now_ms();
    for r in state.store.runners()? {
        if !state.registry.alive(&r, now) {
            let n = state.store.mark_runner_lost(&r.id)?;
            if n > 0 {
                tracing::warn!(runner_id = %r.id, sandboxes = n, "runner stopped sending heartbeats; its sandboxes are lost");
            }
        }
    }
    for sb in state.store.expired_sandboxes(now)? {
        tracing::info!(sandbox_id = %sb.id, "sandbox reached its timeout; killing it");
        kill_sandbox(state, &sb).await?;
    }
    Ok(())
}
