//! A runner: one host's sandboxes, offered to a Sandstream server. It registers with the
//! server, sends heartbeats listing every sandbox with its `{host, port, token}` (design
//! note 002, step 3), and answers the server's create and kill calls on a small HTTP
//! control API. **After a restart it finds its sandboxes again through the runtime**;
//! the one thing it keeps of its own is a small record per sandbox (deadline and
//! metadata), so that a time to live outlives the runner process.

mod config;
mod control;
#[cfg(test)]
mod fake_runtime;
mod link;
mod record;
mod runner;
mod start;

pub use config::{Backend, RunnerConfig, default_advertise_host};
pub use runner::{Runner, RunnerError};
pub use start::{RunnerHandle, start};
