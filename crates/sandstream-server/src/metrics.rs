//! What the server counts for `GET /metrics`: one typed registry, [`Metrics`], with a
//! field per family and a method per event, written out in the Prometheus text format
//! (`text.rs`). The server makes one and hands it to the parts that count (the exec
//! engine, the route handlers, the HTTP middleware); nothing is looked up by name.
//!
//! **No label carries a tenant, a key or an id, and every label has a bounded set of
//! values**: states and outcomes are closed enums, a route is its path template from the
//! route table (`/api/v1/sandboxes/{id}`, never the path asked for), and anything else
//! is one value (`unmatched`, `other`). A scraper's storage cannot be grown by callers.
//! Gauges of what the store holds (sandboxes by state, runners alive) are read from it
//! at each scrape, so they are right after a restart; counters start at zero with the
//! process, as Prometheus expects.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::Method;

mod text;

use crate::state::{ExecStatus, SandboxState};
pub(crate) use text::CONTENT_TYPE;
use text::{Histogram, Kind, Text};

/// This build's version.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build was made from, when the build was given one
/// (`SANDSTREAM_COMMIT=$(git rev-parse HEAD) cargo build`).
pub(crate) const COMMIT: Option<&str> = option_env!("SANDSTREAM_COMMIT");

/// The route label of a request to the web page (`/`, its built files).
pub(crate) const PAGE: &str = "page";
/// The route label of every request no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Sandbox creates take from milliseconds (a warm sandbox) to minutes (a template built
/// on a fresh runner).
const CREATE_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
const HTTP_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// An output stream of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What a request was routed to, for its `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteLabel<'a> {
    /// The route table's path template that matched. One the table does not have
    /// (a catch-all) counts as unmatched.
    Template(&'a str),
    Page,
    Unmatched,
}

/// What the store holds at the time of a scrape; `None` when it could not be read (the
/// family is left out rather than reported wrong).
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub sandboxes: Option<Vec<(SandboxState, u64)>>,
    pub runners_alive: Option<u64>,
}

/// Every counter and histogram of the server.
pub(crate) struct Metrics {
    /// Sandbox creates by outcome: `success` or the API error code that refused it.
    creates: Mutex<BTreeMap<&'static str, u64>>,
    /// How long successful creates took.
    create_seconds: Histogram,
    /// Executions that ended, by status (index in `ExecStatus::ALL`).
    executions: [AtomicU64; ExecStatus::ALL.len()],
    /// Output bytes stored and sent to clients, by stream.
    streamed: [AtomicU64; 2],
    /// Runner heartbeats accepted.
    heartbeats: AtomicU64,
    http: Http,
}

