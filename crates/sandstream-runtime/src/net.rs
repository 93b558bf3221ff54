//! Per-sandbox networking: a network namespace joined to the host by a veth pair with
//! a /30 of 10.88.0.0/16, and host firewall rules for those links.
//!
//! **A sandbox reaches nothing on the host**: packets arriving on a sandbox link are
//! dropped by the INPUT chain unless they belong to a connection the host opened (the
//! host connecting to the agent). Packets it sends elsewhere go through its own chain
//! `SS-<suffix>`: replies pass, link-local (169.254.0.0/16: cloud metadata), loopback and
//! every sandbox's network are dropped, then new flows past its bound are refused (the
//! host's connection-tracking table is shared: see `egress.rs`), then its egress policy
//! decides, then DROP. Allowed traffic is masqueraded behind the host. The sandbox's published ports
//! (the agent's gRPC port and its SSH port) are each reached through a host port with DNAT. The firewall is IPv4 only, so **the host end of every sandbox
//! link has IPv6 disabled** (see [`disable_ipv6`]).
//!
//! Every create and kill pays for this, so it is done in few processes: the namespace
//! and the link in-process (the link over netlink), the rules with one
//! `iptables-restore` (one transaction per table) instead of a dozen `iptables` runs.

use std::net::Ipv4Addr;

use crate::egress::egress_chain;
use crate::error::{Error, Result};
use crate::host::{run, run_quiet, run_quiet_with_input, run_with_input};
use crate::netlink::{LOOPBACK_INDEX, Netlink};
use crate::netns::{HOST_LINK_PREFIX, MAX_SLOT, names, remove_namespace};
pub(crate) use crate::netns::{claim_slot, create_namespace, netns_path, release_slot};
pub(crate) use crate::private_nets::PrivateNets;
use crate::types::Egress;

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

/// The addresses of one slot: (host side, sandbox side).
pub(crate) fn slot_addrs(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, 88, 0, 0)) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Installs the host firewall chains (idempotent and safe to run concurrently: rules
/// are only ever added when missing, never flushed).
pub(crate) fn ensure_firewall() -> Result<()> {
    // Check-then-add is not atomic: runtimes in other processes take turns.
    std::fs::create_dir_all("/run/sandstream").map_err(|e| Error::io("create /run/sandstream", e))?;
    let _lock = crate::lockfile::lock_exclusive(std::path::Path::new("/run/sandstream/firewall.lock"))?;
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

/// Joins the namespace made by [`create_namespace`] to the host (the veth pair, its
/// addresses and routes) and installs the sandbox's firewall rules, its flows bounded by
/// `max_flows` ([`crate::egress::DEFAULT_MAX_FLOWS`]). On error, the caller undoes
/// everything with [`destroy`].
pub(crate) fn connect(
    suffix: &str,
    slot: u32,
    egress: &Egress,
    private: &PrivateNets,
    max_flows: u32,
    ports: &[Published],
) -> Result<()> {
    let started = std::time::Instant::now();
    create_link(suffix, slot)?;
    let linked = started.elapsed();
    let input = add_rules_input(suffix, slot, egress, private, max_flows, ports)?;
    run_with_input("iptables-restore", &["-w", "--noflush"], Some(&input))?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        netns = %names(suffix).0,
        link_ms = ms(linked),
        rules_ms = ms(started.elapsed() - linked),
        "sandbox network timings"
    );
    Ok(())
}

fn sandbox_chain(suffix: &str) -> String {
    format!("SS-{suffix}")
}

/// One line of `iptables-restore` input. Every word comes from this module or a parsed
/// [`crate::Cidr`]; one with a space, quote or comment sign would change the line's
/// meaning, so it is refused rather than written.
fn restore_line<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let words: Vec<&str> = words.into_iter().collect();
    if let Some(bad) =
        words.iter().find(|w| w.is_empty() || w.contains(|c: char| c.is_whitespace() || "\"'#".contains(c)))
    {
        return Err(Error::InvalidSpec(format!("firewall rule word {bad:?} cannot be written to iptables-restore")));
    }
    Ok(words.join(" ") + "\n")
}

