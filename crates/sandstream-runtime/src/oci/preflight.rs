//! What `OciRuntime::new` checks and sets up on the host before any sandbox: the state
//! directory (absolute, 0700), the agent binary, that crun can run on this host's cgroup
//! layout, the host firewall chains (`net::ensure_firewall`), the host id range
//! sandboxes' user namespaces map to (`crate::userns`, reserved in /etc/subuid and
//! /etc/subgid when missing) and, unless told not to, the cgroup filesystem's
//! `favordynmods` (`crate::cgroupfs`).

use std::os::unix::fs::DirBuilderExt;

use crate::error::{Error, Result};
use crate::net;
use crate::userns::MappedIds;

use super::OciConfig;

/// Checks `cfg` and prepares the host for it; returns it with its state dir made
/// absolute, so nothing depends on the working directory (a create changes its
/// container thread's own: `rootfs::mount`), and the sandboxes' id range.
pub(crate) fn check(mut cfg: OciConfig) -> Result<(OciConfig, MappedIds)> {
    cfg.state_dir = std::path::absolute(&cfg.state_dir)
        .map_err(|e| Error::io(format!("resolve state dir {}", cfg.state_dir.display()), e))?;
    if !cfg.agent_binary.is_file() {
        return Err(Error::InvalidSpec(format!("agent binary {} does not exist", cfg.agent_binary.display())));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.state_dir)
        .map_err(|e| Error::io(format!("create state dir {}", cfg.state_dir.display()), e))?;
    if cfg.runtime.file_name().is_some_and(|n| n == "crun")
        && let Some(controllers) = hybrid_v2_controllers()
    {
        return Err(Error::InvalidSpec(format!(
            "crun cannot run sandboxes on this host: its cgroup layout is hybrid (v1 and v2) and the v2 \
             hierarchy has controllers ({controllers}); scripts/cgroups.sh binds them to cgroup v1"
        )));
    }
    let ids = crate::userns::ensure_mapped_ids()?;
    net::ensure_firewall()?;
    if cfg.favor_dynamic_cgroups {
        crate::cgroupfs::favor_dynamic_changes();
    }
    Ok((cfg, ids))
}

/// On a host with the hybrid cgroup layout (v1 hierarchies, v2 at
/// /sys/fs/cgroup/unified), the controllers the v2 hierarchy still has, when any.
fn hybrid_v2_controllers() -> Option<String> {
    if nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    {
        return None;
    }
    let c = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").ok()?;
    let c = c.trim();
    (!c.is_empty()).then(|| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_agent_binary_is_refused_before_the_host_is_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let cfg = OciConfig::new(state.clone(), dir.path().join("no-agent"));
        let err = check(cfg).expect_err("no agent");
        assert_eq!(
            err.to_string(),
            format!("invalid sandbox spec: agent binary {} does not exist", dir.path().join("no-agent").display())
        );
        assert!(!state.exists(), "no state dir made for a refused configuration");
    }
}
