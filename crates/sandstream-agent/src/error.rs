//! The agent's error type and its mapping onto gRPC status codes.

use std::path::PathBuf;

/// Everything that can go wrong while serving a request or starting up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("missing or malformed authorization: send metadata `authorization: Bearer <token>`")]
    MissingToken,
    #[error("invalid sandbox token")]
    BadToken,
    #[error("this agent serves sandbox {expected}, not {got}")]
    WrongSandbox { expected: String, got: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("cwd {0} does not exist")]
    CwdMissing(PathBuf),
    #[error("cwd {0} is not a directory")]
    CwdNotDirectory(PathBuf),
    #[error("unknown user {}", .0.escape_debug())]
    UnknownUser(String),
    #[error("cannot look up user {}: {reason}", .user.escape_debug())]
    UserLookup { user: String, reason: String },
    #[error("command {0} not found")]
    CommandNotFound(String),
    #[error("command {0} has already exited")]
    AlreadyExited(String),
    #[error("command {0} does not run on a terminal (start it with pty)")]
    NoTerminal(String),
    #[error("no pseudo-terminal is left in this sandbox (all of its share are open); end a terminal first")]
    NoTerminalLeft,
    #[error("stdin of command {0} is not open (start it with keep_stdin_open, and do not close it before writing)")]
    StdinClosed(String),
    #[error("command {0} no longer reads its stdin (it exited or closed it); the data was not delivered")]
    StdinGone(String),
    #[error("offset {offset} is past the {total} bytes command {id} has written to {channel}")]
    OffsetOutOfRange { id: String, channel: &'static str, offset: u64, total: u64 },
    #[error("could not start {shell}: {source}")]
    Spawn { shell: PathBuf, source: std::io::Error },
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// The agent's result type.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io { context: context.into(), source }
    }
}

impl From<AgentError> for tonic::Status {
    fn from(e: AgentError) -> Self {
        use tonic::Code;
        let code = match &e {
            AgentError::MissingToken | AgentError::BadToken => Code::Unauthenticated,
            AgentError::WrongSandbox { .. } => Code::PermissionDenied,
            AgentError::InvalidArgument(_)
            | AgentError::UnknownUser(_)
            | AgentError::CwdMissing(_)
            | AgentError::CwdNotDirectory(_) => Code::InvalidArgument,
            // The sandbox's own /etc/passwd or /etc/group is unusable (not a file, too large).
            AgentError::UserLookup { .. } => Code::FailedPrecondition,
            AgentError::CommandNotFound(_) => Code::NotFound,
            AgentError::AlreadyExited(_)
            | AgentError::NoTerminal(_)
            | AgentError::StdinClosed(_)
            | AgentError::StdinGone(_) => Code::FailedPrecondition,
            AgentError::OffsetOutOfRange { .. } => Code::OutOfRange,
            AgentError::NoTerminalLeft => Code::ResourceExhausted,
            AgentError::ShuttingDown => Code::Unavailable,
            AgentError::Spawn { .. } | AgentError::Config(_) | AgentError::Io { .. } => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}
