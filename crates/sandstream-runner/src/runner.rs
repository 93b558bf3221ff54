//! The runner's state: its runtime, its templates and the sandboxes it reports.
//!
//! Templates: `default` is built (or found) at start; the others are the ones imported
//! into the cache dir with `sandstream template add`, looked up at every create (so one
//! added while the runner runs is usable at once) and reported in every heartbeat.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use sandstream_runtime::{
    DEFAULT_TEMPLATE, DockerConfig, DockerRuntime, Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec,
    TemplateError, TemplateLease,
};

use crate::config::{Backend, RunnerConfig};
use crate::record::{Record, now_ms};
use sandstream_runner_protocol::{
    AddSshAccess, CreateSandbox, DEFAULT_PIDS, RunnerSandbox, check_disk_mb, check_envs, check_metadata, check_pids,
    check_timeout_ms,
};

/// How far ahead a pooled sandbox's deadline is set, refreshed every minute: pooled
/// sandboxes have no time to live, and this ends them if the runner is gone for good.
const POOL_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// How long a pooled sandbox's agent has to accept a connection before it is handed out.
const POOL_CHECK_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the warm pool waits, after a pooled sandbox is taken, before creating its
/// replacement (unless the pool is empty).
const POOL_REFILL_DELAY: Duration = Duration::from_millis(100);

/// Why a control call failed; each maps to one HTTP status in `control`.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sandbox {0} not found")]
    NotFound(String),
    #[error("runner is full: {0} sandboxes")]
    Full(u32),
    #[error("{0}")]
    Runtime(String),
}

/// One host's sandboxes.
pub struct Runner {
    pub(crate) cfg: RunnerConfig,
    /// One [`Record`] per sandbox given out.
    records_dir: PathBuf,
    pub(crate) runtime: Arc<dyn Runtime>,
    default_template: PathBuf,
    sandboxes: Mutex<BTreeMap<String, RunnerSandbox>>,
    /// Creates under way, counted against the capacity with `sandboxes` (see
    /// [`Runner::reserve`]).
    creating: Mutex<usize>,
    /// Ready sandboxes of the default template with default limits and no env, not yet
    /// given to the server (not reported in heartbeats).
    pool: Mutex<Vec<sandstream_runtime::Sandbox>>,
    /// Wakes the pool filler when a pooled sandbox is taken.
    pool_taken: Condvar,
    draining: std::sync::atomic::AtomicBool,
    /// Set once registered; heartbeats use it.
    pub(crate) id: Mutex<Option<String>>,
    /// Wakes the server link for a heartbeat now, rather than at its next tick: a
    /// sandbox found dead is reported gone at once.
    pub(crate) heartbeat_now: tokio::sync::Notify,
}

/// A runtime's sandbox as this runner reports it (no time to live or metadata yet).
fn listed(cfg: &RunnerConfig, sb: sandstream_runtime::Sandbox) -> RunnerSandbox {
    RunnerSandbox {
        id: sb.id,
        host: cfg.advertise_host.clone(),
        port: sb.published_port,
        token: sb.token,
        ssh_port: sb.ssh_published_port,
        expires_at: None,
        metadata: BTreeMap::new(),
    }
}

/// What a runner checks of its config before anything is set up.
fn check_config(cfg: &RunnerConfig) -> anyhow::Result<()> {
    check_disk_mb(cfg.default_disk_mb, cfg.max_disk_mb)
        .map_err(|e| anyhow::anyhow!("--default-disk-mb and --max-disk-mb: {e}"))
}

