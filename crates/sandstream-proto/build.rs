//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so a plain checkout
//! builds without a hand-installed `protoc`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!(): a build script compiled for one
    // checkout may be run for another that shares the target directory.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Relative to the package, so the path stays right wherever the checkout is.
    println!("cargo:rerun-if-changed=../../proto");

    let agent = protox::compile(["sandstream/agent/v1/agent.proto"], [&proto_root])?;
    std::fs::write(out_dir.join("agent_descriptor.bin"), agent.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".sandstream.agent.v1.CommandOutput.data")
        .bytes(".sandstream.agent.v1.WriteStdinRequest.data")
        .bytes(".sandstream.agent.v1.ReadResponse.data")
        .bytes(".sandstream.agent.v1.WriteRequest.data")
        .compile_fds(agent)?;

    let seed = protox::compile(["seed/seed_agent.proto"], [&proto_root])?;
    std::fs::write(out_dir.join("seed_descriptor.bin"), seed.encode_to_vec())?;
    if std::env::var_os("CARGO_FEATURE_SEED").is_some() {
        let seed_out = out_dir.join("seed");
        std::fs::create_dir_all(&seed_out)?;
        tonic_prost_build::configure().build_server(false).out_dir(&seed_out).compile_fds(seed)?;
    }
    Ok(())
}
