//! Density: many idle sandboxes on one host. Prints numbers, asserts nothing. As root,
//! with the static agent:
//!
//!   SANDSTREAM_STATIC_AGENT=$(./scripts/build-agent.sh) cargo bench -p sandstream-runtime --bench density
//!
//! Creates `SANDSTREAM_DENSITY_N` (default 500) idle sandboxes on the `oci` backend, one
//! after another, from the cached default template (`SANDSTREAM_CACHE_DIR`, default
//! /var/cache/sandstream; never built here) or else busybox
//! (`SANDSTREAM_DENSITY_TEMPLATE=busybox` forces it), and prints:
//!
//! - create time as the count grows, and kill time;
//! - memory per sandbox: the host's MemAvailable before and after, divided by N (and the
//!   kernel's share: slab, page tables, kernel stacks), the sandboxes' memory cgroups,
//!   and the RSS and PSS of the processes inside (the agent and its PID 1);
//! - the CPU the idle sandboxes burn;
//! - `Execute("true")` p50/p99 against random idle sandboxes with N idle and with 1, on
//!   an open connection and on a new one.
//!
//! If a Docker daemon answers, the same template is imported as an image and
//! `SANDSTREAM_DENSITY_DOCKER_N` (default 100; 0 skips) idle `docker run -d` containers
//! run the same agent, for memory per container side by side.
//!
//! Holds the sandbox tests' lock shared throughout (a leak test takes it exclusive).
//! Everything it made is removed on the way out, on error and on Ctrl-C too; a run
//! killed outright is cleaned up by the next one (fixed state dir, labelled containers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[macro_use]
#[path = "common/say.rs"]
mod say;
#[path = "common/phases.rs"]
mod phases;
#[path = "../tests/support/mod.rs"]
mod support;

use sandstream_runtime::{Egress, Limits, OciConfig, OciRuntime, Runtime, Sandbox, SandboxSpec};

/// Fixed, so that a run killed outright is cleaned up by the next.
const STATE_DIR: &str = "/var/tmp/sandstream-density/state";
const DOCKER_LABEL: &str = "sandstream-density-bench";
const DOCKER_IMAGE: &str = "sandstream-density-bench:latest";

/// Set by SIGINT/SIGTERM: loops stop, and the guards remove everything.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / MIB)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, v: &[Duration]) {
    if v.is_empty() {
        say!("{name:<56} no samples");
        return;
    }
    say!(
        "{name:<56} n={:<4} p50={:.1} ms  p90={:.1} ms  p99={:.1} ms  max={:.1} ms",
        v.len(),
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99)),
        ms(pct(v, 1.0))
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
}

/// A small xorshift generator: which sandbox to ask next.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("random seed");
        Rng(u64::from_le_bytes(seed) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// /proc/meminfo in bytes.
fn meminfo() -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kib: f64 = v.trim().trim_end_matches(" kB").parse().ok()?;
            Some((k.to_string(), kib * 1024.0))
        })
        .collect()
}

/// The median of three readings a second apart, field by field: other processes on the
/// host come and go.
fn meminfo_settled() -> BTreeMap<String, f64> {
    let mut reads = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        reads.push(meminfo());
    }
    reads[0]
        .keys()
        .map(|k| {
            let mut v: Vec<f64> = reads.iter().filter_map(|r| r.get(k).copied()).collect();
            v.sort_by(f64::total_cmp);
            (k.clone(), v[v.len() / 2])
        })
        .collect()
}

/// Memory per item between two meminfo readings: how much less is available, and the
/// kernel's own share. Other processes on the host move these too; the cgroup and
/// process numbers below are the sandboxes' own.
fn print_meminfo_delta(what: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, n: usize) {
    let grew = |k: &str| (after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)) / n as f64;
    say!(
        "{what}: MemAvailable fell by {} each ({} in all); AnonPages {:+.2}, Slab {:+.2} (unreclaimable {:+.2}), PageTables {:+.2}, KernelStack {:+.2}, Percpu {:+.2} MiB each",
        mib(-grew("MemAvailable")),
        mib(-grew("MemAvailable") * n as f64),
        grew("AnonPages") / MIB,
        grew("Slab") / MIB,
        grew("SUnreclaim") / MIB,
        grew("PageTables") / MIB,
        grew("KernelStack") / MIB,
        grew("Percpu") / MIB,
    );
}

