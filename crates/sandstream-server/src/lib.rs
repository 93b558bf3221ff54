//! The control plane: the REST API, API keys and tenants, the runner registry, state in
//! SQLite, the `/api/sandbox/exec` path with live logs over socket.io, and the web page.
//! **The only crate that speaks the public HTTP API.** It never touches a sandbox
//! directly: sandboxes come from runners, and code runs through each sandbox's agent.

mod api;
mod auth;
mod config;
mod error;
mod exec;
mod hub;
mod limits;
mod listen;
mod openapi;
mod registry;
mod runner_client;
mod seal;
mod server;
mod store;
mod time;

pub use config::ServerConfig;
pub use limits::Limits;
pub use server::Server;
