//! Host firewall rules for the `docker` backend's bridge.
//!
//! Docker's own rules let a container reach anything its host can: the host's services
//! on any of its addresses, the cloud metadata service on 169.254.169.254, and (unless
//! inter-container communication is off) other containers. **A sandbox reaches nothing on
//! the host**: `SSDOCKER-IN`, jumped to from INPUT for the bridge, accepts only packets of
//! connections the host opened (the host connecting to an agent) and drops the rest. **A
//! sandbox reaches no other sandbox, no link-local or loopback address, and only what its
//! egress policy allows**: `SSDOCKER-FWD`, jumped to from Docker's `DOCKER-USER` chain
//! (which Docker keeps first in FORWARD) for everything forwarded from the bridge, sends
//! each sandbox's packets, keyed by its container address, to its own chain
//! `SSD-<suffix>` and drops packets from any address without one (a container between
//! its start and its rules, or one this runtime does not know). A sandbox's chain ends
//! every packet's trip through FORWARD: replies and what its policy allows are accepted
//! (Docker's POSTROUTING rule masquerades them), the rest dropped; new flows past its
//! bound are refused, as on the `oci` backend (`egress.rs`). It also drops
//! packets for the `oci` backend's sandbox links (`vs+`), whose addresses Docker's rules
//! would otherwise forward to.
//!
//! Chain names avoid the `SANDSTREAM-` and `SS-` prefixes of the `oci` backend, so that
//! scripts/clean-host.sh (which removes those once no runc sandbox runs) never removes
//! these while Docker sandboxes run.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::host::{run, run_quiet};
use crate::net::PrivateNets;
use crate::types::{Cidr, Egress};

const INPUT_CHAIN: &str = "SSDOCKER-IN";
const FORWARD_CHAIN: &str = "SSDOCKER-FWD";
/// Docker's chain for its users' rules, evaluated before its own in FORWARD.
const DOCKER_USER: &str = "DOCKER-USER";

pub(crate) fn sandbox_chain(suffix: &str) -> String {
    format!("SSD-{suffix}")
}

fn ipt(args: &[&str]) -> Result<()> {
    let mut a = vec!["-w"];
    a.extend_from_slice(args);
    run("iptables", &a).map(drop)
}

/// Adds `rule` to `chain` unless it is there (at the top when `first`).
fn ensure_rule(chain: &str, rule: &[&str], first: bool) -> Result<()> {
    let mut check = vec!["-C", chain];
    check.extend_from_slice(rule);
    if ipt(&check).is_ok() {
        return Ok(());
    }
    let mut add = if first { vec!["-I", chain, "1"] } else { vec!["-A", chain] };
    add.extend_from_slice(rule);
    ipt(&add)
}

fn ensure_chain(chain: &str) -> Result<()> {
    if ipt(&["-n", "-L", chain]).is_err() {
        // Another runtime may have created it meanwhile; -L again decides.
        let _ = ipt(&["-N", chain]);
        ipt(&["-n", "-L", chain])?;
    }
    Ok(())
}

/// Installs the host-wide chains for `bridge` (idempotent; runtimes in other processes
/// take turns under a lock, as check-then-add is not atomic).
pub(crate) fn ensure(bridge: &str) -> Result<()> {
    // Sandboxes reach the registries by forwarding; dockerd turns it on when it starts,
    // but a host tool may have turned it off since (clean-host.sh restores what it found).
    std::fs::create_dir_all("/run/sandstream").map_err(|e| Error::io("create /run/sandstream", e))?;
    crate::net::enable_forwarding()?;
    let _lock = crate::lockfile::lock_exclusive(std::path::Path::new("/run/sandstream/docker-firewall.lock"))?;
    if ipt(&["-n", "-L", DOCKER_USER]).is_err() {
        return Err(Error::Command {
            command: format!("iptables -L {DOCKER_USER}"),
            detail: "Docker's DOCKER-USER chain is missing: the daemon must run with its iptables \
                     management on (the default)"
                .into(),
        });
    }
    ensure_chain(INPUT_CHAIN)?;
    ensure_chain(FORWARD_CHAIN)?;
    let established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"];
    let mut accept = established.to_vec();
    accept.extend(["-j", "ACCEPT"]);
    ensure_rule(INPUT_CHAIN, &accept, false)?;
    ensure_rule(INPUT_CHAIN, &["-j", "DROP"], false)?;
    let mut ret = established.to_vec();
    ret.extend(["-j", "RETURN"]);
    ensure_rule(FORWARD_CHAIN, &ret, false)?;
    ensure_rule(FORWARD_CHAIN, &["-j", "DROP"], false)?;
    ensure_rule("INPUT", &["-i", bridge, "-j", INPUT_CHAIN], true)?;
    ensure_rule(DOCKER_USER, &["-i", bridge, "-j", FORWARD_CHAIN], true)?;
    // Docker's own rules accept connections to a published container port from any
    // other interface: not from the `oci` backend's sandbox links.
    let oci_links = format!("{}+", crate::netns::HOST_LINK_PREFIX);
    ensure_rule(DOCKER_USER, &["-i", &oci_links, "-o", bridge, "-j", "DROP"], true)
}

