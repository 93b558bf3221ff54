//! Per-sandbox networking: a network namespace joined to the host by a veth pair with
//! a /30 of 10.88.0.0/16, and host firewall rules for those links.
//!
//! **A sandbox reaches nothing on the host**: packets arriving on a sandbox link are
//! dropped by the INPUT chain unless they belong to a connection the host opened (the
//! host connecting to the agent). Forwarding from sandbox links is dropped, so sandboxes
//! reach neither each other nor other networks. (Egress NAT with a policy is future work.)

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::host::{run, run_quiet};

/// Host-side veth names all start with this, so one iptables rule covers them all.
pub(crate) const HOST_LINK_PREFIX: &str = "vs";
const INPUT_CHAIN: &str = "SANDSTREAM-IN";
const FORWARD_CHAIN: &str = "SANDSTREAM-FWD";
/// Sandbox slots: 10.88.0.0/16 in /30s, slot 0 unused.
pub(crate) const MAX_SLOT: u32 = (1 << 14) - 1;

/// The addresses of one slot: (host side, sandbox side).
pub(crate) fn slot_addrs(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, 88, 0, 0)) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Names derived from a sandbox's random suffix: (netns, host link, peer link).
pub(crate) fn names(suffix: &str) -> (String, String, String) {
    (format!("sb-{suffix}"), format!("{HOST_LINK_PREFIX}{suffix}"), format!("vp{suffix}"))
}

/// Installs the host firewall chains (idempotent and safe to run concurrently: rules
/// are only ever added when missing, never flushed).
pub(crate) fn ensure_firewall() -> Result<()> {
    // Check-then-add is not atomic: runtimes in other processes take turns.
    std::fs::create_dir_all("/run/sandstream").map_err(|e| Error::io("create /run/sandstream", e))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/sandstream/firewall.lock")
        .map_err(|e| Error::io("open /run/sandstream/firewall.lock", e))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("lock /run/sandstream/firewall.lock", e.into()))?;
    let link = format!("{HOST_LINK_PREFIX}+");
    let rules: [(&str, &[&str]); 3] = [
        (INPUT_CHAIN, &["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]),
        (INPUT_CHAIN, &["-j", "DROP"]),
        (FORWARD_CHAIN, &["-j", "DROP"]),
    ];
    for chain in [INPUT_CHAIN, FORWARD_CHAIN] {
        if run("iptables", &["-w", "-n", "-L", chain]).is_err() {
            // Another runtime may have created it meanwhile; -L again decides.
            let _ = run("iptables", &["-w", "-N", chain]);
            run("iptables", &["-w", "-n", "-L", chain])?;
        }
    }
    for (chain, rule) in rules {
        let mut check = vec!["-w", "-C", chain];
        check.extend_from_slice(rule);
        if run("iptables", &check).is_err() {
            let mut add = vec!["-w", "-A", chain];
            add.extend_from_slice(rule);
            run("iptables", &add)?;
        }
    }
    for (chain, parent) in [(INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "FORWARD")] {
        if run("iptables", &["-w", "-C", parent, "-i", &link, "-j", chain]).is_err() {
            run("iptables", &["-w", "-I", parent, "1", "-i", &link, "-j", chain])?;
        }
    }
    Ok(())
}

/// Slots are claimed host-wide with a lock file each, so runtimes in different
/// processes never hand out the same addresses.
const SLOT_DIR: &str = "/run/sandstream/slots";

/// Claims the lowest free slot.
pub(crate) fn claim_slot() -> Result<u32> {
    std::fs::create_dir_all(SLOT_DIR).map_err(|e| Error::io(format!("create {SLOT_DIR}"), e))?;
    for slot in 1..=MAX_SLOT {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(format!("{SLOT_DIR}/{slot}")) {
            Ok(_) => return Ok(slot),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("claim slot {slot}"), e)),
        }
    }
    Err(Error::NoAddress)
}

pub(crate) fn release_slot(slot: u32) {
    let _ = std::fs::remove_file(format!("{SLOT_DIR}/{slot}"));
}

/// Creates the namespace and the veth pair for `suffix` in `slot`. On error, undoes it.
pub(crate) fn create(suffix: &str, slot: u32) -> Result<()> {
    let r = create_inner(suffix, slot);
    if r.is_err() {
        destroy(suffix);
    }
    r
}

fn create_inner(suffix: &str, slot: u32) -> Result<()> {
    if slot == 0 || slot > MAX_SLOT {
        return Err(Error::NoAddress);
    }
    let (ns, host_link, peer) = names(suffix);
    let (host_ip, sandbox_ip) = slot_addrs(slot);
    run("ip", &["netns", "add", &ns])?;
    run("ip", &["link", "add", &host_link, "type", "veth", "peer", "name", &peer])?;
    run("ip", &["link", "set", &peer, "netns", &ns])?;
    run("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
    run("ip", &["addr", "add", &format!("{host_ip}/30"), "dev", &host_link])?;
    run("ip", &["link", "set", &host_link, "up"])?;
    run("ip", &["-n", &ns, "addr", "add", &format!("{sandbox_ip}/30"), "dev", "eth0"])?;
    run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
    run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
    run("ip", &["-n", &ns, "route", "add", "default", "via", &host_ip.to_string()])?;
    Ok(())
}

/// Removes the namespace (which takes the veth pair with it) and the host link if it
/// was left behind. Best effort and idempotent.
pub(crate) fn destroy(suffix: &str) {
    let (ns, host_link, _) = names(suffix);
    run_quiet("ip", &["netns", "del", &ns]);
    if std::path::Path::new(&format!("/sys/class/net/{host_link}")).exists() {
        run_quiet("ip", &["link", "del", &host_link]);
    }
}

/// The path runc joins for the sandbox's network namespace.
pub(crate) fn netns_path(suffix: &str) -> String {
    format!("/var/run/netns/{}", names(suffix).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_slash_30s() {
        assert_eq!(slot_addrs(1), (Ipv4Addr::new(10, 88, 0, 5), Ipv4Addr::new(10, 88, 0, 6)));
        assert_eq!(slot_addrs(64), (Ipv4Addr::new(10, 88, 1, 1), Ipv4Addr::new(10, 88, 1, 2)));
        assert_eq!(slot_addrs(MAX_SLOT).1, Ipv4Addr::new(10, 88, 255, 254));
    }

    #[test]
    fn link_names_fit_the_kernel_limit() {
        let (ns, host, peer) = names("0123456789");
        assert!(host.len() <= 15 && peer.len() <= 15, "{host} {peer}");
        assert_eq!(ns, "sb-0123456789");
    }
}
