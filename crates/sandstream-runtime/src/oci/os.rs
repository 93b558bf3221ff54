//! The host, as the `oci` backend's create and destroy see it, behind [`Os`]: every
//! side effect they make besides the OCI runtime's own calls (`cli.rs`). The
//! orchestration in `mod.rs` decides the order of these steps and what a failure
//! undoes; [`Host`] does each step on this host, by calling the module that owns it
//! (`net`, `netns`, `binds`, `disk`, `rootfs`, `remove`, `ready`) and nothing more. The
//! tests' recording double is in `fake.rs`, so the order and the cleanup on every
//! failure are tested without root.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::binds::{Binds, Shared};
use crate::error::Result;
use crate::net::{self, Published};
use crate::types::{Cidr, Egress, Limits};
use crate::userns::MappedIds;

use super::layout::Layout;
use super::rootfs::{self, Mounted};

/// The host side of a sandbox's life. Steps that make something return a `Result` and
/// leave nothing their undo step cannot remove; undo steps are best effort and
/// idempotent (they log what fails), so a destroy can run after any failure, twice.
pub(crate) trait Os: Send + Sync + Debug {
    /// Claims a free network slot host-wide (`netns::claim_slot`).
    fn claim_slot(&self) -> Result<u32>;
    /// Gives `slot` back.
    fn release_slot(&self, slot: u32);
    /// The sandbox's token and the sources of its binds, in the runtime's tmpfs, owned
    /// for a sandbox whose ids map to `ids`, with the apt sources of `apt` when given
    /// (`binds::prepare_for`); `dir` gets links to them.
    #[allow(clippy::too_many_arguments)]
    fn prepare_binds(
        &self,
        state_dir: &Path,
        id: &str,
        dir: &Path,
        env: &[(String, String)],
        shared: &Shared<'_>,
        ids: MappedIds,
        apt: Option<&Path>,
    ) -> Result<Binds>;
    /// Removes what [`Os::prepare_binds`] made, once nothing runs in the sandbox.
    fn release_binds(&self, state_dir: &Path, id: &str);
    /// Makes the sandbox's empty network namespace, which the container joins.
    fn create_namespace(&self, suffix: &str) -> Result<()>;
    /// Links the namespace to the host and installs the sandbox's firewall rules
    /// (`net::connect`; the host's private networks are read now).
    fn connect(
        &self,
        suffix: &str,
        slot: u32,
        egress: &Egress,
        private_egress: &[Cidr],
        max_flows: u32,
        ports: &[Published],
    ) -> Result<()>;
    /// Removes the sandbox's rules, namespace and link (`net::destroy`).
    fn disconnect(&self, suffix: &str, slot: u32, ports: &[Published]);
    /// Puts the calling thread in a private mount namespace (`rootfs::enter_private_mounts`).
    fn enter_private_mounts(&self) -> Result<()>;
    /// Makes the sandbox's disk image at `image` (`disk::make`).
    fn make_disk(&self, image: &Path, limits: &Limits, blanks: &Path) -> Result<()>;
    /// Mounts the sandbox's root over `template`'s copy mapped to `ids`, with the sysfs
    /// of network namespace `netns` (`rootfs::mount`).
    fn mount_root(&self, layout: &Layout, template: &Path, ids: MappedIds, netns: &Path) -> Result<Mounted>;
    /// Detaches a rootfs an earlier version mounted on the host; Ok when nothing is
    /// mounted there afterwards (`rootfs::unmount_from_host`).
    fn unmount_host_rootfs(&self, rootfs: &Path) -> Result<()>;
    /// Removes a tree the sandbox could have written (`remove::remove_tree`).
    fn remove_dir(&self, dir: &Path) -> Result<()>;
    /// Whether process `pid` is a live process of sandbox `id`. Polled while a
    /// container dies, so the double does not record it.
    fn runs(&self, pid: u32, id: &str) -> bool;
    /// Waits until the agent at `addr` accepts a connection: Ok with the time it took,
    /// Err with the time waited once `timeout` passed (`ready::wait`).
    fn wait_for_agent(&self, addr: SocketAddr, timeout: Duration) -> Result<Duration, Duration>;
    /// Whether the agent at `addr` accepts a connection now (an adopted sandbox's).
    fn agent_answers(&self, addr: SocketAddr) -> bool;
}

