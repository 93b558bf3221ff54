//! Per-sandbox networking: a network namespace joined to the host by a veth pair with
//! a /30 of 10.88.0.0/16, and host firewall rules for those links.
//!
//! **A sandbox reaches nothing on the host**: packets arriving on a sandbox link are
//! dropped by the INPUT chain unless they belong to a connection the host opened (the
//! host connecting to the agent). Packets it sends elsewhere go through its own chain
//! `SS-<suffix>`: replies pass, link-local (169.254.0.0/16: cloud metadata), loopback and
//! every sandbox's network are dropped, then its egress policy decides, then DROP.
//! Allowed traffic is masqueraded behind the host. The agent's port is published on a
//! host port with DNAT.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::host::{run, run_quiet};
use crate::types::Egress;

/// Host-side veth names all start with this, so one iptables rule covers them all.
pub(crate) const HOST_LINK_PREFIX: &str = "vs";
const INPUT_CHAIN: &str = "SANDSTREAM-IN";
const FORWARD_CHAIN: &str = "SANDSTREAM-FWD";
const PUBLISH_CHAIN: &str = "SANDSTREAM-PUB";
const NAT_CHAIN: &str = "SANDSTREAM-NAT";
const DNAT_CHAIN: &str = "SANDSTREAM-DNAT";
const SANDBOX_NET: &str = "10.88.0.0/16";
/// Never reachable from a sandbox of either backend, whatever its policy: link-local
/// (where cloud metadata services live) and loopback. Each backend adds its own
/// sandbox network.
pub(crate) const NEVER_REACHABLE: [&str; 2] = ["169.254.0.0/16", "127.0.0.0/8"];
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
    let local = ["-m", "addrtype", "--dst-type", "LOCAL"];
    let established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"];
    for (table, chain) in [
        ("filter", INPUT_CHAIN),
        ("filter", FORWARD_CHAIN),
        ("filter", PUBLISH_CHAIN),
        ("nat", NAT_CHAIN),
        ("nat", DNAT_CHAIN),
    ] {
        if run("iptables", &["-w", "-t", table, "-n", "-L", chain]).is_err() {
            // Another runtime may have created it meanwhile; -L again decides.
            let _ = run("iptables", &["-w", "-t", table, "-N", chain]);
            run("iptables", &["-w", "-t", table, "-n", "-L", chain])?;
        }
    }
    let not_sandbox = ["!", "-d", SANDBOX_NET, "-j", "MASQUERADE"];
    let rules: Vec<(&str, &str, Vec<&str>)> = vec![
        ("filter", INPUT_CHAIN, established.to_vec()),
        ("filter", INPUT_CHAIN, vec!["-j", "DROP"]),
        ("filter", FORWARD_CHAIN, vec!["-j", "DROP"]),
        ("filter", PUBLISH_CHAIN, established.to_vec()),
        ("filter", PUBLISH_CHAIN, vec!["-j", "DROP"]),
        ("nat", NAT_CHAIN, not_sandbox.to_vec()),
    ];
    for (table, chain, rule) in &rules {
        ensure_rule(table, chain, rule, false)?;
    }
    ensure_rule("filter", "INPUT", &["-i", &link, "-j", INPUT_CHAIN], true)?;
    ensure_rule("filter", "FORWARD", &["-i", &link, "-j", FORWARD_CHAIN], true)?;
    // Only traffic from outside the sandboxes may use a published port: a sandbox's own
    // packets are judged by its egress chain alone (which drops every sandbox address),
    // whatever order these two jumps end up in.
    ensure_rule("filter", "FORWARD", &["!", "-i", &link, "-o", &link, "-j", PUBLISH_CHAIN], true)?;
    ensure_rule("nat", "POSTROUTING", &["-s", SANDBOX_NET, "-j", NAT_CHAIN], true)?;
    let mut prerouting = local.to_vec();
    prerouting.extend(["-j", DNAT_CHAIN]);
    ensure_rule("nat", "PREROUTING", &prerouting, true)?;
    let mut output = local.to_vec();
    output.extend(["!", "-d", "127.0.0.0/8", "-j", DNAT_CHAIN]);
    ensure_rule("nat", "OUTPUT", &output, true)?;
    enable_forwarding()
}

/// Adds `rule` to `chain` unless it is there (at the top when `first`).
fn ensure_rule(table: &str, chain: &str, rule: &[&str], first: bool) -> Result<()> {
    let mut check = vec!["-w", "-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if run("iptables", &check).is_ok() {
        return Ok(());
    }
    let mut add = vec!["-w", "-t", table];
    if first {
        add.extend(["-I", chain, "1"]);
    } else {
        add.extend(["-A", chain]);
    }
    add.extend_from_slice(rule);
    run("iptables", &add).map(drop)
}