impl Runner {
    /// Sets the runner up (runtime, default template, sandboxes left by a previous run)
    /// and nothing more: no control API, no server link, no template collection and no
    /// warm-pool filler, which [`start`] adds. For driving a runner in-process (the
    /// benchmarks). Blocks while the default template builds on first use. The one place
    /// that builds the real runtime; the rest is `Runner::with_runtime`.
    pub fn new(cfg: RunnerConfig) -> anyhow::Result<Runner> {
        // A bad config fails before the runtime or the template is set up.
        check_config(&cfg)?;
        let runtime: Arc<dyn Runtime> = match &cfg.backend {
            Backend::Oci => {
                let mut oci = OciConfig::new(cfg.state_dir.join("sandboxes"), cfg.agent_binary.clone());
                oci.runtime = cfg.oci_runtime.clone();
                oci.favor_dynamic_cgroups = cfg.cgroup_favordynmods;
                oci.private_egress = cfg.private_egress.clone();
                oci.max_flows_per_sandbox = cfg.max_flows_per_sandbox;
                Arc::new(OciRuntime::new(oci).context("set up the oci runtime")?)
            }
            Backend::Docker { socket } => {
                let mut docker = DockerConfig::new(cfg.state_dir.join("docker-sandboxes"), cfg.agent_binary.clone());
                docker.socket = socket.clone();
                docker.private_egress = cfg.private_egress.clone();
                docker.max_flows_per_sandbox = cfg.max_flows_per_sandbox;
                Arc::new(
                    DockerRuntime::new(docker)
                        .with_context(|| format!("set up the docker runtime on {}", socket.display()))?,
                )
            }
        };
        let default_template = sandstream_runtime::ensure_default_template(&cfg.cache_dir, |line| {
            tracing::info!(target: "sandstream::template", "{line}");
        })
        .context("build the default template")?;
        Runner::with_runtime(cfg, runtime, default_template)
    }

    /// A runner on `runtime`, whose default template is the directory `default_template`
    /// (`cfg.backend`, `oci_runtime` and `agent_binary` are not read: they are the
    /// runtime's): finds the sandboxes a previous run left (`Runtime::recover`) and gives
    /// them back their records; drops the records of the sandboxes that did not survive.
    /// [`Runner::new`] calls it with the real runtime; unit tests with a fake one.
    pub(crate) fn with_runtime(
        cfg: RunnerConfig,
        runtime: Arc<dyn Runtime>,
        default_template: PathBuf,
    ) -> anyhow::Result<Runner> {
        check_config(&cfg)?;
        let found = runtime.recover().context("find sandboxes left by a previous run")?;
        let records_dir = cfg.state_dir.join("records");
        std::fs::create_dir_all(&records_dir).with_context(|| format!("create {}", records_dir.display()))?;
        let mut records = Record::read_all(&records_dir);
        let sandboxes = found
            .into_iter()
            .map(|s| {
                let record = records.remove(&s.id).unwrap_or_default();
                let rs = RunnerSandbox { expires_at: record.expires_at, metadata: record.metadata, ..listed(&cfg, s) };
                (rs.id.clone(), rs)
            })
            .collect::<BTreeMap<_, _>>();
        // Records of sandboxes that did not survive.
        for id in records.keys() {
            Record::remove(&records_dir, id);
        }
        if !sandboxes.is_empty() {
            tracing::info!(count = sandboxes.len(), "sandboxes from a previous run are running again");
        }
        // Versions the sandboxes that did not survive were the last users of.
        if let Err(e) = sandstream_runtime::collect_template_garbage(&cfg.cache_dir) {
            tracing::warn!(error = %e, "could not remove unused template versions");
        }
        Ok(Runner {
            cfg,
            records_dir,
            runtime,
            default_template,
            sandboxes: Mutex::new(sandboxes),
            creating: Mutex::new(0),
            pool: Mutex::new(Vec::new()),
            pool_taken: Condvar::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            // Registering again at every start (with the id kept in `runner-id`) tells the
            // server this run's control URL.
            id: Mutex::new(None),
            heartbeat_now: tokio::sync::Notify::new(),
        })
    }