/// HTTP requests by method, route template and status, and their durations by route.
struct Http {
    /// Route labels: the route table's templates, then [`PAGE`], then [`UNMATCHED`].
    routes: Vec<&'static str>,
    requests: Mutex<BTreeMap<(&'static str, usize, u16), u64>>,
    /// One per label in `routes`.
    seconds: Vec<Histogram>,
}

impl Http {
    fn index(&self, route: RouteLabel<'_>) -> usize {
        let label = match route {
            RouteLabel::Template(t) => t,
            RouteLabel::Page => PAGE,
            RouteLabel::Unmatched => UNMATCHED,
        };
        self.routes.iter().position(|r| *r == label).unwrap_or(self.routes.len() - 1)
    }
}

/// The method label: the standard methods by name, anything else as `other` (a method
/// is any token a client sends).
fn method_label(m: &Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// `templates`: the route table's path templates, the only route labels besides
    /// [`PAGE`] and [`UNMATCHED`].
    pub(crate) fn new(templates: impl IntoIterator<Item = &'static str>) -> Metrics {
        let mut routes: Vec<&'static str> = Vec::new();
        for t in templates.into_iter().chain([PAGE, UNMATCHED]) {
            if !routes.contains(&t) {
                routes.push(t);
            }
        }
        let seconds = routes.iter().map(|_| Histogram::new(HTTP_BOUNDS)).collect();
        Metrics {
            creates: Mutex::new(BTreeMap::from([("success", 0)])),
            create_seconds: Histogram::new(CREATE_BOUNDS),
            executions: Default::default(),
            streamed: Default::default(),
            heartbeats: AtomicU64::new(0),
            http: Http { routes, requests: Mutex::new(BTreeMap::new()), seconds },
        }
    }

    /// A sandbox was created in `elapsed`.
    pub(crate) fn sandbox_created(&self, elapsed: Duration) {
        *lock(&self.creates).entry("success").or_default() += 1;
        self.create_seconds.observe(elapsed);
    }

    /// A create was refused or failed with the API error code `code`.
    pub(crate) fn sandbox_create_failed(&self, code: &'static str) {
        *lock(&self.creates).entry(code).or_default() += 1;
    }

    /// An execution ended with `status`.
    pub(crate) fn execution_finished(&self, status: ExecStatus) {
        if let Some(i) = ExecStatus::ALL.iter().position(|s| *s == status) {
            self.executions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `bytes` of output on `stream` were stored and sent.
    pub(crate) fn streamed(&self, stream: Stream, bytes: usize) {
        self.streamed[stream as usize].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered with `status` after `elapsed`.
    pub(crate) fn http_request(&self, method: &Method, route: RouteLabel<'_>, status: u16, elapsed: Duration) {
        let i = self.http.index(route);
        *lock(&self.http.requests).entry((method_label(method), i, status)).or_default() += 1;
        self.http.seconds[i].observe(elapsed);
    }

    /// Every family, in the text format, with the store's `gauges`.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut t = Text::default();
        t.family("sandstream_build_info", Kind::Gauge, "This server's version and commit (always 1).");
        t.sample("sandstream_build_info", &[("version", VERSION), ("commit", COMMIT.unwrap_or("unknown"))], 1);
        if let Some(states) = &gauges.sandboxes {
            t.family(
                "sandstream_sandboxes",
                Kind::Gauge,
                "Sandboxes the store holds, by state (killed ones until retention deletes them).",
            );
            for (state, n) in states {
                t.sample("sandstream_sandboxes", &[("state", state.as_str())], *n);
            }
        }
        t.family(
            "sandstream_sandbox_creates_total",
            Kind::Counter,
            "Sandbox creates, by outcome (success or the error code).",
        );
        for (outcome, n) in lock(&self.creates).iter() {
            t.sample("sandstream_sandbox_creates_total", &[("outcome", outcome)], *n);
        }
        t.family(
            "sandstream_sandbox_create_duration_seconds",
            Kind::Histogram,
            "How long successful sandbox creates took, placement and the runner's create included.",
        );
        t.histogram("sandstream_sandbox_create_duration_seconds", &[], &self.create_seconds);
        t.family("sandstream_executions_total", Kind::Counter, "Executions that ended, by outcome.");
        for (i, status) in ExecStatus::ALL.iter().enumerate() {
            if *status != ExecStatus::Running {
                let n = self.executions[i].load(Ordering::Relaxed);
                t.sample("sandstream_executions_total", &[("outcome", status.as_str())], n);
            }
        }
        t.family(
            "sandstream_streamed_bytes_total",
            Kind::Counter,
            "Bytes of execution output stored and sent to clients, by stream.",
        );
        for stream in Stream::ALL {
            let n = self.streamed[stream as usize].load(Ordering::Relaxed);
            t.sample("sandstream_streamed_bytes_total", &[("stream", stream.as_str())], n);
        }
        t.family("sandstream_runner_heartbeats_total", Kind::Counter, "Runner heartbeats accepted.");
        t.sample("sandstream_runner_heartbeats_total", &[], self.heartbeats.load(Ordering::Relaxed));
        if let Some(n) = gauges.runners_alive {
            t.family("sandstream_runners_alive", Kind::Gauge, "Runners heard from within the heartbeat timeout.");
            t.sample("sandstream_runners_alive", &[], n);
        }
        self.render_http(&mut t);
        t.finish()
    }

    fn render_http(&self, t: &mut Text) {
        let routes = &self.http.routes;
        t.family(
            "sandstream_http_requests_total",
            Kind::Counter,
            "HTTP requests by method, route template and status (socket.io's own requests not included).",
        );
        for ((method, i, status), n) in lock(&self.http.requests).iter() {
            let status = status.to_string();
            let labels = [("method", *method), ("route", routes[*i]), ("status", status.as_str())];
            t.sample("sandstream_http_requests_total", &labels, *n);
        }
        t.family(
            "sandstream_http_request_duration_seconds",
            Kind::Histogram,
            "How long requests took until the response head, by route template (routes asked at least once).",
        );
        for (route, h) in routes.iter().zip(&self.http.seconds) {
            if h.count() > 0 {
                t.histogram("sandstream_http_request_duration_seconds", &[("route", route)], h);
            }
        }
    }
}

#[cfg(test)]
mod tests;
