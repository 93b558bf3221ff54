//! The runner protocol: the JSON the server and runners exchange over HTTP (API.md,
//! "Runners"), the limits a sandbox may ask for with their checks and defaults, the
//! template and env name rules, and the error body with its status mapping. **Types and
//! pure functions only: no IO**, so the control plane links no container runtime, and
//! both ends use these definitions and cannot drift apart.

mod error;
mod limits;
mod messages;
mod ssh;

pub use error::{ErrorBody, ErrorCode};
pub use limits::{
    DEFAULT_CPU_MILLIS, DEFAULT_DISK_MB, DEFAULT_MAX_DISK_MB, DEFAULT_MEMORY_MB, DEFAULT_PIDS, DEFAULT_TEMPLATE,
    DISK_MB_LIMIT, ENV_LIMITS, METADATA_LIMITS, MIN_DISK_MB, PIDS_RANGE, TIMEOUT_MS_RANGE, check_disk_mb, check_envs,
    check_metadata, check_pids, check_timeout_ms, is_env_name, is_valid_template_name,
};
pub use messages::{CreateSandbox, Heartbeat, HeartbeatReply, Register, Registered, RunnerSandbox, SetTimeout};
pub use ssh::{
    AddSshAccess, MAX_SSH_CREDENTIALS, MAX_SSH_KEY_BYTES, MAX_SSH_KEYS, SSH_USERS, SshCredential, SshSecret,
    check_public_key,
};
