//! The control API through its router (no socket), on a runner with a fake runtime:
//! the secret check, and each refusal's status and body as the server reads them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::app;
use crate::fake_runtime::{FakeRuntime, Op, default_request, record_ids, test_config, test_runner};

/// Calls `app` as the server would, with `secret`; the status and the JSON body
/// (`null` when empty).
async fn call(app: &Router, method: Method, uri: &str, secret: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app.clone().oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
    (status, value)
}

fn create_body(template: &str, timeout_ms: Option<u64>) -> Value {
    let mut req = default_request(timeout_ms);
    req.template = template.into();
    serde_json::to_value(req).expect("json")
}

#[tokio::test]
async fn every_call_needs_the_runner_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeRuntime::new();
    let app = app(Arc::new(test_runner(&fake, test_config(dir.path(), 2, 0))));
    let unauthorized = json!({"code": "unauthorized", "message": "wrong or missing runner secret"});
    for secret in ["", "s3cre", "s3cret2", "S3CRET"] {
        assert_eq!(
            call(&app, Method::GET, "/sandboxes", secret, None).await,
            (StatusCode::UNAUTHORIZED, unauthorized.clone())
        );
        let created = call(&app, Method::POST, "/sandboxes", secret, Some(create_body("default", None))).await;
        assert_eq!(created, (StatusCode::UNAUTHORIZED, unauthorized.clone()));
    }
    // No header at all.
    let req = Request::builder().uri("/sandboxes").body(Body::empty()).expect("request");
    assert_eq!(app.clone().oneshot(req).await.expect("infallible").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fake.creates(), 0, "no refused call reached the runtime");
    // Positive control: the right secret.
    assert_eq!(call(&app, Method::GET, "/sandboxes", "s3cret", None).await, (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn refusals_answer_with_the_protocol_status_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 1, 0);
    let fake = FakeRuntime::new();
    let app = app(Arc::new(test_runner(&fake, cfg.clone())));
    let s = "s3cret";

    let not_found = json!({"code": "not_found", "message": "sandbox nope not found"});
    assert_eq!(call(&app, Method::GET, "/sandboxes/nope", s, None).await, (StatusCode::NOT_FOUND, not_found.clone()));
    assert_eq!(
        call(&app, Method::DELETE, "/sandboxes/nope", s, None).await,
        (StatusCode::NOT_FOUND, not_found.clone())
    );
    let timeout = Some(json!({"timeoutMs": 60_000}));
    let moved = call(&app, Method::POST, "/sandboxes/nope/timeout", s, timeout.clone()).await;
    assert_eq!(moved, (StatusCode::NOT_FOUND, not_found));

    let (status, body) = call(&app, Method::POST, "/sandboxes", s, Some(create_body("nope", None))).await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("bad_request")));
    assert!(body["message"].as_str().expect("message").starts_with("runner unit: "), "{body}");

    fake.fail_next(Op::Create);
    let failed = call(&app, Method::POST, "/sandboxes", s, Some(create_body("default", None))).await;
    let internal = json!({"code": "internal", "message": "`fake Create` failed: told to fail"});
    assert_eq!(failed, (StatusCode::INTERNAL_SERVER_ERROR, internal));

    // Neither refusal kept the runner's one slot.
    let (status, created) = call(&app, Method::POST, "/sandboxes", s, Some(create_body("default", Some(60_000)))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (&created["id"], &created["host"], &created["port"]),
        (&json!("fake-1"), &json!("192.0.2.7"), &json!(40_001))
    );
    assert_eq!(record_ids(&cfg), ["fake-1"]);
    let full = call(&app, Method::POST, "/sandboxes", s, Some(create_body("default", None))).await;
    assert_eq!(
        full,
        (StatusCode::SERVICE_UNAVAILABLE, json!({"code": "no_capacity", "message": "runner is full: 1 sandboxes"}))
    );

    assert_eq!(call(&app, Method::GET, "/sandboxes/fake-1", s, None).await, (StatusCode::OK, created.clone()));
    assert_eq!(call(&app, Method::GET, "/sandboxes", s, None).await, (StatusCode::OK, json!([created])));
    let (status, body) = call(&app, Method::POST, "/sandboxes/fake-1/timeout", s, Some(json!({"timeoutMs": 10}))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"code": "bad_request", "message": "timeoutMs must be between 1000 and 86400000, got 10"})
        )
    );
    let (status, moved) = call(&app, Method::POST, "/sandboxes/fake-1/timeout", s, timeout).await;
    assert_eq!((status, &moved["id"]), (StatusCode::OK, &json!("fake-1")));

    assert_eq!(call(&app, Method::DELETE, "/sandboxes/fake-1", s, None).await, (StatusCode::NO_CONTENT, Value::Null));
    // The unknown id was asked of the runtime too (its answer made the 404).
    assert_eq!(fake.kills(), ["nope", "fake-1"]);
    assert!(record_ids(&cfg).is_empty());
    assert_eq!(call(&app, Method::GET, "/sandboxes/fake-1", s, None).await.0, StatusCode::NOT_FOUND);

    // The runtime fails to kill: a 500, not a 404.
    let (status, created) = call(&app, Method::POST, "/sandboxes", s, Some(create_body("default", None))).await;
    assert_eq!(status, StatusCode::CREATED);
    fake.fail_next(Op::Kill);
    let uri = format!("/sandboxes/{}", created["id"].as_str().expect("id"));
    let killed = call(&app, Method::DELETE, &uri, s, None).await;
    assert_eq!(
        killed,
        (StatusCode::INTERNAL_SERVER_ERROR, json!({"code": "internal", "message": "`fake Kill` failed: told to fail"}))
    );
}

