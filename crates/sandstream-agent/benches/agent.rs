//! Agent benchmarks; they print numbers and assert nothing.
//!
//!   cargo bench -p sandstream-agent --bench agent
//!
//! Uses the release `sandstream-agent`, or the binary named by SANDSTREAM_AGENT_BIN
//! (e.g. the static build from scripts/build-agent.sh). SANDSTREAM_BENCH_N round trips
//! (default 2000), SANDSTREAM_BENCH_PAUSE_MS between them (default 0: back to back),
//! SANDSTREAM_BENCH_STREAM_RUNS 1 GiB streams (default 3), SANDSTREAM_BENCH_AGENT_ARGS
//! passed to the agent (e.g. `--standby-shell false`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use sandstream_proto::v1::EventKind;
use tokio_stream::StreamExt;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<44} n={:<5} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().expect("samples")),
    );
}

/// User + system CPU seconds the process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Total steal ticks (CPU time the hypervisor gave to someone else), all CPUs.
fn steal_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    stat.lines().next().and_then(|l| l.split_whitespace().nth(8)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Share of the machine's CPU time stolen since `since` (ticks) over `elapsed`.
fn steal_pct(since: u64, elapsed: Duration) -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (steal_ticks() - since) as f64 / (elapsed.as_secs_f64() * 100.0 * cpus) * 100.0
}

fn shell_baseline(n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let s = std::process::Command::new("/bin/bash").args(["-c", "true"]).status().expect("bash");
            assert!(s.success());
            t.elapsed()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = std::env::var_os("SANDSTREAM_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")));
    println!("agent binary: {}", bin.display());
    println!("client SETTINGS_MAX_FRAME_SIZE: {} bytes", client_frame_size());
    let extra: Vec<String> =
        std::env::var("SANDSTREAM_BENCH_AGENT_ARGS").unwrap_or_default().split_whitespace().map(String::from).collect();
    let agent = Agent::start_binary(bin, &extra.iter().map(String::as_str).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = agent.rss_kib();
    println!("{:<44} {:.2} MiB", "agent idle RSS (fresh)", idle as f64 / 1024.0);

    let mut client = agent.client().await;
    // Round trip of Execute("true") on an open connection: request out, end message in.
    for _ in 0..100 {
        run(&mut client, "true").await;
    }
    let n: usize = std::env::var("SANDSTREAM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // Back to back by default; SANDSTREAM_BENCH_PAUSE_MS spaces the requests as a user's
    // are (the agent's standby shell is then always ready when a command arrives).
    let pause = Duration::from_millis(
        std::env::var("SANDSTREAM_BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
    );
    println!("pause between round trips: {} ms", pause.as_millis());
    let mut samples = Vec::with_capacity(n);
    let (steal0, t0) = (steal_ticks(), Instant::now());
    for _ in 0..n {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let t = Instant::now();
        let got = run(&mut client, "true").await;
        samples.push(t.elapsed());
        assert_eq!(got.end().exit_code, 0);
    }
    report("Execute(\"true\") round trip", samples);
    println!("{:<44} {:.1} %", "  CPU stolen by the hypervisor meanwhile", steal_pct(steal0, t0.elapsed()));
    report("baseline: fork+exec `bash -c true` locally", shell_baseline(n));

    // Throughput of one 1 GiB stream into a client that counts bytes.
    let one_gib: u64 = 1 << 30;
    let runs: u32 = std::env::var("SANDSTREAM_BENCH_STREAM_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for round in 1..=runs {
        let cpu0 = cpu_secs(agent.pid());
        let steal0 = steal_ticks();
        let t = Instant::now();
        let mut stream = client.execute(bytes_request("head -c 1G /dev/zero")).await.expect("execute").into_inner();
        let mut bytes = 0u64;
        let mut messages = 0u64;
        while let Some(m) = stream.next().await {
            let m = m.expect("message");
            if m.kind == EventKind::Output as i32 {
                bytes += m.data.len() as u64;
                messages += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(bytes, one_gib);
        println!(
            "{:<44} {:.2} GB/s ({:.2} GiB/s, {} messages, avg {} KiB, agent CPU {:.2} s, stolen {:.0} %)",
            format!("stream `head -c 1G /dev/zero`, run {round}"),
            bytes as f64 / secs / 1e9,
            bytes as f64 / secs / (1u64 << 30) as f64,
            messages,
            bytes / messages / 1024,
            cpu_secs(agent.pid()) - cpu0,
            steal_pct(steal0, t.elapsed()),
        );
    }
    let t = Instant::now();
    let s = std::process::Command::new("/bin/sh")
        .args(["-c", "head -c 1G /dev/zero | cat > /dev/null"])
        .status()
        .expect("sh");
    assert!(s.success());
    println!(
        "{:<44} {:.2} GB/s",
        "baseline: `head -c 1G /dev/zero | cat`",
        one_gib as f64 / t.elapsed().as_secs_f64() / 1e9
    );

    drop(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_after, peak) = agent.rss_kib();
    println!(
        "{:<44} {:.2} MiB (peak during the run {:.2} MiB)",
        "agent idle RSS (after the runs)",
        idle_after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
