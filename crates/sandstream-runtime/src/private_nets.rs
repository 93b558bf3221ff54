//! The private networks sandboxes reach only where the operator opened them: RFC 1918's
//! ranges, carrier-grade NAT and the host's LAN, read from the host when a sandbox is
//! connected. `egress::egress_chain` turns them into rules for both backends.

use std::net::Ipv4Addr;

use crate::types::Cidr;

/// Closed to sandboxes of either backend unless the operator opens them
/// ([`PrivateNets`]): RFC 1918's private networks and the carrier-grade NAT range, where
/// a host's neighbours, its cloud's internal services and its operators' machines live.
const PRIVATE_RANGES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/// The networks a sandbox reaches only where the operator opened them: the
/// [`PRIVATE_RANGES`] and the host's LAN (the networks directly attached to the
/// interfaces the host's default routes leave by, whatever their addresses), minus the
/// operator's `opened` networks (`sandstream runner --allow-private-egress`). The host's
/// resolvers (its resolv.conf, which sandboxes use) stay reachable on port 53, or names
/// would not resolve where the resolver is private. Each opening and each resolver is
/// still subject to the sandbox's own egress policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrivateNets {
    pub(crate) closed: Vec<Cidr>,
    pub(crate) opened: Vec<Cidr>,
    pub(crate) resolvers: Vec<Ipv4Addr>,
}

impl PrivateNets {
    /// This host's, read now (its LAN and resolvers can change while a runtime runs).
    pub(crate) fn of_host(opened: &[Cidr]) -> PrivateNets {
        let mut closed: Vec<Cidr> = PRIVATE_RANGES.iter().filter_map(|c| c.parse().ok()).collect();
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let lan: Vec<Cidr> =
            lan_networks(&routes).into_iter().filter(|n| !closed.iter().any(|c| c.contains(n))).collect();
        closed.extend(lan);
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolvers = resolv
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
            .filter(|a| !a.is_loopback())
            .collect();
        PrivateNets { closed, opened: opened.to_vec(), resolvers }
    }
}

/// The networks directly attached (no gateway) to the interfaces that hold a default
/// route, from `/proc/net/route` text (addresses in the kernel's byte order, hex).
fn lan_networks(routes: &str) -> Vec<Cidr> {
    let rows: Vec<Vec<&str>> = routes.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    // The kernel prints each network-order address as a native integer.
    let ip = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|v| Ipv4Addr::from(v.to_ne_bytes()));
    let default_ifaces: Vec<&str> =
        rows.iter().filter(|r| r.len() > 7 && r[1] == "00000000" && r[7] == "00000000").map(|r| r[0]).collect();
    let mut nets = Vec::new();
    for r in rows.iter().filter(|r| r.len() > 7 && default_ifaces.contains(&r[0]) && r[1] != "00000000") {
        let (Some(addr), Some(gw), Some(mask)) = (ip(r[1]), ip(r[2]), ip(r[7])) else { continue };
        if !gw.is_unspecified() {
            continue;
        }
        let prefix = u32::from(mask).leading_ones() as u8;
        let net = Cidr { addr, prefix };
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    nets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lan_is_the_networks_on_the_default_routes_interfaces() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t0000A8C0\t010200C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            tt1\t001212C6\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0\n";
        assert_eq!(lan_networks(routes), vec!["192.0.2.0/24".parse::<Cidr>().expect("cidr")]);
    }
}
