//! The server as a whole, and **the one composition root**: startup (keys, secret,
//! executions to resume), the parts built from the configuration, each given the handles
//! it uses, and serving.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use socketioxide::SocketIo;

use crate::api::AppState;
use crate::auth::{Gate, hash, new_key, random_hex};
use crate::config::ServerConfig;
use crate::exec::{Agents, Engine};
use crate::heartbeat::Heartbeats;
use crate::limits::Throttle;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{StateStore, Store};
use crate::time::now_ms;

/// A server bound to its port, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    /// The admin key, when this start created it (shown once).
    pub created_admin_key: Option<String>,
}

/// Creates the data dir if needed and makes it and every file directly in it private to
/// this user: the database (sealed tokens, key hashes, every execution's output), the
/// token key, the admin key and the runner secret. The dir's mode alone keeps other
/// users out of everything below it.
fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let private = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("make {} private", path.display()))
    };
    private(dir, 0o700)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        // Not followed: a link's target is not ours to change.
        let kind = entry.file_type()?;
        if kind.is_file() {
            private(&entry.path(), 0o600)?;
        } else if kind.is_dir() {
            private(&entry.path(), 0o700)?;
        }
    }
    Ok(())
}

/// Reads a secret file, or creates it (mode 0600) with a fresh value.
fn secret_file(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok((s, false));
        }
    }
    let value = make();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes())?;
    Ok((value, true))
}

/// What [`Server::bind`] makes before it binds: the state, the router over it, and the
/// admin key when one was just created.
struct Built {
    state: Arc<AppState>,
    router: axum::Router,
    created_admin_key: Option<String>,
}

impl Server {
    /// Opens the state, makes sure an admin key and the runner secret exist, and binds
    /// the port. `wait_for_runner` keeps `/healthz` at 503 until a runner registers.
    pub async fn bind(cfg: ServerConfig, wait_for_runner: bool) -> anyhow::Result<Server> {
        let listen = cfg.listen;
        let Built { state, router, created_admin_key } = build(cfg, wait_for_runner)?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let _ = state.base_url.set(base_url(listener.local_addr()?));
        Ok(Server { state, listener, router, created_admin_key })
    }

    /// `http://HOST:PORT` of the bound port, which the server prints and makes login
    /// links on.
    pub fn base_url(&self) -> &str {
        self.state.base_url.get().map_or("", String::as_str)
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn runner_secret(&self) -> &str {
        self.state.gate.runner_secret()
    }

    /// A one-time link that logs a browser in with the admin key (`sandstream
    /// login-link` asks a running server for more, for any key).
    pub fn login_url(&self) -> anyhow::Result<String> {
        let admin = self
            .state
            .store
            .list_keys()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .find(|k| k.admin && !k.revoked)
            .context("no admin key")?;
        let link = crate::api::login_link(self.state.store.as_ref(), &admin.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(format!("{}{}", self.base_url(), link.path))
    }

    pub fn is_ready(&self) -> bool {
        self.state.ready()
    }

    /// A handle that tells whether the server is ready, usable after `serve` took it.
    pub fn ready_probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move || state.ready()
    }

    /// Serves until `shutdown` resolves. Executions a previous run left running are
    /// resumed from their agents first; the database is pruned now and then
    /// (`retention.rs`).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let running = self.state.store.running_executions().map_err(|e| anyhow::anyhow!("{e}"))?;
        for ex in running {
            tracing::info!(execution_id = %ex.id, "resuming an execution a previous run left running");
            tokio::spawn(crate::exec::drive(self.state.exec.clone(), ex));
        }
        tokio::spawn(self.state.registry.clone().monitor());
        tokio::spawn(crate::retention::run(self.state.store.clone(), self.state.cfg.retention.clone()));
        // Each request carries its peer's address (ConnectInfo): wrong keys are counted
        // per address.
        crate::listen::serve(self.listener, self.router, shutdown).await?;
        Ok(())
    }
}

