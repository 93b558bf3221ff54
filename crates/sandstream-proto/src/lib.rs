//! The agent's wire protocol: types and gRPC stubs generated from
//! `proto/sandstream/agent/v1/agent.proto`. This crate does no IO.
//! The meaning of every field is in `proto/PROTOCOL.md`.

pub mod secret;
pub mod utf8;

/// Package `sandstream.agent.v1`: the seed's `ExecService` plus the fields and RPCs
/// added after it.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sandstream.agent.v1");
}

/// A client generated from design note 002's proto text alone (same package name).
/// Exists so tests can prove that a client knowing only the seed keeps working.
#[cfg(feature = "seed")]
pub mod seed {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/seed/sandstream.agent.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the agent protocol.
pub const AGENT_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent_descriptor.bin"));

/// The encoded `FileDescriptorSet` of the seed's proto text.
pub const SEED_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seed_descriptor.bin"));

/// The agent's default gRPC port (design note 002, section 3).
pub const DEFAULT_AGENT_PORT: u16 = 50052;
