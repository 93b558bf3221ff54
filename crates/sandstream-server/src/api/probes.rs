//! What probes and scrapers ask: `GET /metrics` (Prometheus text, `metrics.rs`),
//! `GET /readyz` (the database answers and a runner is alive), `GET /version`, and the
//! middleware that counts every request by its route template.
//!
//! `/metrics` is public, like `/healthz`: it holds counts only, never a tenant, key or
//! id (see `metrics.rs`). An operator who wants it private keeps the port off the
//! internet or puts the scraper behind the same proxy as the API.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::metrics::{self, Gauges, RouteLabel};
use crate::store::StoreError;
use crate::time::now_ms;

/// Runners heard from within the heartbeat timeout; an error when the database does
/// not answer.
fn runners_alive(state: &AppState) -> Result<u64, StoreError> {
    let now = now_ms();
    Ok(state.store.runners()?.iter().filter(|r| state.registry.alive(r, now)).count() as u64)
}

/// `/readyz` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// Always `ready`.
    #[schema(pattern = "^ready$")]
    status: &'static str,
}

/// `/readyz` when not ready.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotReady {
    /// Always `not_ready`.
    #[schema(pattern = "^not_ready$")]
    status: &'static str,
    /// What is missing: `database`, `runner`.
    missing: Vec<&'static str>,
    message: String,
}

/// `/version`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Version {
    /// The server's version (its crate's).
    version: &'static str,
    /// The commit it was built from; null unless the build was given one.
    commit: Option<&'static str>,
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let sandboxes = state
        .store
        .count_by_state()
        .inspect_err(|e| tracing::error!(error = %e, "metrics: could not count sandboxes"))
        .ok();
    let runners_alive =
        runners_alive(&state).inspect_err(|e| tracing::error!(error = %e, "metrics: could not count runners")).ok();
    let body = state.metrics.render(&Gauges { sandboxes, runners_alive });
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

/// 200 `{"status": "ready"}` when the database answers and at least one runner is
/// alive; else 503 naming what is missing (`missing`: `database`, `runner`). Runners are
/// known from the database, so without it neither is confirmed.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready, and why", body = NotReady),
    ))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let timeout = humantime::format_duration(state.cfg.heartbeat_timeout);
    let (missing, message) = match runners_alive(&state) {
        Ok(n) if n > 0 => return axum::Json(Ready { status: "ready" }).into_response(),
        Ok(_) => (vec!["runner"], format!("no runner has sent a heartbeat in the last {timeout}")),
        Err(e) => {
            tracing::error!(error = %e, "readyz: the database does not answer");
            (vec!["database", "runner"], "the database does not answer, so no runner can be confirmed alive".into())
        }
    };
    let body = NotReady { status: "not_ready", missing, message };
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `{"version", "commit"}`; `commit` is null unless the build was given one.
#[utoipa::path(get, path = "/version", operation_id = "version", tag = "probes",
    responses((status = 200, description = "The version", body = Version)))]
pub(crate) async fn version() -> axum::Json<Version> {
    axum::Json(Version { version: metrics::VERSION, commit: metrics::COMMIT })
}

/// Counts a request by method, route template and status once it is answered. A
/// request no route matched went to the fallback: the page when it answered, a 404
/// otherwise.
pub(crate) async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let status = resp.status();
    let route = match &matched {
        Some(m) => RouteLabel::Template(m.as_str()),
        None if status == StatusCode::NOT_FOUND => RouteLabel::Unmatched,
        None => RouteLabel::Page,
    };
    state.metrics.http_request(&method, route, status.as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests;
