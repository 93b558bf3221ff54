//! A runner: one host's sandboxes, offered to a Sandstream server. It registers with the
//! server, sends heartbeats listing every sandbox with its `{host, port, token}` (design
//! note 002, step 3), and answers the server's create and kill calls on a small HTTP
//! control API. **It owns no state the host does not: after a restart it finds its
//! sandboxes again through the runtime.**

pub mod api;
mod config;
mod control;
mod link;
mod runner;

pub use config::{Backend, RunnerConfig, default_advertise_host};
pub use runner::{Runner, RunnerError, RunnerHandle, start};
