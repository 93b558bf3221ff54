//! The web page (a `/?token=` login link is traded in `login.rs`), health and the
//! OpenAPI document.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use tower::ServiceExt;

use super::AppState;
use crate::error::AppError;

pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

pub(crate) async fn openapi(State(_): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(super::openapi::document())
}

pub(crate) async fn api_not_found(req: Request) -> AppError {
    AppError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

pub(crate) async fn method_not_allowed(req: Request) -> AppError {
    AppError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

/// `/?token=ONE_TIME` trades a login token for a session cookie; everything else is the
/// built page (index.html for unknown paths, so client-side routes work).
pub(crate) async fn page(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let token = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(String::from)));
    if let Some(token) = token {
        return super::login::redeem(&state, &token);
    }
    let Some(dir) = state.cfg.web_dir.clone().filter(|d| d.join("index.html").is_file()) else {
        return Html(
            "<h1>Sandstream</h1><p>The web page is not built. Run <code>scripts/build-web.sh</code> \
             (or <code>scripts/start.sh</code>, which builds it) and restart.</p>",
        )
        .into_response();
    };
    let index = dir.join("index.html");
    let svc = tower_http::services::ServeDir::new(&dir).fallback(tower_http::services::ServeFile::new(index));
    match svc.oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => AppError::internal(e).into_response(),
    }
}
