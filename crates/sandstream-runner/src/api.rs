//! The JSON the server and runners exchange (see API.md, "Runners"). Both sides use
//! these types, so the two ends cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The limits a create without options gets; the warm pool holds sandboxes with these.
pub use sandstream_runtime::{DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_MB};
/// Template names on the wire: `default` (built in) and the names `sandstream template
/// add` accepts.
pub use sandstream_runtime::{DEFAULT_TEMPLATE, is_valid_template_name};

/// `POST /api/v1/runners` on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    /// Kept by the runner across restarts, so the server knows it again.
    pub id: Option<String>,
    pub name: String,
    /// Where the server reaches this runner's control API.
    pub control_url: String,
    /// The address clients use to reach this host's published agent ports.
    pub advertise_host: String,
    /// Most sandboxes this runner takes.
    pub capacity: u32,
    pub backend: String,
    /// The templates this runner can create sandboxes from, `default` included. Absent
    /// from runners older than this field; the server then assumes `["default"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
}

/// The server's answer to [`Register`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub id: String,
}

/// One sandbox as a runner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSandbox {
    pub id: String,
    /// Where clients reach its agent: the runner's advertised host and the published port.
    pub host: String,
    pub port: u16,
    pub token: String,
}

/// `POST /api/v1/runners/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub sandboxes: Vec<RunnerSandbox>,
    /// As in [`Register`]: every heartbeat carries the current list, so a template added
    /// or removed on the host is known to the server within one heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
}

/// The server's answer to a [`Heartbeat`]: sandboxes it does not know (whose creation it
/// never saw complete), which the runner removes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatReply {
    #[serde(default)]
    pub kill: Vec<String>,
}

/// `POST /sandboxes` on a runner's control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    pub template: String,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
}

/// A runner's error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerError {
    pub code: String,
    pub message: String,
}