/// The base URL of a server bound to `addr`. An unspecified address (0.0.0.0, ::) is
/// reached on loopback from this host; an IPv6 one is bracketed.
fn base_url(addr: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The state and router of a server, without a port: [`Server::bind`] binds one, and
/// tests call the router directly (`tower::ServiceExt::oneshot`).
fn build(cfg: ServerConfig, wait_for_runner: bool) -> anyhow::Result<Built> {
    make_private_dir(&cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir.join("sandstream.db")).context("open the database")?;
    crate::retention::prepare(&store, &cfg.retention);
    let store: Arc<dyn StateStore> = Arc::new(store);
    let mut created_admin_key = None;
    match &cfg.api_key {
        Some(key) => {
            if store.key_by_hash(&hash(key)).map_err(|e| anyhow::anyhow!("{e}"))?.is_none() {
                store
                    .insert_key(
                        &format!("key_{}", random_hex(8)),
                        "admin (SANDSTREAM_API_KEY)",
                        &hash(key),
                        true,
                        now_ms(),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        None => {
            let path = cfg.data_dir.join("admin-key");
            let exists = store.admin_key_exists().map_err(|e| anyhow::anyhow!("{e}"))?;
            if !exists {
                let key = new_key();
                let _ = std::fs::remove_file(&path);
                secret_file(&path, || key.clone())?;
                store
                    .insert_key(&format!("key_{}", random_hex(8)), "admin", &hash(&key), true, now_ms())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                created_admin_key = Some(key);
            }
        }
    }
    let runner_secret = match &cfg.runner_secret {
        Some(s) => s.clone(),
        None => secret_file(&cfg.data_dir.join("runner-secret"), || random_hex(24))?.0,
    };
    let (io_layer, io) = SocketIo::builder()
        .max_payload(16 << 20)
        // Packets queued per socket; a live burst past this is dropped for that socket
        // only (its client sees a seq gap and resumes), replays wait for room.
        .max_buffer_size(1024)
        .build_layer();
    let agents = Arc::new(Agents::default());
    let registry = Arc::new(Registry::new(store.clone(), agents.clone(), runner_secret.clone(), cfg.heartbeat_timeout));
    let throttle = Arc::new(Throttle::new(cfg.limits.clone()));
    let gate = Gate::new(store.clone(), throttle.clone(), &runner_secret);
    crate::hub::setup(&io, store.clone(), gate.clone());
    let metrics = Arc::new(Metrics::new(crate::api::route_templates()));
    let state = Arc::new(AppState {
        exec: Arc::new(Engine::new(store.clone(), io.clone(), agents.clone(), cfg.max_output_bytes, metrics.clone())),
        heartbeats: Heartbeats::new(store.clone(), registry.clone(), agents.clone()),
        agents,
        cfg,
        base_url: std::sync::OnceLock::new(),
        store,
        io,
        gate,
        throttle,
        registry,
        metrics,
        wait_for_runner: AtomicBool::new(wait_for_runner),
        terminals: Default::default(),
    });
    let router = crate::api::router(state.clone()).layer(io_layer).layer(tower_http::trace::TraceLayer::new_for_http());
    Ok(Built { state, router, created_admin_key })
}

/// The router over a fresh state in `data_dir` with `api_key` as its admin key, bound to
/// no port: tests call it with `tower::ServiceExt::oneshot`.
#[cfg(test)]
pub(crate) fn app_for_tests(data_dir: &Path, api_key: &str) -> anyhow::Result<axum::Router> {
    app_for_tests_with(data_dir, api_key, |_| {})
}

/// [`app_for_tests`], with the configuration changed by `change` first.
#[cfg(test)]
pub(crate) fn app_for_tests_with(
    data_dir: &Path,
    api_key: &str,
    change: impl FnOnce(&mut ServerConfig),
) -> anyhow::Result<axum::Router> {
    let mut cfg = ServerConfig::new(([127, 0, 0, 1], 0).into(), data_dir.to_path_buf());
    cfg.api_key = Some(api_key.to_string());
    change(&mut cfg);
    Ok(build(cfg, false)?.router)
}

/// One request to `app` (`method` on `path`, with `bearer` as the key when given and a
/// JSON `body`): the status and the JSON answer (`Null` when it is not JSON).
#[cfg(test)]
pub(crate) async fn call_for_tests(
    app: &axum::Router,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if let Some(key) = bearer {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(b.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}
