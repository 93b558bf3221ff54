//! A runner against a fake server (which records heartbeats), on each backend, as root:
//! a sandbox whose agent is killed is reported gone within a second or two, and each
//! sandbox's own deadline file follows its time to live; a pooled sandbox has one a few
//! minutes ahead. The default template is faked with busybox in the test's own cache
//! dir, so nothing is built or downloaded. Needs what the runtime's oci and docker tests
//! need.

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

/// A busybox root where the runtime looks for the default template, marked ready;
/// returns its path.
fn fake_default_template(cache: &Path) -> PathBuf {
    let target = cache.join(sandstream_runtime::default_template_name());
    let built = support::busybox_template(cache);
    std::fs::rename(built, &target).expect("place the fake default template");
    std::fs::write(target.join(".sandstream-template"), "").expect("ready mark");
    target
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Where the backend keeps its sandboxes' directories under the runner's state dir.
fn sandboxes_dir(state: &Path, backend: &Backend) -> PathBuf {
    state.join(match backend {
        Backend::Oci => "sandboxes",
        Backend::Docker { .. } => "docker-sandboxes",
    })
}

fn docker_socket() -> PathBuf {
    std::env::var_os("SANDSTREAM_DOCKER_SOCKET").map_or_else(|| "/var/run/docker.sock".into(), PathBuf::from)
}

/// The host pid of sandbox `id`'s agent: the child of its init (the agent as PID 1 forks
/// and runs in the child).
fn agent_pid(sandboxes: &Path, backend: &Backend, id: &str) -> i32 {
    let init = match backend {
        Backend::Oci => std::fs::read_to_string(sandboxes.join(id).join("pid")).expect("pid"),
        Backend::Docker { socket } => {
            let out = std::process::Command::new("curl")
                .args(["-sf", "--max-time", "10", "--unix-socket"])
                .arg(socket)
                .arg(format!("http://docker/containers/{id}/json"))
                .output()
                .expect("curl");
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("docker inspect");
            json["State"]["Pid"].as_u64().expect("State.Pid").to_string()
        }
    };
    let init = init.trim();
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).expect("children");
    children.split_whitespace().next().expect("agent").parse().expect("pid")
}

fn deadline_of(sandboxes: &Path, id: &str) -> Option<i64> {
    let text = std::fs::read_to_string(sandboxes.join(id).join("ctl/deadline")).ok()?;
    Some(text.parse().expect("decimal milliseconds"))
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_dead_agents_are_reported_at_once_and_deadlines_follow_the_time_to_live() {
    dead_agents_and_deadlines(Backend::Oci).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_dead_agents_are_reported_at_once_and_deadlines_follow_the_time_to_live() {
    let socket = docker_socket();
    let answers = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "3", "--unix-socket"])
        .arg(&socket)
        .arg("http://docker/_ping")
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        let msg = format!("no Docker Engine answers on {} (run scripts/docker.sh)", socket.display());
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    }
    dead_agents_and_deadlines(Backend::Docker { socket }).await;
}

async fn dead_agents_and_deadlines(backend: Backend) {
    let Some(agent) = support::static_agent() else { return };
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let _lock = support::lock::sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let template = fake_default_template(&cache);
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
        agent_binary: agent.clone(),
        oci_runtime: std::env::var("SANDSTREAM_OCI_RUNTIME").unwrap_or_else(|_| "runc".into()).into(),
        cgroup_favordynmods: true,
        backend: backend.clone(),
        heartbeat_interval: Duration::from_secs(2),
        warm_pool: 1,
        private_egress: Vec::new(),
        max_flows_per_sandbox: sandstream_runtime::DEFAULT_MAX_FLOWS,
        default_disk_mb: 256,
        max_disk_mb: 1024,
    };
    let sandboxes = sandboxes_dir(&state, &backend);
    let handle = start(cfg).await.expect("runner starts");
    let runner = handle.runner.clone();
    let _cleanup = Cleanup { runner: runner.clone(), backend: backend.clone(), state: state.clone(), template, agent };

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
    assert_eq!(deadline_of(&sandboxes, &sb.id), sb.expires_at, "the sandbox's own deadline is its time to live");
    let r = runner.clone();
    let id = sb.id.clone();
    let updated =
        tokio::task::spawn_blocking(move || r.set_timeout(&id, 900_000)).await.expect("join").expect("timeout");
    assert_eq!(deadline_of(&sandboxes, &sb.id), updated.expires_at, "setTimeout moves the sandbox's own deadline");

    // The pooled sandbox (not listed) has a deadline a few minutes ahead.
    let started = Instant::now();
    while runner.pooled() == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pooled: Vec<String> = std::fs::read_dir(&sandboxes)
        .expect("sandboxes")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sb-") && *n != sb.id)
        .collect();
    assert_eq!(pooled.len(), 1, "{pooled:?}");
    let ahead = deadline_of(&sandboxes, &pooled[0]).expect("a pooled sandbox's deadline") - now_ms();
    assert!((240_000..=300_000).contains(&ahead), "pooled deadline {ahead} ms ahead");

    // Wait for a heartbeat listing the sandbox, then kill its agent.
    while !beats.lock().expect("beats").iter().any(|(_, ids)| ids.contains(&sb.id)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agent = agent_pid(&sandboxes, &backend, &sb.id);
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
/// On Docker, the default template's image too.
struct Cleanup {
    runner: Arc<sandstream_runner::Runner>,
    backend: Backend,
    state: PathBuf,
    template: PathBuf,
    agent: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let r = self.runner.clone();
        let (backend, state, template, agent) =
            (self.backend.clone(), self.state.clone(), self.template.clone(), self.agent.clone());
        // Runner calls block (runc, iptables, the Engine): off the async worker.
        let _ = std::thread::spawn(move || {
            r.drain_pool();
            for s in r.list() {
                let _ = r.kill(&s.id);
            }
            if let Backend::Docker { socket } = backend {
                let cfg = sandstream_runtime::DockerConfig {
                    socket,
                    ..sandstream_runtime::DockerConfig::new(state.join("docker-sandboxes"), agent)
                };
                match sandstream_runtime::DockerRuntime::new(cfg).and_then(|d| d.remove_template_image(&template)) {
                    Ok(()) => {}
                    Err(e) => eprintln!("could not remove the test's template image: {e}"),
                }
            }
        })
        .join();
    }
}
