//! How the server is set up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;
use crate::retention::Retention;

/// `--max-file-upload-bytes` unless set: 4 GiB.
pub const DEFAULT_MAX_FILE_UPLOAD_BYTES: u64 = 4 << 30;

/// Everything the server needs; parsed once by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// SQLite database, admin key and runner secret live here.
    pub data_dir: PathBuf,
    /// Built web page (`web/dist`); `None` serves a page saying how to build it.
    pub web_dir: Option<PathBuf>,
    /// Admin key from the environment (`SANDSTREAM_API_KEY`) instead of a generated one.
    pub api_key: Option<String>,
    /// Runner secret from the environment instead of a generated one.
    pub runner_secret: Option<String>,
    /// Largest `code` plus `files` an exec request may carry.
    pub max_code_bytes: usize,
    /// Most bytes of output one `/api/sandbox/exec` execution keeps (install and run
    /// together); past it the server cuts the output and stops the program.
    pub max_output_bytes: u64,
    /// Largest file one `PUT /api/v1/sandboxes/{id}/files` may write; past it the upload
    /// is refused (413) and nothing is left of it.
    pub max_file_upload_bytes: u64,
    /// A runner silent this long has its sandboxes marked lost.
    pub heartbeat_timeout: Duration,
    /// What one sandbox and one key may cost (`limits.rs`).
    pub limits: Limits,
    /// How long finished executions and ended sandboxes are kept, and the database's
    /// size budget (`retention.rs`).
    pub retention: Retention,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir,
            web_dir: None,
            api_key: None,
            runner_secret: None,
            max_code_bytes: 1 << 20,
            max_output_bytes: 16 << 20,
            max_file_upload_bytes: DEFAULT_MAX_FILE_UPLOAD_BYTES,
            heartbeat_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            retention: Retention::default(),
        }
    }
}
