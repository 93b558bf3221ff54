//! A CPU hog in one sandbox must leave another sandbox's `Execute("true")` latency within
//! 2x of what it is without the hog, on either backend.
//!
//! Noise is handled three ways. The two conditions are never measured apart in time:
//! the hog runs all along and is stopped and continued (SIGSTOP/SIGCONT to its process
//! group through the agent's `Signal`) in alternating phases, ABBA ordered, and the
//! medians of all samples of each condition are compared. A round (one phase of each)
//! starts when the host has room (checked with the hog stopped) and counts only when
//! processes outside the two sandboxes and this test left room for the hog's limit and
//! the other sandbox in both its phases: on a two-core host a hog at its one-CPU limit
//! leaves the other sandbox one CPU instead of two, so any outside load competes for half
//! the room it had, which is capacity, not isolation (with one to two CPUs of outside
//! load, 2.5x to 5.5x was measured; in quiet rounds, 1.0x to 1.3x). And the hog
//! sandbox's own CPU time, read from its cgroup on the host, shows the hog really ran in
//! the one condition and not in the other, so the comparison cannot pass for want of a
//! hog; over 2 s it also shows the hog's CPU limit holds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandstream_proto::v1::{ExecuteRequest, SignalRequest};
use sandstream_runtime::Sandbox;

use super::{client, run};

/// More busy loops than the host has CPUs (up to 8), so that the hog would take every
/// core if its limit did not hold it.
fn hog_command() -> String {
    let loops = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).min(8);
    format!("for i in $(seq {loops}); do (while :; do :; done) & done; wait")
}

/// Rounds that must count; how long to wait for them on a busy host (the hog stopped
/// while waiting, so it takes nothing from the host's other users), before failing under
/// CI and skipping elsewhere.
const ROUNDS: usize = 8;
const PATIENCE: Duration = Duration::from_secs(600);
/// Each phase: a pause for the scheduler to reach the new condition, then back-to-back
/// `Execute("true")` calls for several CPU quota periods (100 ms), so that the hog's CPU
/// time over the phase says how much it ran.
const SETTLE: Duration = Duration::from_millis(100);
const PHASE: Duration = Duration::from_millis(600);

/// CPU time of one cgroup, from the host.
pub struct CpuUsage {
    file: PathBuf,
    /// cgroup v2 `cpu.stat` (microseconds) rather than v1 `cpuacct.usage` (nanoseconds).
    v2: bool,
}

impl CpuUsage {
    /// The CPU accounting of the cgroup of host process `pid`.
    pub fn of_pid(pid: u32) -> CpuUsage {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("the process's cgroups");
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if controllers.split(',').any(|c| c == "cpuacct") {
                let file = PathBuf::from(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage"));
                return CpuUsage { file, v2: false };
            }
        }
        let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("a cpuacct or a v2 cgroup");
        CpuUsage { file: PathBuf::from(format!("/sys/fs/cgroup{path}/cpu.stat")), v2: true }
    }

    pub fn read(&self) -> Duration {
        let text = std::fs::read_to_string(&self.file).unwrap_or_else(|e| panic!("{}: {e}", self.file.display()));
        if self.v2 {
            let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec ")).expect("usage_usec");
            Duration::from_micros(usec.trim().parse().expect("usec"))
        } else {
            Duration::from_nanos(text.trim().parse().expect("nsec"))
        }
    }
}

/// CPU time the whole host spent busy (not idle, not waiting for IO), from /proc/stat.
fn host_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<u64> =
        stat.lines().next().expect("cpu line").split_whitespace().skip(1).map(|t| t.parse().expect("ticks")).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait. The kernel
    // reports USER_HZ ticks, 100 a second on every Linux architecture.
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Duration::from_millis(busy * 10)
}

/// CPU time of this process (the test: its gRPC client), from /proc/self/stat.
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// One phase: latencies, and what ran meanwhile, in CPUs (CPU seconds per second).
struct Phase {
    latencies: Vec<Duration>,
    hog_cpus: f64,
    /// This test's own process.
    own_cpus: f64,
    /// Everything but the two sandboxes and this test: other processes, the kernel.
    outside_cpus: f64,
}

