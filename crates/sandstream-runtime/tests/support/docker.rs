//! What the `docker` backend's tests share: the Engine's socket (SANDSTREAM_DOCKER_SOCKET,
//! default /var/run/docker.sock), their runtime's config, a fixture with a busybox
//! template, and commands run in a sandbox as the sandbox user (through its agent) or as
//! root inside (through the Engine's exec API with User "0").
//!
//! Beside the usual Engine, the tests can run against a second one (another socket, as
//! scripts/docker.sh starts with SANDSTREAM_DOCKER_SOCKET and SANDSTREAM_DOCKER_IMAGE
//! set): SANDSTREAM_DOCKER_NETWORK, SANDSTREAM_DOCKER_BRIDGE and SANDSTREAM_DOCKER_SUBNET
//! then give its sandboxes a network of their own (two Engines must not share a bridge).

use std::path::PathBuf;

use sandstream_runtime::{DockerConfig, DockerRuntime, Egress, Limits, Runtime, Sandbox, SandboxSpec};

use super::lock::sandbox_tests_lock;
use super::{Out, busybox_template, exec_with_token, static_agent};

pub fn socket() -> PathBuf {
    std::env::var_os("SANDSTREAM_DOCKER_SOCKET").map_or_else(|| "/var/run/docker.sock".into(), PathBuf::from)
}

/// The tests' runtime config: the defaults on [`socket`], with the network overrides
/// above.
pub fn config(state: PathBuf, agent: PathBuf) -> DockerConfig {
    let mut cfg = DockerConfig { socket: socket(), ..DockerConfig::new(state, agent) };
    if let Some(n) = std::env::var("SANDSTREAM_DOCKER_NETWORK").ok().filter(|n| !n.is_empty()) {
        cfg.network = n;
    }
    if let Some(b) = std::env::var("SANDSTREAM_DOCKER_BRIDGE").ok().filter(|b| !b.is_empty()) {
        cfg.bridge = b;
    }
    if let Some(s) = std::env::var("SANDSTREAM_DOCKER_SUBNET").ok().filter(|s| !s.is_empty()) {
        cfg.subnet = s.parse().expect("SANDSTREAM_DOCKER_SUBNET is a CIDR");
    }
    cfg
}

pub fn docker_answers() -> bool {
    std::process::Command::new("curl")
        .args(["-sf", "--max-time", "3", "--unix-socket"])
        .arg(socket())
        .arg("http://docker/_ping")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` (skip) when a prerequisite is missing outside CI; a panic under CI.
pub fn prerequisites() -> Option<PathBuf> {
    let agent = static_agent()?;
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    if !docker_answers() {
        let msg = format!("no Docker Engine answers on {} (run scripts/docker.sh)", socket().display());
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
        return None;
    }
    Some(agent)
}

/// `docker ARGS` on [`socket`]; panics unless it succeeds.
pub fn docker(args: &[&str]) -> String {
    let out = docker_out(args);
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn docker_out(args: &[&str]) -> std::process::Output {
    let host = format!("unix://{}", socket().display());
    std::process::Command::new("docker").arg("-H").arg(host).args(args).output().expect("docker")
}

/// Who a command runs as inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    /// The sandbox user (uid 1000), as the agent starts every command.
    User,
    /// Root inside: `docker exec --user 0` (the Engine's exec API), with the container's
    /// capabilities, seccomp filter and user namespace.
    Root,
}

impl As {
    pub const BOTH: [As; 2] = [As::User, As::Root];

    /// Runs `command` with `sh -c` in `sb`: as the sandbox user at most `timeout_ms` (the
    /// agent's timeout); as root until it ends (busybox's `timeout` would leave its
    /// watcher process behind in the sandbox for the whole time).
    pub async fn run_for(self, sb: &Sandbox, command: &str, timeout_ms: i64) -> Out {
        match self {
            As::User => exec_with_token(sb.agent_addr, &sb.token, command, timeout_ms).await.expect("execute"),
            As::Root => {
                let args = ["exec", "--user", "0", &sb.id, "sh", "-c", command];
                let out = docker_out(&args);
                Out {
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    exit_code: out.status.code().unwrap_or(-1),
                    ..Out::default()
                }
            }
        }
    }

    pub async fn run(self, sb: &Sandbox, command: &str) -> Out {
        self.run_for(sb, command, 30_000).await
    }
}

pub struct Fixture {
    // Dropped in this order: the runtime's sandboxes go with their guards first, then
    // the image, then the lock.
    pub runtime: DockerRuntime,
    pub template: PathBuf,
    pub dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// A runtime on a state dir of its own and a busybox template, holding the sandbox
/// tests' lock (exclusive for tests that count host-wide things).
pub fn fixture_with(exclusive: bool) -> Option<Fixture> {
    let agent = prerequisites()?;
    let lock = sandbox_tests_lock(exclusive);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = busybox_template(dir.path());
    let runtime = DockerRuntime::new(config(dir.path().join("state"), agent)).expect("runtime");
    Some(Fixture { runtime, template, dir, _lock: lock })
}

pub fn fixture() -> Option<Fixture> {
    fixture_with(false)
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.runtime.list().unwrap_or_default() {
            let _ = self.runtime.kill(&id);
        }
        if let Err(e) = self.runtime.remove_template_image(&self.template) {
            eprintln!("could not remove the test's template image: {e}");
        }
    }
}

impl Fixture {
    pub fn spec(&self, limits: Limits) -> SandboxSpec {
        SandboxSpec {
            template: self.template.clone(),
            limits,
            env: vec![("GREETING".into(), "hi".into())],
            egress: Egress::Allow,
        }
    }

    pub fn create(&self, limits: Limits) -> Guard<'_> {
        self.create_with(Egress::Allow, limits)
    }

    pub fn create_with(&self, egress: Egress, limits: Limits) -> Guard<'_> {
        let spec = SandboxSpec { egress, ..self.spec(limits) };
        Guard { runtime: &self.runtime, sandbox: self.runtime.create(&spec).expect("create sandbox") }
    }
}

/// Kills its sandbox when dropped, so a failing assertion leaves nothing running.
pub struct Guard<'a> {
    pub runtime: &'a DockerRuntime,
    pub sandbox: Sandbox,
}

impl std::ops::Deref for Guard<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.runtime.kill(&self.sandbox.id);
    }
}

/// The PID (on the host) of container `id`'s init, the agent.
pub fn init_pid(id: &str) -> u32 {
    docker(&["inspect", "-f", "{{.State.Pid}}", id]).trim().parse().expect("pid")
}