    /// The templates this runner can create sandboxes from: `default` and every imported
    /// one in its cache dir (read afresh at each call).
    pub fn templates(&self) -> Vec<String> {
        let mut names = vec![DEFAULT_TEMPLATE.to_string()];
        match sandstream_runtime::list_templates(&self.cfg.cache_dir) {
            Ok(list) => names.extend(list.into_iter().map(|t| t.name)),
            Err(e) => tracing::warn!(error = %e, "could not list the imported templates"),
        }
        names
    }

    /// The directory of template `name`'s current version, and the lease that keeps it
    /// from being collected until the sandbox has mounted it.
    fn template(&self, name: &str) -> Result<(PathBuf, Option<TemplateLease>), RunnerError> {
        if name == DEFAULT_TEMPLATE {
            return Ok((self.default_template.clone(), None));
        }
        match sandstream_runtime::lease_template(&self.cfg.cache_dir, name) {
            Ok(lease) => Ok((lease.path().to_path_buf(), Some(lease))),
            Err(e @ (TemplateError::NotFound { .. } | TemplateError::InvalidName(_))) => {
                Err(RunnerError::BadRequest(format!("runner {}: {e}", self.cfg.name)))
            }
            Err(e) => Err(RunnerError::Runtime(format!("template {name}: {e}"))),
        }
    }

    /// Creates a sandbox (blocking: call from `spawn_blocking`). A request the warm pool
    /// can serve (default template, default limits, no env) takes a pooled sandbox.
    pub fn create(&self, req: &CreateSandbox) -> Result<RunnerSandbox, RunnerError> {
        let pids = req.pids.unwrap_or(DEFAULT_PIDS);
        check_pids(pids).map_err(RunnerError::BadRequest)?;
        if let Some(ms) = req.timeout_ms {
            check_timeout_ms(ms).map_err(RunnerError::BadRequest)?;
        }
        check_metadata(&req.metadata).map_err(RunnerError::BadRequest)?;
        check_envs(&req.envs).map_err(RunnerError::BadRequest)?;
        let disk_mb = req.disk_mb.unwrap_or(self.cfg.default_disk_mb);
        check_disk_mb(disk_mb, self.cfg.max_disk_mb)
            .map_err(|e| RunnerError::BadRequest(format!("{e} (the most runner {} gives a sandbox)", self.cfg.name)))?;
        // Held until the sandbox is listed (or the create failed).
        let _slot = self.reserve()?;
        let limits = Limits {
            memory_bytes: u64::from(req.memory_mb) << 20,
            cpu_millis: req.cpu_millis,
            pids,
            ..Limits::default()
        }
        .with_disk_mb(disk_mb);
        // Pooled sandboxes have the default limits: another disk size (like another
        // memory size) is a new sandbox.
        if req.template == "default" && req.envs.is_empty() && limits == self.pool_limits() {
            loop {
                let Some(sb) = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                self.pool_taken.notify_one();
                // A pooled sandbox may have died while it waited (its agent crashed, the
                // host's OOM killer, an operator): never hand that out.
                if TcpStream::connect_timeout(&sb.agent_addr, POOL_CHECK_TIMEOUT).is_ok() {
                    return self.give_out(listed(&self.cfg, sb), req);
                }
                tracing::warn!(sandbox_id = %sb.id, "a pooled sandbox's agent does not answer; removing it");
                if let Err(e) = self.runtime.kill(&sb.id) {
                    tracing::warn!(sandbox_id = %sb.id, error = %e, "could not remove a dead pooled sandbox");
                }
            }
        }
        let (template, lease) = self.template(&req.template)?;
        let spec = SandboxSpec {
            template,
            limits,
            env: req.envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            egress: Egress::Allow,
        };
        let created = self.create_spec(&spec);
        drop(lease);
        self.give_out(listed(&self.cfg, created?), req)
    }