/// The `iptables-restore --noflush` input that adds a sandbox's rules: its own chain
/// and the jumps and published port in the shared chains. Each table's part is
/// committed at once, so the chain and the jump to it appear together, and one process
/// replaces a dozen `iptables` runs (each takes several ms and the xtables lock).
fn add_rules_input(
    suffix: &str,
    slot: u32,
    egress: &Egress,
    private: &PrivateNets,
    max_flows: u32,
    ports: &[Published],
) -> Result<String> {
    let chain = sandbox_chain(suffix);
    let mut filter = format!(":{chain} - [0:0]\n");
    let drops = NEVER_REACHABLE.iter().chain([&SANDBOX_NET]).map(|net| vec!["-d".into(), net.to_string()]).collect();
    for rule in egress_chain(&chain, drops, max_flows, egress, private) {
        filter += &restore_line(["-A", chain.as_str()].into_iter().chain(rule.iter().map(String::as_str)))?;
    }
    let mut nat = String::new();
    // The jump into the sandbox's chain and its published port go first in their chains,
    // ahead of the final DROPs; the DNAT rule's place does not matter.
    for (table, parent, rule) in sandbox_rules(suffix, slot, ports) {
        let op: &[&str] = if parent == DNAT_CHAIN { &["-A", parent] } else { &["-I", parent, "1"] };
        let line = restore_line(op.iter().copied().chain(rule.iter().map(String::as_str)))?;
        if table == "nat" { nat += &line } else { filter += &line }
    }
    Ok(format!("*filter\n{filter}COMMIT\n*nat\n{nat}COMMIT\n"))
}

/// The inputs that remove what [`add_rules_input`] added: (filter, nat).
fn delete_rules_input(suffix: &str, slot: u32, ports: &[Published]) -> Result<(String, String)> {
    let chain = sandbox_chain(suffix);
    let (mut filter, mut nat) = (String::new(), String::new());
    for (table, parent, rule) in sandbox_rules(suffix, slot, ports) {
        let line = restore_line(["-D", parent].into_iter().chain(rule.iter().map(String::as_str)))?;
        if table == "nat" { nat += &line } else { filter += &line }
    }
    filter += &restore_line(["-F", chain.as_str()])?;
    filter += &restore_line(["-X", chain.as_str()])?;
    Ok((format!("*filter\n{filter}COMMIT\n"), format!("*nat\n{nat}COMMIT\n")))
}

/// One port of a sandbox reached from outside: connections to `host` on the host's
/// addresses go to `inside` in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub host: u16,
    pub inside: u16,
}

/// One firewall rule outside a sandbox's own chain: `(table, chain, match…)`.
type Rule = (&'static str, &'static str, Vec<String>);

/// The per-sandbox rules outside its own chain: the jump into it, then a DNAT and an
/// ACCEPT for each published port. Written once here so that adding and deleting can
/// never drift apart.
fn sandbox_rules(suffix: &str, slot: u32, ports: &[Published]) -> Vec<Rule> {
    let (_, host_link) = names(suffix);
    let sandbox_ip = slot_addrs(slot).1.to_string();
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut rules = vec![("filter", FORWARD_CHAIN, v(&["-i", &host_link, "-j", &sandbox_chain(suffix)]))];
    for p in ports {
        let (host, inside) = (p.host.to_string(), p.inside.to_string());
        // The comment names the sandbox: a stale rule can be told apart from the next
        // sandbox's identical one on the same slot and port.
        let dnat = v(&[
            "-p",
            "tcp",
            "--dport",
            &host,
            "-m",
            "comment",
            "--comment",
            &names(suffix).0,
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{sandbox_ip}:{inside}"),
        ]);
        rules.push(("nat", DNAT_CHAIN, dnat));
        let accept = v(&["-o", &host_link, "-d", &sandbox_ip, "-p", "tcp", "--dport", &inside, "-j", "ACCEPT"]);
        rules.push(("filter", PUBLISH_CHAIN, accept));
    }
    rules
}

/// `rule` without its `-m comment --comment TEXT`.
fn without_comment(rule: &[String]) -> Vec<String> {
    match rule.windows(3).position(|w| w[0] == "-m" && w[1] == "comment" && w[2] == "--comment") {
        Some(i) => rule[..i].iter().chain(rule.get(i + 4..).unwrap_or_default()).cloned().collect(),
        None => rule.to_vec(),
    }
}

fn iptables(table: &str, op: &[&str], rule: &[String]) -> Result<()> {
    let mut args = vec!["-w", "-t", table];
    args.extend_from_slice(op);
    args.extend(rule.iter().map(String::as_str));
    run("iptables", &args).map(drop)
}

