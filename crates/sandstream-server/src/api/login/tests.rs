//! The ways in, through the router as a browser and `sandstream login-link` call it.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::server::{app_for_tests, call_for_tests};

const ADMIN: &str = "ss_login_test_admin_key";

/// What a request sends: a key (`Authorization: Bearer`), a session cookie, a raw body,
/// the peer address it comes from.
#[derive(Default)]
struct Req<'a> {
    key: Option<&'a str>,
    cookie: Option<&'a str>,
    body: Option<&'a str>,
    peer: Option<SocketAddr>,
}

/// One request: the status, the headers and the body as text.
async fn send(app: &axum::Router, method: &str, path: &str, r: Req<'_>) -> (u16, HeaderMap, String) {
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if let Some(key) = r.key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    if let Some(cookie) = r.cookie {
        req = req.header("cookie", cookie);
    }
    if r.body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req.body(axum::body::Body::from(r.body.unwrap_or("").to_string())).expect("request");
    if let Some(peer) = r.peer {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    }
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn set_cookie(h: &HeaderMap) -> Option<String> {
    h.get("set-cookie").map(|v| v.to_str().expect("ascii").to_string())
}

/// The `name=value` part of a `Set-Cookie`, as a browser sends it back.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("name=value").to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A fresh server with a tenant key: (app, tenant key, tenant key id, admin key id).
async fn setup(dir: &std::path::Path) -> (axum::Router, String, String, String) {
    let app = app_for_tests(dir, ADMIN).expect("app");
    let (status, made) = call_for_tests(&app, "POST", "/api/v1/keys", Some(ADMIN), Some(json!({"name": "t"}))).await;
    assert_eq!(status, 201, "{made}");
    let (status, keys) = call_for_tests(&app, "GET", "/api/v1/keys", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{keys}");
    let admin_id = keys.as_array().expect("list").iter().find(|k| k["admin"] == true).expect("admin")["id"].clone();
    let s = |v: &Value| v.as_str().expect("string").to_string();
    (app, s(&made["key"]), s(&made["id"]), s(&admin_id))
}

/// Opens a link's path as a browser does: the session cookie it sets, if any.
async fn open(app: &axum::Router, path: &str) -> (u16, Option<String>, String) {
    let (status, headers, body) = send(app, "GET", path, Req::default()).await;
    if status == 303 {
        assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some("/"));
    }
    (status, set_cookie(&headers).map(|c| cookie_of(&c)), body)
}

/// Whether `cookie` is signed in, and as an admin: `POST /api/v1/keys` is 201 for an
/// admin's session, 403 for a tenant's, 401 for none.
async fn session_kind(app: &axum::Router, cookie: &str) -> u16 {
    let body = Some(r#"{"name": "probe"}"#);
    send(app, "POST", "/api/v1/keys", Req { cookie: Some(cookie), body, ..Req::default() }).await.0
}

#[tokio::test]
async fn a_key_makes_a_link_for_itself_that_works_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, tenant, tenant_id, _) = setup(dir.path()).await;
    let (status, _, text) =
        send(&app, "POST", "/api/v1/login-links", Req { key: Some(&tenant), ..Req::default() }).await;
    assert_eq!(status, 201, "{text}");
    let link = json(&text);
    assert_eq!(link["keyId"], tenant_id.as_str());
    let path = link["path"].as_str().expect("path");
    assert!(path.starts_with("/?token=") && path.len() > 40, "{path}");
    assert!(link["url"].as_str().expect("url").ends_with(path), "{link}");
    let expires = humantime::parse_rfc3339(link["expiresAt"].as_str().expect("expiresAt")).expect("rfc3339");
    let left = expires.duration_since(std::time::SystemTime::now()).expect("in the future");
    assert!(left.as_secs() > 23 * 3600 && left.as_secs() <= 24 * 3600, "a link lasts 24 h: {left:?}");

    let (status, cookie, body) = open(&app, path).await;
    assert_eq!(status, 303, "{body}");
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("sandstream_session=") && cookie.len() > 40, "{cookie}");
    let (status, _, list) =
        send(&app, "GET", "/api/v1/sandboxes", Req { cookie: Some(&cookie), ..Req::default() }).await;
    assert_eq!((status, list.as_str()), (200, "[]"));
    assert_eq!(session_kind(&app, &cookie).await, 403, "the link signs in as the tenant, not as an admin");

    // Spent: refused, no session, and the page names the command that makes a new one.
    let (status, again, page) = open(&app, path).await;
    assert_eq!((status, again), (401, None), "the link worked twice");
    assert!(page.contains("already used or has expired"), "{page}");
    assert!(page.contains("<code>sandstream login-link --server URL</code>"), "{page}");
    assert!(page.contains("within 24 hours"), "{page}");
    let (status, _, _) = open(&app, "/?token=0123456789abcdef").await;
    assert_eq!(status, 401, "a made-up token");
}