    /// Gives a new or pooled sandbox its time to live and metadata, records them, hands
    /// the deadline to the sandbox itself, and lists it. If the record or the deadline
    /// cannot be written the sandbox is removed: a sandbox whose time to live a restart
    /// would forget, or that would outlive a runner gone for good, is never handed out.
    fn give_out(&self, mut rs: RunnerSandbox, req: &CreateSandbox) -> Result<RunnerSandbox, RunnerError> {
        rs.expires_at = req.timeout_ms.map(|ms| now_ms() + ms as i64);
        rs.metadata = req.metadata.clone();
        let written = Record::of(&rs)
            .write(&self.records_dir, &rs.id)
            .map_err(|e| e.to_string())
            .and_then(|()| self.runtime.set_deadline(&rs.id, rs.expires_at).map_err(|e| e.to_string()));
        if let Err(e) = written {
            if let Err(k) = self.runtime.kill(&rs.id) {
                tracing::warn!(sandbox_id = %rs.id, error = %k, "could not remove an unrecorded sandbox");
            }
            Record::remove(&self.records_dir, &rs.id);
            return Err(RunnerError::Runtime(format!("record sandbox {}: {e}", rs.id)));
        }
        self.lock().insert(rs.id.clone(), rs.clone());
        Ok(rs)
    }

    /// Sandbox `id` as listed.
    pub fn get(&self, id: &str) -> Result<RunnerSandbox, RunnerError> {
        self.lock().get(id).cloned().ok_or_else(|| RunnerError::NotFound(id.to_string()))
    }

    /// Sandbox `id` now dies `timeout_ms` from now (blocking: writes its record).
    pub fn set_timeout(&self, id: &str, timeout_ms: u64) -> Result<RunnerSandbox, RunnerError> {
        check_timeout_ms(timeout_ms).map_err(RunnerError::BadRequest)?;
        let mut sandboxes = self.lock();
        let rs = sandboxes.get_mut(id).ok_or_else(|| RunnerError::NotFound(id.to_string()))?;
        let mut updated = rs.clone();
        updated.expires_at = Some(now_ms() + timeout_ms as i64);
        // The sandbox's own deadline first: if the record then fails, the sandbox ends
        // at the new time by itself, and the runner kills it at the old one.
        self.runtime
            .set_deadline(id, updated.expires_at)
            .map_err(|e| RunnerError::Runtime(format!("set sandbox {id}'s deadline: {e}")))?;
        Record::of(&updated)
            .write(&self.records_dir, id)
            .map_err(|e| RunnerError::Runtime(format!("record sandbox {id}: {e}")))?;
        *rs = updated.clone();
        Ok(updated)
    }

    /// Adds credentials to sandbox `id`'s SSH access, after removing its passwords when
    /// `revoke_passwords` (blocking: writes its access file).
    pub fn update_ssh_access(&self, id: &str, req: &AddSshAccess, revoke_passwords: bool) -> Result<(), RunnerError> {
        if let Some(e) = req.credentials.iter().find_map(|c| c.check().err()) {
            return Err(RunnerError::BadRequest(e));
        }
        if !self.lock().contains_key(id) {
            return Err(RunnerError::NotFound(id.to_string()));
        }
        self.runtime.update_ssh_access(id, &req.credentials, revoke_passwords).map_err(|e| match e {
            sandstream_runtime::Error::NotFound(_) => RunnerError::NotFound(id.to_string()),
            sandstream_runtime::Error::InvalidSpec(m) => RunnerError::BadRequest(m),
            e => RunnerError::Runtime(format!("set sandbox {id}'s SSH access: {e}")),
        })
    }

    /// The sandboxes whose time to live ended by `now`.
    pub(crate) fn expired(&self, now: i64) -> Vec<String> {
        self.lock().values().filter(|rs| rs.expires_at.is_some_and(|t| t <= now)).map(|rs| rs.id.clone()).collect()
    }

