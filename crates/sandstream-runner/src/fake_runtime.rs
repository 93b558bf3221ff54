//! A [`Runtime`] that runs nothing, for the runner's unit tests (no root, no runc): it
//! hands out made-up sandboxes, records every call, fails the calls a test chooses,
//! and can hold creates until the test lets them go. Also the runner those tests drive
//! ([`test_runner`]), with its state and cache dirs in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sandstream_runner_protocol::{CreateSandbox, SshCredential};
use sandstream_runtime::{Error, Limits, Result, Runtime, Sandbox, SandboxSpec};

use crate::config::{Backend, RunnerConfig};
use crate::runner::Runner;

/// How long a test waits for something that should happen at once before it fails
/// (rather than hanging); never what a test asserts.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(30);

/// The kinds of call a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Create,
    Kill,
    SetDeadline,
    UpdateSshAccess,
    Recover,
}

/// One call the runner made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Create { template: PathBuf, limits: Limits, env: Vec<(String, String)> },
    Kill(String),
    SetDeadline(String, Option<i64>),
    UpdateSshAccess { id: String, add: Vec<SshCredential>, revoke_passwords: bool },
    Recover,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Calls of each kind so far, failed ones included.
    counts: BTreeMap<Op, usize>,
    /// The calls that fail: their kind and number among that kind (from 1).
    failing: BTreeSet<(Op, usize)>,
    /// Sandboxes made so far (their ids are `fake-1`, `fake-2`…).
    made: usize,
    /// The sandboxes this runtime has.
    live: BTreeMap<String, Sandbox>,
    /// Those of `live` whose agent no longer runs.
    stopped: BTreeSet<String>,
    deadlines: BTreeMap<String, Option<i64>>,
    /// What the next `recover` finds: sandboxes a previous run left.
    left: Vec<Sandbox>,
    /// Creates wait while set.
    held: bool,
    /// Creates waiting because of `held`.
    waiting: usize,
}

pub(crate) struct FakeRuntime {
    state: Mutex<State>,
    changed: Condvar,
    /// The "agent" of every sandbox it makes: accepts connections (into its backlog)
    /// and never answers, which is all a warm pool's check asks.
    agent: TcpListener,
}

impl FakeRuntime {
    pub(crate) fn new() -> Arc<FakeRuntime> {
        let agent = TcpListener::bind("127.0.0.1:0").expect("bind the fake agent");
        Arc::new(FakeRuntime { state: Mutex::default(), changed: Condvar::new(), agent })
    }

    /// A sandbox as this runtime would report it, its agent answering.
    pub(crate) fn sandbox(&self, id: &str, port: u16) -> Sandbox {
        Sandbox {
            id: id.to_string(),
            agent_addr: self.agent.local_addr().expect("fake agent address"),
            token: format!("token-{id}"),
            published_port: port,
            ssh_published_port: Some(port + 1),
        }
    }

    /// A sandbox whose agent refuses connections (a port nothing listens on any more).
    pub(crate) fn dead_sandbox(&self, id: &str) -> Sandbox {
        let closed: SocketAddr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        Sandbox { agent_addr: closed, ..self.sandbox(id, 1) }
    }

    /// `sandbox` is running, left by a previous run: the next `recover` finds it.
    pub(crate) fn leave(&self, sandbox: Sandbox) {
        self.lock().left.push(sandbox);
    }

    /// `sandbox` runs on this runtime from now on (one the runner did not create, such
    /// as a pooled sandbox a test puts in the pool).
    pub(crate) fn adopt(&self, sandbox: Sandbox) {
        self.lock().live.insert(sandbox.id.clone(), sandbox);
    }

    /// The `nth` call (from 1, since this runtime was made) of kind `op` fails.
    pub(crate) fn fail(&self, op: Op, nth: usize) {
        self.lock().failing.insert((op, nth));
    }

    /// The next call of kind `op` fails.
    pub(crate) fn fail_next(&self, op: Op) {
        let mut s = self.lock();
        let next = s.counts.get(&op).copied().unwrap_or(0) + 1;
        s.failing.insert((op, next));
    }

    /// Sandbox `id`'s agent stops running (it crashed); the sandbox stays until killed.
    pub(crate) fn stop(&self, id: &str) {
        self.lock().stopped.insert(id.to_string());
    }

    /// Creates from now on wait until [`FakeRuntime::release_creates`].
    pub(crate) fn hold_creates(&self) {
        self.lock().held = true;
    }

    pub(crate) fn release_creates(&self) {
        self.lock().held = false;
        self.changed.notify_all();
    }