async fn phase(b: &mut super::Client, hog: &CpuUsage, other: &CpuUsage) -> Phase {
    let (hog0, other0, own0, busy0, t0) = (hog.read(), other.read(), own_cpu(), host_busy(), Instant::now());
    let mut latencies = Vec::new();
    while t0.elapsed() < PHASE {
        let t = Instant::now();
        let out = run(b, "true", 10_000).await.expect("Execute(\"true\")");
        latencies.push(t.elapsed());
        assert_eq!(out.exit_code, 0, "{out:?}");
    }
    let wall = t0.elapsed().as_secs_f64();
    let (hog_cpu, other_cpu) = ((hog.read() - hog0).as_secs_f64(), (other.read() - other0).as_secs_f64());
    let own = own_cpu().saturating_sub(own0).as_secs_f64();
    let busy = host_busy().saturating_sub(busy0).as_secs_f64();
    let outside = (busy - hog_cpu - other_cpu - own).max(0.0);
    Phase { latencies, hog_cpus: hog_cpu / wall, own_cpus: own / wall, outside_cpus: outside / wall }
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Runs the hog in `hog` (whose agent is host process `hog_pid`, limited to
/// `hog_cpu_limit` CPUs) and checks that `other`'s (agent: host process `other_pid`)
/// `Execute("true")` latency stays within 2x. Callers hold the sandbox tests' lock
/// exclusive, so no other test's sandboxes come and go meanwhile.
pub async fn a_cpu_hog_leaves_another_sandbox_responsive(
    hog: &Sandbox,
    hog_pid: u32,
    hog_cpu_limit: f64,
    other: &Sandbox,
    other_pid: u32,
) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // What outside load leaves room for the hog's limit, the other sandbox and this test
    // (about a CPU between them while they run back to back); at least half a CPU.
    let outside_max = (cpus - hog_cpu_limit - 1.0).max(0.5);
    let mut a = client(hog.agent_addr, &hog.token).await.expect("connect to the hog sandbox");
    // It outlives the patience below, so a host too busy to measure ends in that
    // message, not in a hog that timed out.
    let timeout = i64::try_from((PATIENCE + Duration::from_secs(120)).as_millis()).expect("ms");
    let req = ExecuteRequest { command: hog_command(), timeout, ..Default::default() };
    let command_id = a.start(req).await.expect("start the hog").into_inner().command_id;
    let (hog_usage, other_usage) = (CpuUsage::of_pid(hog_pid), CpuUsage::of_pid(other_pid));
    // Its CPU limit holds: over 2 s the hog gets at most its quota, plus one period's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu0, t0) = (hog_usage.read(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let limited = (hog_usage.read() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    println!("the hog sandbox used {limited:.2} CPUs over 2 s, limit {hog_cpu_limit}");
    assert!(limited < hog_cpu_limit + 0.1, "the hog used {limited:.2} CPUs, over its limit of {hog_cpu_limit}");

    let mut b = client(other.agent_addr, &other.token).await.expect("connect to the other sandbox");
    for _ in 0..5 {
        run(&mut b, "true", 10_000).await.expect("warm-up");
    }
    let (mut idle, mut hogging) = (Vec::new(), Vec::new());
    let (mut idle_cpus, mut hog_cpus) = (Vec::new(), Vec::new());
    let (started, mut round, mut busy_rounds, mut waits) = (Instant::now(), 0, 0, 0);
    while idle_cpus.len() < ROUNDS {
        if started.elapsed() > PATIENCE {
            let msg = format!(
                "the host stayed too busy to measure for {} s: processes outside the two sandboxes kept more than \
                 {outside_max:.1} CPUs busy in {busy_rounds} of {round} rounds and {waits} checks between them",
                PATIENCE.as_secs()
            );
            a.signal(SignalRequest { command_id, signal: 0 }).await.expect("kill the hog");
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("skipped: {msg}");
            return;
        }
        // With the hog stopped, wait for the host to have room before a round.
        a.signal(SignalRequest { command_id: command_id.clone(), signal: nix::libc::SIGSTOP })
            .await
            .expect("stop the hog");
        let (busy0, own0, t0) = (host_busy(), own_cpu(), Instant::now());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outside = (host_busy().saturating_sub(busy0) + own0).saturating_sub(own_cpu()).as_secs_f64();
        if outside / t0.elapsed().as_secs_f64() > outside_max {
            waits += 1;
            continue;
        }
        let mut phases = [None, None];
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for hog_runs in order {
            let signal = if hog_runs { nix::libc::SIGCONT } else { nix::libc::SIGSTOP };
            a.signal(SignalRequest { command_id: command_id.clone(), signal }).await.expect("signal the hog");
            tokio::time::sleep(SETTLE).await;
            phases[usize::from(hog_runs)] = Some(phase(&mut b, &hog_usage, &other_usage).await);
        }
        let [Some(mut stopped), Some(mut running)] = phases else { unreachable!("both phases ran") };
        let counts = stopped.outside_cpus <= outside_max && running.outside_cpus <= outside_max;
        println!(
            "round {round}: hog stopped {:.2} ms ({:.2} CPUs outside, {:.2} test), running {:.2} ms ({:.2} CPUs outside, hog \
             {:.2} CPUs){}",
            median_ms(&mut stopped.latencies),
            stopped.outside_cpus,
            stopped.own_cpus,
            median_ms(&mut running.latencies),
            running.outside_cpus,
            running.hog_cpus,
            if counts { "" } else { ": host busy, not counted" }
        );
        round += 1;
        if !counts {
            busy_rounds += 1;
            continue;
        }
        idle.extend(stopped.latencies);
        hogging.extend(running.latencies);
        idle_cpus.push(stopped.hog_cpus);
        hog_cpus.push(running.hog_cpus);
    }
    a.signal(SignalRequest { command_id, signal: 0 }).await.expect("kill the hog");
    let (idle_ms, hog_ms) = (median_ms(&mut idle), median_ms(&mut hogging));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (idle_cpus, hog_cpus) = (mean(&idle_cpus), mean(&hog_cpus));
    println!(
        "Execute(\"true\") in another sandbox, medians over {ROUNDS} rounds: {idle_ms:.2} ms of {} with the hog \
         stopped ({idle_cpus:.2} CPUs used by the hog sandbox), {hog_ms:.2} ms of {} with it running ({hog_cpus:.2} \
         CPUs): {:.2}x",
        idle.len(),
        hogging.len(),
        hog_ms / idle_ms
    );
    // Positive control: the hog ran while it was meant to, and only then.
    assert!(
        hog_cpus > 0.5 * hog_cpu_limit && idle_cpus < 0.05,
        "the hog did not run as meant: {hog_cpus:.2} CPUs while running, {idle_cpus:.2} while stopped"
    );
    assert!(
        hog_ms <= 2.0 * idle_ms,
        "a CPU hog in another sandbox slows Execute(\"true\") from {idle_ms:.2} ms to {hog_ms:.2} ms (over 2x)"
    );
}