/// Egress needs IPv4 forwarding. The value found is kept in /run/sandstream so
/// scripts/clean-host.sh can put it back.
pub(crate) fn enable_forwarding() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let now = std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {path}"), e))?;
    if now.trim() != "1" {
        let saved = "/run/sandstream/ip_forward.orig";
        if !std::path::Path::new(saved).exists() {
            std::fs::write(saved, now.trim()).map_err(|e| Error::io(format!("write {saved}"), e))?;
        }
        std::fs::write(path, "1").map_err(|e| Error::io(format!("enable {path}"), e))?;
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

/// Creates the namespace, the veth pair, the egress chain and the published port for
/// `suffix` in `slot`. On error, undoes it.
pub(crate) fn create(suffix: &str, slot: u32, egress: &Egress, published_port: u16, agent_port: u16) -> Result<()> {
    let r = create_link(suffix, slot).and_then(|()| create_rules(suffix, slot, egress, published_port, agent_port));
    if r.is_err() {
        destroy(suffix, slot, published_port, agent_port);
    }
    r
}

fn sandbox_chain(suffix: &str) -> String {
    format!("SS-{suffix}")
}

/// A sandbox's own egress chain, rule by rule (each the words after `-A CHAIN`): replies
/// accepted (ACCEPT, not RETURN: a RETURN would resume in the shared chain, at its final
/// DROP), then each of `drops` dropped, then its policy, then DROP. Both backends write
/// their chains from this one definition.
pub(crate) fn egress_chain(drops: Vec<Vec<String>>, egress: &Egress) -> Vec<Vec<String>> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut rules = vec![words(&["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])];
    for mut d in drops {
        d.extend(words(&["-j", "DROP"]));
        rules.push(d);
    }
    match egress {
        Egress::Allow => rules.push(words(&["-j", "ACCEPT"])),
        Egress::Deny => {}
        Egress::AllowList(nets) => {
            rules.extend(nets.iter().map(|n| words(&["-d", &n.to_string(), "-j", "ACCEPT"])));
        }
    }
    rules.push(words(&["-j", "DROP"]));
    rules
}

fn create_rules(suffix: &str, slot: u32, egress: &Egress, published_port: u16, agent_port: u16) -> Result<()> {
    let chain = sandbox_chain(suffix);
    let ipt = |args: &[&str]| {
        let mut a = vec!["-w"];
        a.extend_from_slice(args);
        run("iptables", &a).map(drop)
    };
    ipt(&["-N", &chain])?;
    let drops = NEVER_REACHABLE.iter().chain([&SANDBOX_NET]).map(|net| vec!["-d".into(), net.to_string()]).collect();
    for rule in egress_chain(drops, egress) {
        let mut args = vec!["-A", chain.as_str()];
        args.extend(rule.iter().map(String::as_str));
        ipt(&args)?;
    }
    // The jump into the sandbox's chain and its published port go first in their chains,
    // ahead of the final DROPs; the DNAT rule's place does not matter.
    for (table, chain, rule) in sandbox_rules(suffix, slot, published_port, agent_port) {
        let op: &[&str] = if chain == DNAT_CHAIN { &["-A", chain] } else { &["-I", chain, "1"] };
        iptables(table, op, &rule)?;
    }
    Ok(())
}

/// The per-sandbox rules outside its own chain, each as `(table, chain, match…)`:
/// written once here so that adding and deleting can never drift apart.
fn sandbox_rules(
    suffix: &str,
    slot: u32,
    published_port: u16,
    agent_port: u16,
) -> [(&'static str, &'static str, Vec<String>); 3] {
    let (_, host_link, _) = names(suffix);
    let sandbox_ip = slot_addrs(slot).1.to_string();
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    [
        ("filter", FORWARD_CHAIN, v(&["-i", &host_link, "-j", &sandbox_chain(suffix)])),
        (
            "nat",
            DNAT_CHAIN,
            v(&[
                "-p",
                "tcp",
                "--dport",
                &published_port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{sandbox_ip}:{agent_port}"),
            ]),
        ),
        (
            "filter",
            PUBLISH_CHAIN,
            v(&["-o", &host_link, "-d", &sandbox_ip, "-p", "tcp", "--dport", &agent_port.to_string(), "-j", "ACCEPT"]),
        ),
    ]
}

fn iptables(table: &str, op: &[&str], rule: &[String]) -> Result<()> {
    let mut args = vec!["-w", "-t", table];
    args.extend_from_slice(op);
    args.extend(rule.iter().map(String::as_str));
    run("iptables", &args).map(drop)
}

fn create_link(suffix: &str, slot: u32) -> Result<()> {
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

/// Removes the sandbox's rules, its namespace (which takes the veth pair with it) and
/// the host link if it was left behind. Best effort and idempotent.
pub(crate) fn destroy(suffix: &str, slot: u32, published_port: u16, agent_port: u16) {
    let (ns, host_link, _) = names(suffix);
    let chain = sandbox_chain(suffix);
    for (table, parent, rule) in sandbox_rules(suffix, slot, published_port, agent_port) {
        while iptables(table, &["-D", parent], &rule).is_ok() {}
    }
    run_quiet("iptables", &["-w", "-F", &chain]);
    run_quiet("iptables", &["-w", "-X", &chain]);
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
    fn an_egress_chain_accepts_replies_drops_the_blocked_then_applies_its_policy() {
        let rules = |egress| {
            egress_chain(vec![vec!["-d".into(), "169.254.0.0/16".into()]], &egress)
                .into_iter()
                .map(|r| r.join(" "))
                .collect::<Vec<_>>()
        };
        let head = ["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-d 169.254.0.0/16 -j DROP"];
        let list = Egress::AllowList(vec!["203.0.113.0/24".parse().expect("cidr")]);
        assert_eq!(rules(list), [&head[..], &["-d 203.0.113.0/24 -j ACCEPT", "-j DROP"]].concat());
        assert_eq!(rules(Egress::Allow), [&head[..], &["-j ACCEPT", "-j DROP"]].concat());
        assert_eq!(rules(Egress::Deny), [&head[..], &["-j DROP"]].concat());
    }

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
