//! What a caller asks for and gets back.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use sandstream_runner_protocol::SshCredential;

/// Resource limits of one sandbox: memory, CPU and processes enforced by its cgroup,
/// disk by the filesystem that holds its writable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory (and memory+swap) limit in bytes.
    pub memory_bytes: u64,
    /// CPU in thousandths of a core (1000 = one core).
    pub cpu_millis: u32,
    /// Most processes and threads at once, the agent included.
    pub pids: u32,
    /// Most bytes the sandbox's writable layer (everything it writes outside its tmpfs
    /// `/tmp`: `/home/user`, the agent's output spool, installed packages) takes on
    /// the host; past it, writes fail with ENOSPC (EDQUOT on Docker's btrfs storage).
    pub disk_bytes: u64,
    /// Most files, directories and links the writable layer holds (the `oci` backend;
    /// on Docker the byte limit bounds them, each costing metadata bytes).
    pub disk_inodes: u64,
}

/// The defaults and name rules are the runner protocol's, so the server (which links no
/// runtime) and the runtime agree on them.
pub use sandstream_runner_protocol::{
    DEFAULT_CPU_MILLIS, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DEFAULT_PIDS, MIN_DISK_MB, is_env_name,
};
/// Inodes per MiB of disk: 64, one per 16 KiB (ext4's default ratio for small
/// filesystems is one per 4-16 KiB); 655,360 for the default 10 GiB.
pub const DISK_INODES_PER_MB: u64 = 64;

/// Most pseudo-terminals one sandbox may have open at once (its own /dev/pts instance's
/// `max=`). They come from one pool for the whole host (`kernel.pty.max`, 4096 by
/// default, of which `kernel.pty.reserve`, 1024, only the host's own /dev/pts may use):
/// without a share, one sandbox could take all 3,072 and leave every other sandbox
/// without terminals. 64 is far beyond what a developer's tmux, shells and SSH sessions
/// use; 48 sandboxes at their share fill the pool.
pub const PTYS_PER_SANDBOX: u32 = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: u64::from(DEFAULT_MEMORY_MB) << 20,
            cpu_millis: DEFAULT_CPU_MILLIS,
            pids: DEFAULT_PIDS,
            disk_bytes: u64::from(DEFAULT_DISK_MB) << 20,
            disk_inodes: u64::from(DEFAULT_DISK_MB) * DISK_INODES_PER_MB,
        }
    }
}

impl Limits {
    /// The size of the sandbox's `/tmp` tmpfs: 256 MiB, or half its memory if less.
    /// tmpfs pages count against the memory limit and nothing can reclaim them: a /tmp
    /// as large as the memory let a sandbox fill it until the OOM killer, having killed
    /// every user process, killed the agent (and so the sandbox).
    pub fn tmp_bytes(&self) -> u64 {
        (256u64 << 20).min(self.memory_bytes / 2)
    }

    /// The size of `/dev/shm`: 64 MiB (runc's and Docker's default), or an eighth of
    /// the memory if less, so `/tmp` and `/dev/shm` together leave the agent room.
    pub fn shm_bytes(&self) -> u64 {
        (64u64 << 20).min(self.memory_bytes / 8)
    }

    /// These limits with a disk of `mb` MiB and its inodes ([`DISK_INODES_PER_MB`]).
    pub fn with_disk_mb(self, mb: u32) -> Limits {
        Limits { disk_bytes: u64::from(mb) << 20, disk_inodes: u64::from(mb) * DISK_INODES_PER_MB, ..self }
    }
}

/// An IPv4 network, `a.b.c.d/len` (a bare address means `/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cidr> {
        let bad = || Error::InvalidSpec(format!("{s:?} is not an IPv4 CIDR such as 203.0.113.0/24"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Cidr { addr: addr.parse().map_err(|_| bad())?, prefix })
    }
}

impl Cidr {
    /// Whether every address of `other` is in this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        let mask = |p: u8| if p == 0 { 0 } else { u32::MAX << (32 - u32::from(p)) };
        other.prefix >= self.prefix
            && u32::from(other.addr) & mask(self.prefix) == u32::from(self.addr) & mask(self.prefix)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where a sandbox may open connections. **Whatever the policy, a sandbox never reaches
/// this host, other sandboxes, loopback, or link-local addresses (169.254.0.0/16, where
/// cloud metadata services live).**
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Egress {
    /// Anywhere else (so `pip install` and `npm install` work).
    #[default]
    Allow,
    /// Nowhere.
    Deny,
    /// Only these networks.
    AllowList(Vec<Cidr>),
}

/// A request for a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Root filesystem directory, used read-only as the overlay's lower layer.
    pub template: PathBuf,
    pub limits: Limits,
    /// Extra environment for every command in the sandbox.
    pub env: Vec<(String, String)>,
    pub egress: Egress,
}