/// This host.
#[derive(Debug)]
pub(crate) struct Host;

impl Os for Host {
    fn claim_slot(&self) -> Result<u32> {
        net::claim_slot()
    }

    fn release_slot(&self, slot: u32) {
        net::release_slot(slot)
    }

    fn prepare_binds(
        &self,
        state_dir: &Path,
        id: &str,
        dir: &Path,
        env: &[(String, String)],
        shared: &Shared<'_>,
        ids: MappedIds,
        apt: Option<&Path>,
    ) -> Result<Binds> {
        crate::binds::prepare_for(state_dir, id, dir, env, shared, Some(ids), apt)
    }

    fn release_binds(&self, state_dir: &Path, id: &str) {
        crate::binds::release(state_dir, id)
    }

    fn create_namespace(&self, suffix: &str) -> Result<()> {
        net::create_namespace(suffix)
    }

    fn connect(
        &self,
        suffix: &str,
        slot: u32,
        egress: &Egress,
        private_egress: &[Cidr],
        max_flows: u32,
        ports: &[Published],
    ) -> Result<()> {
        let private = net::PrivateNets::of_host(private_egress);
        net::connect(suffix, slot, egress, &private, max_flows, ports)
    }

    fn disconnect(&self, suffix: &str, slot: u32, ports: &[Published]) {
        net::destroy(suffix, slot, ports)
    }

    fn enter_private_mounts(&self) -> Result<()> {
        rootfs::enter_private_mounts()
    }

    fn make_disk(&self, image: &Path, limits: &Limits, blanks: &Path) -> Result<()> {
        crate::disk::make(image, limits, blanks)
    }

    fn mount_root(&self, layout: &Layout, template: &Path, ids: MappedIds, netns: &Path) -> Result<Mounted> {
        rootfs::mount(layout, template, ids, netns)
    }

    fn unmount_host_rootfs(&self, rootfs: &Path) -> Result<()> {
        rootfs::unmount_from_host(rootfs)
    }

    fn remove_dir(&self, dir: &Path) -> Result<()> {
        crate::remove::remove_tree(dir)
    }

    fn runs(&self, pid: u32, id: &str) -> bool {
        runs_in_sandbox(pid, id)
    }

    fn wait_for_agent(&self, addr: SocketAddr, timeout: Duration) -> Result<Duration, Duration> {
        // A refused connection costs a round trip on the veth link, so the agent is
        // asked often: it usually listens 2-3 ms after runc returns.
        crate::ready::wait(addr, timeout, Duration::from_micros(500))
    }

    fn agent_answers(&self, addr: SocketAddr) -> bool {
        crate::ready::answers(addr, Duration::from_secs(1))
    }
}

/// Whether process `pid` is a live process of sandbox `id` (exists, is neither a zombie
/// nor dead, and is in the sandbox's cgroup): so a pid reused by another process since
/// never counts.
fn runs_in_sandbox(pid: u32, id: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may hold any byte.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z' | 'X' | 'x')) {
        return false;
    }
    let cgroup = format!("/sandstream/{id}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.ends_with(&cgroup) || l.contains(&format!("{cgroup}/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_outside_the_sandbox_s_cgroup_does_not_count_as_its_own() {
        // This test process is alive but in no sandbox's cgroup: a pid reused by it
        // after the sandbox's init died must not keep the sandbox "running".
        assert!(!runs_in_sandbox(std::process::id(), "sb-0123456789"));
        assert!(!runs_in_sandbox(u32::MAX, "sb-0123456789"), "no such process");
    }
}
