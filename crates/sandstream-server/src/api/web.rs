//! The web page (a `/?token=` login link is traded in `login.rs`) and health.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::AppError;

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "probes",
    responses(
        (status = 200, description = "`ok`", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 503, description = "`starting`", body = String, content_type = "text/plain; charset=utf-8"),
    ))]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

pub(crate) async fn api_not_found(req: Request) -> AppError {
    AppError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

pub(crate) async fn method_not_allowed(req: Request) -> AppError {
    AppError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

/// `/?token=ONE_TIME` trades a login token for a session cookie; everything else is the
/// built page, or a JSON 404 for a path it does not have (`page.rs`).
pub(crate) async fn page(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let token = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(String::from)));
    if let Some(token) = token {
        return super::login::redeem(&state, &token);
    }
    super::page::serve(&state, req).await
}
