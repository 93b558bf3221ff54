//! Every HTTP route, in one table that builds the router and gives the OpenAPI document
//! (`openapi.rs`) each operation's access and summary; the operations themselves come
//! from the handlers' `#[utoipa::path]`, and a test fails when the two sets differ.

mod admin;
mod app_state;
mod exec;
mod files;
mod login;
mod openapi;
mod page;
mod probes;
mod sandboxes;
mod ssh;
mod templates;
mod terminals;
mod web;

pub(crate) use app_state::AppState;
pub(crate) use login::mint as login_link;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};

/// Who may call a route. The handler's extractor enforces it (`Principal`, `Admin`,
/// `RunnerAuth`); this says it in the OpenAPI document, and a test checks that each
/// route refuses a call without credentials exactly when this says it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Any live API key (or a web session of one).
    Key,
    /// An admin key.
    Admin,
    /// A runner, with the runner secret.
    Runner,
    /// Anyone.
    Public,
}

impl Access {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Key => "key",
            Access::Admin => "admin",
            Access::Runner => "runner",
            Access::Public => "none",
        }
    }
}

/// One method on one path.
pub(crate) struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub handler: MethodRouter<Arc<AppState>>,
}

fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: MethodRouter<Arc<AppState>>,
) -> Route {
    Route { method, path, summary, access, handler }
}

pub(crate) fn routes() -> Vec<Route> {
    vec![
        r("post", "/api/v1/sandboxes", Access::Key, "Create a sandbox", post(sandboxes::create)),
        r("get", "/api/v1/sandboxes", Access::Key, "List this key's sandboxes", get(sandboxes::list)),
        r("get", "/api/v1/sandboxes/{id}", Access::Key, "Get a sandbox", get(sandboxes::get)),
        r("delete", "/api/v1/sandboxes/{id}", Access::Key, "Kill a sandbox", delete(sandboxes::kill)),
        r(
            "post",
            "/api/v1/sandboxes/{id}/timeout",
            Access::Key,
            "Set a sandbox's timeout from now",
            post(sandboxes::set_timeout),
        ),
        r(
            "get",
            "/api/v1/sandboxes/{id}/connection",
            Access::Key,
            "Where and how to reach the sandbox's agent: {host, port, token, ssh}",
            get(sandboxes::connection),
        ),
        r(
            "post",
            "/api/v1/sandboxes/{id}/ssh-access",
            Access::Key,
            "A short-lived SSH password for the sandbox, with the command that uses it",
            post(ssh::create_access),
        ),
        r(
            "delete",
            "/api/v1/sandboxes/{id}/ssh-access",
            Access::Key,
            "Revoke every SSH password of the sandbox (its keys stay)",
            delete(ssh::revoke_access),
        ),
        r(
            "get",
            "/api/v1/sandboxes/{id}/files",
            Access::Key,
            "A file's bytes, streamed (`Range` honoured)",
            get(files::transfer::read),
        ),
        r(
            "put",
            "/api/v1/sandboxes/{id}/files",
            Access::Key,
            "Write a file from the raw body, streamed, atomically",
            put(files::transfer::write),
        ),
        r("delete", "/api/v1/sandboxes/{id}/files", Access::Key, "Remove a file or directory", delete(files::remove)),
        r(
            "get",
            "/api/v1/sandboxes/{id}/files/list",
            Access::Key,
            "A directory's entries, to a depth",
            get(files::list),
        ),
        r("get", "/api/v1/sandboxes/{id}/files/stat", Access::Key, "One entry", get(files::stat)),
        r(
            "post",
            "/api/v1/sandboxes/{id}/files/mkdir",
            Access::Key,
            "Create a directory and its parents",
            post(files::make_dir),
        ),
        r("post", "/api/v1/sandboxes/{id}/files/move", Access::Key, "Move (rename) an entry", post(files::move_entry)),
        r(
            "get",
            "/api/v1/sandboxes/{id}/files/watch",
            Access::Key,
            "A directory's changes as server-sent events",
            get(files::watch::watch),
        ),
        r(
            "post",
            "/api/v1/sandboxes/{id}/terminals",
            Access::Key,
            "Open a terminal: the user's login shell on a pseudo-terminal",
            post(terminals::open),
        ),
        r(
            "get",
            "/api/v1/sandboxes/{id}/terminals/{tid}/output",
            Access::Key,
            "A terminal's output from a byte offset, as server-sent events",
            get(terminals::output::output),
        ),
        r(
            "post",
            "/api/v1/sandboxes/{id}/terminals/{tid}/input",
            Access::Key,
            "Type into a terminal",
            post(terminals::input),
        ),
        r(
            "post",
            "/api/v1/sandboxes/{id}/terminals/{tid}/resize",
            Access::Key,
            "Change a terminal's size",
            post(terminals::resize),
        ),
        r(
            "delete",
            "/api/v1/sandboxes/{id}/terminals/{tid}",
            Access::Key,
            "Close a terminal: kill its shell",
            delete(terminals::close),
        ),
        r(
            "get",
            "/api/v1/templates",
            Access::Key,
            "The templates sandboxes can be created from, and the live runners that have each",
            get(templates::list),
        ),
        r(
            "post",
            "/api/sandbox/exec",
            Access::Key,
            "Run code with live logs over socket.io (202 at once)",
            post(exec::exec),
        ),
        r("get", "/api/v1/executions/{id}", Access::Key, "Get an execution", get(exec::get)),
        r(
            "get",
            "/api/v1/executions/{id}/logs",
            Access::Key,
            "An execution's stored output from a seq",
            get(exec::logs),
        ),
        r("post", "/api/v1/executions/{id}/cancel", Access::Key, "Cancel a running execution", post(exec::cancel)),
        r("post", "/api/v1/keys", Access::Admin, "Create a tenant key", post(admin::create_key)),
        r("get", "/api/v1/keys", Access::Admin, "List keys", get(admin::list_keys)),
        r("delete", "/api/v1/keys/{id}", Access::Admin, "Revoke a key", delete(admin::revoke_key)),
        r(
            "post",
            "/api/v1/login-links",
            Access::Key,
            "A one-time login link for the caller's key (an admin key: for any key `keyId`)",
            post(login::create_link),
        ),
        r(
            "post",
            "/api/v1/session",
            Access::Key,
            "Sign in: trade an API key for a session cookie",
            post(login::sign_in),
        ),
        r("delete", "/api/v1/session", Access::Public, "Sign out: end this browser's session", delete(login::sign_out)),
        r("get", "/api/v1/runners", Access::Admin, "List runners", get(admin::list_runners)),
        r("post", "/api/v1/runners", Access::Runner, "Register a runner", post(admin::register_runner)),
        r(
            "post",
            "/api/v1/runners/{id}/heartbeat",
            Access::Runner,
            "A runner's heartbeat with its sandboxes",
            post(admin::heartbeat),
        ),
        r("get", "/api/openapi.json", Access::Public, "This document", get(openapi::serve)),
        r(
            "get",
            "/healthz",
            Access::Public,
            "200 once the server (and under `up`, its runner) is ready",
            get(web::healthz),
        ),
        r("get", "/readyz", Access::Public, "200 when the database answers and a runner is alive", get(probes::readyz)),
        r("get", "/metrics", Access::Public, "Prometheus metrics (text format 0.0.4)", get(probes::metrics)),
        r("get", "/version", Access::Public, "The server's version and build commit", get(probes::version)),
    ]
}

