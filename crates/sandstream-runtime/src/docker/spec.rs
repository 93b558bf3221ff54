//! A sandbox container as the Docker Engine is asked for it: the agent and its token
//! bound read-only as PID 1, limits, capabilities, the seccomp filter, the published
//! agent port, labels (the `docker` backend's counterpart of `oci/bundle.rs`).

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, ResourcesUlimits, SystemInfo,
};

use super::{
    AGENT_PATH, AGENT_PORT, CA_BUNDLE_PATH, CTL_DIR, DockerRuntime, RUNTIME_LABEL, SANDBOX_LABEL, SSH_PORT, TOKEN_PATH,
};
use crate::binds::Binds;
use crate::error::{Error, Result};
use crate::types::SandboxSpec;

/// The host's resolv.conf, if sandboxes can use it: one naming a loopback resolver (a
/// local stub such as systemd-resolved's) is useless inside, and Docker's own then
/// serves instead. Bound read-only, queries go straight to the host's resolvers and so
/// are subject to the sandbox's egress policy, as in the `oci` backend.
pub(super) fn usable_resolv_conf() -> Option<&'static Path> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    let mut servers = text.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).map(str::trim).peekable();
    servers.peek()?;
    servers
        .all(|s| s.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()))
        .then_some(Path::new("/etc/resolv.conf"))
}

/// The host's apt sources, offered read-only so that root inside can `apt-get install`
/// from the host's own mirror (whatever it is: no mirror is named here): the host's
/// `/etc/apt/sources.list` if any, its `/etc/apt/sources.list.d/`, and each file of its
/// `/etc/apt/apt.conf.d/` over the template's (a snapshot mirror needs the host's
/// `Acquire::Check-Valid-Until "false"`; the template's other entries stay). Bound at the
/// same paths, so the sandbox's mount table shows it nothing new of the host. Owned by
/// host root, which is no id inside: root inside can neither write nor chmod them, and
/// the binds are read-only besides. A path Docker's bind syntax cannot carry (`:` or `,`)
/// is left out.
pub(super) fn apt_sources() -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if list.is_file() {
        paths.push(list.to_path_buf());
    }
    let dir = Path::new("/etc/apt/sources.list.d");
    if dir.is_dir() {
        paths.push(dir.to_path_buf());
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/apt.conf.d") {
        let mut conf: Vec<_> =
            entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).map(|e| e.path()).collect();
        conf.sort();
        paths.extend(conf);
    }
    paths.retain(|p| !p.to_string_lossy().contains([':', ',']));
    paths
}

/// Docker's default capability set (Engine 20.10 to 27) but NET_RAW: with the Engine's
/// user-namespace remapping each acts only on the sandbox's own namespaces and on files
/// whose owner is mapped into it (the sandbox's own), so root inside can install
/// packages, chown its files and start commands as any user inside, and no more. Not
/// CAP_SYS_ADMIN (mounts), CAP_SYS_MODULE, CAP_SYS_RESOURCE (limits), CAP_NET_ADMIN,
/// CAP_SYS_PTRACE, CAP_SYS_TIME. Not NET_RAW either: sandboxes share one bridge and the
/// host firewall tells them apart by source address (`firewall.rs`), which a raw or
/// packet socket could forge, sending as another sandbox past its own egress policy
/// (ping still works: Docker lets containers open ICMP datagram sockets).
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths the container reads as empty: Docker's own default list as recent Engines have
/// it (given whole, since a list replaces the Engine's; older Engines mask a subset), and
/// the host kernel's command line, which no sandbox needs (issue 19).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/cmdline",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

