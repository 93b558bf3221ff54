//! `/metrics`, `/readyz`, `/version` and the JSON 404 of unknown paths, through the
//! router (no port), as a probe or scraper sees them.

use serde_json::{Value, json};
use tower::ServiceExt;

use crate::server::{app_for_tests, app_for_tests_with, call_for_tests};

const KEY: &str = "ss_probes_test_admin_key";

/// One GET: the status, the Content-Type and the body as text.
async fn get(app: &axum::Router, path: &str) -> (u16, String, String) {
    let req = axum::http::Request::builder().uri(path).body(axum::body::Body::empty()).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.expect("body");
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of the sample line `series` (`name{labels}`) in an exposition.
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(String::from))
}

fn assert_not_found(status: u16, ctype: &str, body: &str, message: &str) {
    assert_eq!(status, 404, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}: {body}");
    let v: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(v, json!({"status": "error", "code": "not_found", "message": message}));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_without_ids_or_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_for_tests(dir.path(), KEY).expect("app");
    let (status, made) = call_for_tests(&app, "POST", "/api/v1/keys", Some(KEY), Some(json!({"name": "t"}))).await;
    assert_eq!(status, 201, "{made}");
    let (status, _) = call_for_tests(&app, "GET", "/api/v1/sandboxes/sb-secret-id", Some(KEY), None).await;
    assert_eq!(status, 404);
    let (status, _) = call_for_tests(&app, "GET", "/api/v1/sandboxes/sb-other-id", Some(KEY), None).await;
    assert_eq!(status, 404);
    let (status, ..) = get(&app, "/no-such-page").await;
    assert_eq!(status, 404);

    let (status, ctype, text) = get(&app, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let at = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(at(r#"sandstream_http_requests_total{method="POST",route="/api/v1/keys",status="201"}"#), "1");
    // Two ids, one series: the template.
    assert_eq!(at(r#"sandstream_http_requests_total{method="GET",route="/api/v1/sandboxes/{id}",status="404"}"#), "2");
    assert_eq!(at(r#"sandstream_http_requests_total{method="GET",route="unmatched",status="404"}"#), "1");
    assert_eq!(at(r#"sandstream_http_request_duration_seconds_count{route="/api/v1/sandboxes/{id}"}"#), "2");
    assert_eq!(at(r#"sandstream_sandboxes{state="running"}"#), "0");
    assert_eq!(at("sandstream_runners_alive"), "0");
    let key = made["key"].as_str().expect("key");
    for secret in ["sb-secret-id", "sb-other-id", "no-such-page", KEY, key, made["id"].as_str().expect("id")] {
        assert!(!text.contains(secret), "{secret} leaked into /metrics:\n{text}");
    }
    // A scrape counts itself once answered: the next one shows it.
    let (_, _, again) = get(&app, "/metrics").await;
    assert_eq!(
        sample(&again, r#"sandstream_http_requests_total{method="GET",route="/metrics",status="200"}"#).as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn readyz_needs_a_live_runner_and_heartbeats_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_for_tests(dir.path(), KEY).expect("app");
    let (status, missing) = call_for_tests(&app, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503);
    assert_eq!(missing["status"], "not_ready");
    assert_eq!(missing["missing"], json!(["runner"]));
    assert_eq!(missing["message"], "no runner has sent a heartbeat in the last 10s");

    let secret = std::fs::read_to_string(dir.path().join("runner-secret")).expect("secret");
    let register = json!({"name": "r", "controlUrl": "http://127.0.0.1:9", "advertiseHost": "127.0.0.1", "capacity": 1, "backend": "runc"});
    let (status, registered) =
        call_for_tests(&app, "POST", "/api/v1/runners", Some(secret.trim()), Some(register)).await;
    assert_eq!(status, 201, "{registered}");
    let (status, ready) = call_for_tests(&app, "GET", "/readyz", None, None).await;
    assert_eq!((status, ready), (200, json!({"status": "ready"})));

    let id = registered["id"].as_str().expect("id");
    let beat = format!("/api/v1/runners/{id}/heartbeat");
    let (status, reply) =
        call_for_tests(&app, "POST", &beat, Some(secret.trim()), Some(json!({"sandboxes": []}))).await;
    assert_eq!(status, 200, "{reply}");
    let (_, _, text) = get(&app, "/metrics").await;
    assert_eq!(sample(&text, "sandstream_runner_heartbeats_total").as_deref(), Some("1"));
    assert_eq!(sample(&text, "sandstream_runners_alive").as_deref(), Some("1"));
    assert!(!text.contains(id), "the runner id leaked:\n{text}");
}

#[tokio::test]
async fn version_is_the_crate_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_for_tests(dir.path(), KEY).expect("app");
    let (status, v) = call_for_tests(&app, "GET", "/version", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["commit"], option_env!("SANDSTREAM_COMMIT").map_or(Value::Null, Value::from));
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{v}");
}

/// The page is `/`, `/index.html` and the files of the build; every other path is a
/// JSON 404 (before, it was the page's HTML with a 200).
#[tokio::test]
async fn unknown_paths_are_json_404s_and_the_page_is_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = tempfile::tempdir().expect("web");
    std::fs::write(web.path().join("index.html"), "<html>the page</html>").expect("index");
    std::fs::create_dir(web.path().join("assets")).expect("assets");
    std::fs::write(web.path().join("assets/app-1.js"), "console.log(1)").expect("asset");
    let app = app_for_tests_with(dir.path(), KEY, |cfg| cfg.web_dir = Some(web.path().to_path_buf())).expect("app");
    for (path, body) in [
        ("/", "<html>the page</html>"),
        ("/index.html", "<html>the page</html>"),
        ("/assets/app-1.js", "console.log(1)"),
    ] {
        let (status, _, text) = get(&app, path).await;
        assert_eq!((status, text.as_str()), (200, body), "{path}");
    }
    for path in ["/no-such-page", "/metrics/x", "/readyz/", "/assets/missing.js", "/api/v2/nothing"] {
        let (status, ctype, text) = get(&app, path).await;
        assert_not_found(status, &ctype, &text, &format!("no route GET {path}"));
    }
    let (status, body) = call_for_tests(&app, "POST", "/no-such-page", None, Some(json!({}))).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("no route POST /no-such-page")));

    // Without a built page: `/` says how to build it, other paths are still 404s.
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_for_tests(dir.path(), KEY).expect("app");
    let (status, ctype, text) = get(&app, "/").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html") && text.contains("not built"), "{ctype}: {text}");
    let (status, ctype, text) = get(&app, "/version/x").await;
    assert_not_found(status, &ctype, &text, "no route GET /version/x");
}
