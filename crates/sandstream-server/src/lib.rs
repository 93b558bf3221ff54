//! The control plane: the REST API, API keys and tenants, the runner registry, state in
//! SQLite, the `/api/sandbox/exec` path with live logs over socket.io, and the web page.
//! **The only crate that speaks the public HTTP API.** It never touches a sandbox
//! directly: sandboxes come from runners, and code runs through each sandbox's agent.

mod api;
mod auth;
mod config;
mod error;
mod exec;
mod heartbeat;
mod hub;
mod limits;
mod listen;
mod metrics;
mod registry;
mod retention;
mod runner_client;
mod seal;
mod server;
mod state;
mod store;
mod tenant;
mod terminal_bounds;
mod time;

pub use config::{DEFAULT_MAX_FILE_UPLOAD_BYTES, ServerConfig};
pub use limits::{DEFAULT_DISK_MB_PER_KEY, Limits};
pub use retention::{DEFAULT_RETENTION_DAYS, DEFAULT_RETENTION_MB, Retention};
pub use server::Server;
