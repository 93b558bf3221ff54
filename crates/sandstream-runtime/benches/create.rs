//! Sandbox creation, side by side with `docker run` on the same machine; prints numbers,
//! asserts nothing. As root, with the static agent:
//!
//!   SANDSTREAM_STATIC_AGENT=$(./scripts/build-agent.sh) cargo bench -p sandstream-runtime --bench create
//!
//! Measures create → first `Execute("true")` answered → kill, on a busybox template
//! (`SANDSTREAM_BENCH_PAUSE_MS` waits between cycles, default 0: back to back). If a
//! Docker daemon answers, the same template is imported as an image and
//! `docker run --rm IMAGE true` is timed too.
//!
//! The `oci` backend's own phase timings (its `sandbox create timings` and `sandbox
//! destroy timings` debug events) are collected and printed as medians.
//!
//! `SANDSTREAM_BENCH_BACKEND=docker` measures the `docker` backend instead (Engine on
//! SANDSTREAM_DOCKER_SOCKET, default /var/run/docker.sock; scripts/docker.sh starts one),
//! and times `docker run --rm --network sandstream IMAGE true` on the very image the
//! backend imported, in the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[macro_use]
#[path = "common/say.rs"]
mod say;
#[path = "common/phases.rs"]
mod phases;
#[path = "../tests/support/mod.rs"]
mod support;

use sandstream_runtime::{DockerConfig, DockerRuntime, Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec};

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    say!("{name:<48} n={:<4} p50={:.1} ms  p90={:.1} ms  p99={:.1} ms", v.len(), at(0.5), at(0.9), at(0.99));
}

fn docker_ok() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::main]
async fn main() {
    phases::collect();
    let agent = PathBuf::from(
        std::env::var("SANDSTREAM_STATIC_AGENT").expect("set SANDSTREAM_STATIC_AGENT (scripts/build-agent.sh)"),
    );
    let n: usize = std::env::var("SANDSTREAM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = support::busybox_template(dir.path());
    let spec =
        SandboxSpec { template: template.clone(), limits: Limits::default(), env: vec![], egress: Egress::Allow };
    if std::env::var("SANDSTREAM_BENCH_BACKEND").as_deref() == Ok("docker") {
        return docker_backend(n, dir.path(), agent, spec).await;
    }
    let runtime = OciRuntime::new(OciConfig::new(dir.path().join("state"), agent)).expect("runtime");

    create_kill_cycles(&runtime, &spec, n, "sandstream").await;

    if docker_ok() {
        let tar = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("tar -C {} -c . | docker import - sandstream-bench-busybox >/dev/null", template.display()))
            .status()
            .expect("docker import");
        assert!(tar.success());
        let mut runs = Vec::new();
        for _ in 0..n.min(30) {
            let t = Instant::now();
            let s = std::process::Command::new("docker")
                .args(["run", "--rm", "sandstream-bench-busybox", "true"])
                .status()
                .expect("docker run");
            assert!(s.success());
            runs.push(t.elapsed());
        }
        report("docker run --rm IMAGE true (same template)", runs);
        let _ = std::process::Command::new("docker").args(["rmi", "-f", "sandstream-bench-busybox"]).output();
    } else {
        say!("docker: no daemon answers `docker info`; start dockerd to compare");
    }
}

/// `n` sandboxes one after another, each created, asked `Execute("true")` and killed;
/// prints the three timings under `label`.
async fn create_kill_cycles(runtime: &dyn Runtime, spec: &SandboxSpec, n: usize, label: &str) {
    let (mut to_ready, mut to_first, mut kills) = (Vec::new(), Vec::new(), Vec::new());
    // A user's creates are rarely back to back; this spaces them like the SDK's bench.
    let pause = Duration::from_millis(
        std::env::var("SANDSTREAM_BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
    );
    for _ in 0..n {
        let t = Instant::now();
        let sb = tokio::task::block_in_place(|| runtime.create(spec)).expect("create");
        to_ready.push(t.elapsed());
        let first = support::exec_with_token(sb.agent_addr, &sb.token, "true", 10_000).await.expect("execute");
        assert_eq!(first.exit_code, 0);
        to_first.push(t.elapsed());
        let k = Instant::now();
        tokio::task::block_in_place(|| runtime.kill(&sb.id)).expect("kill");
        kills.push(k.elapsed());
        tokio::time::sleep(pause).await;
    }
    report(&format!("{label} create -> agent accepting"), to_ready);
    report(&format!("{label} create -> first Execute(\"true\") done"), to_first);
    report(&format!("{label} kill (everything removed)"), kills);
    phases::report();
}

/// The `docker` backend, then plain `docker run` of the image it imported.
async fn docker_backend(n: usize, dir: &std::path::Path, agent: PathBuf, spec: SandboxSpec) {
    let mut cfg = DockerConfig::new(dir.join("state"), agent);
    if let Some(s) = std::env::var_os("SANDSTREAM_DOCKER_SOCKET") {
        cfg.socket = s.into();
    }
    let socket = cfg.socket.clone();
    let network = cfg.network.clone();
    let runtime = DockerRuntime::new(cfg).expect("docker runtime");
    // The first create imports the template; that is timed on its own.
    let t = Instant::now();
    let sb = tokio::task::block_in_place(|| runtime.create(&spec)).expect("create");
    say!("docker backend: first create (template import included): {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    tokio::task::block_in_place(|| runtime.kill(&sb.id)).expect("kill");

    create_kill_cycles(&runtime, &spec, n, "docker backend").await;

    let image = runtime.template_image(&spec.template).expect("image tag");
    let host = format!("unix://{}", socket.display());
    let mut runs = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let s = std::process::Command::new("docker")
            .args(["-H", &host, "run", "--rm", "--network", &network, &image, "true"])
            .status()
            .expect("docker run");
        assert!(s.success());
        runs.push(t.elapsed());
    }
    report("docker run --rm IMAGE true (same image)", runs);
    tokio::task::block_in_place(|| runtime.remove_template_image(&spec.template)).expect("remove image");
}
