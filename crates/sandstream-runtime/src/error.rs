//! The runtime's error type.

use std::path::PathBuf;

/// Why a sandbox operation failed. Messages name the sandbox, path or command involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("template {0} is not a directory")]
    TemplateMissing(PathBuf),
    #[error("sandbox {0} not found")]
    NotFound(String),
    #[error("no free network slot for another sandbox")]
    NoAddress,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("sandbox {id}: agent did not answer on {addr} within {waited_ms} ms; its log: {log}")]
    AgentNotReady { id: String, addr: String, waited_ms: u64, log: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("write OCI config: {0}")]
    Spec(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}
