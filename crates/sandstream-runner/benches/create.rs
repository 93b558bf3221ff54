//! Sandbox creation through a runner, cold and with its warm pool, side by side with
//! `docker run` in the same run (issue 6); prints numbers, asserts nothing about them.
//! As root, with the static agent and the cached default template:
//!
//!   SANDSTREAM_STATIC_AGENT=$(./scripts/build-agent.sh) cargo bench -p sandstream-runner --bench create
//!
//! One sample is `Runner::create` with what the server asks for when a create gives no
//! options (default template, 2 CPUs, 512 MiB, no env, a 5-minute time to live), until
//! a first `Execute("true")` has answered over a new gRPC connection to the returned
//! `host:port` with its token. The sandbox is then killed (untimed), and the next create
//! waits `SANDSTREAM_BENCH_PAUSE_MS` (default 300), as a user's requests are spaced.
//! Each part takes `SANDSTREAM_BENCH_N` samples (default 50). For each OCI runtime binary in `SANDSTREAM_BENCH_OCI_RUNTIMES` (comma separated,
//! default `runc`; crun needs scripts/cgroups.sh on a hybrid cgroup host):
//!
//! 1. cold: a runner without a warm pool, after one untimed create;
//! 2. warm: a runner with a pool of `SANDSTREAM_BENCH_POOL` (default 4), full before the
//!    first sample and refilled in the background meanwhile; creates that found it empty
//!    are counted and also timed apart;
//!
//! then once:
//!
//! 3. `docker run --rm IMAGE true`, IMAGE imported from the very directory the runner
//!    takes its default template from (`tar | docker import`), after one untimed run,
//!    alternating with the same given `--network none`; only if a Docker daemon answers
//!    `docker info` (`./scripts/docker.sh` starts one with no default network; a daemon
//!    as installed, `dockerd` with no options, attaches containers to its `bridge`).
//!    The image is removed afterwards.
//!
//! The runner is driven in-process (`Runner::new`, `Runner::fill_pool` on a thread):
//! nothing registers with a server, serves the control API or sends heartbeats. What a
//! server adds on top (REST, its call to the runner) is in sdk/typescript/bench/create.mjs.
//! Templates come from SANDSTREAM_CACHE_DIR (default /var/cache/sandstream, as
//! scripts/test.sh sets); the runners' state lives in a temp dir. The host-wide sandbox
//! tests' lock is held exclusive throughout, so no test creates sandboxes meanwhile.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[macro_use]
#[path = "../../sandstream-runtime/benches/common/say.rs"]
mod say;
#[path = "../../sandstream-runtime/tests/support/mod.rs"]
mod support;

use sandstream_runner::{Backend, Runner, RunnerConfig};
use sandstream_runner_protocol::CreateSandbox;