/// The jump from the shared chain into a sandbox's own, written once so that adding and
/// deleting cannot drift apart.
fn jump(bridge: &str, ip: Ipv4Addr, suffix: &str) -> Vec<String> {
    let v = ["-i", bridge, "-s", &format!("{ip}/32"), "-j", &sandbox_chain(suffix)];
    v.iter().map(|s| s.to_string()).collect()
}

/// Creates `SSD-<suffix>` for the sandbox at `ip`, its flows bounded by `max_flows`, and
/// jumps to it. On error, undoes it.
pub(crate) fn add_sandbox(
    bridge: &str,
    subnet: Cidr,
    suffix: &str,
    ip: Ipv4Addr,
    egress: &Egress,
    private: &PrivateNets,
    max_flows: u32,
) -> Result<()> {
    let r = add_sandbox_inner(bridge, subnet, suffix, ip, egress, private, max_flows);
    if r.is_err() {
        remove_sandbox(suffix);
    }
    r
}

fn add_sandbox_inner(
    bridge: &str,
    subnet: Cidr,
    suffix: &str,
    ip: Ipv4Addr,
    egress: &Egress,
    private: &PrivateNets,
    max_flows: u32,
) -> Result<()> {
    let chain = sandbox_chain(suffix);
    ipt(&["-N", &chain])?;
    let subnet = subnet.to_string();
    let mut drops: Vec<Vec<String>> = crate::net::NEVER_REACHABLE
        .iter()
        .chain([&subnet.as_str()])
        .map(|n| vec!["-d".into(), n.to_string()])
        .collect();
    // oci sandboxes' links: the two backends' sandboxes never reach each other.
    drops.push(vec!["-o".into(), format!("{}+", crate::netns::HOST_LINK_PREFIX)]);
    for rule in crate::egress::egress_chain(&chain, drops, max_flows, egress, private) {
        let mut args = vec!["-A", chain.as_str()];
        args.extend(rule.iter().map(String::as_str));
        ipt(&args)?;
    }
    let rule = jump(bridge, ip, suffix);
    let mut args = vec!["-I", FORWARD_CHAIN, "1"];
    args.extend(rule.iter().map(String::as_str));
    ipt(&args)
}

/// Removes the sandbox's jump (found by its target, so no address is needed) and its
/// chain. Best effort and idempotent.
pub(crate) fn remove_sandbox(suffix: &str) {
    let chain = sandbox_chain(suffix);
    if let Ok(rules) = run("iptables", &["-w", "-S", FORWARD_CHAIN]) {
        for line in rules.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"-A") && words.windows(2).any(|w| w == ["-j", chain.as_str()]) {
                let mut args = vec!["-w", "-D"];
                args.extend_from_slice(&words[1..]);
                run_quiet("iptables", &args);
            }
        }
    }
    if ipt(&["-n", "-L", &chain]).is_ok() {
        run_quiet("iptables", &["-w", "-F", &chain]);
        run_quiet("iptables", &["-w", "-X", &chain]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_iptables_and_stay_clear_of_clean_host() {
        let chain = sandbox_chain("0123456789");
        assert!(chain.len() <= 28, "{chain}");
        for name in [chain.as_str(), INPUT_CHAIN, FORWARD_CHAIN] {
            assert!(!name.starts_with("SANDSTREAM-") && !name.starts_with("SS-"), "{name}");
        }
    }

    #[test]
    fn the_jump_is_keyed_by_bridge_and_address() {
        assert_eq!(
            jump("sandstream0", Ipv4Addr::new(10, 89, 0, 2), "0123456789"),
            ["-i", "sandstream0", "-s", "10.89.0.2/32", "-j", "SSD-0123456789"]
        );
    }
}
