//! `sandstream`: one binary whose subcommands run the parts of the system.

mod cli;
mod client;
mod cp;
mod exec;
mod follow;
mod rest;
mod sandbox_cmd;
mod shell;
mod ssh;
mod term;

use std::process::ExitCode;

use clap::Parser;

/// Logs to stderr, filtered by `SANDSTREAM_LOG` (`default_filter` when unset).
fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A closed stderr must not panic the thread that logs (say, mid-create).
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}

fn main() -> ExitCode {
    if ssh::askpass() {
        return ExitCode::SUCCESS;
    }
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        // A usage error of `exec` or `shell` exits as its other failures to run anything
        // do, so its exit code is not mistaken for the command's.
        Err(e) if e.use_stderr() && std::env::args_os().nth(1).is_some_and(|a| a == "exec" || a == "shell") => {
            let _ = e.print();
            return ExitCode::from(follow::CANNOT_RUN);
        }
        Err(e) => e.exit(),
    };
    match args.command {
        cli::Command::Agent(a) => sandstream_agent::main(a, || init_logging("info")),
        cli::Command::Exec(a) => {
            init_logging("warn");
            exec::main(a)
        }
        cli::Command::Shell(a) => {
            init_logging("warn");
            shell::main(a)
        }
        command => {
            init_logging("info,tower_http=warn");
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sandstream: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(cli::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sandstream: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
