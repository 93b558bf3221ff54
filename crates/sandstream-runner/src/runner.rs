//! The runner's state: its runtime, its templates and the sandboxes it reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sandstream_runtime::{Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec};

use crate::api::{CreateSandbox, RunnerSandbox};
use crate::config::RunnerConfig;

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
    tracing::info!(control = %control_url, "runner ready");
    Ok(RunnerHandle { control_url, runner })
}

impl Runner {
    fn new(cfg: RunnerConfig) -> anyhow::Result<Runner> {
        let mut oci = OciConfig::new(cfg.state_dir.join("sandboxes"), cfg.agent_binary.clone());
        oci.runtime = cfg.oci_runtime.clone();
        let runtime = OciRuntime::new(oci).context("set up the oci runtime")?;
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
        let id = std::fs::read_to_string(cfg.state_dir.join("runner-id")).ok().map(|s| s.trim().to_string());
        Ok(Runner {
            cfg,
            runtime: Arc::new(runtime),
            default_template,
            sandboxes: Mutex::new(sandboxes),
            id: Mutex::new(id.filter(|s| !s.is_empty())),
        })
    }

    fn template_path(&self, name: &str) -> Result<PathBuf, RunnerError> {
        if name == "default" {
            return Ok(self.default_template.clone());
        }
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let path = self.cfg.cache_dir.join("templates").join(name);
        if !valid || !path.join(".sandstream-template").exists() {
            return Err(RunnerError::BadRequest(format!(
                "template {name:?} does not exist on runner {}",
                self.cfg.name
            )));
        }
        Ok(path)
    }

    /// Creates a sandbox (blocking: call from `spawn_blocking`).
    pub fn create(&self, req: &CreateSandbox) -> Result<RunnerSandbox, RunnerError> {
        if self.count() >= self.cfg.capacity as usize {
            return Err(RunnerError::Full(self.cfg.capacity));
        }
        let spec = SandboxSpec {
            template: self.template_path(&req.template)?,
            limits: Limits {
                memory_bytes: u64::from(req.memory_mb) << 20,
                cpu_millis: req.cpu_millis,
                pids: Limits::default().pids,
            },
            env: req.envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            egress: Egress::Allow,
        };
        let sb = self.runtime.create(&spec).map_err(|e| match e {
            sandstream_runtime::Error::InvalidSpec(m) => RunnerError::BadRequest(m),
            e => RunnerError::Runtime(e.to_string()),
        })?;
        let rs = RunnerSandbox {
            id: sb.id.clone(),
            host: self.cfg.advertise_host.clone(),
            port: sb.published_port,
            token: sb.token,
        };
        self.lock().insert(sb.id, rs.clone());
        Ok(rs)
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
