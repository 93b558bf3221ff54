//! `sandstream-agent`: the in-sandbox agent, built statically so it runs in any root
//! filesystem (glibc, musl or none).

use clap::Parser;
use sandstream_agent::AgentArgs;

/// Runs commands inside a sandbox and streams their output over gRPC.
#[derive(Parser)]
#[command(name = "sandstream-agent", version)]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    sandstream_agent::main(cli.args)
}
