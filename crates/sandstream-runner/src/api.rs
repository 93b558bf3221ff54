//! The JSON the server and runners exchange (see API.md, "Runners"). Both sides use
//! these types, so the two ends cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The limits a create without options gets; the warm pool holds sandboxes with these.
pub use sandstream_runtime::{DEFAULT_CPU_MILLIS, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DEFAULT_PIDS, MIN_DISK_MB};
/// Template names on the wire: `default` (built in) and the names `sandstream template
/// add` accepts.
pub use sandstream_runtime::{DEFAULT_TEMPLATE, is_valid_template_name};

/// The process limits a create may ask for.
pub const PIDS_RANGE: std::ops::RangeInclusive<u32> = 8..=32_768;
/// The range of a sandbox's time to live, in milliseconds.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1000..=24 * 3600 * 1000;
/// Most metadata entries, and the longest key and value, in bytes.
pub const METADATA_LIMITS: (usize, usize, usize) = (64, 256, 4096);

/// A runner's largest disk (`--max-disk-mb`) when not configured: 50 GiB.
pub const DEFAULT_MAX_DISK_MB: u32 = 50 * 1024;
/// The largest disk the server lets a create ask for (1 TiB); each runner has its own,
/// usually lower, maximum.
pub const DISK_MB_LIMIT: u32 = 1024 * 1024;

/// Checks a disk size against `MIN_DISK_MB..=max`; the error names the field and the
/// limit.
pub fn check_disk_mb(mb: u32, max: u32) -> Result<(), String> {
    if (MIN_DISK_MB..=max).contains(&mb) {
        return Ok(());
    }
    Err(format!("diskMb must be between {MIN_DISK_MB} and {max}, got {mb}"))
}

/// Checks a time to live against [`TIMEOUT_MS_RANGE`]; the error names the field.
pub fn check_timeout_ms(ms: u64) -> Result<(), String> {
    if TIMEOUT_MS_RANGE.contains(&ms) {
        return Ok(());
    }
    Err(format!("timeoutMs must be between {} and {}, got {ms}", TIMEOUT_MS_RANGE.start(), TIMEOUT_MS_RANGE.end()))
}

/// Checks a process limit against [`PIDS_RANGE`].
pub fn check_pids(pids: u32) -> Result<(), String> {
    if PIDS_RANGE.contains(&pids) {
        return Ok(());
    }
    Err(format!("pids must be between {} and {}, got {pids}", PIDS_RANGE.start(), PIDS_RANGE.end()))
}

/// Checks metadata against [`METADATA_LIMITS`].
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    let (entries, key, value) = METADATA_LIMITS;
    if metadata.len() > entries || metadata.iter().any(|(k, v)| k.len() > key || v.len() > value) {
        return Err(format!("metadata: at most {entries} entries, keys up to {key} and values up to {value} bytes"));
    }
    Ok(())
}

/// Most env entries a sandbox may have, and most bytes of all of them together
/// (`KEY=VALUE` and a NUL each, as the runtime writes them).
pub const ENV_LIMITS: (usize, usize) = (256, 64 << 10);

/// Checks a sandbox's env: [`ENV_LIMITS`], names `[A-Za-z_][A-Za-z0-9_]*`, no NUL in
/// values. Before this a 1 MiB value reached the OCI runtime, which could not start the
/// agent: a 500 after the runner waited 10 s for it.
pub fn check_envs(envs: &BTreeMap<String, String>) -> Result<(), String> {
    let (entries, bytes) = ENV_LIMITS;
    if envs.len() > entries {
        return Err(format!("envs: at most {entries} entries, got {}", envs.len()));
    }
    if let Some(k) = envs.keys().find(|k| !sandstream_runtime::is_env_name(k)) {
        return Err(format!("env name {k:?} must be letters, digits and _, not starting with a digit"));
    }
    if let Some(k) = envs.iter().find(|(_, v)| v.contains('\0')).map(|(k, _)| k) {
        return Err(format!("env {k}: values cannot contain NUL"));
    }
    let total: usize = envs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > bytes {
        return Err(format!("envs: at most {bytes} bytes in all (KEY=VALUE and a NUL each), got {total}"));
    }
    Ok(())
}

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
    /// When the runner kills it (milliseconds since the Unix epoch, on the runner's
    /// clock); absent when it has no time to live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `POST /api/v1/runners/{id}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// `POST /sandboxes/{id}/timeout` on a runner's control API: the sandbox now dies this
/// long from now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetTimeout {
    pub timeout_ms: u64,
}

/// A runner's error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerError {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envs_are_checked_against_their_limits() {
        let ok: BTreeMap<String, String> = [("FOO".into(), "bar".into()), ("_x1".into(), String::new())].into();
        assert_eq!(check_envs(&ok), Ok(()));
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            let e = check_envs(&[(bad.to_string(), "v".to_string())].into()).expect_err(bad);
            assert!(e.contains("env name"), "{e}");
        }
        let nul = check_envs(&[("A".into(), "a\0b".into())].into()).expect_err("NUL");
        assert!(nul.contains("NUL"), "{nul}");
        let big = check_envs(&[("A".into(), "x".repeat(1 << 20))].into()).expect_err("1 MiB");
        assert!(big.contains("65536 bytes"), "{big}");
        let many: BTreeMap<String, String> = (0..257).map(|i| (format!("V{i}"), String::new())).collect();
        assert!(check_envs(&many).expect_err("257").contains("at most 256 entries"));
        let full: BTreeMap<String, String> = [("A".into(), "x".repeat((64 << 10) - 3))].into();
        assert_eq!(check_envs(&full), Ok(()), "exactly at the limit");
    }

    #[test]
    fn a_disk_size_is_checked_against_the_minimum_and_the_given_maximum() {
        assert_eq!(check_disk_mb(16, 1024), Ok(()));
        assert_eq!(check_disk_mb(1024, 1024), Ok(()));
        assert_eq!(check_disk_mb(15, 1024), Err("diskMb must be between 16 and 1024, got 15".to_string()));
        assert_eq!(check_disk_mb(1025, 1024), Err("diskMb must be between 16 and 1024, got 1025".to_string()));
        assert_eq!(check_disk_mb(DEFAULT_DISK_MB, DEFAULT_MAX_DISK_MB), Ok(()), "the defaults agree");
        let req: CreateSandbox =
            serde_json::from_str(r#"{"template":"default","cpuMillis":1000,"memoryMb":512}"#).expect("old request");
        assert_eq!(req.disk_mb, None, "a server older than the field asks for the runner's default");
    }
}
