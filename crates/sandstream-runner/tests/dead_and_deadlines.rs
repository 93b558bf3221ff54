//! A runner against a fake server (which records heartbeats) on the `oci` backend, as
//! root: a sandbox whose agent is killed is reported gone within a second or two, and
//! each sandbox's own deadline file follows its time to live; a pooled sandbox has one
//! a few minutes ahead. The default template is faked with busybox in the test's own
//! cache dir, so nothing is built or downloaded. Needs what the runtime's oci tests need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../../sandstream-runtime/tests/support/mod.rs"]
mod support;

use axum::routing::post;
use sandstream_runner::{Backend, RunnerConfig, start};
use sandstream_runner_protocol::{CreateSandbox, Heartbeat, HeartbeatReply, Registered};

/// Every heartbeat the fake server got: when, and the sandboxes it listed.
type Beats = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

async fn fake_server() -> (String, Beats) {
    let beats: Beats = Arc::default();
    let b = beats.clone();
    let app = axum::Router::new()
        .route("/api/v1/runners", post(|| async { axum::Json(Registered { id: "r1".into() }) }))
        .route(
            "/api/v1/runners/r1/heartbeat",
            post(move |axum::Json(hb): axum::Json<Heartbeat>| async move {
                let ids = hb.sandboxes.into_iter().map(|s| s.id).collect();
                b.lock().expect("beats").push((Instant::now(), ids));
                axum::Json(HeartbeatReply::default())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, beats)
}

/// A busybox root where the runtime looks for the default template, marked ready.
fn fake_default_template(cache: &Path) {
    let target = cache.join(sandstream_runtime::default_template_name());
    let built = support::busybox_template(cache);
    std::fs::rename(built, &target).expect("place the fake default template");
    std::fs::write(target.join(".sandstream-template"), "").expect("ready mark");
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn deadline_of(state: &Path, id: &str) -> Option<i64> {
    let text = std::fs::read_to_string(state.join("sandboxes").join(id).join("ctl/deadline")).ok()?;
    Some(text.parse().expect("decimal milliseconds"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_agents_are_reported_at_once_and_deadlines_follow_the_time_to_live() {
    let Some(agent) = support::static_agent() else { return };
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let _lock = support::lock::sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    fake_default_template(&cache);
    let (server_url, beats) = fake_server().await;
    let state: PathBuf = dir.path().join("state");
    let cfg = RunnerConfig {
        server_url,
        secret: "secret".into(),
        name: "test".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        advertise_host: "127.0.0.1".into(),
        capacity: 10,
        state_dir: state.clone(),
        cache_dir: cache,
        agent_binary: agent,
        oci_runtime: std::env::var("SANDSTREAM_OCI_RUNTIME").unwrap_or_else(|_| "runc".into()).into(),
        cgroup_favordynmods: true,
        backend: Backend::Oci,
        heartbeat_interval: Duration::from_secs(2),
        warm_pool: 1,
        private_egress: Vec::new(),
        max_flows_per_sandbox: sandstream_runtime::DEFAULT_MAX_FLOWS,
        default_disk_mb: 256,
        max_disk_mb: 1024,
    };
    let handle = start(cfg).await.expect("runner starts");
    let runner = handle.runner.clone();
    let _cleanup = Cleanup(runner.clone());

    let req = CreateSandbox {
        template: "default".into(),
        cpu_millis: 1000,
        memory_mb: 256,
        envs: BTreeMap::new(),
        pids: None,
        disk_mb: None,
        timeout_ms: Some(600_000),
        metadata: BTreeMap::new(),
    };
    let r = runner.clone();
    let sb = tokio::task::spawn_blocking(move || r.create(&req)).await.expect("join").expect("create");
    assert_eq!(deadline_of(&state, &sb.id), sb.expires_at, "the sandbox's own deadline is its time to live");
    let r = runner.clone();
    let id = sb.id.clone();
    let updated =
        tokio::task::spawn_blocking(move || r.set_timeout(&id, 900_000)).await.expect("join").expect("timeout");
    assert_eq!(deadline_of(&state, &sb.id), updated.expires_at, "setTimeout moves the sandbox's own deadline");

    // The pooled sandbox (not listed) has a deadline a few minutes ahead.
    let started = Instant::now();
    while runner.pooled() == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pooled: Vec<String> = std::fs::read_dir(state.join("sandboxes"))
        .expect("sandboxes")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sb-") && *n != sb.id)
        .collect();
    assert_eq!(pooled.len(), 1, "{pooled:?}");
    let ahead = deadline_of(&state, &pooled[0]).expect("a pooled sandbox's deadline") - now_ms();
    assert!((240_000..=300_000).contains(&ahead), "pooled deadline {ahead} ms ahead");

    // Wait for a heartbeat listing the sandbox, then kill its agent.
    while !beats.lock().expect("beats").iter().any(|(_, ids)| ids.contains(&sb.id)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let init = std::fs::read_to_string(state.join("sandboxes").join(&sb.id).join("pid")).expect("pid");
    let init = init.trim();
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).expect("children");
    let agent: i32 = children.split_whitespace().next().expect("agent").parse().expect("pid");
    let killed = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let reported = loop {
        let gone =
            beats.lock().expect("beats").iter().find(|(t, ids)| *t > killed && !ids.contains(&sb.id)).map(|b| b.0);
        if let Some(t) = gone {
            break t - killed;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no heartbeat without the dead sandbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("a heartbeat without the dead sandbox came {reported:?} after its agent was killed");
    assert!(reported < Duration::from_millis(1500), "reported gone after {reported:?}");
    assert!(runner.get(&sb.id).is_err(), "no longer listed");
}

/// Removes the runner's sandboxes, pooled ones included, however the test ends.
struct Cleanup(Arc<sandstream_runner::Runner>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let r = self.0.clone();
        // Runner calls block (runc, iptables): off the async worker.
        let _ = std::thread::spawn(move || {
            r.drain_pool();
            for s in r.list() {
                let _ = r.kill(&s.id);
            }
        })
        .join();
    }
}
