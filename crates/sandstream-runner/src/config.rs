//! How a runner is set up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a runner needs; parsed once by the binary.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The server, e.g. `http://10.0.0.1:3000`.
    pub server_url: String,
    /// Shared with the server: authenticates both directions.
    pub secret: String,
    pub name: String,
    /// The control API's address (port 0 picks one).
    pub listen: SocketAddr,
    /// The host clients and the server use to reach this host's published ports; also
    /// the host part of the control URL when `listen` is a wildcard address.
    pub advertise_host: String,
    pub capacity: u32,
    /// Sandbox bundles, and the runner's id (kept across restarts).
    pub state_dir: PathBuf,
    /// Templates: the default one (`default-*`, built here on first use) and the ones
    /// imported with `sandstream template add` (`templates/`).
    pub cache_dir: PathBuf,
    pub agent_binary: PathBuf,
    /// The OCI runtime binary (runc, crun, runsc, youki), for the `oci` backend.
    pub oci_runtime: PathBuf,
    /// Whether the `oci` backend remounts the host's cgroup filesystem with
    /// `favordynmods` when it starts ([`sandstream_runtime::OciConfig::favor_dynamic_cgroups`]).
    pub cgroup_favordynmods: bool,
    /// What runs this host's sandboxes.
    pub backend: Backend,
    pub heartbeat_interval: Duration,
    /// Ready sandboxes kept per runner for the default template, so a create takes
    /// milliseconds (0: none).
    pub warm_pool: u32,
    /// The private networks sandboxes may reach (`--allow-private-egress`); see
    /// [`sandstream_runtime::OciConfig::private_egress`].
    pub private_egress: Vec<sandstream_runtime::Cidr>,
    /// A sandbox's disk when its create does not say (MiB); pooled sandboxes have it.
    pub default_disk_mb: u32,
    /// The largest disk a create may ask for (MiB).
    pub max_disk_mb: u32,
    /// The flows (connection-tracking entries) one sandbox may hold open on this host
    /// (`--max-flows-per-sandbox`); see [`sandstream_runtime::DEFAULT_MAX_FLOWS`].
    pub max_flows_per_sandbox: u32,
}

/// The runtime backend that creates this host's sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// runc (or another OCI runtime binary) driven directly.
    #[default]
    Oci,
    /// A Docker Engine, through its API on this unix socket.
    Docker { socket: PathBuf },
}

impl Backend {
    /// Its name, as a runner reports it when registering.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Oci => "oci",
            Backend::Docker { .. } => "docker",
        }
    }
}

/// This host's first non-loopback IPv4 address on an interface that is up and is not a
/// sandbox link: what other machines (and this one) use to reach published ports.
/// Published ports are deliberately not reachable through 127.0.0.1 (sandstream-runtime
/// does not set `route_localnet`; see CVE-2020-8558).
pub fn default_advertise_host() -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs
        .filter(|a| {
            a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
                && !a.flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
                && !a.interface_name.starts_with("vs")
                && !a.interface_name.starts_with("docker")
                && !a.interface_name.starts_with("sandstream")
        })
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip().to_string()))
}
