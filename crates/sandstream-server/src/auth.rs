//! API keys, browser sessions and who is calling. Keys and session tokens are random,
//! shown once, and stored only as SHA-256 hashes.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sandstream_proto::secret::constant_time_eq;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::limits::Throttle;
use crate::store::{Principal, StateStore};
use crate::time::now_ms;

pub(crate) const SESSION_COOKIE: &str = "sandstream_session";
/// How long a browser session lasts.
pub(crate) const SESSION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long a one-time login link stays valid.
pub(crate) const LOGIN_MS: i64 = 24 * 3600 * 1000;

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without randomness no key is safe to hand out: failing loudly is the only option.
    getrandom::fill(&mut buf).expect("the OS random number generator works");
    hex::encode(buf)
}

pub(crate) fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn new_key() -> String {
    format!("ss_{}", random_hex(24))
}

/// The credential a request or socket.io handshake carries, in order of preference:
/// `Authorization: Bearer`, `X-API-Key`, then the session cookie.
pub(crate) enum Credential {
    Key(String),
    Session(String),
}

pub(crate) fn credential(headers: &HeaderMap) -> Option<Credential> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Credential::Key(token.trim().to_string()));
        }
    }
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Credential::Key(v.trim().to_string()));
    }
    cookie(headers, SESSION_COOKIE).map(Credential::Session)
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// What checks who is calling: keys and sessions (in the store), the throttle around
/// every key check, and the runner secret. Cheap to clone (handles only); the extractors
/// below take it from the router's state (`FromRef`).
#[derive(Clone)]
pub(crate) struct Gate {
    store: Arc<dyn StateStore>,
    throttle: Arc<Throttle>,
    runner_secret: Arc<str>,
}

impl Gate {
    pub(crate) fn new(store: Arc<dyn StateStore>, throttle: Arc<Throttle>, runner_secret: &str) -> Gate {
        Gate { store, throttle, runner_secret: runner_secret.into() }
    }

    pub(crate) fn runner_secret(&self) -> &str {
        &self.runner_secret
    }

    fn resolve(&self, cred: &Credential) -> Result<Principal, AppError> {
        let found = match cred {
            Credential::Key(k) => self.store.key_by_hash(&hash(k))?,
            Credential::Session(s) => self.store.session(&hash(s), "session", now_ms())?,
        };
        found.ok_or_else(|| match cred {
            Credential::Key(_) => AppError::Unauthorized("unknown or revoked API key".into()),
            Credential::Session(_) => AppError::Unauthorized(
                "session expired or signed out; sign in again with an API key or a link from `sandstream login-link`"
                    .into(),
            ),
        })
    }

    /// `resolve`, with the throttle around it: an address that sent too many wrong keys
    /// is refused before its key is looked at, a wrong key counts against its address,
    /// and a right one takes a request from its key's rate.
    pub(crate) fn admit(&self, cred: &Credential, ip: Option<std::net::IpAddr>) -> Result<Principal, AppError> {
        self.throttle.check_address(ip)?;
        match self.resolve(cred) {
            Ok(p) => {
                self.throttle.request(&p.key_id)?;
                Ok(p)
            }
            Err(e @ AppError::Unauthorized(_)) => {
                self.throttle.failed(ip);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

/// The peer address of a request, when the server was started with it (not in tests
/// that call the router without a socket).
pub(crate) fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for Principal
where
    Gate: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let cred = credential(&parts.headers).ok_or_else(|| {
            AppError::Unauthorized("missing API key: send Authorization: Bearer KEY or X-API-Key: KEY".into())
        })?;
        Gate::from_ref(state).admit(&cred, peer(parts))
    }
}

/// A principal that must hold the admin key.
pub(crate) struct Admin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Gate: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let p = Principal::from_request_parts(parts, state).await?;
        if !p.admin {
            return Err(AppError::Forbidden("this route needs the admin key".into()));
        }
        Ok(Admin(p))
    }
}

/// A principal that sent an API key itself, not a browser session. Making a login link
/// or a session needs one: if a session could be traded for a new session (or for a
/// link to one), a stolen cookie would renew itself for as long as its key lives
/// instead of dying after `SESSION_MS`.
pub(crate) struct KeyHolder(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for KeyHolder
where
    Gate: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let p = Principal::from_request_parts(parts, state).await?;
        match credential(&parts.headers) {
            Some(Credential::Key(_)) => Ok(KeyHolder(p)),
            _ => Err(AppError::Forbidden(
                "this route needs an API key (Authorization: Bearer KEY), not a browser session".into(),
            )),
        }
    }
}

/// The `Set-Cookie` value of a new browser session `token`. `HttpOnly`: the page's
/// scripts never see it (an injected script cannot carry it away); `SameSite=Strict`:
/// another site's page cannot make the browser send it (CSRF).
pub(crate) fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_MS / 1000)
}

/// The `Set-Cookie` value that makes the browser forget its session (signing out).
pub(crate) fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A runner, holding the runner secret.
pub(crate) struct RunnerAuth;

impl<S: Send + Sync> FromRequestParts<S> for RunnerAuth
where
    Gate: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = Gate::from_ref(state);
        match credential(&parts.headers) {
            Some(Credential::Key(k)) if constant_time_eq(k.as_bytes(), gate.runner_secret.as_bytes()) => Ok(RunnerAuth),
            _ => Err(AppError::Unauthorized("runner routes need the runner secret".into())),
        }
    }
}
