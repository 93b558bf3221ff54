//! The in-sandbox agent: owns running user commands inside one sandbox, spools their
//! output to disk, and serves `sandstream.agent.v1.ExecService` (commands) and
//! `FileService` (the sandbox's files, as the user each request names) over gRPC.
//! It knows nothing of runners, servers or containers: it is given a token and a port.

mod auth;
mod command;
mod config;
mod conns;
mod deadline;
mod error;
mod events;
mod exit;
mod files;
pub mod init;
mod node_stdio;
mod output_log;
mod pipes;
mod pty;
mod registry;
mod server;
mod service;
mod shell;
mod spawn;
mod spec;
mod ssh;
mod standby;
mod user;

pub use config::{AgentArgs, AgentConfig};
pub use error::{AgentError, Result};
pub use server::{bind, run, serve};

/// Entry point shared by `sandstream-agent` and `sandstream agent`: validates the
/// config before anything is bound, takes PID 1 duty if needed, has the binary set up
/// its logging (`init_logging`, to stderr; a library sets no subscriber), serves.
pub fn main(args: AgentArgs, init_logging: impl FnOnce()) -> std::process::ExitCode {
    use std::process::ExitCode;
    let cfg = match args.into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("sandstream-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init::become_init_if_pid1() {
        eprintln!("sandstream-agent: cannot act as init: {e}");
        return ExitCode::FAILURE;
    }
    server::raise_fd_limit();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandstream-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            eprintln!("sandstream-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