#[tokio::test]
async fn a_tenant_cannot_make_a_link_for_another_key_and_an_admin_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, tenant, tenant_id, admin_id) = setup(dir.path()).await;
    let post = |key: &'static str, body: String| {
        let app = app.clone();
        let key = if key == "admin" { ADMIN.to_string() } else { tenant.clone() };
        async move {
            let r = Req { key: Some(&key), body: Some(&body), ..Req::default() };
            let (status, _, text) = send(&app, "POST", "/api/v1/login-links", r).await;
            (status, text)
        }
    };
    // A tenant: its own key only; another key's id is refused whether it exists or not.
    for other in [admin_id.as_str(), "key_0000000000000000"] {
        let (status, text) = post("tenant", json!({"keyId": other}).to_string()).await;
        assert_eq!(status, 403, "{text}");
        assert_eq!(json(&text)["message"], "only an admin key can make a login link for another key");
    }
    let (status, text) = post("tenant", json!({"keyId": tenant_id}).to_string()).await;
    assert_eq!(status, 201, "its own id, said out loud: {text}");

    // The admin: for the tenant's key, and the link signs in as the tenant.
    let (status, text) = post("admin", json!({"keyId": tenant_id}).to_string()).await;
    assert_eq!(status, 201, "{text}");
    let link = json(&text);
    assert_eq!(link["keyId"], tenant_id.as_str());
    let (status, cookie, _) = open(&app, link["path"].as_str().expect("path")).await;
    assert_eq!(status, 303);
    assert_eq!(session_kind(&app, &cookie.expect("cookie")).await, 403, "an admin's link for a tenant is the tenant's");
    // Positive control: the admin's own link is an admin session.
    let (status, text) = post("admin", String::new()).await;
    assert_eq!(status, 201, "{text}");
    let (_, cookie, _) = open(&app, json(&text)["path"].as_str().expect("path")).await;
    assert_eq!(session_kind(&app, &cookie.expect("cookie")).await, 201);

    // Unknown and revoked keys, and bodies that say something else.
    let (status, text) = post("admin", json!({"keyId": "key_0000000000000000"}).to_string()).await;
    assert_eq!(status, 404, "{text}");
    let (status, text) = call_for_tests(&app, "DELETE", &format!("/api/v1/keys/{tenant_id}"), Some(ADMIN), None).await;
    assert_eq!(status, 204, "{text}");
    let (status, text) = post("admin", json!({"keyId": tenant_id}).to_string()).await;
    assert_eq!(status, 404, "a link for a revoked key: {text}");
    assert_eq!(json(&text)["message"], format!("key {tenant_id} not found or revoked"));
    for bad in ["{", r#"{"key": "x"}"#, r#"{"keyId": 7}"#] {
        let (status, text) = post("admin", bad.to_string()).await;
        assert_eq!(status, 400, "{bad}: {text}");
    }
}

