//! The runner's state: its runtime, its templates and the sandboxes it reports.
//!
//! Templates: `default` is built (or found) at start; the others are the ones imported
//! into the cache dir with `sandstream template add`, looked up at every create (so one
//! added while the runner runs is usable at once) and reported in every heartbeat.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use sandstream_runtime::{
    DEFAULT_TEMPLATE, DockerConfig, DockerRuntime, Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec,
    TemplateError, TemplateLease,
};

use crate::api::{CreateSandbox, RunnerSandbox};
use crate::config::{Backend, RunnerConfig};

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
    runtime: Arc<dyn Runtime>,
    default_template: PathBuf,
    sandboxes: Mutex<BTreeMap<String, RunnerSandbox>>,
    /// Ready sandboxes of the default template with default limits and no env, not yet
    /// given to the server (not reported in heartbeats).
    pool: Mutex<Vec<RunnerSandbox>>,
    /// Wakes the pool filler when a pooled sandbox is taken.
    pool_taken: Condvar,
    draining: std::sync::atomic::AtomicBool,
    /// Set once registered; heartbeats use it.
    pub(crate) id: Mutex<Option<String>>,
}

/// A started runner: its control API address and state.
pub struct RunnerHandle {
    pub control_url: String,
    pub runner: Arc<Runner>,
}

/// Sets the runner up (runtime, default template, sandboxes left by a previous run),
/// serves the control API and starts registering with the server. Blocks while the
/// default template builds on first use.
pub async fn start(cfg: RunnerConfig) -> anyhow::Result<RunnerHandle> {
    let runner = tokio::task::spawn_blocking(move || Runner::new(cfg)).await??;
    let runner = Arc::new(runner);
    if runner.cfg.warm_pool > 0 {
        let filler = runner.clone();
        std::thread::Builder::new().name("warm-pool".into()).spawn(move || filler.fill_pool())?;
    }
    let listener = tokio::net::TcpListener::bind(runner.cfg.listen)
        .await
        .with_context(|| format!("bind the runner control API on {}", runner.cfg.listen))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() { runner.cfg.advertise_host.clone() } else { local.ip().to_string() };
    let control_url = format!("http://{host}:{}", local.port());
    let app = crate::control::app(runner.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "runner control API stopped");
        }
    });
    tokio::spawn(crate::link::run(runner.clone(), control_url.clone()));
    tokio::spawn(collect_templates(runner.clone()));
    tracing::info!(control = %control_url, "runner ready");
    Ok(RunnerHandle { control_url, runner })
}

/// Every minute: deletes template versions no name points to once no sandbox uses them
/// (a replaced or removed template whose last sandbox ended).
async fn collect_templates(runner: Arc<Runner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let cache = runner.cfg.cache_dir.clone();
        match tokio::task::spawn_blocking(move || sandstream_runtime::collect_template_garbage(&cache)).await {
            Ok(Ok(report)) if !report.removed.is_empty() => {
                tracing::info!(removed = ?report.removed, "removed unused template versions");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not remove unused template versions"),
            Err(e) => tracing::warn!(error = %e, "template collection task failed"),
        }
    }
}

