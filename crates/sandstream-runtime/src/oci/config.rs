//! `OciConfig`: how the `oci` backend is set up.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::Cidr;

/// How the `oci` backend is set up.
#[derive(Debug, Clone)]
pub struct OciConfig {
    /// Where sandboxes' bundles live (created 0700).
    pub state_dir: PathBuf,
    /// The OCI runtime binary: `runc`, `crun`, `runsc`, `youki`.
    pub runtime: PathBuf,
    /// The static agent, bind-mounted read-only into every sandbox.
    pub agent_binary: PathBuf,
    /// How long `create` waits for the agent to answer.
    pub ready_timeout: Duration,
    /// Sandbox agents are published on host ports `publish_port_base + slot` (slots
    /// run from 1 to 16383).
    pub publish_port_base: u16,
    /// Their SSH servers on host ports `ssh_port_base + slot`; the two ranges must not
    /// meet.
    pub ssh_port_base: u16,
    /// A CA bundle bound read-only over the sandbox's, so sandboxes trust what the host
    /// trusts (`None` keeps the template's own).
    pub ca_bundle: Option<PathBuf>,
    /// Whether starting the runtime remounts the host's cgroup filesystem with
    /// `favordynmods` (see `cgroupfs.rs`): host-wide, creates 5–25 ms faster, forks and
    /// exits dearer, and on recent kernels not undone until reboot. Default true.
    pub favor_dynamic_cgroups: bool,
    /// The private networks (RFC 1918, 100.64.0.0/10, the host's LAN) sandboxes may
    /// reach, subject to their egress policy; all others are closed to them. Default
    /// none (the host's resolvers stay reachable on port 53 anyway).
    pub private_egress: Vec<Cidr>,
    /// The flows (connection-tracking entries) one sandbox may hold open on the host;
    /// see [`crate::DEFAULT_MAX_FLOWS`], the default.
    pub max_flows_per_sandbox: u32,
}

impl OciConfig {
    /// The defaults for this host: runc, port bases 40000 (gRPC) and 20000 (SSH), the host's CA bundle if any.
    pub fn new(state_dir: PathBuf, agent_binary: PathBuf) -> OciConfig {
        let ca = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        OciConfig {
            state_dir,
            runtime: "runc".into(),
            agent_binary,
            ready_timeout: Duration::from_secs(10),
            publish_port_base: 40000,
            ssh_port_base: 20000,
            ca_bundle: ca.is_file().then_some(ca),
            favor_dynamic_cgroups: true,
            private_egress: Vec::new(),
            max_flows_per_sandbox: crate::DEFAULT_MAX_FLOWS,
        }
    }
}
