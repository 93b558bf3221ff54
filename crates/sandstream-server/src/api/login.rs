//! Getting in: one-time login links (`sandstream login-link`, and the one `up` prints),
//! the sign-in form's trade of an API key for a session, and signing out. Each way in
//! ends in the same session cookie, which stands for one key: a tenant's key sees that
//! tenant's sandboxes only.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::auth::{
    KeyHolder, LOGIN_MS, SESSION_COOKIE, SESSION_MS, cleared_session_cookie, cookie, hash, random_hex, session_cookie,
};
use crate::error::{AppError, AppResult, ErrorBody, optional_json};
use crate::store::StateStore;
use crate::time::{now_ms, rfc3339};

/// A one-time login link: its path on the server (`/?token=…`) and when it stops working.
pub(crate) struct LoginLink {
    pub path: String,
    pub expires_at: i64,
}

/// A new one-time login link for key `key_id`, valid for [`LOGIN_MS`]. Only the token's
/// hash is stored; the first visit deletes it (`StateStore::session`).
pub(crate) fn mint(store: &dyn StateStore, key_id: &str) -> Result<LoginLink, AppError> {
    let token = random_hex(24);
    let expires_at = now_ms() + LOGIN_MS;
    store.insert_session(&hash(&token), key_id, "login", expires_at)?;
    Ok(LoginLink { path: format!("/?token={token}"), expires_at })
}

/// A new browser session for key `key_id`: its cookie and when it ends.
fn start_session(store: &dyn StateStore, key_id: &str) -> Result<(String, i64), AppError> {
    let token = random_hex(32);
    let expires_at = now_ms() + SESSION_MS;
    store.insert_session(&hash(&token), key_id, "session", expires_at)?;
    Ok((session_cookie(&token), expires_at))
}

/// What a spent or expired link shows: how to get in again, with the command that exists.
fn spent_link_page() -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Sandstream: login link used</title>\
         <h1>This login link was already used or has expired</h1>\
         <p>A login link works once, within {} hours. Get a new one with \
         <code>sandstream login-link --server URL</code>, which makes it for the API key in \
         <code>SANDSTREAM_API_KEY</code> (or <code>--api-key KEY</code>), or \
         <a href=\"/\">sign in with your API key</a>.</p>",
        LOGIN_MS / 3_600_000
    ))
}

/// `GET /?token=ONE_TIME`: trades a login token for a session cookie and sends the
/// browser to `/`; a spent or unknown token gets a 401 page that says how to get in.
pub(crate) fn redeem(state: &AppState, token: &str) -> Response {
    match state.store.session(&hash(token), "login", now_ms()) {
        Ok(Some(p)) => match start_session(state.store.as_ref(), &p.key_id) {
            Ok((cookie, _)) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
            Err(e) => e.into_response(),
        },
        Ok(None) => (StatusCode::UNAUTHORIZED, spent_link_page()).into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

/// `POST /api/v1/login-links`; the body may be absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LinkBody {
    /// The key the link signs in as (admin keys only); the caller's own by default.
    key_id: Option<String>,
}

/// A one-time login link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LoginLink)]
pub(crate) struct LoginLinkJson {
    /// The link to open, on the server's own address (only `path` when the server does
    /// not know it).
    url: String,
    /// `/?token=…`.
    path: String,
    /// The key it signs in as.
    key_id: String,
    /// After this, or after its first use, it no longer works.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A new browser session, whose cookie `Set-Cookie` carries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Session)]
pub(crate) struct SessionJson {
    /// The key it stands for.
    key_id: String,
    admin: bool,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// `POST /api/v1/login-links`: a one-time login link for the caller's own key, or, for
/// an admin key, for the live key `keyId`. The body is optional.
#[utoipa::path(post, path = "/api/v1/login-links", operation_id = "createLoginLink", tag = "login",
    request_body = Option<LinkBody>,
    responses(
        (status = 201, description = "The link", body = LoginLinkJson),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 403, description = "A tenant's key asked for another key's link", body = ErrorBody),
        (status = 404, description = "No such live key", body = ErrorBody),
    ))]
pub(crate) async fn create_link(
    State(state): State<Arc<AppState>>,
    KeyHolder(me): KeyHolder,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<(StatusCode, Json<LoginLinkJson>)> {
    let body: LinkBody = optional_json(body)?;
    let key_id = match body.key_id {
        None => me.key_id.clone(),
        Some(id) if id == me.key_id => id,
        // Refused before the id is looked up, so a tenant learns nothing of other keys.
        Some(_) if !me.admin => {
            return Err(AppError::Forbidden("only an admin key can make a login link for another key".into()));
        }
        Some(id) => {
            let live = state.store.list_keys()?.into_iter().any(|k| k.id == id && !k.revoked);
            if !live {
                return Err(AppError::NotFound(format!("key {id} not found or revoked")));
            }
            id
        }
    };
    let link = mint(state.store.as_ref(), &key_id)?;
    tracing::info!(key_id = %key_id, by = %me.key_id, "login link made");
    let url = match state.base_url.get() {
        Some(base) => format!("{base}{}", link.path),
        None => link.path.clone(),
    };
    Ok((
        StatusCode::CREATED,
        Json(LoginLinkJson { url, path: link.path, key_id, expires_at: rfc3339(link.expires_at) }),
    ))
}

/// `POST /api/v1/session`: the sign-in form. The key comes in `Authorization` (checked
/// and throttled like every key, `Gate::admit`: wrong keys count against the address);
/// the answer sets the same session cookie a login link does. A session the browser
/// already had is ended.
#[utoipa::path(post, path = "/api/v1/session", operation_id = "signIn", tag = "login",
    responses(
        (status = 201, description = "Signed in", body = SessionJson,
            headers(("Set-Cookie" = String, description = "The session cookie (HttpOnly, SameSite=Strict)"))),
    ))]
pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    KeyHolder(me): KeyHolder,
    headers: HeaderMap,
) -> AppResult<Response> {
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&hash(&old))?;
    }
    let (cookie, expires_at) = start_session(state.store.as_ref(), &me.key_id)?;
    tracing::info!(key_id = %me.key_id, "signed in with an API key");
    let body = SessionJson { key_id: me.key_id, admin: me.admin, expires_at: rfc3339(expires_at) };
    Ok((StatusCode::CREATED, [(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// `DELETE /api/v1/session`: signing out. The session is deleted on the server (a copy
/// of the cookie stops working too) and the browser is told to forget it. Without a
/// session it only clears the cookie, so it never fails.
#[utoipa::path(delete, path = "/api/v1/session", operation_id = "signOut", tag = "login",
    responses(
        (status = 204, description = "Signed out (also without a session)",
            headers(("Set-Cookie" = String, description = "Clears the session cookie"))),
    ))]
pub(crate) async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> AppResult<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&hash(&token))?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared_session_cookie())]).into_response())
}

#[cfg(test)]
mod tests;
