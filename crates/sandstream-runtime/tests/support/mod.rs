//! Shared by the runtime's integration tests and benchmark: the static agent's path,
//! a busybox template, gRPC calls to a sandbox's agent, test peers in network namespaces
//! (`netns`), the host-wide lock of every test that creates sandboxes (`lock`), host
//! snapshots for leak tests (`host_state`), the CPU-hog check (`cpu`), the disk-limit
//! checks (`disk`), the flow-bound checks (`flows`) and the `docker` backend's fixture
//! (`docker`).
#![allow(dead_code)]

pub mod cpu;
pub mod disk;
pub mod docker;
pub mod flows;
pub mod host_state;
pub mod hostile;
pub mod isolation;
pub mod lock;
pub mod netns;
pub mod userns;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputEncoding};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The static agent from scripts/build-agent.sh, named by SANDSTREAM_STATIC_AGENT.
/// Under CI its absence fails the test; elsewhere the test is skipped with a message.
pub fn static_agent() -> Option<PathBuf> {
    match std::env::var_os("SANDSTREAM_STATIC_AGENT") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => panic!("SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh"),
        None => {
            eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// The default template (Debian or Ubuntu with python3 and node), built on first use
/// into SANDSTREAM_CACHE_DIR (default /var/cache/sandstream, shared with `sandstream up`).
pub fn default_template() -> PathBuf {
    let cache: PathBuf =
        std::env::var_os("SANDSTREAM_CACHE_DIR").map_or_else(|| "/var/cache/sandstream".into(), PathBuf::from);
    sandstream_runtime::ensure_default_template(&cache, |line| eprintln!("template: {line}")).expect("default template")
}

/// A busybox root filesystem (mode 755) with a root-only /etc/shadow and a user 1000.
pub fn busybox_template(dir: &Path) -> PathBuf {
    let root = dir.join("template");
    for d in ["bin", "etc", "home", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod template");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    // Running the copy fails with ETXTBSY while a process forked by another thread during
    // the copy still holds it open for writing (until that process execs): tried again.
    let mut tries = 0;
    loop {
        let out = std::process::Command::new("/usr/sbin/chroot")
            .arg(&root)
            .args(["/bin/busybox", "--install", "-s", "/bin"])
            .output()
            .expect("chroot");
        tries += 1;
        if out.status.success() {
            break;
        }
        assert!(tries < 5 && String::from_utf8_lossy(&out.stderr).contains("busy"), "busybox --install: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
    std::fs::write(root.join("etc/shadow"), "root:TEMPLATE-SECRET:19000:0:99999:7:::\n").expect("shadow");
    std::fs::set_permissions(root.join("etc/shadow"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    root
}

#[derive(Debug, Default)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// The agent's END `error` sentence.
    pub error: String,
    pub oom_killed: bool,
}

/// Sends `Bearer <token>` with every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Client = ExecServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of the agent at `addr`, holding one connection for all its calls.
pub async fn client(addr: SocketAddr, token: &str) -> Result<Client, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let auth = format!("Bearer {token}").parse().expect("ascii");
    Ok(ExecServiceClient::with_interceptor(channel, Bearer(auth)))
}

/// Runs `command` in the sandbox whose agent is at `addr`, and collects its output.
pub async fn exec_with_token(
    addr: SocketAddr,
    token: &str,
    command: &str,
    timeout_ms: i64,
) -> Result<Out, tonic::Status> {
    run(&mut client(addr, token).await?, command, timeout_ms).await
}

/// Runs `command` through `client` (Execute), and collects its output.
pub async fn run(client: &mut Client, command: &str, timeout_ms: i64) -> Result<Out, tonic::Status> {
    let req = ExecuteRequest {
        command: command.into(),
        timeout: timeout_ms,
        encoding: OutputEncoding::Bytes as i32,
        ..Default::default()
    };
    let mut stream = client.execute(req).await?.into_inner();
    let mut out = Out::default();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        match EventKind::try_from(msg.kind) {
            Ok(EventKind::Output) if msg.channel == 1 => out.stderr.push_str(&String::from_utf8_lossy(&msg.data)),
            Ok(EventKind::Output) => out.stdout.push_str(&String::from_utf8_lossy(&msg.data)),
            Ok(EventKind::End) => {
                out.exit_code = msg.exit_code;
                out.error = msg.error;
                out.oom_killed = msg.oom_killed;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Runs a fork bomb in `sb` (4 s at most) and, while it runs, checks that `bystander`
/// answers and that the host still starts processes; returns how the bomb ended, for
/// the caller to check that its sandbox's pids limit contained it.
pub async fn fork_bomb_beside(sb: &sandstream_runtime::Sandbox, bystander: &sandstream_runtime::Sandbox) -> Out {
    let (addr, token) = (sb.agent_addr, sb.token.clone());
    let bomb = tokio::spawn(async move { exec_with_token(addr, &token, "f() { f | f & }; f; sleep 5", 4000).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let fine = exec_with_token(bystander.agent_addr, &bystander.token, "echo fine", 30_000).await.expect("bystander");
    assert_eq!(fine.stdout, "fine\n", "another sandbox stays responsive");
    let host = std::process::Command::new("sh").args(["-c", "echo host"]).output().expect("the host forks");
    assert_eq!(host.stdout, b"host\n", "the host stays responsive");
    bomb.await.expect("join").expect("bomb runs")
}

/// ptrace (PTRACE_ATTACH) from user code in `sb` (a default-template sandbox, for
/// python3): refused for this test's own process (a host process: not even visible) and
/// for the sandbox's agent (PID 1, root), while it works on the user's own child, so the
/// refusals come from isolation, not from ptrace being unavailable.
pub async fn ptrace_reaches_only_the_users_own_processes(sb: &sandstream_runtime::Sandbox) {
    let host_pid = std::process::id();
    let script = format!(
        "import ctypes, os, subprocess\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         child = subprocess.Popen([\"sleep\", \"30\"])\n\
         for name, pid in ((\"host\", {host_pid}), (\"agent\", 1), (\"own-child\", child.pid)):\n    \
             r = libc.ptrace(16, pid, 0, 0)\n    \
             print(name, r, os.strerror(ctypes.get_errno()) if r else \"attached\")\n\
         child.kill()\n"
    );
    let out = exec_with_token(sb.agent_addr, &sb.token, &format!("python3 - <<'EOF'\n{script}EOF"), 30_000)
        .await
        .expect("execute in sandbox");
    assert_eq!(
        out.stdout, "host -1 No such process\nagent -1 Operation not permitted\nown-child 0 attached\n",
        "ptrace: {out:?}"
    );
}

/// `running` tells a live sandbox from one whose agent `kill_agent` killed outside the
/// runtime's hands (the runner removes those), and from one the runtime removed. The
/// same check on every backend.
pub async fn running_follows_the_agent(runtime: &dyn sandstream_runtime::Runtime, id: &str, kill_agent: impl FnOnce()) {
    let unknown = "sb-0123456789".to_string();
    let both = [id.to_string(), unknown.clone()];
    assert!(runtime.running(id), "a live sandbox");
    assert!(!runtime.running(&unknown), "an unknown id");
    assert_eq!(runtime.not_running(&both), vec![unknown.clone()], "of a live sandbox and an unknown id");
    kill_agent();
    let started = std::time::Instant::now();
    while runtime.running(id) {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "still running after its agent was killed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.not_running(&both), both, "of a dead sandbox and an unknown id");
    runtime.kill(id).expect("remove the dead sandbox");
    assert!(!runtime.running(id), "a removed sandbox");
    assert_eq!(runtime.not_running(&both), both, "of a removed sandbox and an unknown id");
}

/// Builds `tests/support/NAME.c` with `gcc -static` into `dir` and copies it to
/// `template`'s `/bin/NAME`; returns the copy's path on the host.
pub fn install_static_c(name: &str, dir: &std::path::Path, template: &std::path::Path) -> std::path::PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/support/{name}.c"));
    let built = dir.join(name);
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&built)
        .arg(&source)
        .output()
        .expect("gcc runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "gcc -static {name}.c: {}", String::from_utf8_lossy(&out.stderr));
    let installed = template.join("bin").join(name);
    std::fs::copy(&built, &installed).unwrap_or_else(|e| panic!("copy {name} into the template: {e}"));
    std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    installed
}

/// Issue 19: what a sandbox's `/proc/self/mountinfo` and `/proc/cmdline` show of the host,
/// read inside. Asserts a mount at each of `bound` (the probe reads the sandbox's own
/// table, binds included), that no line names the runtime's `state` dir, the test's
/// `test_dir`, the agent's host path or the checkout, and that `/proc/cmdline` reads
/// empty while the host's is not.
pub async fn assert_mounts_and_cmdline_hide_the_host(
    sb: &sandstream_runtime::Sandbox,
    state: &Path,
    test_dir: &Path,
    bound: &[&str],
) {
    let out =
        exec_with_token(sb.agent_addr, &sb.token, "cat /proc/self/mountinfo; echo ---; wc -c < /proc/cmdline", 60_000)
            .await
            .expect("execute in sandbox");
    let (mounts, cmdline) = out.stdout.split_once("---\n").unwrap_or_else(|| panic!("{out:?}"));
    for bound in bound {
        assert!(mounts.contains(&format!(" {bound} ")), "no mount at {bound}: {mounts}");
    }
    let agent = static_agent().expect("agent");
    let host_paths = [
        state.display().to_string(),
        test_dir.display().to_string(),
        agent.display().to_string(),
        std::fs::canonicalize(&agent).expect("agent").display().to_string(),
        state.join(&sb.id).join("token").display().to_string(),
        env!("CARGO_MANIFEST_DIR").to_string(),
    ];
    for path in &host_paths {
        let named: Vec<&str> = mounts.lines().filter(|l| l.contains(path.as_str())).collect();
        assert!(named.is_empty(), "the sandbox's mount table names the host path {path}: {named:#?}");
    }
    let host_cmdline = std::fs::read_to_string("/proc/cmdline").expect("host cmdline");
    assert!(!host_cmdline.trim().is_empty(), "the host's command line must be something to hide");
    let cmdline = cmdline.trim();
    assert_eq!(cmdline, "0", "/proc/cmdline shows {cmdline} bytes of the host's command line");
}