    /// Waits until `n` creates are held.
    pub(crate) fn wait_for_held_creates(&self, n: usize) {
        self.wait_until(&format!("{n} held creates"), |s| s.waiting >= n);
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The ids the runner killed, in order.
    pub(crate) fn kills(&self) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Kill(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn creates(&self) -> usize {
        self.lock().calls.iter().filter(|c| matches!(c, Call::Create { .. })).count()
    }

    /// The ids of the sandboxes this runtime has.
    pub(crate) fn live(&self) -> Vec<String> {
        self.lock().live.keys().cloned().collect()
    }

    /// Sandbox `id`'s own deadline, as last set (`None`: never set, or it is gone).
    pub(crate) fn deadline(&self, id: &str) -> Option<Option<i64>> {
        self.lock().deadlines.get(id).copied()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_until(&self, what: &str, done: impl Fn(&State) -> bool) {
        let start = Instant::now();
        let mut s = self.lock();
        while !done(&s) {
            assert!(start.elapsed() < HANG_GUARD, "gave up waiting for {what}");
            s = self.changed.wait_timeout(s, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Counts a call of kind `op`, records it, and says whether it is to fail.
    fn enter(s: &mut State, op: Op, call: Call) -> Result<()> {
        s.calls.push(call);
        let n = s.counts.entry(op).or_insert(0);
        *n += 1;
        if s.failing.contains(&(op, *n)) {
            return Err(Error::Command { command: format!("fake {op:?}"), detail: "told to fail".into() });
        }
        Ok(())
    }
}

impl Runtime for FakeRuntime {
    fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let mut s = self.lock();
        let call = Call::Create { template: spec.template.clone(), limits: spec.limits, env: spec.env.clone() };
        let entered = Self::enter(&mut s, Op::Create, call);
        if s.held {
            s.waiting += 1;
            self.changed.notify_all();
            let start = Instant::now();
            // Bounded, so a test that fails while creates are held does not hang.
            while s.held && start.elapsed() < HANG_GUARD {
                s = self.changed.wait_timeout(s, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
            }
            s.waiting -= 1;
        }
        entered?;
        s.made += 1;
        let id = format!("fake-{}", s.made);
        let sb = self.sandbox(&id, 40_000 + s.made as u16);
        s.live.insert(id, sb.clone());
        self.changed.notify_all();
        Ok(sb)
    }

    fn kill(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        Self::enter(&mut s, Op::Kill, Call::Kill(id.to_string()))?;
        if s.live.remove(id).is_none() {
            return Err(Error::NotFound(id.to_string()));
        }
        s.stopped.remove(id);
        s.deadlines.remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self.live())
    }

    fn recover(&self) -> Result<Vec<Sandbox>> {
        let mut s = self.lock();
        Self::enter(&mut s, Op::Recover, Call::Recover)?;
        let left = std::mem::take(&mut s.left);
        for sb in &left {
            s.live.insert(sb.id.clone(), sb.clone());
        }
        Ok(left)
    }

    fn running(&self, id: &str) -> bool {
        let s = self.lock();
        s.live.contains_key(id) && !s.stopped.contains(id)
    }

    fn set_deadline(&self, id: &str, deadline_ms: Option<i64>) -> Result<()> {
        let mut s = self.lock();
        Self::enter(&mut s, Op::SetDeadline, Call::SetDeadline(id.to_string(), deadline_ms))?;
        if !s.live.contains_key(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        s.deadlines.insert(id.to_string(), deadline_ms);
        Ok(())
    }

    fn update_ssh_access(&self, id: &str, add: &[SshCredential], revoke_passwords: bool) -> Result<()> {
        let mut s = self.lock();
        let call = Call::UpdateSshAccess { id: id.to_string(), add: add.to_vec(), revoke_passwords };
        Self::enter(&mut s, Op::UpdateSshAccess, call)?;
        if !s.live.contains_key(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(())
    }
}

/// Waits until `done` holds, looking every 10 ms; fails after [`HANG_GUARD`].
pub(crate) fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG_GUARD, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A create the warm pool can serve: the default template and limits, no env.
pub(crate) fn default_request(timeout_ms: Option<u64>) -> CreateSandbox {
    CreateSandbox::with_defaults(timeout_ms)
}

/// A runner's config for unit tests: state and cache dirs under `dir`, loopback
/// addresses, a 256 MiB default disk.
pub(crate) fn test_config(dir: &Path, capacity: u32, warm_pool: u32) -> RunnerConfig {
    RunnerConfig {
        server_url: "http://127.0.0.1:9".into(),
        secret: "s3cret".into(),
        name: "unit".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        advertise_host: "192.0.2.7".into(),
        capacity,
        state_dir: dir.join("state"),
        cache_dir: dir.join("cache"),
        agent_binary: dir.join("no-agent"),
        oci_runtime: dir.join("no-runc"),
        cgroup_favordynmods: false,
        backend: Backend::Oci,
        heartbeat_interval: Duration::from_secs(3600),
        warm_pool,
        private_egress: Vec::new(),
        default_disk_mb: 256,
        max_disk_mb: 1024,
        max_flows_per_sandbox: sandstream_runtime::DEFAULT_MAX_FLOWS,
    }
}

/// A runner on `fake` with `cfg`; its default template is `STATE_DIR/../default`
/// (never read: the fake makes nothing from it).
pub(crate) fn test_runner(fake: &Arc<FakeRuntime>, cfg: RunnerConfig) -> Runner {
    let template = default_template(&cfg);
    Runner::with_runtime(cfg, fake.clone(), template).expect("a runner on the fake runtime")
}

/// The default template [`test_runner`] gives a runner with `cfg`.
pub(crate) fn default_template(cfg: &RunnerConfig) -> PathBuf {
    cfg.state_dir.with_file_name("default")
}

/// The ids that have a record in `cfg`'s records dir, sorted.
pub(crate) fn record_ids(cfg: &RunnerConfig) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(cfg.state_dir.join("records"))
        .expect("records dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Sandbox `id`'s record in `cfg`'s records dir, as JSON.
pub(crate) fn record_json(cfg: &RunnerConfig, id: &str) -> serde_json::Value {
    let path = cfg.state_dir.join("records").join(format!("{id}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("record JSON")
}
