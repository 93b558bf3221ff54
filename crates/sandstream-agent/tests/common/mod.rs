//! Test harness: starts the real `sandstream-agent` binary on a free port with its own
//! temp dirs, and talks to it with a real tonic client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{CommandOutput, EventKind, ExecuteRequest, ExitStatus, OutputChannel, OutputEncoding};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tokio_stream::StreamExt;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub type Client = ExecServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.0.is_empty() {
            req.metadata_mut().insert("authorization", format!("Bearer {}", self.0).parse().expect("ascii token"));
        }
        Ok(req)
    }
}

pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
    /// Where SSH is served, when the agent was started with `--ssh-listen`.
    pub ssh_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Agent {
    pub fn start(extra: &[&str]) -> Agent {
        Self::start_binary(PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")), extra)
    }

    /// The agent with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::start_binary_env(PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")), extra, env)
    }

    pub fn start_binary(bin: PathBuf, extra: &[&str]) -> Agent {
        Self::start_binary_env(bin, extra, &[])
    }

    fn start_binary_env(bin: PathBuf, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::start_customized(bin, extra, env, |_| {})
    }

    /// The agent with extra flags and environment, its `Command` adjusted by `customize`
    /// just before it is spawned.
    pub fn start_customized(
        bin: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
        customize: impl FnOnce(&mut std::process::Command),
    ) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("workdir");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--spool-dir"])
            .arg(dir.path().join("spool"))
            .arg("--workdir")
            .arg(&work)
            .args(extra)
            .env("SANDSTREAM_AGENT_TOKEN", TOKEN)
            .env("SANDSTREAM_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Not the default under the host's /run: each test agent has its own.
        if !extra.contains(&"--node-preload") {
            cmd.arg("--node-preload").arg(dir.path().join("node-stdio.cjs"));
        }
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("start agent");
        let (addr, ssh_addr) = if extra.contains(&"--ssh-listen") {
            let (addr, ssh) = read_listen_lines(&mut child);
            (addr, Some(ssh))
        } else {
            (read_listen_line(&mut child), None)
        };
        Agent { child, addr, ssh_addr, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub async fn client(&self) -> Client {
        client_with_token(self.addr, TOKEN).await
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        rss_kib(self.child.id())
    }

    pub fn send_sigterm(&self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("signal agent");
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait agent")
    }

    /// The agent's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait agent")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills and reaps a child process when dropped, so a failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn read_listen_line(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read agent stdout");
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected agent output {line:?}"))
        .parse()
        .expect("addr")
}

/// The agent's two address lines: gRPC, then SSH.
pub fn read_listen_lines(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = |prefix: &str| -> SocketAddr {
        let mut line = String::new();
        out.read_line(&mut line).expect("read agent stdout");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected agent output {line:?}"))
            .parse()
            .expect("addr")
    };
    (line("listening on "), line("ssh listening on "))
}

pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("rss field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        // Large frames: with HTTP/2's default 16 KiB, framing dominates bulk output (see
        // BENCHMARKS.md); SANDSTREAM_CLIENT_FRAME overrides it for comparison.
        .max_frame_size(client_frame_size())
        .connect()
        .await
        .expect("connect to agent")
}

/// SETTINGS_MAX_FRAME_SIZE the test client advertises: 1 MiB unless overridden.
pub fn client_frame_size() -> u32 {
    std::env::var("SANDSTREAM_CLIENT_FRAME").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 20)
}

pub async fn client_with_token(addr: SocketAddr, token: &str) -> Client {
    ExecServiceClient::with_interceptor(channel(addr).await, Bearer(token.to_string()))
        .max_decoding_message_size(64 << 20)
}

pub fn bytes_request(command: &str) -> ExecuteRequest {
    ExecuteRequest { command: command.to_string(), encoding: OutputEncoding::Bytes as i32, ..Default::default() }
}

/// Everything a command stream delivered, checked for offset continuity.
#[derive(Debug, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Both channels in the order their chunks arrived.
    pub merged: Vec<u8>,
    pub events: Vec<CommandOutput>,
    pub end: Option<CommandOutput>,
}

impl Collected {
    pub fn end(&self) -> &CommandOutput {
        self.end.as_ref().expect("stream ended with an end message")
    }

    /// Adds one message; panics if an output chunk does not continue exactly where the
    /// previous one of its channel stopped (a gap or a duplicate).
    pub fn push(&mut self, msg: CommandOutput) {
        match EventKind::try_from(msg.kind).expect("known kind") {
            EventKind::Output => {
                let buf = if msg.channel == OutputChannel::Stderr as i32 { &mut self.stderr } else { &mut self.stdout };
                assert_eq!(msg.offset, buf.len() as u64, "chunk offset must continue the channel exactly");
                buf.extend_from_slice(&msg.data);
                self.merged.extend_from_slice(&msg.data);
            }
            EventKind::End => self.end = Some(msg),
            _ => self.events.push(msg),
        }
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub async fn execute(client: &mut Client, req: ExecuteRequest) -> Collected {
    let mut stream = client.execute(req).await.expect("execute accepted").into_inner();
    let mut c = Collected::default();
    while let Some(msg) = stream.next().await {
        c.push(msg.expect("stream message"));
    }
    assert!(c.end.is_some(), "stream closed without an end message");
    c
}

pub async fn run(client: &mut Client, command: &str) -> Collected {
    execute(client, bytes_request(command)).await
}

/// A TCP proxy whose live connections the test can cut, like a network blip.
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy { addr, conns, accept }
    }

    /// Drops every live connection through the proxy; new ones are still accepted.
    pub fn cut(&self) {
        for c in self.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Every live (not zombie) process: its pid and the fields of `/proc/PID/stat` after
/// the ")" that closes the command name (state, ppid, pgrp, ...).
pub fn live_processes() -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
        if fields.first().map(String::as_str) != Some("Z") {
            found.push((pid, fields));
        }
    }
    found
}

/// Pids of every live process in process group `pgid`.
/// Runs `sh -c 'sleep 100 & sleep 100'` with a 700 ms timeout and checks that the
/// timeout kills its whole process group: at least `min_members` processes in it while
/// it runs, the end reported as timed out (exit 124, SIGKILL), none left within 5 s.
/// Returns the group id (the `Started` pid) and everything the stream delivered.
pub async fn timeout_kills_the_group(client: &mut Client, min_members: usize) -> (u32, Collected) {
    let mut req = bytes_request("sh -c 'sleep 100 & sleep 100'");
    req.timeout = 700;
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let first = stream.next().await.expect("a first message").expect("ok");
    assert_eq!(first.kind, EventKind::Started as i32);
    let pgid = first.pid;
    // The shells and both sleeps are in the command's process group while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let members = group_members(pgid);
    assert!(members.len() >= min_members, "expected {min_members} processes in group {pgid}, found {members:?}");
    let mut got = Collected::default();
    got.push(first);
    while let Some(msg) = stream.next().await {
        got.push(msg.expect("ok"));
    }
    let end = got.end();
    assert_eq!((end.status, end.exit_code, end.signal), (ExitStatus::TimedOut as i32, 124, 9));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(group_members(pgid), Vec::<u32>::new(), "processes of the timed-out command survived");
    (pgid, got)
}

pub fn group_members(pgid: u32) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|(_, f)| f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid))
        .map(|(pid, _)| pid)
        .collect()
}