    /// Kills every sandbox whose time to live ended by `now` (milliseconds since the
    /// epoch); returns their ids. Blocking.
    pub fn kill_expired(&self, now: i64) -> Vec<String> {
        let expired = self.expired(now);
        for id in &expired {
            tracing::info!(sandbox_id = %id, "sandbox reached its time to live; killing it");
            if let Err(e) = self.kill(id) {
                tracing::warn!(sandbox_id = %id, error = %e, "could not kill an expired sandbox");
            }
        }
        expired
    }

    /// Removes every listed sandbox whose agent no longer runs (it crashed, the host's
    /// OOM killer took it, an operator killed it): its network, mounts and files go at
    /// once rather than at its time to live, and the next heartbeat leaves it out, so
    /// the server marks it killed. Returns their ids. Blocking.
    /// The server hears of it at once: the heartbeat that leaves them out is sent as
    /// soon as they are unlisted, before their removal (which takes a while) starts.
    pub fn remove_dead(&self) -> Vec<String> {
        let listed: Vec<String> = self.lock().keys().cloned().collect();
        if listed.is_empty() {
            return Vec::new();
        }
        let mut dead = Vec::new();
        for id in self.runtime.not_running(&listed) {
            // Unlisted meanwhile: its user or the time-to-live pass is killing it.
            let Some(rs) = self.lock().remove(&id) else { continue };
            if rs.expires_at.is_some_and(|t| t <= now_ms()) {
                // Its agent ended it at its deadline, a moment before the pass above.
                tracing::info!(sandbox_id = %id, "sandbox reached its time to live; killing it");
            } else {
                tracing::warn!(sandbox_id = %id, "sandbox's agent is no longer running; removing the sandbox");
            }
            Record::remove(&self.records_dir, &id);
            dead.push(id);
        }
        if dead.is_empty() {
            return dead;
        }
        self.heartbeat_now.notify_one();
        for id in &dead {
            match self.runtime.kill(id) {
                Ok(()) | Err(sandstream_runtime::Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "could not remove a dead sandbox"),
            }
        }
        dead
    }

