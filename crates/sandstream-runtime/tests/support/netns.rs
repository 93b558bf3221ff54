//! Test peers in network namespaces, and probes from inside a sandbox.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use sandstream_runtime::Sandbox;

use super::exec_with_token;

/// Another machine: a network namespace joined to the host by a veth pair in
/// 198.18.0.0/15 (RFC 2544's benchmarking range, never routed anywhere), so no test
/// packet can leave this machine.
pub struct TestHost {
    pub ns: String,
    host_link: String,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
    servers: Vec<std::process::Child>,
}

/// Host services a sandbox must not reach: non-blocking listeners on loopback, on the
/// host's own address ([`host_address`]) and on every address, in that order.
pub fn host_listeners() -> Vec<std::net::TcpListener> {
    ["127.0.0.1:0".to_string(), format!("{}:0", host_address()), "0.0.0.0:0".to_string()]
        .iter()
        .map(|a| {
            let l = std::net::TcpListener::bind(a).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .collect()
}

/// This host's address on its default route (not loopback, not a sandbox link).
pub fn host_address() -> Ipv4Addr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    s.connect("198.51.100.1:9").expect("a default route");
    match s.local_addr().expect("addr").ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("not IPv4: {other}"),
    }
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl TestHost {
    pub fn new() -> TestHost {
        let mut r = [0u8; 3];
        getrandom::fill(&mut r).expect("random bytes");
        let tag = format!("{:02x}{:02x}{:02x}", r[0], r[1], r[2]);
        let n = (u32::from(r[0]) << 8 | u32::from(r[1])) % 32000 + 1;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n * 4;
        let (host_ip, ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (ns, host_link, peer) = (format!("sst-{tag}"), format!("tt{tag}"), format!("tp{tag}"));
        sh(&["ip", "netns", "add", &ns]);
        let h = TestHost { ns: ns.clone(), host_link: host_link.clone(), host_ip, ip, servers: vec![] };
        sh(&["ip", "link", "add", &host_link, "type", "veth", "peer", "name", &peer]);
        sh(&["ip", "link", "set", &peer, "netns", &ns]);
        sh(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        sh(&["ip", "link", "set", &host_link, "up"]);
        sh(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/30"), "dev", &peer]);
        sh(&["ip", "-n", &ns, "link", "set", &peer, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &ns, "route", "add", "default", "via", &host_ip.to_string()]);
        h
    }

    /// An HTTP server answering "hello" on `addr:port` inside the namespace.
    pub fn serve(&mut self, addr: &str, port: u16) {
        let code = format!(
            "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  s.send_response(200); s.end_headers(); s.wfile.write(b'hello')\n def log_message(s,*a): pass\nh.HTTPServer(('{addr}', {port}), H).serve_forever()"
        );
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", &code])
            .spawn()
            .expect("http server");
        self.servers.push(child);
        for _ in 0..100 {
            let probe = std::process::Command::new("ip")
                .args(["netns", "exec", &self.ns, "python3", "-c"])
                .arg(format!("import socket; socket.create_connection(('{addr}', {port}), 1)"))
                .stderr(std::process::Stdio::null())
                .status()
                .expect("probe");
            if probe.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("test server on {addr}:{port} did not start");
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", &self.host_link]).output();
    }
}

/// The host's IPv6 addresses (`/proc/net/if_inet6`): address, interface index and name,
/// and whether it is link-local. Empty on a host without IPv6.
pub fn host_ipv6_addresses() -> Vec<(Ipv6Addr, u32, String, bool)> {
    let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") else { return Vec::new() };
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [addr, index, _, scope, _, name] = f[..] else { return None };
            let addr = Ipv6Addr::from(u128::from_str_radix(addr, 16).ok()?);
            let index = u32::from_str_radix(index, 16).ok()?;
            Some((addr, index, name.to_string(), scope == "20"))
        })
        .collect()
}

/// **No IPv6 path from the sandbox to the host.** The firewall is IPv4 only, so a host
/// service listening on every address (`[::]`, both families) must be unreachable at
/// each of the host's IPv6 addresses: its link-local ones through the sandbox's `eth0`
/// (a sandbox that had IPv6 on a link where the host has an address would reach it), and
/// the others directly. Positive control: the host reaches the listener at its own
/// address, so the probes would have been answered.
pub async fn assert_no_ipv6_path_to_the_host(sb: &Sandbox) {
    let addrs = host_ipv6_addresses();
    if addrs.is_empty() {
        return; // a host without IPv6 has no such path
    }
    let listener = std::net::TcpListener::bind("[::]:0").expect("bind [::]");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    // A link-local address if the host has one (loopback's otherwise).
    let (own, index, name, _) = addrs.iter().find(|a| a.3).unwrap_or(&addrs[0]);
    let control = std::net::TcpStream::connect(SocketAddrV6::new(*own, port, 0, *index));
    assert!(control.is_ok(), "the host cannot reach its own listener at {own}%{name}: {control:?}");
    assert!(listener.accept().is_ok(), "the positive control's connection was not accepted");
    for (addr, _, name, link_local) in &addrs {
        let target = if *link_local { format!("{addr}%eth0") } else { addr.to_string() };
        let out = shell_in(sb, &format!("echo probe | nc -w 2 {target} {port} 2>&1; echo \"rc=$?\"")).await;
        assert!(out.stdout.ends_with("rc=1\n"), "the host's {addr} (on {name}) answered: {out:?}");
    }
    assert!(listener.accept().is_err(), "the host's IPv6 listener accepted a connection from the sandbox");
}

/// Runs `command` in the sandbox (30 s at most) and returns what it printed.
async fn shell_in(sb: &Sandbox, command: &str) -> super::Out {
    exec_with_token(sb.agent_addr, &sb.token, command, 30_000).await.expect("execute in sandbox")
}

/// An HTTP GET from inside the sandbox; Ok(body) or Err(what the shell printed).
pub async fn fetch(sb: &Sandbox, ip: impl std::fmt::Display, port: u16) -> Result<String, String> {
    let out =
        shell_in(sb, &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port} 2>&1; echo \"rc=$?\"")).await;
    if out.stdout.contains("hello") { Ok(out.stdout) } else { Err(out.stdout) }
}

/// A gRPC `List` call with `token`, made by curl from inside `client` to `host:port`
/// (HTTP/2 with prior knowledge, an empty request message); returns the lowercased
/// response head and trailers, where `grpc-status` says how it went.
pub fn grpc_list_from(client: &TestHost, host: impl std::fmt::Display, port: u16, token: &str) -> String {
    let url = format!("http://{host}:{port}/sandstream.agent.v1.ExecService/List");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &client.ns, "curl", "-s", "-i", "--max-time", "5", "--http2-prior-knowledge"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["--data-binary", "@-", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&[0, 0, 0, 0, 0])?;
            c.wait_with_output()
        })
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}
