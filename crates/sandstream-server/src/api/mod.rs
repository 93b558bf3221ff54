//! Every HTTP route, in one table that also produces the OpenAPI document, so the
//! document cannot miss a route.

mod admin;
mod exec;
mod sandboxes;
mod templates;
mod web;

pub(crate) use web::login_token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post};

use crate::server::AppState;

/// One method on one path.
pub(crate) struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it: `key`, `admin`, `runner` or `none`.
    pub auth: &'static str,
    pub handler: MethodRouter<Arc<AppState>>,
}

fn r(
    method: &'static str,
    path: &'static str,
    auth: &'static str,
    summary: &'static str,
    handler: MethodRouter<Arc<AppState>>,
) -> Route {
    Route { method, path, summary, auth, handler }
}

pub(crate) fn routes() -> Vec<Route> {
    vec![
        r("post", "/api/v1/sandboxes", "key", "Create a sandbox", post(sandboxes::create)),
        r("get", "/api/v1/sandboxes", "key", "List this key's sandboxes", get(sandboxes::list)),
        r("get", "/api/v1/sandboxes/{id}", "key", "Get a sandbox", get(sandboxes::get)),
        r("delete", "/api/v1/sandboxes/{id}", "key", "Kill a sandbox", delete(sandboxes::kill)),
        r(
            "post",
            "/api/v1/sandboxes/{id}/timeout",
            "key",
            "Set a sandbox's timeout from now",
            post(sandboxes::set_timeout),
        ),
        r(
            "get",
            "/api/v1/sandboxes/{id}/connection",
            "key",
            "Where and how to reach the sandbox's agent: {host, port, token}",
            get(sandboxes::connection),
        ),
        r(
            "get",
            "/api/v1/templates",
            "key",
            "The templates sandboxes can be created from, and the live runners that have each",
            get(templates::list),
        ),
        r("post", "/api/sandbox/exec", "key", "Run code with live logs over socket.io (202 at once)", post(exec::exec)),
        r("get", "/api/v1/executions/{id}", "key", "Get an execution", get(exec::get)),
        r("get", "/api/v1/executions/{id}/logs", "key", "An execution's stored output from a seq", get(exec::logs)),
        r("post", "/api/v1/executions/{id}/cancel", "key", "Cancel a running execution", post(exec::cancel)),
        r("post", "/api/v1/keys", "admin", "Create a tenant key", post(admin::create_key)),
        r("get", "/api/v1/keys", "admin", "List keys", get(admin::list_keys)),
        r("delete", "/api/v1/keys/{id}", "admin", "Revoke a key", delete(admin::revoke_key)),
        r("get", "/api/v1/runners", "admin", "List runners", get(admin::list_runners)),
        r("post", "/api/v1/runners", "runner", "Register a runner", post(admin::register_runner)),
        r(
            "post",
            "/api/v1/runners/{id}/heartbeat",
            "runner",
            "A runner's heartbeat with its sandboxes",
            post(admin::heartbeat),
        ),
        r("get", "/api/openapi.json", "none", "This document", get(web::openapi)),
        r("get", "/healthz", "none", "200 once the server (and under `up`, its runner) is ready", get(web::healthz)),
    ]
}

/// The router for every route, the web page and JSON 404s.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    let limit = state.cfg.max_code_bytes.saturating_mul(2).saturating_add(64 << 10);
    router
        .route("/api/{*rest}", axum::routing::any(web::api_not_found))
        .fallback(web::page)
        .method_not_allowed_fallback(web::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}