impl Runner {
    /// Sets the runner up (runtime, default template, sandboxes left by a previous run)
    /// and nothing more: no control API, no server link, no template collection and no
    /// warm-pool filler, which [`start`] adds. For driving a runner in-process (the
    /// benchmarks). Blocks while the default template builds on first use.
    pub fn new(cfg: RunnerConfig) -> anyhow::Result<Runner> {
        let runtime: Arc<dyn Runtime> = match &cfg.backend {
            Backend::Oci => {
                let mut oci = OciConfig::new(cfg.state_dir.join("sandboxes"), cfg.agent_binary.clone());
                oci.runtime = cfg.oci_runtime.clone();
                Arc::new(OciRuntime::new(oci).context("set up the oci runtime")?)
            }
            Backend::Docker { socket } => {
                let mut docker = DockerConfig::new(cfg.state_dir.join("docker-sandboxes"), cfg.agent_binary.clone());
                docker.socket = socket.clone();
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
        let found = runtime.recover().context("find sandboxes left by a previous run")?;
        let sandboxes = found
            .into_iter()
            .map(|s| {
                let rs = RunnerSandbox {
                    id: s.id.clone(),
                    host: cfg.advertise_host.clone(),
                    port: s.published_port,
                    token: s.token,
                };
                (s.id, rs)
            })
            .collect::<BTreeMap<_, _>>();
        if !sandboxes.is_empty() {
            tracing::info!(count = sandboxes.len(), "sandboxes from a previous run are running again");
        }
        // Versions the sandboxes that did not survive were the last users of.
        if let Err(e) = sandstream_runtime::collect_template_garbage(&cfg.cache_dir) {
            tracing::warn!(error = %e, "could not remove unused template versions");
        }
        Ok(Runner {
            cfg,
            runtime,
            default_template,
            sandboxes: Mutex::new(sandboxes),
            pool: Mutex::new(Vec::new()),
            pool_taken: Condvar::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            // Registering again at every start (with the id kept in `runner-id`) tells the
            // server this run's control URL.
            id: Mutex::new(None),
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
        if self.count() >= self.cfg.capacity as usize {
            return Err(RunnerError::Full(self.cfg.capacity));
        }
        let limits = Limits {
            memory_bytes: u64::from(req.memory_mb) << 20,
            cpu_millis: req.cpu_millis,
            pids: Limits::default().pids,
        };
        if req.template == "default" && req.envs.is_empty() && limits == Limits::default() {
            let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(rs) = pooled {
                self.pool_taken.notify_one();
                self.lock().insert(rs.id.clone(), rs.clone());
                return Ok(rs);
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
        created.inspect(|rs| {
            self.lock().insert(rs.id.clone(), rs.clone());
        })
    }

    fn create_spec(&self, spec: &SandboxSpec) -> Result<RunnerSandbox, RunnerError> {
        let sb = self.runtime.create(spec).map_err(|e| match e {
            sandstream_runtime::Error::InvalidSpec(m) => RunnerError::BadRequest(m),
            e => RunnerError::Runtime(e.to_string()),
        })?;
        Ok(RunnerSandbox { id: sb.id, host: self.cfg.advertise_host.clone(), port: sb.published_port, token: sb.token })
    }

    /// Keeps `warm_pool` ready sandboxes while capacity allows. Blocking: runs on a
    /// thread of its own, which [`start`] spawns when `warm_pool` is not 0. After
    /// [`Runner::drain_pool`] it returns when it next wakes: a create under way is
    /// finished and killed first; a wait ends within a second, unless the runner is full.
    pub fn fill_pool(&self) {
        let spec = SandboxSpec {
            template: self.default_template.clone(),
            limits: Limits::default(),
            env: Vec::new(),
            egress: Egress::Allow,
        };
        let draining = || self.draining.load(std::sync::atomic::Ordering::Acquire);
        loop {
            let pooled = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                while !draining()
                    && (pool.len() >= self.cfg.warm_pool as usize
                        || pool.len() + self.count() >= self.cfg.capacity as usize)
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
            match self.create_spec(&spec) {
                Ok(rs) => {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    // Checked under the lock `drain_pool` takes after setting `draining`: a
                    // sandbox is either pushed before the drain takes the pool, or killed here.
                    if draining() {
                        drop(pool);
                        if let Err(e) = self.runtime.kill(&rs.id) {
                            tracing::warn!(sandbox_id = %rs.id, error = %e, "could not remove a pooled sandbox");
                        }
                        return;
                    }
                    pool.push(rs);
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
        for rs in pooled {
            if let Err(e) = self.runtime.kill(&rs.id) {
                tracing::warn!(sandbox_id = %rs.id, error = %e, "could not remove a pooled sandbox");
            }
        }
    }

    /// The default template's directory, which pooled sandboxes are created from.
    pub fn default_template(&self) -> &std::path::Path {
        &self.default_template
    }

    /// Ready sandboxes in the warm pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Kills a sandbox (blocking: call from `spawn_blocking`).
    pub fn kill(&self, id: &str) -> Result<(), RunnerError> {
        let known = self.lock().remove(id).is_some();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunnerSandbox>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}