/// The first of `names` that exists in `dir`, read as a number.
fn read_number(dir: &Path, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| std::fs::read_to_string(dir.join(n)).ok()?.trim().parse().ok())
}

/// A cgroup's memory: (usage, anonymous, page cache, kernel) in bytes, cgroup v1 or v2.
fn cgroup_memory(dir: &Path) -> Option<(f64, f64, f64, f64)> {
    let usage = read_number(dir, &["memory.usage_in_bytes", "memory.current"])?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let field = |names: &[&str]| {
        stat.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                names.contains(&k).then(|| v.trim().parse::<f64>().ok()).flatten()
            })
            .unwrap_or(0.0)
    };
    let anon = field(&["total_rss", "anon"]);
    let cache = field(&["total_cache", "file"]);
    let kernel = read_number(dir, &["memory.kmem.usage_in_bytes"]).unwrap_or_else(|| field(&["kernel"]));
    Some((usage, anon, cache, kernel))
}

/// Where a container's memory cgroup is, given the cgroup path it was created with.
fn memory_cgroup(path: &str) -> Option<PathBuf> {
    [format!("/sys/fs/cgroup/memory/{path}"), format!("/sys/fs/cgroup/{path}")]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists())
}

/// One field of a `/proc/PID/smaps_rollup` (given in kB), in bytes; 0 if absent.
fn rollup_bytes(rollup: &str, key: &str) -> f64 {
    rollup.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches(" kB").parse::<f64>().ok()).unwrap_or(0.0)
        * 1024.0
}

/// Processes of a cgroup, and their summed (RSS, PSS) in bytes and threads.
fn processes_memory(cgroup: &Path) -> (usize, f64, f64, usize) {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
    let (mut n, mut rss, mut pss, mut threads) = (0, 0.0, 0.0, 0);
    for pid in procs.lines() {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        n += 1;
        rss += rollup_bytes(&rollup, "Rss:");
        pss += rollup_bytes(&rollup, "Pss:");
        threads += std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    }
    (n, rss, pss, threads)
}

/// CPU time (ns) a cgroup has used, cgroup v1 or v2.
fn cgroup_cpu_ns(path: &str) -> f64 {
    if let Some(ns) = read_number(&PathBuf::from(format!("/sys/fs/cgroup/cpuacct/{path}")), &["cpuacct.usage"]) {
        return ns;
    }
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup/{path}/cpu.stat")).unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<f64>().ok()).map_or(0.0, |us| us * 1e3)
}

/// Memory and processes of a set of containers, by the cgroup path of each.
fn print_container_memory(what: &str, cgroup_paths: &[String]) {
    let (mut found, mut usage, mut anon, mut cache, mut kernel) = (0usize, 0.0, 0.0, 0.0, 0.0);
    let (mut procs, mut rss, mut pss, mut threads) = (0usize, 0.0, 0.0, 0usize);
    for path in cgroup_paths {
        let Some(dir) = memory_cgroup(path) else { continue };
        let Some((u, a, c, k)) = cgroup_memory(&dir) else { continue };
        found += 1;
        usage += u;
        anon += a;
        cache += c;
        kernel += k;
        let (n, r, p, t) = processes_memory(&dir);
        procs += n;
        rss += r;
        pss += p;
        threads += t;
    }
    if found == 0 {
        say!("{what}: no memory cgroups found");
        return;
    }
    let each = |v: f64| mib(v / found as f64);
    say!(
        "{what}: memory cgroup usage {} each (anon {}, page cache {}, kernel {}); {:.1} processes and {:.1} threads each, RSS {} PSS {} each ({found} cgroups)",
        each(usage),
        each(anon),
        each(cache),
        each(kernel),
        procs as f64 / found as f64,
        threads as f64 / found as f64,
        each(rss),
        each(pss),
    );
}

