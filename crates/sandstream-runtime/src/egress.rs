//! What a sandbox may send through the host: the rules of its own egress chain
//! (`SS-<suffix>` on the `oci` backend, `SSD-<suffix>` on `docker`), which both
//! backends write from [`egress_chain`], and the bound on the connection-tracking
//! entries it holds ([`DEFAULT_MAX_FLOWS`]).

use crate::private_nets::PrivateNets;
use crate::types::{Cidr, Egress};

/// Connection-tracking entries ("flows") one sandbox may hold open on the host, unless
/// the operator sets another bound (`OciConfig::max_flows_per_sandbox`,
/// `sandstream runner --max-flows-per-sandbox`).
///
/// 4,096 is far beyond what real work holds open (npm opens at most 15 connections per
/// registry, pip a few, a crawler as many as its concurrency) and small beside the
/// host's table (262,144 entries on a host with 4 GiB or more): one API key at its
/// default 50 sandboxes, each at its bound, holds 204,800 open flows and still leaves
/// the host room. See [`flow_bound`] for what it bounds and how.
pub const DEFAULT_MAX_FLOWS: u32 = 4096;

/// The largest bound: `hashlimit` refuses a larger burst.
pub const MAX_FLOWS_LIMIT: u32 = 1_000_000;

/// A sandbox's own egress chain, rule by rule (each the words after `-A CHAIN`): replies
/// accepted (ACCEPT, not RETURN: a RETURN would resume in the shared chain, at its final
/// DROP), then each of `drops` dropped (never reachable), then the flow bound (new flows
/// past it refused, see [`flow_bound`]), then what the operator opened of the private
/// networks and the host's resolvers, as far as the policy allows, then the private
/// networks dropped, then its policy, then DROP. Both backends write their chains from
/// this one definition; `chain` is the chain's name.
pub(crate) fn egress_chain(
    chain: &str,
    drops: Vec<Vec<String>>,
    max_flows: u32,
    egress: &Egress,
    private: &PrivateNets,
) -> Vec<Vec<String>> {
    let mut rules = vec![words(&["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])];
    for mut d in drops {
        d.extend(words(&["-j", "DROP"]));
        rules.push(d);
    }
    rules.extend(flow_bound(chain, max_flows));
    // What of `net` the policy lets through: all of it, none, or the allow-listed parts.
    let allowed_of = |net: Cidr| -> Vec<Cidr> {
        match egress {
            Egress::Allow => vec![net],
            Egress::Deny => vec![],
            Egress::AllowList(nets) => nets
                .iter()
                .filter_map(|n| if net.contains(n) { Some(*n) } else { n.contains(&net).then_some(net) })
                .collect(),
        }
    };
    for opened in &private.opened {
        for net in allowed_of(*opened) {
            rules.push(words(&["-d", &net.to_string(), "-j", "ACCEPT"]));
        }
    }
    for resolver in &private.resolvers {
        let host = Cidr { addr: *resolver, prefix: 32 };
        if !allowed_of(host).is_empty() {
            for proto in ["udp", "tcp"] {
                rules.push(words(&["-d", &host.to_string(), "-p", proto, "--dport", "53", "-j", "ACCEPT"]));
            }
        }
    }
    for closed in &private.closed {
        rules.push(words(&["-d", &closed.to_string(), "-j", "DROP"]));
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

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// **A sandbox holds a bounded share of the host's connection-tracking table.** Every
/// flow a sandbox opens through the host takes an entry in the host's conntrack table
/// (its NAT needs one), which all sandboxes and the host itself share; once it is full
/// the kernel drops the first packets of new connections host-wide ("nf_conntrack: table
/// full, dropping packet"). Unbounded, one sandbox sending 10,000 UDP datagrams to
/// distinct ports added 9,995 entries in 0.13 s. Two rules, which only the first packet
/// of a flow reaches (its replies and later packets are accepted above them), refuse
/// what is past `max` (clamped to 1..=[`MAX_FLOWS_LIMIT`]):
///
/// - `hashlimit`, first: the flows it opens, of every protocol: `max` at once, then
///   `max / 4` a minute. `connlimit` does not count a TCP connection that has closed,
///   yet its entry stays two minutes (TIME_WAIT): a sandbox connecting and closing as
///   fast as it can (5,800 a second from one Python process, measured) would fill the
///   table with those. It also turns a flood away cheaply: `connlimit`'s count walks the
///   sandbox's open flows (a flow it refused cost three times the kernel time of an
///   accepted one with 4,096 open, measured).
/// - `connlimit`: the flows it has open, counted by its address as conntrack records it
///   (before NAT): at most `max`. This one bounds long-lived flows.
///
/// Together: at most `max` open, plus at most `1.5 × max` opened in the last two
/// minutes, so at most `2.5 × max` entries whatever the sandbox does. The refusal is an
/// ICMP "administratively prohibited", so a connect fails at once with EHOSTUNREACH
/// instead of hanging (the kernel rate-limits these messages: in a flood most refusals
/// are silent drops). A refused first packet never gets an entry: an entry is kept only
/// once its first packet has passed every filter.
///
/// Flows opened *to* the sandbox (the host or an outsider connecting to its published
/// agent port) are not counted: what the sandbox sends in them are replies, accepted
/// above, so nobody outside can spend a sandbox's budget and cut it off. Flows *to the
/// host itself* never get an entry: INPUT accepts none from a sandbox.
fn flow_bound(chain: &str, max: u32) -> [Vec<String>; 2] {
    let max = max.clamp(1, MAX_FLOWS_LIMIT);
    let per_minute = max.div_ceil(4);
    // A drained bucket refills in `max / per_minute` minutes (at most 4): its table must
    // remember it that long, or a sandbox idle for a while would get a full burst early.
    let refill_ms = (u64::from(max) * 60_000).div_ceil(u64::from(per_minute));
    let reject = ["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"];
    let (max, per_minute, refill_ms) = (max.to_string(), format!("{per_minute}/minute"), refill_ms.to_string());
    let rate = ["-m", "hashlimit", "--hashlimit-above", &per_minute, "--hashlimit-burst", &max];
    // Its table is named after the sandbox's chain, so no two sandboxes share one.
    let rate = [&rate[..], &["--hashlimit-htable-expire", &refill_ms, "--hashlimit-name", chain], &reject].concat();
    let open =
        [&["-m", "connlimit", "--connlimit-above", &max, "--connlimit-mask", "32", "--connlimit-saddr"], &reject[..]]
            .concat();
    [words(&rate), words(&open)]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const BOUND: [&str; 2] = [
        "-m hashlimit --hashlimit-above 16/minute --hashlimit-burst 64 --hashlimit-htable-expire 240000 \
         --hashlimit-name SS-0123456789 -j REJECT --reject-with icmp-admin-prohibited",
        "-m connlimit --connlimit-above 64 --connlimit-mask 32 --connlimit-saddr \
         -j REJECT --reject-with icmp-admin-prohibited",
    ];

    #[test]
    fn an_egress_chain_accepts_replies_drops_the_blocked_bounds_flows_then_applies_its_policy() {
        let rules = |egress| {
            let drops = vec![vec!["-d".into(), "169.254.0.0/16".into()]];
            egress_chain("SS-0123456789", drops, 64, &egress, &PrivateNets::default())
                .into_iter()
                .map(|r| r.join(" "))
                .collect::<Vec<_>>()
        };
        let head =
            ["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-d 169.254.0.0/16 -j DROP", BOUND[0], BOUND[1]];
        let list = Egress::AllowList(vec!["203.0.113.0/24".parse().expect("cidr")]);
        assert_eq!(rules(list), [&head[..], &["-d 203.0.113.0/24 -j ACCEPT", "-j DROP"]].concat());
        assert_eq!(rules(Egress::Allow), [&head[..], &["-j ACCEPT", "-j DROP"]].concat());
        assert_eq!(rules(Egress::Deny), [&head[..], &["-j DROP"]].concat());
    }

    #[test]
    fn the_flow_bound_is_clamped_and_its_rate_table_outlives_a_refill() {
        let bound = |max| flow_bound("SSD-0123456789", max).map(|r| r.join(" "));
        let [rate, open] = bound(DEFAULT_MAX_FLOWS);
        assert!(rate.contains("--hashlimit-above 1024/minute --hashlimit-burst 4096 --hashlimit-htable-expire 240000"));
        assert!(rate.contains("--hashlimit-name SSD-0123456789"), "{rate}");
        assert!(open.contains("--connlimit-above 4096 "), "{open}");
        let [rate, open] = bound(0);
        assert!(rate.contains("--hashlimit-above 1/minute --hashlimit-burst 1 --hashlimit-htable-expire 60000"));
        assert!(open.contains("--connlimit-above 1 "), "{open}");
        let [rate, _] = bound(5);
        assert!(rate.contains("--hashlimit-above 2/minute --hashlimit-burst 5 --hashlimit-htable-expire 150000"));
        let [rate, open] = bound(u32::MAX);
        assert!(rate.contains("--hashlimit-burst 1000000 "), "{rate}");
        assert!(open.contains("--connlimit-above 1000000 "), "{open}");
    }

    #[test]
    fn private_networks_are_dropped_unless_opened_and_openings_follow_the_policy() {
        let cidr = |s: &str| s.parse::<Cidr>().expect("cidr");
        let private = PrivateNets {
            closed: vec![cidr("10.0.0.0/8"), cidr("192.0.2.0/24")],
            opened: vec![cidr("10.1.0.0/16")],
            resolvers: vec![Ipv4Addr::new(10, 255, 255, 53)],
        };
        let rules = |egress| {
            egress_chain("SS-0123456789", vec![], 64, &egress, &private)
                .into_iter()
                .skip(3)
                .map(|r| r.join(" "))
                .collect::<Vec<_>>()
        };
        let closed = ["-d 10.0.0.0/8 -j DROP", "-d 192.0.2.0/24 -j DROP"];
        let dns =
            ["-d 10.255.255.53/32 -p udp --dport 53 -j ACCEPT", "-d 10.255.255.53/32 -p tcp --dport 53 -j ACCEPT"];
        assert_eq!(
            rules(Egress::Allow),
            [&["-d 10.1.0.0/16 -j ACCEPT"][..], &dns, &closed, &["-j ACCEPT", "-j DROP"]].concat()
        );
        assert_eq!(rules(Egress::Deny), [&closed[..], &["-j DROP"]].concat());
        // An allow-list opens only its own part of an opening, and a private network
        // it names stays closed unless the operator opened it.
        let list = Egress::AllowList(vec![cidr("10.1.2.0/24"), cidr("10.2.0.0/16"), cidr("203.0.113.0/24")]);
        assert_eq!(
            rules(list),
            [
                &["-d 10.1.2.0/24 -j ACCEPT"][..],
                &closed,
                &["-d 10.1.2.0/24 -j ACCEPT", "-d 10.2.0.0/16 -j ACCEPT"],
                &["-d 203.0.113.0/24 -j ACCEPT", "-j DROP"]
            ]
            .concat()
        );
    }
}
