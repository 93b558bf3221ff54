//! The messages: registration and heartbeats (runner to server), and the calls on a
//! runner's control API (server to runner).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::DEFAULT_PIDS;

/// `POST /api/v1/runners` on the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    pub id: String,
}

/// One sandbox as a runner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunnerSandbox {
    pub id: String,
    /// Where clients reach its agent: the runner's advertised host and the published port.
    pub host: String,
    pub port: u16,
    pub token: String,
    /// The host port its SSH server (port 2222 inside) is published on, at `host`;
    /// absent from runners older than SSH and for sandboxes they made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
    /// When the runner kills it (milliseconds since the Unix epoch, on the runner's
    /// clock); absent when it has no time to live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `POST /api/v1/runners/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub sandboxes: Vec<RunnerSandbox>,
    /// As in [`Register`]: every heartbeat carries the current list, so a template added
    /// or removed on the host is known to the server within one heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    /// When `sandboxes` was read (milliseconds since the Unix epoch, on the runner's
    /// clock): a sandbox created before then and not listed is gone (its agent died, or
    /// it was removed), and the server says so at once. Absent from older runners.
    #[serde(default, rename = "takenAt", skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<i64>,
}

/// The server's answer to a [`Heartbeat`]: sandboxes it does not know (whose creation it
/// never saw complete), which the runner removes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Most processes and threads at once ([`DEFAULT_PIDS`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// The writable layer's size in MiB, with 64 inodes per MiB (the runner's
    /// `--default-disk-mb` when absent; at most its `--max-disk-mb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u32>,
    /// Time to live in milliseconds: the runner kills the sandbox this long after the
    /// create (never, when absent). Survives runner restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Kept with the sandbox and reported back; the runner does not read it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl CreateSandbox {
    /// What the server sends for a create without options (the default template, CPU and
    /// memory; no env, pids, disk or metadata of its own): the request a runner's warm
    /// pool serves.
    pub fn with_defaults(timeout_ms: Option<u64>) -> CreateSandbox {
        CreateSandbox {
            template: crate::DEFAULT_TEMPLATE.into(),
            cpu_millis: crate::DEFAULT_CPU_MILLIS,
            memory_mb: crate::DEFAULT_MEMORY_MB,
            envs: BTreeMap::new(),
            pids: None,
            disk_mb: None,
            timeout_ms,
            metadata: BTreeMap::new(),
        }
    }
}

/// `POST /sandboxes/{id}/timeout` on a runner's control API: the sandbox now dies this
/// long from now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetTimeout {
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_from_a_server_older_than_disk_mb_asks_for_the_runners_default() {
        let req: CreateSandbox =
            serde_json::from_str(r#"{"template":"default","cpuMillis":1000,"memoryMb":512}"#).expect("old request");
        assert_eq!(req.disk_mb, None);
    }
}