/// The veth pair, made with its sandbox end already inside the namespace (moving a link
/// between namespaces afterwards costs ~25 ms of RCU grace periods here), addressed and
/// brought up over netlink from this process ([`crate::netlink`]). The host end comes
/// up only after its IPv6 is disabled.
fn create_link(suffix: &str, slot: u32) -> Result<()> {
    if slot == 0 || slot > MAX_SLOT {
        return Err(Error::NoAddress);
    }
    let (_, host_link) = names(suffix);
    let (host_ip, sandbox_ip) = slot_addrs(slot);
    let path = netns_path(suffix);
    let netns = std::fs::File::open(&path).map_err(|e| Error::io(format!("open {path}"), e))?;
    let step = |what: &'static str| {
        let host_link = &host_link;
        move |e: std::io::Error| Error::io(format!("{what} for {host_link}"), e)
    };
    let mut host = Netlink::open().map_err(step("open a netlink socket"))?;
    host.add_veth(&host_link, "eth0", &netns).map_err(step("create the veth pair"))?;
    disable_ipv6(&host_link)?;
    let index = host.index(&host_link).map_err(step("find the link"))?;
    host.add_address(index, host_ip, 30).map_err(step("address the host end"))?;
    host.set_up(index).map_err(step("bring up the host end"))?;
    let mut sandbox = Netlink::open_in(&netns).map_err(step("open a netlink socket in the sandbox's namespace"))?;
    let eth0 = sandbox.index("eth0").map_err(step("find eth0"))?;
    sandbox.add_address(eth0, sandbox_ip, 30).map_err(step("address eth0"))?;
    sandbox.set_up(LOOPBACK_INDEX).map_err(step("bring up lo"))?;
    sandbox.set_up(eth0).map_err(step("bring up eth0"))?;
    sandbox.add_default_route(host_ip).map_err(step("add the default route"))
}

/// **No IPv6 on the host end of a sandbox link.** The firewall is IPv4 only (iptables);
/// with IPv6 on, the host link gets a link-local address (fe80::…) on which every host
/// service listening on `[::]` answers the sandbox, past `SANDSTREAM-IN`. Disabled, the
/// host drops every IPv6 packet arriving on the link. Nothing in the sandbox runs
/// before `create` returns, so the moment between the link coming up and this does
/// not matter. Hosts booted without IPv6 have no such setting and no such hole.
fn disable_ipv6(host_link: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{host_link}/disable_ipv6");
    match std::fs::write(&path, "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !std::path::Path::new("/proc/sys/net/ipv6").exists() => {
            Ok(())
        }
        r => r.map_err(|e| Error::io(format!("write {path}"), e)),
    }
}