impl DockerRuntime {
    pub(super) fn container_body(
        &self,
        id: &str,
        image: String,
        sources: &Binds,
        spec: &SandboxSpec,
    ) -> ContainerCreateBody {
        let l = spec.limits;
        let env = crate::sandbox::agent_env(sources.ca_bundle.is_some());
        // Every source is in the runtime's tmpfs (`crate::binds`), so the container's
        // mount table shows `/agent`, `/sb-…/token`… there, not our host paths.
        let mut binds = vec![
            format!("{}:{AGENT_PATH}:ro", sources.agent.display()),
            format!("{}:{TOKEN_PATH}:ro", sources.token_file.display()),
            // A directory, read-only: files the runtime replaces by rename there (the
            // deadline) are seen inside; nothing inside can write there.
            format!("{}:{CTL_DIR}:ro", sources.ctl_dir.display()),
        ];
        if let Some(ca) = &sources.ca_bundle {
            binds.push(format!("{}:{CA_BUNDLE_PATH}:ro", ca.display()));
        }
        if let Some(resolv) = &sources.resolv_conf {
            binds.push(format!("{}:/etc/resolv.conf:ro", resolv.display()));
        }
        binds.extend(apt_sources().iter().map(|p| format!("{0}:{0}:ro", p.display())));
        let ports = [format!("{AGENT_PORT}/tcp"), format!("{SSH_PORT}/tcp")];
        let labels: HashMap<String, String> = [
            (SANDBOX_LABEL.to_string(), "1".to_string()),
            (RUNTIME_LABEL.to_string(), self.cfg.state_dir.display().to_string()),
        ]
        .into();
        let host_config = HostConfig {
            binds: Some(binds),
            masked_paths: Some(MASKED_PATHS.iter().map(|p| p.to_string()).collect()),
            // Docker's tmpfs default is noexec; /tmp holds venvs and build outputs.
            // Its size: `Limits::tmp_bytes`, with /dev/shm's (`shm_size`), so the agent
            // keeps room when they are full.
            tmpfs: Some(
                [("/tmp".to_string(), format!("rw,exec,nosuid,nodev,size={},mode=1777", l.tmp_bytes()))].into(),
            ),
            shm_size: Some(l.shm_bytes() as i64),
            // The writable layer's size (`DockerRuntime::new` checked that the Engine's
            // storage can limit it). Docker limits bytes only: inodes are bounded by the
            // bytes their metadata takes, and cost the host none (one image file holds
            // the storage, scripts/docker.sh).
            storage_opt: Some([("size".to_string(), l.disk_bytes.to_string())].into()),
            memory: Some(l.memory_bytes as i64),
            // Equal to memory: no swap on top.
            memory_swap: Some(l.memory_bytes as i64),
            nano_cpus: Some(i64::from(l.cpu_millis) * 1_000_000),
            pids_limit: Some(i64::from(l.pids)),
            ulimits: Some(vec![ResourcesUlimits { name: Some("nofile".into()), soft: Some(4096), hard: Some(4096) }]),
            // The agent runs as root inside, which the Engine maps to an unprivileged
            // host uid (`userns.rs`), with Docker's default capabilities (`CAPABILITIES`).
            // no-new-privileges is off, so that setuid `sudo` gives the sandbox user
            // root inside, which is all it can give. The seccomp filter is the `oci`
            // backend's (`seccomp.rs`),
            // not the Engine's default profile, which before Engine 25.0 lets io_uring
            // (a kernel surface seccomp cannot look into) and AF_VSOCK sockets (not
            // network-namespaced: a way to the host's or hypervisor's services) through.
            // Docker's AppArmor profile stays on where the host has AppArmor; never
            // privileged.
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(vec![format!("seccomp={}", crate::seccomp::docker_profile())]),
            privileged: Some(false),
            network_mode: Some(self.cfg.network.clone()),
            // Each on a host port the Engine picks.
            port_bindings: Some(
                ports
                    .iter()
                    .map(|port| {
                        let any = PortBinding { host_ip: Some("0.0.0.0".into()), host_port: Some(String::new()) };
                        (port.clone(), Some(vec![any]))
                    })
                    .collect(),
            ),
            // The agent's own log, kept small; `docker logs` shows it when it fails.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(
                    [("max-size".to_string(), "1m".to_string()), ("max-file".to_string(), "1".to_string())].into(),
                ),
            }),
            init: Some(false),
            ..Default::default()
        };
        ContainerCreateBody {
            hostname: Some("sandbox".into()),
            user: Some("0:0".into()),
            exposed_ports: Some(ports.to_vec()),
            env: Some(env),
            entrypoint: Some(crate::sandbox::agent_args(id)),
            cmd: Some(vec![]),
            image: Some(image),
            working_dir: Some("/".into()),
            labels: Some(labels),
            network_disabled: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Every sandbox gets a disk limit, which only some of the Engine's storage drivers
/// can set (`--storage-opt size`): btrfs and zfs, and overlay2 on XFS mounted with
/// `pquota`. Any other storage would let one sandbox fill the host's disk, so the
/// runtime refuses to start on it rather than create sandboxes without the limit.
pub(super) fn ensure_storage(info: &SystemInfo, socket: &Path) -> Result<()> {
    let driver = info.driver.clone().unwrap_or_default();
    let backing = info
        .driver_status
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find_map(|kv| (kv.first().map(String::as_str) == Some("Backing Filesystem")).then(|| kv.get(1).cloned()))
        .flatten()
        .unwrap_or_default();
    if matches!(driver.as_str(), "btrfs" | "zfs") || (driver == "overlay2" && backing == "xfs") {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "the Docker Engine at {} stores containers with {driver} on {backing}, which cannot limit a sandbox's \
             disk (--storage-opt size needs the btrfs or zfs storage driver, or overlay2 on XFS mounted with \
             pquota); scripts/docker.sh starts dockerd with its data root on a btrfs image",
        socket.display()
    )))
}
