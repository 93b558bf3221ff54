//! The `oci` backend's isolation checks, run as the sandbox user (through the agent, as
//! every command runs by default) and again as root inside (issue 21: `asroot` in the
//! test template, keeping the agent's privileges): what holds for `user` must hold
//! for root inside too, except what root inside owns by design (the template's files,
//! the agent's token, which it reads to serve).

use std::net::Ipv4Addr;

use sandstream_runtime::Sandbox;

use super::netns::{assert_no_ipv6_path_to_the_host, host_address, host_listeners};
use super::{Out, exec_with_token};

/// Who runs a check's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The sandbox user, through the agent.
    User,
    /// Root inside (`support::userns::as_root`).
    Root,
}

impl Who {
    pub async fn run(self, sb: &Sandbox, command: &str) -> Out {
        match self {
            Who::User => exec_with_token(sb.agent_addr, &sb.token, command, 30_000).await.expect("execute in sandbox"),
            Who::Root => super::userns::as_root(sb, command).await,
        }
    }
}

/// Nothing of the host is seen or touched from `sb` by `who`: the checkout, a host
/// process, /proc/sys, kernel memory, the agent binary, mounts, kernel modules; no host
/// service on any host address, no other sandbox (`other`, directly or through its
/// published port), no IPv6 path. As `user`, neither the template's shadow file nor the
/// token, and no chown to root. Positive controls: the host reaches its own listener
/// and the other sandbox answers.
pub async fn cannot_see_or_touch_the_host(sb: &Sandbox, other: &Sandbox, who: Who) {
    let checkout = env!("CARGO_MANIFEST_DIR");
    let host_pid = std::process::id();
    let mut checks = vec![
        (format!("ls {checkout}"), "the project's checkout"),
        ("echo x > /.sandstream/agent".to_string(), "overwriting the agent"),
        ("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m".to_string(), "mounting"),
        (format!("cat /proc/{host_pid}/cmdline"), "a host process"),
        ("echo 1 > /proc/sys/kernel/sysrq".to_string(), "writing /proc/sys"),
        ("[ \"$(head -c 16 /proc/kcore | wc -c)\" -gt 0 ]".to_string(), "reading kernel memory"),
    ];
    if who == Who::User {
        // Root inside owns the template's files and reads the token it serves with.
        checks.push(("cat /etc/shadow".to_string(), "the shadow file"));
        checks.push(("cat /.sandstream/token".to_string(), "the agent's token"));
        checks.push(("chown 0 /home/user".to_string(), "chown to root"));
    }
    for (cmd, what) in &checks {
        let out = who.run(sb, &format!("{cmd} 2>&1; echo \"rc=$?\"")).await;
        assert!(!out.stdout.ends_with("rc=0\n"), "{who:?}: {what} should fail: {cmd} -> {out:?}");
        if who == Who::User {
            assert!(!out.stdout.contains("TEMPLATE-SECRET"), "read the shadow file: {out:?}");
        }
    }
    // Loading a kernel module is refused by the kernel (no CAP_SYS_MODULE, seccomp),
    // not merely failing on a bad file.
    let out = who.run(sb, "head -c 4096 /dev/zero > /tmp/x.ko; insmod /tmp/x.ko 2>&1; echo \"rc=$?\"").await;
    assert!(!out.stdout.ends_with("rc=0\n"), "{who:?}: insmod: {out:?}");
    assert!(out.stdout.contains("not permitted"), "{who:?}: insmod must fail with EPERM: {out:?}");
    let cmdline = who.run(sb, "ls /proc | grep -c '^[0-9]'").await;
    let visible: u32 = cmdline.stdout.trim().parse().expect("count");
    assert!(visible < 10, "{who:?} sees {visible} processes; its pid namespace should hold only its own");

    // Host services on loopback, on the host's own address and on every address, and
    // the host's side of the sandbox's link; another sandbox, directly and through its
    // published port.
    let host_ip = host_address();
    let listeners = host_listeners();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    let std::net::IpAddr::V4(ip) = sb.agent_addr.ip() else { panic!("v4") };
    let host_side = Ipv4Addr::from(u32::from(ip) - 1);
    let probes = [
        format!("nc -w 2 127.0.0.1 {}", port(0)),
        format!("nc -w 2 {host_side} {}", port(0)),
        format!("nc -w 2 {host_ip} {}", port(1)),
        format!("nc -w 2 {host_ip} {}", port(2)),
        format!("nc -w 2 {host_side} {}", port(2)),
        format!("nc -w 2 127.0.0.1 {}", port(2)),
        format!("nc -w 2 {} 50052", other.agent_addr.ip()),
        format!("nc -w 2 {host_ip} {}", other.published_port),
        format!("nc -w 2 {host_side} {}", other.published_port),
    ];
    for probe in &probes {
        let out = who.run(sb, &format!("echo probe | {probe}; echo \"rc=$?\"")).await;
        assert!(out.stdout.ends_with("rc=1\n"), "{who:?}: {probe} should fail: {out:?}");
    }
    for l in &listeners {
        assert!(l.accept().is_err(), "a host listener accepted a connection from {who:?}");
    }
    // Positive control: the host itself reaches its listener and the other agent.
    assert!(std::net::TcpStream::connect((host_ip, port(1))).is_ok());
    let out = exec_with_token(other.agent_addr, &other.token, "echo ok", 30_000).await.expect("other");
    assert_eq!(out.stdout, "ok\n");
    if who == Who::User {
        assert_no_ipv6_path_to_the_host(sb).await;
    }
}

/// `who` in `sb` can neither create namespaces (a user namespace would open most of the
/// kernel's namespace code) nor join the agent's; threads and processes still start.
pub async fn cannot_create_or_join_namespaces(sb: &Sandbox, who: Who) {
    for (cmd, what) in [
        ("unshare -U -r id", "a user namespace"),
        ("unshare -n true", "a network namespace"),
        ("unshare -m true", "a mount namespace"),
        ("unshare -p -f true", "a pid namespace"),
        ("nsenter -t 1 -n true", "joining the agent's namespaces"),
    ] {
        let out = who.run(sb, &format!("{cmd} 2>&1; echo \"rc=$?\"")).await;
        assert!(!out.stdout.ends_with("rc=0\n"), "{who:?}: {what} must be refused: {cmd} -> {out:?}");
    }
    // Threads and processes still start (glibc falls back from clone3 to clone).
    let out = who.run(sb, "sh -c 'echo child' & wait; (echo sub)").await;
    assert_eq!(out.stdout, "child\nsub\n", "{who:?}: {out:?}");
}
