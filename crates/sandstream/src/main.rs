//! `sandstream`: one binary whose subcommands run the parts of the system.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sandstream: a self-hosted code sandbox that streams every byte live.
#[derive(Parser)]
#[command(name = "sandstream", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the in-sandbox agent (gRPC ExecService). The runner starts it inside each
    /// sandbox from the static `sandstream-agent` binary; this is the same program.
    Agent(sandstream_agent::AgentArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Agent(args) => sandstream_agent::main(args),
    }
}