/// A number from the environment, or `default` when unset.
fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Prints min, p50, p90, p99 and max of `v` in ms under `name`; returns the p50.
fn report(name: &str, v: &[Duration]) -> Option<f64> {
    if v.is_empty() {
        say!("{name:<46} n=0");
        return None;
    }
    let mut v = v.to_vec();
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    say!(
        "{name:<46} n={:<4} min={:.1}  p50={:.1}  p90={:.1}  p99={:.1}  max={:.1} ms",
        v.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Some(at(0.5))
}

/// What the server sends a runner for a create without options
/// (crates/sandstream-server/src/api/sandboxes.rs): the request the warm pool serves.
fn default_request() -> CreateSandbox {
    CreateSandbox::with_defaults(Some(300_000))
}

/// Where the benchmark's runners keep their state and find their templates.
struct Setup {
    state: PathBuf,
    cache_dir: PathBuf,
    agent: PathBuf,
    advertise_host: String,
}

/// A runner driven in-process, and its pool filler's thread. Dropping it (panics
/// included) removes every sandbox it made.
struct BenchRunner {
    runner: Arc<Runner>,
    filler: Option<std::thread::JoinHandle<()>>,
}

impl BenchRunner {
    fn new(setup: &Setup, name: &str, oci_runtime: &str, warm_pool: u32) -> BenchRunner {
        let cfg = RunnerConfig {
            // Never contacted: without `sandstream_runner::start` nothing registers,
            // sends heartbeats or serves the control API.
            server_url: String::new(),
            secret: String::new(),
            name: format!("bench-{name}"),
            listen: ([127, 0, 0, 1], 0).into(),
            advertise_host: setup.advertise_host.clone(),
            capacity: 100,
            state_dir: setup.state.join(format!("{name}-{oci_runtime}")),
            cache_dir: setup.cache_dir.clone(),
            agent_binary: setup.agent.clone(),
            oci_runtime: oci_runtime.into(),
            cgroup_favordynmods: true,
            backend: Backend::Oci,
            heartbeat_interval: Duration::from_secs(2),
            warm_pool,
            private_egress: Vec::new(),
            max_flows_per_sandbox: sandstream_runtime::DEFAULT_MAX_FLOWS,
            default_disk_mb: sandstream_runner_protocol::DEFAULT_DISK_MB,
            max_disk_mb: sandstream_runner_protocol::DEFAULT_MAX_DISK_MB,
        };
        let runner = Arc::new(Runner::new(cfg).expect("set the runner up (needs root and the default template)"));
        let filler = (warm_pool > 0).then(|| {
            let r = runner.clone();
            std::thread::Builder::new().name("warm-pool".into()).spawn(move || r.fill_pool()).expect("spawn a thread")
        });
        BenchRunner { runner, filler }
    }
}

impl Drop for BenchRunner {
    fn drop(&mut self) {
        self.runner.drain_pool();
        if let Some(filler) = self.filler.take() {
            let _ = filler.join();
        }
        // The filler checks for draining before it takes the pool's lock to add a
        // sandbox, so one it finished just as drain_pool ran can still land in the pool.
        self.runner.drain_pool();
        for sb in self.runner.list() {
            if let Err(e) = self.runner.kill(&sb.id) {
                say_err!("could not remove sandbox {}: {e}", sb.id);
            }
        }
    }
}

/// One sample: create → first `Execute("true")` answered over a new connection; then
/// the sandbox is killed, untimed. Also returns `pooled()` right after the create, and
/// how long `Runner::create` alone took.
async fn sample(runner: &Runner, req: &CreateSandbox) -> (Duration, usize, Duration) {
    let t = Instant::now();
    let sb = tokio::task::block_in_place(|| runner.create(req)).expect("create");
    let created = t.elapsed();
    let pooled_after = runner.pooled();
    let ip: IpAddr = sb.host.parse().expect("the advertised host is an IP address");
    let out = support::exec_with_token(SocketAddr::new(ip, sb.port), &sb.token, "true", 10_000)
        .await
        .expect("Execute(\"true\") in the new sandbox");
    let took = t.elapsed();
    assert_eq!(out.exit_code, 0, "Execute(\"true\"): {out:?}");
    tokio::task::block_in_place(|| runner.kill(&sb.id)).expect("kill");
    (took, pooled_after, created)
}

/// The cold path: a runner without a pool. Returns its p50.
async fn cold(bench: &BenchRunner, label: &str, n: usize, pause: Duration) -> Option<f64> {
    sample(&bench.runner, &default_request()).await; // warm-up, untimed
    let (mut runs, mut creates) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        tokio::time::sleep(pause).await;
        let (took, _, created) = sample(&bench.runner, &default_request()).await;
        runs.push(took);
        creates.push(created);
    }
    let p50 = report(&format!("cold ({label}): create -> first Execute(\"true\")"), &runs);
    report("  of which Runner::create returned", &creates);
    p50
}