/// CPU the containers used over `window` while idle, in % of one core, all together.
fn print_idle_cpu(what: &str, cgroup_paths: &[String], window: Duration) {
    let sum = || cgroup_paths.iter().map(|p| cgroup_cpu_ns(p)).sum::<f64>();
    let before = sum();
    if before == 0.0 {
        say!("{what}: no CPU accounting found for their cgroups");
        return;
    }
    std::thread::sleep(window);
    let used = sum() - before;
    say!(
        "{what}: idle CPU of all {} together over {:.0} s: {:.2} % of one core",
        cgroup_paths.len(),
        window.as_secs_f64(),
        used / window.as_secs_f64() / 1e9 * 100.0
    );
}

/// The cached default template, if built; never builds it.
fn cached_default_template() -> Option<PathBuf> {
    let cache: PathBuf =
        std::env::var_os("SANDSTREAM_CACHE_DIR").map_or_else(|| "/var/cache/sandstream".into(), PathBuf::from);
    sandstream_runtime::default_template_dir(&cache)
}

/// Every sandbox in the state dir is killed when this goes: after a panic, an error or
/// Ctrl-C, and those a previous run left when it is made.
struct OciFleet {
    runtime: OciRuntime,
}

impl OciFleet {
    fn new(agent: PathBuf) -> OciFleet {
        let fleet = OciFleet { runtime: OciRuntime::new(OciConfig::new(STATE_DIR.into(), agent)).expect("runtime") };
        let left = fleet.runtime.recover().expect("recover");
        if !left.is_empty() {
            say!("removing {} sandboxes a previous run left", left.len());
        }
        fleet.kill_all();
        fleet
    }

    fn kill_all(&self) -> Vec<Duration> {
        let mut kills = Vec::new();
        for id in self.runtime.list().unwrap_or_default() {
            let t = Instant::now();
            if let Err(e) = self.runtime.kill(&id) {
                say_err!("kill {id}: {e}");
            }
            kills.push(t.elapsed());
        }
        kills
    }
}

impl Drop for OciFleet {
    fn drop(&mut self) {
        let n = self.kill_all().len();
        if n > 0 {
            say_err!("cleanup: killed {n} sandboxes");
        }
    }
}

/// Every labelled container, and the image, are removed when this goes.
struct DockerFleet;

impl DockerFleet {
    fn remove_all(&self) -> Vec<Duration> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={DOCKER_LABEL}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut times = Vec::new();
        for id in out.split_whitespace() {
            let t = Instant::now();
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
            times.push(t.elapsed());
        }
        times
    }
}

impl Drop for DockerFleet {
    fn drop(&mut self) {
        self.remove_all();
        let _ = Command::new("docker").args(["rmi", "-f", DOCKER_IMAGE]).output();
    }
}

fn docker_ok() -> bool {
    Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success())
}

/// `Execute("true")` round trips: `samples` on an open connection to one of `pool`
/// sandboxes picked at random (up to 50 connections), and `samples / 2` each on a new
/// connection to a random one.
async fn execute_latency(label: &str, pool: &[Sandbox], samples: usize) {
    let mut rng = Rng::new();
    let picks: Vec<&Sandbox> =
        if pool.len() <= 50 { pool.iter().collect() } else { (0..50).map(|_| &pool[rng.below(pool.len())]).collect() };
    let mut clients = Vec::new();
    for sb in &picks {
        let mut c = support::client(sb.agent_addr, &sb.token).await.expect("connect");
        for _ in 0..2 {
            support::run(&mut c, "true", 10_000).await.expect("warm-up execute");
        }
        clients.push(c);
    }
    let mut open = Vec::new();
    for _ in 0..samples {
        if stopping() {
            return;
        }
        let i = rng.below(clients.len());
        let t = Instant::now();
        let out = support::run(&mut clients[i], "true", 10_000).await.expect("execute");
        open.push(t.elapsed());
        assert_eq!(out.exit_code, 0);
    }
    drop(clients);
    let mut fresh = Vec::new();
    for _ in 0..samples / 2 {
        if stopping() {
            return;
        }
        let sb = &pool[rng.below(pool.len())];
        let t = Instant::now();
        let out = support::exec_with_token(sb.agent_addr, &sb.token, "true", 10_000).await.expect("execute");
        fresh.push(t.elapsed());
        assert_eq!(out.exit_code, 0);
    }
    report(&format!("Execute(\"true\"), open connection, {label}"), &open);
    report(&format!("Execute(\"true\"), new connection, {label}"), &fresh);
}