#[tokio::test]
async fn ssh_access_reaches_the_runtime_checked_and_reports_the_ssh_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeRuntime::new();
    let app = app(Arc::new(test_runner(&fake, test_config(dir.path(), 1, 0))));
    let s = "s3cret";
    let (status, created) = call(&app, Method::POST, "/sandboxes", s, Some(create_body("default", None))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["sshPort"], json!(40_002), "the runtime's SSH port is reported");

    let hash = "ab".repeat(32);
    let good = json!({"credentials": [{"user": "root", "expiresAt": 99, "secret": {"kind": "passwordSha256", "value": hash}}]});
    assert_eq!(
        call(&app, Method::POST, "/sandboxes/fake-1/ssh-access", s, Some(good.clone())).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, Method::PUT, "/sandboxes/fake-1/ssh-access", s, Some(json!({"credentials": []}))).await.0,
        StatusCode::NO_CONTENT
    );
    let updates: Vec<_> =
        fake.calls().into_iter().filter(|c| matches!(c, crate::fake_runtime::Call::UpdateSshAccess { .. })).collect();
    let crate::fake_runtime::Call::UpdateSshAccess { id, add, revoke_passwords } = &updates[0] else { unreachable!() };
    assert_eq!((id.as_str(), add.len(), add[0].user.as_str(), *revoke_passwords), ("fake-1", 1, "root", false));
    assert!(
        matches!(&updates[1], crate::fake_runtime::Call::UpdateSshAccess { add, revoke_passwords: true, .. } if add.is_empty())
    );

    // Refused before the runtime: a user other than user and root, a malformed hash, an
    // unknown sandbox.
    let bad_user =
        json!({"credentials": [{"user": "admin", "secret": {"kind": "passwordSha256", "value": "ab".repeat(32)}}]});
    let (status, body) = call(&app, Method::POST, "/sandboxes/fake-1/ssh-access", s, Some(bad_user)).await;
    assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!("bad_request")));
    let bad_hash = json!({"credentials": [{"user": "user", "secret": {"kind": "passwordSha256", "value": "x"}}]});
    assert_eq!(
        call(&app, Method::POST, "/sandboxes/fake-1/ssh-access", s, Some(bad_hash)).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = call(&app, Method::POST, "/sandboxes/nope/ssh-access", s, Some(good)).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"code": "not_found", "message": "sandbox nope not found"}))
    );
    let all = fake.calls();
    assert_eq!(all.iter().filter(|c| matches!(c, crate::fake_runtime::Call::UpdateSshAccess { .. })).count(), 2);
}
