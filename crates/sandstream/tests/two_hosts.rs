//! Two hosts on one machine: a server on the host, a runner in its own network namespace
//! with its own address. The runner registers; a sandbox created through the server lands
//! on it; a client reaches that sandbox's agent at the address `connection` returns. When
//! the runner goes silent its sandboxes are marked lost, and when it comes back they are
//! running (and reachable) again. Needs root, runc, iproute2, iptables and the static
//! agent (SANDSTREAM_STATIC_AGENT); scripts/test.sh provides them. Holds the sandbox
//! tests' host-wide lock shared, like every test that creates sandboxes, so that the
//! runtime's leak tests never count this test's sandbox, namespace and links.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputEncoding};
use serde_json::{Value, json};

#[path = "support/api.rs"]
mod api;
#[path = "../../sandstream-runtime/tests/support/lock.rs"]
mod lock;

const KEY: &str = "ss_two_hosts_admin_key";
const SECRET: &str = "two-hosts-runner-secret";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to the host by a veth pair: the "other host".
struct FarHost {
    ns: String,
    link: String,
    host_ip: String,
    far_ip: String,
}

impl FarHost {
    fn new() -> FarHost {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).expect("random");
        let tag = format!("{:02x}{:02x}", b[0], b[1]);
        // 198.18.0.0/15 is for benchmarking networks (RFC 2544): never routed anywhere.
        let (host_ip, far_ip) = (format!("198.19.{}.1", b[0]), format!("198.19.{}.2", b[0]));
        let far = FarHost { ns: format!("ssfar-{tag}"), link: format!("vhfar{tag}"), host_ip, far_ip };
        sh(&["ip", "netns", "add", &far.ns]);
        let peer = format!("vnfar{tag}");
        sh(&["ip", "link", "add", &far.link, "type", "veth", "peer", "name", &peer]);
        sh(&["ip", "link", "set", &peer, "netns", &far.ns]);
        sh(&["ip", "addr", "add", &format!("{}/30", far.host_ip), "dev", &far.link]);
        sh(&["ip", "link", "set", &far.link, "up"]);
        sh(&["ip", "-n", &far.ns, "addr", "add", &format!("{}/30", far.far_ip), "dev", &peer]);
        sh(&["ip", "-n", &far.ns, "link", "set", &peer, "up"]);
        sh(&["ip", "-n", &far.ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &far.ns, "route", "add", "default", "via", &far.host_ip]);
        far
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for a stdout line containing `marker`; returns that line.
fn spawn_until(mut cmd: Command, marker: &str) -> (Proc, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(900)).expect("process became ready");
    (Proc(child), line)
}

fn sandstream() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandstream"));
    c.env("SANDSTREAM_LOG", "info,sandstream_server=debug");
    c
}

fn start_runner(far: &FarHost, server: &str, state_dir: &std::path::Path, agent: &str) -> Proc {
    // nsenter switches only the network namespace: `ip netns exec` would also remount
    // /sys, hiding the cgroup mounts runc needs.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", far.ns))
        .args(["--", env!("CARGO_BIN_EXE_sandstream"), "runner"])
        .args(["--server", server, "--listen", &format!("{}:7070", far.far_ip)])
        .args(["--advertise-host", &far.far_ip, "--name", "far", "--agent-binary", agent])
        .arg("--state-dir")
        .arg(state_dir)
        .env("SANDSTREAM_RUNNER_SECRET", SECRET);
    spawn_until(cmd, "Runner ready").0
}

async fn api(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    api::call(KEY, method, url, body).await
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_in(host: &str, port: u16, token: &str, command: &str) -> String {
    let mut client = ExecServiceClient::connect(format!("http://{host}:{port}")).await.expect("connect to the agent");
    let mut req = tonic::Request::new(ExecuteRequest {
        command: command.into(),
        encoding: OutputEncoding::Bytes as i32,
        timeout: 10_000,
        ..Default::default()
    });
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.expect("stream") {
        if m.kind == EventKind::Output as i32 && m.channel == 0 {
            out.extend_from_slice(&m.data);
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_on_another_host_serves_sandboxes_through_the_server() {
    let agent = match std::env::var("SANDSTREAM_STATIC_AGENT") {
        Ok(a) => a,
        Err(_) if std::env::var_os("CI").is_some() => panic!("SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh"),
        Err(_) => return eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set (scripts/test.sh sets it)"),
    };
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let _lock = lock::sandbox_tests_lock(false);
    let far = FarHost::new();
    let dir = tempfile::tempdir().expect("tempdir");

    let mut cmd = sandstream();
    cmd.args(["server", "--listen", &format!("{}:0", far.host_ip), "--heartbeat-timeout-ms", "2000"])
        .arg("--data-dir")
        .arg(dir.path().join("server"))
        .env("SANDSTREAM_API_KEY", KEY)
        .env("SANDSTREAM_RUNNER_SECRET", SECRET);
    let (_server, ready) = spawn_until(cmd, "Sandstream ready at ");
    let base = ready.rsplit(' ').next().expect("url").to_string();

    let runner_state = dir.path().join("runner");
    let runner = start_runner(&far, &base, &runner_state, &agent);
    wait_for("the runner to register", async || {
        let (_, list) = api(reqwest::Method::GET, format!("{base}/api/v1/runners"), None).await;
        list.as_array()
            .is_some_and(|l| l.iter().any(|r| r["advertiseHost"] == far.far_ip.as_str() && r["alive"] == true))
    })
    .await;

    let (status, sb) = api(reqwest::Method::POST, format!("{base}/api/v1/sandboxes"), Some(json!({}))).await;
    assert_eq!(status, 201, "{sb}");
    let id = sb["id"].as_str().expect("id").to_string();
    let (status, conn) = api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes/{id}/connection"), None).await;
    assert_eq!(status, 200, "{conn}");
    assert_eq!(conn["host"], far.far_ip.as_str(), "the sandbox lives on the far host: {conn}");
    let (port, token) = (conn["port"].as_u64().expect("port") as u16, conn["token"].as_str().expect("token"));
    assert_eq!(run_in(&far.far_ip, port, token, "echo hello from $(hostname)").await, "hello from sandbox\n");

    // The runner goes silent: its sandbox is lost, not killed.
    drop(runner);
    wait_for("the sandbox to be marked lost", async || {
        api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes/{id}"), None).await.1["state"] == "lost"
    })
    .await;
    let (status, _) = api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes/{id}/connection"), None).await;
    assert_eq!(status, 409, "a lost sandbox has no connection to give");

    // It comes back, finds its sandbox again, and the sandbox keeps working.
    let _runner = start_runner(&far, &base, &runner_state, &agent);
    wait_for("the sandbox to run again", async || {
        api(reqwest::Method::GET, format!("{base}/api/v1/sandboxes/{id}"), None).await.1["state"] == "running"
    })
    .await;
    assert_eq!(run_in(&far.far_ip, port, token, "echo still here").await, "still here\n");

    let (status, _) = api(reqwest::Method::DELETE, format!("{base}/api/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, 204);
    let (_, list) = api(reqwest::Method::GET, format!("{base}/api/v1/runners"), None).await;
    assert_eq!(list[0]["sandboxes"], 0, "{list}");
    assert!(!std::path::Path::new(&format!("/run/netns/{id}")).exists(), "the sandbox's namespace is gone");
}
