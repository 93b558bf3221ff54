//! The web page, the one-time login link, health and the OpenAPI document.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::Value;

use super::AppState;
use crate::auth::{LOGIN_MS, SESSION_COOKIE, SESSION_MS, hash, random_hex};
use crate::error::AppError;
use crate::time::now_ms;

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
/// built page, or a JSON 404 for a path it does not have (`page.rs`).
pub(crate) async fn page(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let token = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=").map(String::from)));
    if let Some(token) = token {
        return match state.store.session(&hash(&token), "login", now_ms()) {
            Ok(Some(p)) => {
                let session = random_hex(32);
                if let Err(e) = state.store.insert_session(&hash(&session), &p.key_id, "session", now_ms() + SESSION_MS) {
                    return AppError::from(e).into_response();
                }
                let cookie = format!(
                    "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                    SESSION_MS / 1000
                );
                ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
            }
            Ok(None) => (
                StatusCode::UNAUTHORIZED,
                Html("<h1>This login link was already used or has expired</h1><p>Ask <code>sandstream login-link</code> for a new one.</p>"),
            )
                .into_response(),
            Err(e) => AppError::from(e).into_response(),
        };
    }
    super::page::serve(&state, req).await
}

/// A new one-time login link for the key `key_id`.
pub(crate) fn login_token(state: &AppState, key_id: &str) -> Result<String, AppError> {
    let token = random_hex(24);
    state.store.insert_session(&hash(&token), key_id, "login", now_ms() + LOGIN_MS)?;
    Ok(token)
}