impl SandboxSpec {
    pub(crate) fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if l.memory_bytes < 16 << 20 {
            return Err(Error::InvalidSpec(format!("memory must be at least 16 MiB, got {} bytes", l.memory_bytes)));
        }
        if l.cpu_millis < 10 {
            return Err(Error::InvalidSpec(format!("cpu must be at least 10 millicores, got {}", l.cpu_millis)));
        }
        if l.pids < 8 {
            return Err(Error::InvalidSpec(format!("pids must be at least 8, got {}", l.pids)));
        }
        if l.disk_bytes < u64::from(MIN_DISK_MB) << 20 {
            return Err(Error::InvalidSpec(format!(
                "disk must be at least {MIN_DISK_MB} MiB, got {} bytes",
                l.disk_bytes
            )));
        }
        // ext4 holds at most 2^32 inodes; a few are its own (root, lost+found, journal…).
        if !(64..=u64::from(u32::MAX)).contains(&l.disk_inodes) {
            return Err(Error::InvalidSpec(format!(
                "disk inodes must be between 64 and {}, got {}",
                u32::MAX,
                l.disk_inodes
            )));
        }
        let t = self.template.to_string_lossy();
        // Overlay mount options are comma/colon separated.
        if t.contains([',', ':']) || !self.template.is_absolute() {
            return Err(Error::InvalidSpec(format!("template path {t} must be absolute without ',' or ':'")));
        }
        let meta = std::fs::metadata(&self.template).map_err(|_| Error::TemplateMissing(self.template.clone()))?;
        if !meta.is_dir() {
            return Err(Error::TemplateMissing(self.template.clone()));
        }
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o005 != 0o005 {
            return Err(Error::InvalidSpec(format!(
                "template {t} must be readable and searchable by everyone (mode 755), as a root directory is"
            )));
        }
        for (k, v) in &self.env {
            if !is_env_name(k) {
                return Err(Error::InvalidSpec(format!("env name {k:?} must match [A-Za-z_][A-Za-z0-9_]*")));
            }
            if v.contains('\0') {
                return Err(Error::InvalidSpec(format!("env {k}: its value contains NUL")));
            }
        }
        Ok(())
    }
}

/// A running sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    /// Where its agent listens, reachable from this host.
    pub agent_addr: SocketAddr,
    /// The token its agent accepts, and no other agent does.
    pub token: String,
    /// The host port its agent is published on: connections to this port on any of the
    /// host's addresses (from other machines, or from this one to a non-loopback
    /// address) reach the agent.
    pub published_port: u16,
    /// The host port its SSH server (port 2222 inside) is published on, as
    /// `published_port` is; None for a sandbox made before SSH.
    pub ssh_published_port: Option<u16>,
}

/// One host's sandboxes. Every call is blocking; async callers use `spawn_blocking`.
pub trait Runtime: Send + Sync {
    /// Creates and starts a sandbox; returns once its agent answers. On error nothing
    /// of it remains.
    fn create(&self, spec: &SandboxSpec) -> Result<Sandbox>;
    /// Kills a sandbox and removes every trace of it: processes, mounts, cgroups,
    /// network namespace, links and files.
    fn kill(&self, id: &str) -> Result<()>;
    /// Ids of the sandboxes this runtime has.
    fn list(&self) -> Result<Vec<String>>;
    /// After a restart of the process that owns this runtime: finds the sandboxes a
    /// previous process left, returns those whose agent still answers, and removes every
    /// trace of the rest.
    fn recover(&self) -> Result<Vec<Sandbox>>;
    /// Whether sandbox `id`'s agent (its init) still runs; false for an unknown id.
    /// When the answer is uncertain (the Docker Engine does not answer), true: a
    /// sandbox is never removed on a guess.
    fn running(&self, id: &str) -> bool;
    /// Sets when sandbox `id` ends by itself (milliseconds since the Unix epoch; `None`:
    /// never), even if nothing on the host is left to kill it: its agent reads the
    /// deadline from the control directory every second. The owner still kills it on
    /// time; this is the backstop for an owner gone for good. [`Error::NotFound`] for an
    /// unknown id.
    fn set_deadline(&self, id: &str, deadline_ms: Option<i64>) -> Result<()>;
    /// Adds credentials to sandbox `id`'s SSH access (its control directory's access
    /// file, which its agent reads at every login attempt), dropping expired ones; with
    /// `revoke_passwords`, every password is removed first. [`Error::NotFound`] for an
    /// unknown id, [`Error::InvalidSpec`] for a malformed credential.
    fn update_ssh_access(&self, id: &str, add: &[SshCredential], revoke_passwords: bool) -> Result<()>;
    /// Those of `ids` whose agent no longer runs (unknown ids included), under the same
    /// rule as [`Runtime::running`]: when unsure, running. A backend that can answer for
    /// all of them at once (the Docker Engine lists its running containers in one
    /// request) does so; the default asks [`Runtime::running`] for each.
    fn not_running(&self, ids: &[String]) -> Vec<String> {
        ids.iter().filter(|id| !self.running(id)).cloned().collect()
    }
    /// Removes what this backend keeps per template version (the Docker Engine's image
    /// of a template) for versions that are gone or have changed, unless a sandbox still
    /// uses it; returns what it removed. Backends that run the template's directory
    /// itself keep nothing (the template catalog collects the directories).
    fn collect_template_images(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