    /// Pushes every pooled sandbox's own deadline [`POOL_DEADLINE`] ahead: a pooled
    /// sandbox has no time to live, so only this ends it once the runner is gone.
    /// Blocking.
    pub fn refresh_pool_deadlines(&self) {
        let ids: Vec<String> =
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|s| s.id.clone()).collect();
        let deadline = now_ms() + POOL_DEADLINE.as_millis() as i64;
        for id in ids {
            if let Err(e) = self.runtime.set_deadline(&id, Some(deadline)) {
                tracing::warn!(sandbox_id = %id, error = %e, "could not push a pooled sandbox's deadline on");
            }
        }
    }

    fn create_spec(&self, spec: &SandboxSpec) -> Result<sandstream_runtime::Sandbox, RunnerError> {
        self.runtime.create(spec).map_err(|e| match e {
            sandstream_runtime::Error::InvalidSpec(m) => RunnerError::BadRequest(m),
            e => RunnerError::Runtime(e.to_string()),
        })
    }

    /// Keeps `warm_pool` ready sandboxes while capacity allows. Blocking: runs on a
    /// thread of its own, which [`start`] spawns when `warm_pool` is not 0. After
    /// [`Runner::drain_pool`] it returns when it next wakes: a create under way is
    /// finished and killed first; a wait ends within a second, unless the runner is full.
    pub fn fill_pool(&self) {
        let spec = SandboxSpec {
            template: self.default_template.clone(),
            limits: self.pool_limits(),
            env: Vec::new(),
            egress: Egress::Allow,
        };
        let draining = || self.draining.load(std::sync::atomic::Ordering::Acquire);
        loop {
            let pooled = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                while !draining()
                    && (pool.len() >= self.cfg.warm_pool as usize
                        || pool.len() + self.committed() >= self.cfg.capacity as usize)
                {
                    pool =
                        self.pool_taken.wait_timeout(pool, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()).0;
                }
                if draining() {
                    return;
                }
                pool.len()
            };
            if pooled > 0 {
                // A sandbox was just taken and its first commands are on their way: a create
                // (tens of ms of CPU) started now would compete with them. An empty pool is
                // refilled at once.
                std::thread::sleep(POOL_REFILL_DELAY);
            }
            let created = self.create_spec(&spec).and_then(|sb| {
                let deadline = now_ms() + POOL_DEADLINE.as_millis() as i64;
                match self.runtime.set_deadline(&sb.id, Some(deadline)) {
                    Ok(()) => Ok(sb),
                    Err(e) => {
                        if let Err(k) = self.runtime.kill(&sb.id) {
                            tracing::warn!(sandbox_id = %sb.id, error = %k, "could not remove a pooled sandbox");
                        }
                        Err(RunnerError::Runtime(format!("set pooled sandbox {}'s deadline: {e}", sb.id)))
                    }
                }
            });
            match created {
                Ok(sb) => {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    // Checked under the lock `drain_pool` takes after setting `draining`: a
                    // sandbox is either pushed before the drain takes the pool, or killed here.
                    if draining() {
                        drop(pool);
                        if let Err(e) = self.runtime.kill(&sb.id) {
                            tracing::warn!(sandbox_id = %sb.id, error = %e, "could not remove a pooled sandbox");
                        }
                        return;
                    }
                    pool.push(sb);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not fill the warm pool; retrying in 5 s");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
    }

    /// Kills the pooled sandboxes (nobody holds them) and stops refilling; for shutdown.
    /// Blocking: call from `spawn_blocking`.
    pub fn drain_pool(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Release);
        let pooled = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|p| p.into_inner()));
        // A filler waiting for room stops now rather than at its next timeout.
        self.pool_taken.notify_all();
        for sb in pooled {
            if let Err(e) = self.runtime.kill(&sb.id) {
                tracing::warn!(sandbox_id = %sb.id, error = %e, "could not remove a pooled sandbox");
            }
        }
    }

    /// The default template's directory, which pooled sandboxes are created from.
    pub fn default_template(&self) -> &std::path::Path {
        &self.default_template
    }

    /// The limits of pooled sandboxes: the defaults, with this runner's default disk.
    fn pool_limits(&self) -> Limits {
        Limits::default().with_disk_mb(self.cfg.default_disk_mb)
    }

    /// Ready sandboxes in the warm pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Kills a sandbox (blocking: call from `spawn_blocking`).
    pub fn kill(&self, id: &str) -> Result<(), RunnerError> {
        let known = self.lock().remove(id).is_some();
        Record::remove(&self.records_dir, id);
        match self.runtime.kill(id) {
            Ok(()) => Ok(()),
            Err(sandstream_runtime::Error::NotFound(_)) if !known => Err(RunnerError::NotFound(id.to_string())),
            Err(sandstream_runtime::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(RunnerError::Runtime(e.to_string())),
        }
    }

    pub fn list(&self) -> Vec<RunnerSandbox> {
        self.lock().values().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Takes one of the capacity's slots for a create, or fails when every slot is held
    /// by a listed sandbox or another create under way. Checking the count and creating
    /// after it would let concurrent creates all see the same free slot (40 parallel
    /// creates against a capacity of 12 made 27 sandboxes). The slot is given back when
    /// the returned guard drops, after the sandbox is listed.
    fn reserve(&self) -> Result<Reservation<'_>, RunnerError> {
        let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if self.count() + *creating >= self.cfg.capacity as usize {
            return Err(RunnerError::Full(self.cfg.capacity));
        }
        *creating += 1;
        Ok(Reservation(&self.creating))
    }

    /// Listed sandboxes and creates under way.
    fn committed(&self) -> usize {
        let creating = *self.creating.lock().unwrap_or_else(|p| p.into_inner());
        self.count() + creating
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunnerSandbox>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One capacity slot held by a create under way; given back on drop.
struct Reservation<'a>(&'a Mutex<usize>);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut creating = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *creating = creating.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests;