/// Removes the sandbox's rules, its namespace (which takes the veth pair with it) and
/// the host link if it was left behind. Best effort and idempotent.
pub(crate) fn destroy(suffix: &str, slot: u32, ports: &[Published]) {
    let (_, host_link) = names(suffix);
    let chain = sandbox_chain(suffix);
    let rules = sandbox_rules(suffix, slot, ports);
    // Each table's deletions are one transaction, and each such commit waits for an RCU
    // grace period (~15 ms here): both tables and the namespace go in parallel. When a
    // transaction fails (a create that stopped half-way left only part of the rules),
    // that table's rules are removed one by one.
    let inputs = delete_rules_input(suffix, slot, ports).ok();
    let by_one = |table: &str| {
        for (t, parent, rule) in &rules {
            if *t == table {
                while iptables(t, &["-D", parent], rule).is_ok() {}
            }
        }
        if table == "nat" {
            // Sandboxes made before the DNAT rule carried its comment: one may outlive
            // the runner that made it, and this runner adopts and later kills it.
            let (_, _, dnat) = &rules[1];
            let uncommented = without_comment(dnat);
            while iptables("nat", &["-D", DNAT_CHAIN], &uncommented).is_ok() {}
        }
        if table == "filter" {
            run_quiet("iptables", &["-w", "-F", &chain]);
            run_quiet("iptables", &["-w", "-X", &chain]);
        }
    };
    let remove = |table: &str, input: Option<&str>| {
        if !input.is_some_and(|i| run_quiet_with_input("iptables-restore", &["-w", "--noflush"], Some(i))) {
            by_one(table);
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| remove("nat", inputs.as_ref().map(|i| i.1.as_str())));
        s.spawn(|| remove_namespace(suffix));
        remove("filter", inputs.as_ref().map(|i| i.0.as_str()));
    });
    if std::path::Path::new(&format!("/sys/class/net/{host_link}")).exists()
        && let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link(&host_link))
    {
        tracing::debug!(error = %e, host_link, "could not delete the host link");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: [Published; 2] = [Published { host: 40001, inside: 50052 }, Published { host: 20001, inside: 2222 }];

    #[test]
    fn one_restore_adds_the_chain_with_its_jumps_and_deleting_mirrors_it() {
        let input =
            add_rules_input("0123456789", 1, &Egress::Deny, &PrivateNets::default(), 64, &PORTS).expect("input");
        let chain = "-A SS-0123456789";
        let expected = [
            "*filter",
            ":SS-0123456789 - [0:0]",
            &format!("{chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
            &format!("{chain} -d 169.254.0.0/16 -j DROP"),
            &format!("{chain} -d 127.0.0.0/8 -j DROP"),
            &format!("{chain} -d 10.88.0.0/16 -j DROP"),
            &format!(
                "{chain} -m hashlimit --hashlimit-above 16/minute --hashlimit-burst 64 \
                 --hashlimit-htable-expire 240000 --hashlimit-name SS-0123456789 \
                 -j REJECT --reject-with icmp-admin-prohibited"
            ),
            &format!(
                "{chain} -m connlimit --connlimit-above 64 --connlimit-mask 32 --connlimit-saddr \
                 -j REJECT --reject-with icmp-admin-prohibited"
            ),
            &format!("{chain} -j DROP"),
            // Ahead of the shared chains' final DROPs.
            "-I SANDSTREAM-FWD 1 -i vs0123456789 -j SS-0123456789",
            "-I SANDSTREAM-PUB 1 -o vs0123456789 -d 10.88.0.6 -p tcp --dport 50052 -j ACCEPT",
            "-I SANDSTREAM-PUB 1 -o vs0123456789 -d 10.88.0.6 -p tcp --dport 2222 -j ACCEPT",
            "COMMIT",
            "*nat",
            "-A SANDSTREAM-DNAT -p tcp --dport 40001 -m comment --comment sb-0123456789 -j DNAT --to-destination 10.88.0.6:50052",
            "-A SANDSTREAM-DNAT -p tcp --dport 20001 -m comment --comment sb-0123456789 -j DNAT --to-destination 10.88.0.6:2222",
            "COMMIT",
        ];
        assert_eq!(input.lines().collect::<Vec<_>>(), expected);
        let (filter, nat) = delete_rules_input("0123456789", 1, &PORTS).expect("input");
        assert_eq!(
            filter.lines().collect::<Vec<_>>(),
            [
                "*filter",
                "-D SANDSTREAM-FWD -i vs0123456789 -j SS-0123456789",
                "-D SANDSTREAM-PUB -o vs0123456789 -d 10.88.0.6 -p tcp --dport 50052 -j ACCEPT",
                "-D SANDSTREAM-PUB -o vs0123456789 -d 10.88.0.6 -p tcp --dport 2222 -j ACCEPT",
                "-F SS-0123456789",
                "-X SS-0123456789",
                "COMMIT",
            ]
        );
        assert_eq!(
            nat.lines().collect::<Vec<_>>(),
            [
                "*nat",
                "-D SANDSTREAM-DNAT -p tcp --dport 40001 -m comment --comment sb-0123456789 -j DNAT --to-destination 10.88.0.6:50052",
                "-D SANDSTREAM-DNAT -p tcp --dport 20001 -m comment --comment sb-0123456789 -j DNAT --to-destination 10.88.0.6:2222",
                "COMMIT"
            ]
        );
    }

    #[test]
    fn the_dnat_rule_names_its_sandbox_and_the_form_before_that_is_known() {
        let (_, chain, dnat) = sandbox_rules("0123456789", 1, &PORTS)[1].clone();
        assert_eq!(chain, DNAT_CHAIN);
        assert_eq!(without_comment(&dnat).join(" "), "-p tcp --dport 40001 -j DNAT --to-destination 10.88.0.6:50052",);
        let other = sandbox_rules("abcdef0123", 1, &PORTS)[1].2.clone();
        assert_ne!(dnat, other, "two sandboxes on one slot and port must not share a rule");
    }

    #[test]
    fn words_that_would_change_a_restore_line_are_refused() {
        assert_eq!(
            restore_line(["-d", "203.0.113.0/24", "-j", "ACCEPT"]).expect("plain"),
            "-d 203.0.113.0/24 -j ACCEPT\n"
        );
        for bad in ["10.0.0.0/8 -j ACCEPT", "a\nCOMMIT", "\"x\"", "x#", ""] {
            assert!(restore_line(["-d", bad]).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn slots_are_disjoint_slash_30s() {
        assert_eq!(slot_addrs(1), (Ipv4Addr::new(10, 88, 0, 5), Ipv4Addr::new(10, 88, 0, 6)));
        assert_eq!(slot_addrs(64), (Ipv4Addr::new(10, 88, 1, 1), Ipv4Addr::new(10, 88, 1, 2)));
        assert_eq!(slot_addrs(MAX_SLOT).1, Ipv4Addr::new(10, 88, 255, 254));
    }

    #[test]
    fn link_names_fit_the_kernel_limit() {
        let (ns, host) = names("0123456789");
        assert!(host.len() <= 15, "{host}");
        assert_eq!(ns, "sb-0123456789");
    }
}
