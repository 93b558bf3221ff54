//! Just enough rtnetlink to join a sandbox's network namespace to the host in-process:
//! a veth pair, IPv4 addresses, links up, a default route. Every create needs these,
//! and two `ip -batch` processes cost more than the work they do (about 1.2 ms of
//! start-up each, on 2 cores shared with the OCI runtime starting the container).
//!
//! A netlink socket acts in the network namespace it was opened in, so
//! [`Netlink::open_in`] opens one from a short-lived thread that has joined the
//! sandbox's namespace. Each request asks for an acknowledgement and waits for it, so
//! an error comes back as the kernel's errno for that very request.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, socket,
};

// From <linux/netlink.h> and <linux/rtnetlink.h>.
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 0x1;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
/// `lo` has this index in every network namespace.
pub(crate) const LOOPBACK_INDEX: u32 = 1;

/// A message body: a fixed header followed by attributes, each 4-byte aligned.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn ifinfomsg(index: u32, flags: u32, change: u32) -> Self {
        let mut b = Body::default();
        b.put_ifinfomsg(index, flags, change);
        b
    }

    /// `RTM_NEWLINK`'s body for a veth pair, as `ip link add NAME type veth peer name
    /// PEER netns FD` sends it.
    fn veth(name: &str, peer_name: &str, peer_netns_fd: u32) -> Self {
        let mut body = Body::ifinfomsg(0, 0, 0);
        body.name(IFLA_IFNAME, name).nested(IFLA_LINKINFO, |info| {
            info.name(IFLA_INFO_KIND, "veth").nested(IFLA_INFO_DATA, |data| {
                data.nested(VETH_INFO_PEER, |peer| {
                    peer.put_ifinfomsg(0, 0, 0);
                    peer.name(IFLA_IFNAME, peer_name).attr(IFLA_NET_NS_FD, &peer_netns_fd.to_ne_bytes());
                });
            });
        });
        body
    }

    fn put_ifinfomsg(&mut self, index: u32, flags: u32, change: u32) {
        self.0.extend([AF_UNSPEC, 0, 0, 0]);
        self.0.extend(index.to_ne_bytes());
        self.0.extend(flags.to_ne_bytes());
        self.0.extend(change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).expect("netlink attributes are small");
        self.0.extend(len.to_ne_bytes());
        self.0.extend(kind.to_ne_bytes());
        self.0.extend(payload);
        self.align();
        self
    }

    /// An attribute holding whatever `fill` writes after its header.
    fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Body)) -> &mut Self {
        let start = self.0.len();
        self.0.extend([0, 0]);
        self.0.extend(kind.to_ne_bytes());
        fill(self);
        let len = u16::try_from(self.0.len() - start).expect("netlink attributes are small");
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.align();
        self
    }

    /// A C string attribute (interface names, link kinds).
    fn name(&mut self, kind: u16, name: &str) -> &mut Self {
        let mut s = name.as_bytes().to_vec();
        s.push(0);
        self.attr(kind, &s)
    }

    fn align(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// A `NETLINK_ROUTE` socket bound to the network namespace it was opened in.
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// Replies are read into this, kept from one request to the next.
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink { fd, seq: 0, buf: vec![0; 16 * 1024] })
    }

    /// A socket in the network namespace `netns` (an open `/proc/…/ns/net` or `ip netns`
    /// file), opened from a thread that joins it and then ends.
    pub(crate) fn open_in(netns: &std::fs::File) -> io::Result<Self> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                Self::open()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A veth pair: `name` here, down, and its peer `peer_name` in the namespace
    /// `peer_netns`, down.
    pub(crate) fn add_veth(&mut self, name: &str, peer_name: &str, peer_netns: &std::fs::File) -> io::Result<()> {
        let netns_fd = u32::try_from(peer_netns.as_raw_fd()).map_err(|_| io::Error::from(nix::errno::Errno::EBADF))?;
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &Body::veth(name, peer_name, netns_fd).0).map(drop)
    }

    /// Removes the link `name` (a veth takes its peer with it).
    pub(crate) fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut body = Body::ifinfomsg(0, 0, 0);
        body.name(IFLA_IFNAME, name);
        self.request(RTM_DELLINK, 0, &body.0).map(drop)
    }

    /// The index of the link `name`.
    pub(crate) fn index(&mut self, name: &str) -> io::Result<u32> {
        let mut body = Body::ifinfomsg(0, 0, 0);
        body.name(IFLA_IFNAME, name);
        let reply = self.request(RTM_GETLINK, 0, &body.0)?;
        // The reply is an RTM_NEWLINK whose ifinfomsg has the index at bytes 4..8.
        reply
            .filter(|(kind, _)| *kind == RTM_NEWLINK)
            .and_then(|(_, payload)| Some(u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?)))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no link message for {name}")))
    }

    pub(crate) fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(RTM_NEWLINK, 0, &Body::ifinfomsg(index, IFF_UP, IFF_UP).0).map(drop)
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`.
    pub(crate) fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut body = Body(vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE]);
        body.0.extend(index.to_ne_bytes());
        body.attr(IFA_LOCAL, &addr.octets()).attr(IFA_ADDRESS, &addr.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body.0).map(drop)
    }

    /// `ip route add default via GATEWAY`.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut body =
            Body(vec![AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0, 0, 0, 0]);
        body.attr(RTA_GATEWAY, &gateway.octets());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &body.0).map(drop)
    }

    /// Sends one request and reads until its acknowledgement. Returns the reply message
    /// that came before the acknowledgement, if any, as (type, payload).
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Option<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let len = u32::try_from(16 + body.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend(len.to_ne_bytes());
        msg.extend(kind.to_ne_bytes());
        msg.extend((flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend(self.seq.to_ne_bytes());
        msg.extend(0u32.to_ne_bytes());
        msg.extend(body);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut reply = None;
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
            let mut at = &self.buf[..n];
            while at.len() >= 16 {
                let word = |i: usize| u32::from_ne_bytes([at[i], at[i + 1], at[i + 2], at[i + 3]]);
                let msg_len = word(0) as usize;
                if msg_len < 16 || msg_len > at.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
                }
                let msg_kind = u16::from_ne_bytes([at[4], at[5]]);
                let payload = &at[16..msg_len];
                if word(8) == self.seq {
                    if msg_kind == NLMSG_ERROR {
                        let errno = payload
                            .get(..4)
                            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short netlink error"))?;
                        return if errno == 0 { Ok(reply) } else { Err(io::Error::from_raw_os_error(-errno)) };
                    }
                    reply = Some((msg_kind, payload.to_vec()));
                }
                at = at.get((msg_len + 3) & !3..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_veth_request_nests_its_peer_as_ip_link_add_does() {
        let body = Body::veth("vs01", "eth0", 7);
        let b = &body.0;
        let attr = |at: usize| (u16::from_ne_bytes([b[at], b[at + 1]]), u16::from_ne_bytes([b[at + 2], b[at + 3]]));
        assert_eq!(b.len() % 4, 0);
        // ifinfomsg (16), then IFLA_IFNAME "vs01\0" (4 + 5, padded to 12).
        assert_eq!(attr(16), (9, IFLA_IFNAME));
        assert_eq!(&b[20..25], b"vs01\0");
        // IFLA_LINKINFO spans the rest of the message.
        assert_eq!(attr(28), (u16::try_from(b.len() - 28).expect("small"), IFLA_LINKINFO));
        assert_eq!(attr(32), (9, IFLA_INFO_KIND));
        assert_eq!(&b[36..41], b"veth\0");
        assert_eq!(attr(44), (u16::try_from(b.len() - 44).expect("small"), IFLA_INFO_DATA));
        assert_eq!(attr(48), (u16::try_from(b.len() - 48).expect("small"), VETH_INFO_PEER));
        // The peer's own ifinfomsg, then its name and namespace.
        assert_eq!(attr(68), (9, IFLA_IFNAME));
        assert_eq!(&b[72..77], b"eth0\0");
        assert_eq!(attr(80), (8, IFLA_NET_NS_FD));
        assert_eq!(&b[84..88], &7u32.to_ne_bytes());
        assert_eq!(b.len(), 88);
    }
}
