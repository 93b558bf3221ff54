//! The flow-bound checks: `flows.c` (built static into a busybox template) opens flows
//! from inside a sandbox; servers in a [`TestHost`] answer them; the host's
//! connection-tracking table is read to see what each sandbox holds.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::netns::TestHost;

/// Builds `flows.c` with `gcc -static` into `dir` and copies it to `template`'s
/// `/bin/flows`.
pub fn install(dir: &Path, template: &Path) -> PathBuf {
    super::install_static_c("flows", dir, template)
}

/// Entries in the host's connection-tracking table.
pub fn host_entries() -> usize {
    let count = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count").expect("conntrack count");
    count.trim().parse().expect("a number")
}

/// Entries in the host's connection-tracking table for flows `ip` opened (the original
/// direction's source), from /proc/net/nf_conntrack; `None` on a kernel without it.
pub fn entries_from(ip: Ipv4Addr) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").ok()?;
    let src = format!("src={ip}");
    Some(table.lines().filter(|l| l.split_whitespace().find(|w| w.starts_with("src=")) == Some(src.as_str())).count())
}

/// What a sandbox at `ip` holds: its own entries where the kernel lists them, else the
/// host's rise since `before` (which other processes' flows may add to).
pub fn held_by(ip: Ipv4Addr, before: usize) -> usize {
    entries_from(ip).unwrap_or_else(|| host_entries().saturating_sub(before))
}

/// The sandbox's own firewall chain (`SS-…` on oci, `SSD-…` on Docker) with its
/// counters, for messages.
pub fn chain(sb: &sandstream_runtime::Sandbox) -> String {
    let suffix = sb.id.trim_start_matches("sb-");
    ["SS", "SSD"]
        .iter()
        .filter_map(|prefix| {
            let chain = format!("{prefix}-{suffix}");
            let out = std::process::Command::new("iptables").args(["-w", "-vnL", &chain]).output();
            out.ok().filter(|o| o.status.success())
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect()
}

/// A server in a test namespace, killed when dropped (before its namespace goes).
pub struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_in(peer: &TestHost, code: &str) -> std::process::Child {
    std::process::Command::new("ip")
        .args(["netns", "exec", &peer.ns, "python3", "-c", code])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 in the test namespace")
}

/// Waits for the server's first line ("ready").
fn ready(mut child: std::process::Child) -> Server {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n", "the test server did not start");
    Server(child)
}

/// A UDP echo server on `port` of the peer's address.
pub fn udp_echo(peer: &TestHost, port: u16) -> Server {
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{}', {port}))\n\
         print('ready', flush=True)\nwhile True:\n d, a = s.recvfrom(64)\n s.sendto(d, a)",
        peer.ip
    );
    ready(python_in(peer, &code))
}

/// A TCP server on `port` of the peer's address that accepts every connection and closes
/// it at once, as fast as it can (a large backlog, so connects are not dropped).
pub fn accept_and_close(peer: &TestHost, port: u16) -> Server {
    let code = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', {port}))\ns.listen(4096)\nprint('ready', flush=True)\n\
         while True:\n c, _ = s.accept()\n c.close()",
        peer.ip
    );
    ready(python_in(peer, &code))
}

/// `count` TCP connections from the peer to `host:port`, held open until the returned
/// value is dropped (a tenant's neighbour, or anyone, connecting to a published port).
pub fn hold_connections(peer: &TestHost, host: Ipv4Addr, port: u16, count: usize) -> Server {
    let code = format!(
        "import socket, resource, sys\nresource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n}))\nheld = []\n\
         for _ in range({count}):\n c = socket.socket()\n c.settimeout(5)\n try:\n  c.connect(('{host}', {port}))\n  \
         held.append(c)\n except OSError:\n  pass\nprint('ready', flush=True)\nsys.stdin.read()",
        n = count + 64
    );
    ready(python_in(peer, &code))
}

/// Polls `ok` every second until it says yes or `limit` passes; how long it took.
pub async fn within<F, Fut>(limit: Duration, mut ok: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if ok().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}