#[tokio::main]
async fn main() {
    let Some(agent) = support::static_agent() else { return };
    if !nix::unistd::Uid::effective().is_root() {
        say_err!("skipped: the density benchmark needs root");
        return;
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        for sig in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM] {
            nix::sys::signal::sigaction(sig, &action).expect("signal handler");
        }
    }
    phases::collect();
    let _lock = support::lock::sandbox_tests_lock(false);
    let n = env_usize("SANDSTREAM_DENSITY_N", 500).max(1);
    let docker_n = env_usize("SANDSTREAM_DENSITY_DOCKER_N", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = match cached_default_template() {
        Some(t) if std::env::var("SANDSTREAM_DENSITY_TEMPLATE").as_deref() != Ok("busybox") => t,
        _ => support::busybox_template(dir.path()),
    };
    say!(
        "density: {n} sandboxes, template {}, {} CPUs, load average {}",
        template.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let spec =
        SandboxSpec { template: template.clone(), limits: Limits::default(), env: vec![], egress: Egress::Allow };

    oci_density(&agent, &spec, n).await;
    if stopping() {
        return;
    }
    if docker_n == 0 {
        say!("docker: skipped (SANDSTREAM_DENSITY_DOCKER_N=0)");
    } else if docker_ok() {
        docker_density(&agent, &template, docker_n);
    } else {
        say!("docker: no daemon answers `docker info`; ./scripts/docker.sh starts one");
    }
    say!("load average at the end: {}", load_average());
}

async fn oci_density(agent: &Path, spec: &SandboxSpec, n: usize) {
    let fleet = OciFleet::new(agent.to_path_buf());
    let runtime = &fleet.runtime;
    // A create that fails because Ctrl-C reached runc too is not an error.
    let create = |spec: &SandboxSpec| match tokio::task::block_in_place(|| runtime.create(spec)) {
        Ok(sb) => Some(sb),
        Err(_) if stopping() => None,
        Err(e) => panic!("create: {e}"),
    };
    // One sandbox made and killed first, so that the template's and the agent's pages
    // are cached before the baseline is read.
    let Some(warm) = create(spec) else { return };
    tokio::task::block_in_place(|| runtime.kill(&warm.id)).expect("kill");
    let before = tokio::task::block_in_place(meminfo_settled);

    let Some(first) = create(spec) else { return };
    phases::report();
    let mut sandboxes = vec![first];
    execute_latency("1 idle sandbox", &sandboxes, 400).await;

    let started = Instant::now();
    let mut creates = Vec::new();
    let mut window = Vec::new();
    while sandboxes.len() < n && !stopping() {
        let t = Instant::now();
        let Some(sb) = create(spec) else { return };
        sandboxes.push(sb);
        creates.push(t.elapsed());
        window.push(t.elapsed());
        if sandboxes.len() % 100 == 0 || sandboxes.len() == n {
            say!(
                "  {:>4} running: the last {} creates p50 {:.1} ms p99 {:.1} ms; load average {}",
                sandboxes.len(),
                window.len(),
                ms(pct(&window, 0.5)),
                ms(pct(&window, 0.99)),
                load_average()
            );
            window.clear();
            phases::report();
        }
    }
    if stopping() {
        return;
    }
    say!("created {} more in {:.1} s", creates.len(), started.elapsed().as_secs_f64());
    report(&format!("create -> agent accepting, sandboxes 2..{n}"), &creates);

    let ids: Vec<String> = sandboxes.iter().map(|s| format!("sandstream/{}", s.id)).collect();
    tokio::task::block_in_place(|| {
        std::thread::sleep(Duration::from_secs(2));
        let after = meminfo_settled();
        print_meminfo_delta(&format!("host, {n} idle sandboxes"), &before, &after, n);
        print_container_memory("sandboxes", &ids);
        print_idle_cpu("sandboxes", &ids, Duration::from_secs(5));
    });
    execute_latency(&format!("{n} idle sandboxes"), &sandboxes, 400).await;

    let kills = tokio::task::block_in_place(|| {
        let mut kills = Vec::new();
        for sb in &sandboxes {
            let t = Instant::now();
            runtime.kill(&sb.id).expect("kill");
            kills.push(t.elapsed());
        }
        kills
    });
    report(&format!("kill, {n} sandboxes one after another"), &kills);
    phases::report();
    say!("kill all: {:.1} s", kills.iter().sum::<Duration>().as_secs_f64());
}

/// `m` idle containers of the same template running the same agent as PID 1 (with the
/// same limits), on Docker's default bridge.
fn docker_density(agent: &Path, template: &Path, m: usize) {
    let fleet = DockerFleet;
    fleet.remove_all();
    let t = Instant::now();
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C '{}' -c . | docker import - {DOCKER_IMAGE} >/dev/null", template.display()))
        .status()
        .expect("docker import");
    assert!(import.success(), "docker import failed");
    say!("docker: template imported in {:.1} s", t.elapsed().as_secs_f64());
    let run = |name: &str| {
        let token = format!("density-{name}-token-0123456789");
        let out = Command::new("docker")
            .args(["run", "-d", "--label", DOCKER_LABEL, "--memory", "512m", "--memory-swap", "512m"])
            .args(["--cpus", "1", "--pids-limit", "256", "--cap-drop", "ALL"])
            .args(["--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "KILL"])
            .args(["--security-opt", "no-new-privileges", "--tmpfs", "/tmp"])
            .arg("-v")
            .arg(format!("{}:/.sandstream/agent:ro", agent.display()))
            .args(["-e", &format!("SANDSTREAM_AGENT_TOKEN={token}"), DOCKER_IMAGE])
            .args(["/.sandstream/agent", "--listen", "0.0.0.0:50052", "--workdir", "/tmp"])
            .output()
            .expect("docker run");
        assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let warm = run("warm");
    let _ = Command::new("docker").args(["rm", "-f", &warm]).output();
    let shims = || processes_named("containerd-shim");
    let before = meminfo_settled();
    let shims_before = shims();
    let mut ids = Vec::new();
    let mut runs = Vec::new();
    for i in 0..m {
        if stopping() {
            return;
        }
        let t = Instant::now();
        ids.push(run(&i.to_string()));
        runs.push(t.elapsed());
    }
    report(&format!("docker run -d (agent as PID 1), {m} containers"), &runs);
    std::thread::sleep(Duration::from_secs(2));
    let after = meminfo_settled();
    print_meminfo_delta(&format!("host, {m} idle docker containers"), &before, &after, m);
    let shims_after = shims();
    say!(
        "docker: containerd shims: {} more processes, RSS +{} PSS +{} per container",
        shims_after.0.saturating_sub(shims_before.0),
        mib((shims_after.1 - shims_before.1) / m as f64),
        mib((shims_after.2 - shims_before.2) / m as f64)
    );
    let cgroups: Vec<String> = ids
        .iter()
        .map(|id| {
            ["docker", "system.slice"]
                .iter()
                .map(|parent| {
                    if *parent == "docker" { format!("docker/{id}") } else { format!("system.slice/docker-{id}.scope") }
                })
                .find(|p| memory_cgroup(p).is_some())
                .unwrap_or_else(|| format!("docker/{id}"))
        })
        .collect();
    print_container_memory("docker containers", &cgroups);
    print_idle_cpu("docker containers", &cgroups, Duration::from_secs(5));
    let removes = fleet.remove_all();
    report(&format!("docker rm -f, {m} containers one after another"), &removes);
}

/// Processes whose command name starts with `prefix`: (count, RSS, PSS) in bytes.
fn processes_named(prefix: &str) -> (usize, f64, f64) {
    let (mut n, mut rss, mut pss) = (0, 0.0, 0.0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        if !comm.trim().starts_with(&prefix[..prefix.len().min(15)]) {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(path.join("smaps_rollup")) else { continue };
        n += 1;
        rss += rollup_bytes(&rollup, "Rss:");
        pss += rollup_bytes(&rollup, "Pss:");
    }
    (n, rss, pss)
}