#[tokio::test]
async fn sign_in_trades_a_right_key_for_a_session_and_sign_out_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, tenant, tenant_id, _) = setup(dir.path()).await;
    let list = |cookie: String| {
        let app = app.clone();
        async move { send(&app, "GET", "/api/v1/sandboxes", Req { cookie: Some(&cookie), ..Req::default() }).await.0 }
    };

    let (status, headers, text) =
        send(&app, "POST", "/api/v1/session", Req { key: Some("ss_wrong"), ..Req::default() }).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(json(&text)["message"], "unknown or revoked API key");
    assert_eq!(set_cookie(&headers), None, "a wrong key got a cookie");
    let (status, _, _) = send(&app, "POST", "/api/v1/session", Req::default()).await;
    assert_eq!(status, 401, "no key at all");

    let (status, headers, text) =
        send(&app, "POST", "/api/v1/session", Req { key: Some(&tenant), ..Req::default() }).await;
    assert_eq!(status, 201, "{text}");
    let body = json(&text);
    assert_eq!((body["keyId"].as_str(), body["admin"].as_bool()), (Some(tenant_id.as_str()), Some(false)));
    let set = set_cookie(&headers).expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    let cookie = cookie_of(&set);
    assert_eq!(list(cookie.clone()).await, 200);
    assert_eq!(session_kind(&app, &cookie).await, 403, "the session is the tenant's");

    // A session cannot make links or sessions (it would renew itself forever).
    for path in ["/api/v1/login-links", "/api/v1/session"] {
        let (status, _, text) = send(&app, "POST", path, Req { cookie: Some(&cookie), ..Req::default() }).await;
        assert_eq!(status, 403, "{path}: {text}");
        assert!(text.contains("needs an API key"), "{text}");
    }

    // Signing in again ends the session the browser had.
    let again = Req { key: Some(&tenant), cookie: Some(&cookie), ..Req::default() };
    let (status, headers, _) = send(&app, "POST", "/api/v1/session", again).await;
    assert_eq!(status, 201);
    let second = cookie_of(&set_cookie(&headers).expect("cookie"));
    assert_eq!(list(cookie.clone()).await, 401, "the replaced session still works");
    assert_eq!(list(second.clone()).await, 200);

    // Signing out: the server forgets the session, the browser is told to drop it.
    let (status, headers, _) =
        send(&app, "DELETE", "/api/v1/session", Req { cookie: Some(&second), ..Req::default() }).await;
    assert_eq!(status, 204);
    assert_eq!(
        set_cookie(&headers).as_deref(),
        Some("sandstream_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    );
    let (status, _, text) =
        send(&app, "GET", "/api/v1/sandboxes", Req { cookie: Some(&second), ..Req::default() }).await;
    assert_eq!(status, 401, "a copy of a signed-out cookie still works");
    assert!(text.contains("signed out"), "{text}");
    let (status, _, _) = send(&app, "DELETE", "/api/v1/session", Req::default()).await;
    assert_eq!(status, 204, "signing out without a session");
}

#[tokio::test]
async fn sign_in_is_throttled_like_every_key_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, tenant, _, _) = setup(dir.path()).await;
    let from = |ip: [u8; 4], key: &str| {
        let app = app.clone();
        let key = key.to_string();
        async move {
            let r = Req { key: Some(&key), peer: Some((ip, 40000).into()), ..Req::default() };
            let (status, headers, _) = send(&app, "POST", "/api/v1/session", r).await;
            (status, set_cookie(&headers).is_some())
        }
    };
    // The default budget: 20 wrong keys a minute from one address.
    for i in 0..20 {
        assert_eq!(from([10, 1, 2, 3], &format!("ss_guess_{i}")).await, (401, false), "guess {i}");
    }
    assert_eq!(from([10, 1, 2, 3], &tenant).await, (429, false), "the right key after 20 wrong ones");
    assert_eq!(from([10, 1, 2, 4], &tenant).await, (201, true), "another address signs in");
}
