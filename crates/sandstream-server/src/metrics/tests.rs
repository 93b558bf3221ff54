use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;

use super::{Gauges, Metrics, RouteLabel, Stream};
use crate::state::{ExecStatus, SandboxState};

/// Every sample line of `text` as `name{labels}` → value, after checking the format:
/// each sample's family was opened by `# HELP` then `# TYPE` before it, and no family is
/// opened twice.
fn samples(text: &str) -> BTreeMap<String, String> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut help: Option<String> = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split(' ').next().expect("name").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            assert_eq!(help.take().as_deref(), Some(name), "TYPE without HELP: {line}");
            assert!(families.insert(name.to_string(), kind.to_string()).is_none(), "family twice: {name}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            let name = series.split('{').next().expect("name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| families.get(*f).map(String::as_str) == Some("histogram"))
                .unwrap_or(name);
            assert!(families.contains_key(family), "sample of no family: {line}");
            assert!(out.insert(series.to_string(), value.to_string()).is_none(), "series twice: {line}");
        }
    }
    out
}

fn templates() -> Metrics {
    Metrics::new(["/api/v1/sandboxes", "/api/v1/sandboxes/{id}", "/api/v1/sandboxes/{id}", "/metrics"])
}

#[test]
fn what_happened_is_what_is_rendered() {
    let m = templates();
    m.sandbox_created(Duration::from_millis(300));
    m.sandbox_created(Duration::from_millis(40));
    m.sandbox_create_failed("no_capacity");
    m.execution_finished(ExecStatus::Success);
    m.execution_finished(ExecStatus::Success);
    m.execution_finished(ExecStatus::Timeout);
    m.streamed(Stream::Stdout, 6);
    m.streamed(Stream::Stdout, 10);
    m.streamed(Stream::Stderr, 1);
    m.heartbeat();
    let gauges = Gauges {
        sandboxes: Some(vec![(SandboxState::Running, 2), (SandboxState::Lost, 0), (SandboxState::Killed, 5)]),
        runners_alive: Some(1),
    };
    let s = samples(&m.render(&gauges));
    let at = |k: &str| s.get(k).map(String::as_str).unwrap_or_else(|| panic!("no {k} in {s:?}"));
    assert_eq!(at("sandstream_sandboxes{state=\"running\"}"), "2");
    assert_eq!(at("sandstream_sandboxes{state=\"killed\"}"), "5");
    assert_eq!(at("sandstream_sandbox_creates_total{outcome=\"success\"}"), "2");
    assert_eq!(at("sandstream_sandbox_creates_total{outcome=\"no_capacity\"}"), "1");
    assert_eq!(at("sandstream_sandbox_create_duration_seconds_count"), "2");
    assert_eq!(at("sandstream_sandbox_create_duration_seconds_bucket{le=\"0.05\"}"), "1");
    assert_eq!(at("sandstream_sandbox_create_duration_seconds_bucket{le=\"0.25\"}"), "1");
    assert_eq!(at("sandstream_sandbox_create_duration_seconds_bucket{le=\"0.5\"}"), "2");
    assert_eq!(at("sandstream_sandbox_create_duration_seconds_sum"), "0.34");
    assert_eq!(at("sandstream_executions_total{outcome=\"success\"}"), "2");
    assert_eq!(at("sandstream_executions_total{outcome=\"timeout\"}"), "1");
    assert_eq!(at("sandstream_executions_total{outcome=\"cancelled\"}"), "0");
    assert_eq!(at("sandstream_executions_total{outcome=\"error\"}"), "0");
    assert!(!s.contains_key("sandstream_executions_total{outcome=\"running\"}"), "running is not an outcome");
    assert_eq!(at("sandstream_streamed_bytes_total{stream=\"stdout\"}"), "16");
    assert_eq!(at("sandstream_streamed_bytes_total{stream=\"stderr\"}"), "1");
    assert_eq!(at("sandstream_runner_heartbeats_total"), "1");
    assert_eq!(at("sandstream_runners_alive"), "1");
    assert_eq!(at(&format!("sandstream_build_info{{version=\"{}\",commit=\"unknown\"}}", super::VERSION)), "1");
}

#[test]
fn a_store_that_cannot_be_read_leaves_its_gauges_out() {
    let s = samples(&templates().render(&Gauges::default()));
    assert!(!s.keys().any(|k| k.starts_with("sandstream_sandboxes") || k.starts_with("sandstream_runners_alive")));
    // The counters are still there, at zero.
    assert_eq!(s.get("sandstream_runner_heartbeats_total").map(String::as_str), Some("0"));
}

/// Whatever a caller sends, the route and method labels come from closed sets: the route
/// table's templates, `page`, `unmatched`; the standard methods and `other`.
#[test]
fn labels_are_bounded_whatever_the_request() {
    let m = templates();
    let weird = Method::from_bytes(b"BREW-42").expect("a method token");
    m.http_request(&Method::POST, RouteLabel::Template("/api/v1/sandboxes"), 201, Duration::from_millis(2));
    m.http_request(&Method::GET, RouteLabel::Template("/api/v1/sandboxes/{id}"), 404, Duration::from_millis(1));
    m.http_request(&Method::GET, RouteLabel::Template("/api/{*rest}"), 404, Duration::from_millis(1));
    m.http_request(&weird, RouteLabel::Unmatched, 404, Duration::from_millis(1));
    m.http_request(&Method::GET, RouteLabel::Unmatched, 404, Duration::from_millis(1));
    m.http_request(&Method::GET, RouteLabel::Page, 200, Duration::from_millis(1));
    let s = samples(&m.render(&Gauges::default()));
    let http: Vec<(&String, &String)> =
        s.iter().filter(|(k, _)| k.starts_with("sandstream_http_requests_total")).collect();
    let expected = [
        ("{method=\"GET\",route=\"/api/v1/sandboxes/{id}\",status=\"404\"}", "1"),
        ("{method=\"GET\",route=\"page\",status=\"200\"}", "1"),
        ("{method=\"GET\",route=\"unmatched\",status=\"404\"}", "2"),
        ("{method=\"POST\",route=\"/api/v1/sandboxes\",status=\"201\"}", "1"),
        ("{method=\"other\",route=\"unmatched\",status=\"404\"}", "1"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(l, v)| (format!("sandstream_http_requests_total{l}"), v.to_string())).collect();
    let got: Vec<(String, String)> = http.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got, expected);
    // Durations only for the routes asked, each route once.
    let counts: Vec<(&String, &String)> =
        s.iter().filter(|(k, _)| k.starts_with("sandstream_http_request_duration_seconds_count")).collect();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert_eq!(
        s.get("sandstream_http_request_duration_seconds_count{route=\"unmatched\"}").map(String::as_str),
        Some("3")
    );
    assert!(!s.keys().any(|k| k.contains("BREW") || k.contains("{*rest}")), "{s:?}");
}