/// The route table's path templates: the only `route` labels of `/metrics` besides the
/// page and unmatched requests.
pub(crate) fn route_templates() -> Vec<&'static str> {
    routes().into_iter().map(|r| r.path).collect()
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), probes::track))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::{Access, routes};
    use crate::server::{app_for_tests, call_for_tests};

    const KEY: &str = "ss_routes_test_admin_key";

    /// Each route's `access` is what its handler enforces: without credentials every
    /// route but the public ones is a 401; with a tenant's key, admin routes are a 403
    /// and runner routes a 401, while key routes get past authentication.
    #[tokio::test]
    async fn every_route_enforces_the_access_it_declares() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_for_tests(dir.path(), KEY).expect("app");
        let (status, made) =
            call_for_tests(&app, "POST", "/api/v1/keys", Some(KEY), Some(serde_json::json!({"name": "t"}))).await;
        assert_eq!(status, 201, "{made}");
        let tenant = made["key"].as_str().expect("key").to_string();
        for route in routes() {
            let path = route.path.replace("{id}", "x");
            let method = route.method.to_uppercase();
            let body = (method == "POST").then(|| serde_json::json!({}));
            let what = format!("{method} {}", route.path);
            let (anonymous, answer) = call_for_tests(&app, &method, &path, None, body.clone()).await;
            let (as_tenant, tenant_answer) = call_for_tests(&app, &method, &path, Some(&tenant), body).await;
            match route.access {
                Access::Public => assert_ne!(anonymous, 401, "{what}: {answer}"),
                _ => assert_eq!(anonymous, 401, "{what}: {answer}"),
            }
            match route.access {
                Access::Admin => assert_eq!(as_tenant, 403, "{what}: {tenant_answer}"),
                Access::Runner => assert_eq!(as_tenant, 401, "{what}: {tenant_answer}"),
                Access::Key | Access::Public => {
                    assert!(![401, 403].contains(&as_tenant), "{what}: {as_tenant} {tenant_answer}")
                }
            }
        }
    }
}