/// The warm pool: full before the first sample, refilled while the samples run.
/// Returns the p50 of all samples.
async fn warm(bench: &BenchRunner, label: &str, n: usize, pool: u32, pause: Duration) -> Option<f64> {
    let t = Instant::now();
    while bench.runner.pooled() < pool as usize {
        assert!(t.elapsed() < Duration::from_secs(120), "the warm pool did not fill within 120 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    say!("warm pool of {pool} full after {:.1} s", t.elapsed().as_secs_f64());
    let (mut all, mut taken, mut found_empty, mut not_taken) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // How many pooled sandboxes each create found.
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for _ in 0..n {
        tokio::time::sleep(pause).await;
        let before = bench.runner.pooled();
        let (took, after, _) = sample(&bench.runner, &default_request()).await;
        *seen.entry(before).or_default() += 1;
        all.push(took);
        // Only this benchmark takes from the pool; the filler only adds to it.
        match before {
            0 => found_empty.push(took),
            b if after + 1 == b => taken.push(took),
            _ => not_taken.push(took),
        }
    }
    let p50 = report(&format!("warm ({label}, pool {pool}): create -> first Execute(\"true\")"), &all);
    report("  of which took a pooled sandbox", &taken);
    report("  of which found the pool empty", &found_empty);
    if !not_taken.is_empty() {
        report("  pool not empty, yet its count did not drop", &not_taken);
    }
    say!("  {} of {n} creates found the pool empty", found_empty.len());
    let seen: Vec<String> = seen.iter().rev().map(|(size, count)| format!("{size}: {count}x")).collect();
    say!("  pooled sandboxes when each create came: {}", seen.join(", "));
    p50
}

fn docker_answers() -> bool {
    Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success())
}

/// An imported image, removed on drop (panics included).
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn docker_run(image: &str, network: Option<&str>) -> Result<Duration, String> {
    let mut args = vec!["run", "--rm"];
    if let Some(network) = network {
        args.extend(["--network", network]);
    }
    args.extend([image, "true"]);
    let t = Instant::now();
    let out = Command::new("docker").args(&args).output().expect("run docker");
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(took)
}

/// `docker run --rm IMAGE true` on an image of `template`, as the daemon runs it by
/// default, alternating sample by sample with the same run given `--network none`.
/// Returns (what, p50) for both. A daemon as installed attaches containers to its
/// default `bridge` network (a veth pair and NAT egress, as each sandbox has); one
/// started by scripts/docker.sh (`--bridge=none`) gives them no network either way.
fn docker(template: &Path, n: usize, pause: Duration) -> Vec<(String, Option<f64>)> {
    if !docker_answers() {
        say!("docker: no daemon answers `docker info`; start one (./scripts/docker.sh) to compare");
        return Vec::new();
    }
    let bridge =
        Command::new("docker").args(["network", "inspect", "bridge"]).output().is_ok_and(|o| o.status.success());
    say!(
        "docker: the daemon's default network is {}",
        if bridge { "`bridge` (veth pair and NAT egress)" } else { "none (`--bridge=none`)" }
    );
    let image = DockerImage(format!("sandstream-bench-runner-default-{}", std::process::id()));
    let t = Instant::now();
    let imported = Command::new("bash")
        .args(["-c", r#"set -o pipefail; tar -C "$1" -c . | docker import - "$2" >/dev/null"#, "bash"])
        .arg(template)
        .arg(&image.0)
        .status()
        .expect("run bash");
    assert!(imported.success(), "docker import of {}: {imported}", template.display());
    say!("docker: imported {} as {} in {:.1} s", template.display(), image.0, t.elapsed().as_secs_f64());
    let networks = [None, Some("none")];
    for network in networks {
        if let Err(e) = docker_run(&image.0, network) {
            say!("docker: `docker run --rm {} true` ({network:?}) failed: {e}", image.0);
            return Vec::new();
        }
    }
    let mut runs = [Vec::with_capacity(n), Vec::with_capacity(n)];
    for _ in 0..n {
        for (i, network) in networks.iter().enumerate() {
            std::thread::sleep(pause);
            runs[i].push(docker_run(&image.0, *network).expect("docker run"));
        }
    }
    let default =
        if bridge { "docker run --rm IMAGE true (bridge)" } else { "docker run --rm IMAGE true (no network)" };
    vec![
        (default.to_string(), report(default, &runs[0])),
        ("docker run --rm --network none IMAGE true".to_string(), report("  same with --network none", &runs[1])),
    ]
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A closed stderr must not panic the thread that logs (say, mid-create).
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let n: usize = env_num("SANDSTREAM_BENCH_N", 50);
    let runtimes: Vec<String> = std::env::var("SANDSTREAM_BENCH_OCI_RUNTIMES")
        .unwrap_or_else(|_| "runc".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let pool: u32 = env_num("SANDSTREAM_BENCH_POOL", 4);
    let pause = Duration::from_millis(env_num("SANDSTREAM_BENCH_PAUSE_MS", 300));
    let agent = PathBuf::from(
        std::env::var_os("SANDSTREAM_STATIC_AGENT").expect("set SANDSTREAM_STATIC_AGENT (scripts/build-agent.sh)"),
    );
    let cache_dir =
        std::env::var_os("SANDSTREAM_CACHE_DIR").map_or_else(|| "/var/cache/sandstream".into(), PathBuf::from);
    let advertise_host = std::env::var("SANDSTREAM_ADVERTISE_HOST")
        .ok()
        .or_else(sandstream_runner::default_advertise_host)
        .expect("this host has no non-loopback IPv4 address; set SANDSTREAM_ADVERTISE_HOST");

    say_err!("waiting for the host-wide sandbox tests' lock (exclusive)");
    let _lock = support::lock::sandbox_tests_lock(true);
    let state = tempfile::tempdir().expect("temp dir");
    let setup = Setup { state: state.path().to_path_buf(), cache_dir, agent, advertise_host };
    say!(
        "n={n} per part, {} ms between creates, agent at {}:port; load average {}",
        pause.as_millis(),
        setup.advertise_host,
        load_average()
    );

    // Runner::new blocks (runc, iptables); so does dropping a runner (kills).
    let mut p50s = Vec::new();
    let mut template = None;
    for rt in &runtimes {
        let cold_runner = tokio::task::block_in_place(|| BenchRunner::new(&setup, "cold", rt, 0));
        p50s.push((format!("cold ({rt})"), cold(&cold_runner, rt, n, pause).await));
        tokio::task::block_in_place(|| drop(cold_runner));
        say!("  load average {}", load_average());
        let warm_runner = tokio::task::block_in_place(|| BenchRunner::new(&setup, "warm", rt, pool));
        p50s.push((format!("warm ({rt})"), warm(&warm_runner, rt, n, pool, pause).await));
        // The directory the runner creates its default-template sandboxes, pooled or not, from.
        template = Some(warm_runner.runner.default_template().to_path_buf());
        tokio::task::block_in_place(|| drop(warm_runner));
        say!("  load average {}", load_average());
    }
    let template = template.expect("at least one OCI runtime");
    let docker_p50s = tokio::task::block_in_place(|| docker(&template, n, pause));
    say!("  load average {}", load_average());

    say!("targets (issue 6): cold p50 <= 60 ms, warm p50 <= 10 ms, >= 10x faster than docker run");
    for (docker, d) in &docker_p50s {
        let Some(d) = d else { continue };
        for (name, p50) in &p50s {
            if let Some(p) = p50 {
                say!("{docker} p50 / {name} p50 = {:.1}x", d / p);
            }
        }
    }
}
