//! `AppState`: what the route handlers hold (axum's router state). It only gathers the
//! handles `server.rs` made; each library module got its own handles, not this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::FromRef;
use socketioxide::SocketIo;

use crate::auth::Gate;
use crate::config::ServerConfig;
use crate::exec::{Agents, Engine};
use crate::heartbeat::Heartbeats;
use crate::limits::Throttle;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::StateStore;

pub(crate) struct AppState {
    pub cfg: ServerConfig,
    /// `http://HOST:PORT` of the bound port (`Server::bind` sets it): the address login
    /// links are made on. Unset in tests that call the router without a port.
    pub base_url: OnceLock<String>,
    pub store: Arc<dyn StateStore>,
    pub io: SocketIo,
    /// Checks keys, sessions and the runner secret (the extractors in `auth.rs`).
    pub gate: Gate,
    pub throttle: Arc<Throttle>,
    pub registry: Arc<Registry>,
    pub exec: Arc<Engine>,
    /// The connection to each sandbox's agent (the files routes call its `FileService`).
    pub agents: Arc<Agents>,
    pub heartbeats: Heartbeats,
    /// What the terminal routes hold to keep their bounds.
    pub terminals: crate::terminal_bounds::Terminals,
    /// What `/metrics` reports (`metrics.rs`).
    pub metrics: Arc<Metrics>,
    /// Under `up`: true until the local runner has registered.
    pub wait_for_runner: AtomicBool,
}

impl AppState {
    pub(crate) fn ready(&self) -> bool {
        !self.wait_for_runner.load(Ordering::Acquire)
    }

    pub(crate) fn runner_seen(&self) {
        self.wait_for_runner.store(false, Ordering::Release);
    }
}

/// The extractors `Principal`, `Admin` and `RunnerAuth` check callers with the gate.
impl FromRef<Arc<AppState>> for Gate {
    fn from_ref(state: &Arc<AppState>) -> Gate {
        state.gate.clone()
    }
}
