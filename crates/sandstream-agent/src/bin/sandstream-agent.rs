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
    sandstream_agent::main(cli.args, || {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            // A closed stderr must not panic the thread that logs.
            .log_internal_errors(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("SANDSTREAM_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .init();
    })
}
