//! The `docker` backend against a real Docker Engine, as root: a sandbox works, and
//! everything a hostile program inside might try fails. Needs root, a Docker Engine
//! answering on SANDSTREAM_DOCKER_SOCKET (default /var/run/docker.sock; scripts/docker.sh
//! starts one), iptables, iproute2, busybox-static, python3, curl and the static agent
//! (SANDSTREAM_STATIC_AGENT); the default-template test also needs the default template
//! (built on first use into SANDSTREAM_CACHE_DIR) and a way out to PyPI. Under CI a
//! missing prerequisite fails the test instead of skipping it.
//!
//! Every test holds the host-wide sandbox tests' lock shared (the same lock as the `oci`
//! tests'), the leak test exclusive, so that it counts host-wide things (containers,
//! images, mounts, cgroups, rules, processes) while no other sandbox comes or goes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;

use sandstream_runtime::{DockerRuntime, Egress, Error, Limits, Runtime, Sandbox, SandboxSpec};
use support::docker::{As, Guard, config, docker, fixture, fixture_with, prerequisites, socket};
use support::host_state::{assert_unchanged, minus, set_aside, settled, snapshot};
use support::lock::sandbox_tests_lock;
use support::netns::{
    TestHost, assert_no_ipv6_path_to_the_host, fetch, grpc_list_from, host_address, host_listeners, sh,
};
use support::{Out, busybox_template, exec_with_token, fork_bomb_beside};

async fn exec(sb: &Sandbox, command: &str) -> Out {
    exec_with_token(sb.agent_addr, &sb.token, command, 30_000).await.expect("execute in sandbox")
}

#[tokio::test]
async fn a_sandbox_runs_commands_as_an_unprivileged_user_behind_its_token() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let out = exec(&sb, "id -u; id -g; hostname; pwd; echo $GREETING; tr '\\0' ' ' < /proc/1/cmdline").await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..5], ["1000", "1000", "sandbox", "/home/user", "hi"], "{out:?}");
    assert!(lines[5].starts_with("/.sandstream/agent --listen 0.0.0.0:50052"), "PID 1 is the agent: {out:?}");
    let out = exec(&sb, "echo x > /tmp/f && stat -c %a /tmp && grep -c ' /tmp tmpfs ' /proc/mounts").await;
    assert_eq!(out.stdout, "1777\n1\n", "/tmp is a world-writable sticky tmpfs: {out:?}");

    let other = f.create(Limits::default());
    // Each sandbox's token opens its own agent and no other; a made-up one opens none.
    let err = exec_with_token(sb.agent_addr, &other.token, "true", 1000).await.expect_err("foreign token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = exec_with_token(sb.agent_addr, "wrong-token-wrong-token", "true", 1000).await.expect_err("wrong token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut ids = vec![sb.id.clone(), other.id.clone()];
    ids.sort();
    assert_eq!(f.runtime.list().expect("list"), ids);

    f.runtime.kill(&sb.id).expect("kill");
    // The address may still be in the host's neighbour cache, so a connection attempt
    // can hang in SYN retries rather than fail at once: bounded here.
    let after = tokio::time::timeout(Duration::from_secs(5), exec_with_token(sb.agent_addr, &sb.token, "true", 1000));
    assert!(!matches!(after.await, Ok(Ok(_))), "agent still answers after kill");
    assert_eq!(f.runtime.list().expect("list"), vec![other.id.clone()]);
    assert!(matches!(f.runtime.kill(&sb.id), Err(Error::NotFound(_))));
    f.runtime.kill(&other.id).expect("kill");
}

/// As the sandbox user and again as root inside (issue 21): the sandbox's own secrets
/// (the template's shadow file, the agent's token, its home's owner) are root's inside,
/// so those three checks are the user's alone.
#[tokio::test]
async fn the_sandbox_cannot_see_or_touch_the_host() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let checkout = env!("CARGO_MANIFEST_DIR");
    let host_pid = std::process::id();
    let checks = [
        (format!("ls {checkout}"), "the project's checkout", As::BOTH),
        ("ls /work/main".to_string(), "the project's checkout", As::BOTH),
        ("cat /etc/shadow".to_string(), "the shadow file", [As::User; 2]),
        ("cat /.sandstream/token".to_string(), "the agent's token", [As::User; 2]),
        ("echo x > /.sandstream/agent".to_string(), "overwriting the agent", As::BOTH),
        ("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m".to_string(), "mounting", As::BOTH),
        (format!("cat /proc/{host_pid}/cmdline"), "a host process", As::BOTH),
        ("echo 1 > /proc/sys/kernel/sysrq".to_string(), "writing /proc/sys", As::BOTH),
        ("[ \"$(head -c 16 /proc/kcore | wc -c)\" -gt 0 ]".to_string(), "reading kernel memory", As::BOTH),
        ("chown 0 /home/user".to_string(), "chown to root", [As::User; 2]),
    ];
    let host_shadow = std::fs::read_to_string("/etc/shadow").expect("host shadow");
    let root_line = host_shadow.lines().next().expect("a line");
    for who in As::BOTH {
        for (cmd, what, _) in checks.iter().filter(|c| c.2.contains(&who)) {
            let out = who.run(&sb, &format!("{cmd} 2>&1; echo \"rc=$?\"")).await;
            assert!(!out.stdout.ends_with("rc=0\n"), "{what} should fail as {who:?}: {cmd} -> {out:?}");
            if who == As::User {
                assert!(!out.stdout.contains("TEMPLATE-SECRET"), "read the shadow file: {out:?}");
            }
        }
        // The host's own shadow file is not the one the sandbox sees.
        let out = who.run(&sb, "cat /etc/passwd /etc/shadow 2>&1").await;
        assert!(!out.stdout.contains(root_line), "the host's /etc/shadow is visible as {who:?}: {out:?}");
        // Loading a kernel module is refused by the kernel (no CAP_SYS_MODULE, seccomp),
        // not merely failing on a bad file.
        let out = who.run(&sb, "head -c 4096 /dev/zero > /tmp/x.ko; insmod /tmp/x.ko 2>&1; echo \"rc=$?\"").await;
        assert!(!out.stdout.ends_with("rc=0\n"), "insmod as {who:?}: {out:?}");
        assert!(out.stdout.contains("not permitted"), "insmod must fail with EPERM as {who:?}: {out:?}");
        let visible = who.run(&sb, "ls /proc | grep -c '^[0-9]'").await;
        let visible: u32 = visible.stdout.trim().parse().expect("count");
        assert!(visible < 10, "the sandbox sees {visible} processes as {who:?}; its pid namespace holds its own");
    }
    // Positive control: root inside reads and owns the sandbox's own files.
    let out = As::Root.run(&sb, "cat /etc/shadow && chown 0 /home/user && stat -c %u /home/user").await;
    assert_eq!(out.stdout, "root:TEMPLATE-SECRET:19000:0:99999:7:::\n0\n", "{out:?}");
}

#[tokio::test]
async fn the_sandbox_reaches_no_host_service_and_no_other_sandbox() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let other = f.create(Limits::default());
    let host_ip = host_address();
    // A host service on loopback, one on the host's own address, one on every address.
    let listeners = host_listeners();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    let std::net::IpAddr::V4(sb_ip) = sb.agent_addr.ip() else { panic!("v4") };
    let gateway = Ipv4Addr::from(u32::from(sb_ip) & 0xffff_0000 | 1);
    let probes = [
        format!("nc -w 2 127.0.0.1 {}", port(0)),
        format!("nc -w 2 {host_ip} {}", port(1)),
        format!("nc -w 2 {host_ip} {}", port(2)),
        format!("nc -w 2 {gateway} {}", port(2)),
        format!("nc -w 2 {} 50052", other.agent_addr.ip()),
        format!("nc -w 2 {host_ip} {}", other.published_port),
        format!("nc -w 2 {gateway} {}", other.published_port),
    ];
    // As the sandbox user and again as root inside (issue 21).
    for (who, probe) in As::BOTH.iter().flat_map(|w| probes.iter().map(move |p| (w, p))) {
        let out = who.run(&sb, &format!("echo probe | {probe}; echo \"rc=$?\"")).await;
        assert!(out.stdout.ends_with("rc=1\n"), "{probe} should fail as {who:?}: {out:?}");
    }
    for l in &listeners {
        assert!(l.accept().is_err(), "a host listener accepted a connection from the sandbox");
    }
    // Positive control: the host itself reaches its listener and the other agent.
    assert!(std::net::TcpStream::connect((host_ip, port(1))).is_ok());
    assert_eq!(exec(&other, "echo ok").await.stdout, "ok\n");
    // The bridge has a link-local address on the host.
    assert_no_ipv6_path_to_the_host(&sb).await;
}

#[tokio::test]
async fn memory_and_process_limits_hold_and_the_sandbox_survives() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits { memory_bytes: 64 << 20, cpu_millis: 1000, pids: 48, ..Limits::default() });
    let bystander = f.create(Limits::default());
    // Out of memory, the kernel kills the user's processes before the agent (PID 1).
    assert_eq!(exec(&sb, "cat /proc/1/oom_score_adj /proc/self/oom_score_adj").await.stdout, "0\n500\n");
    let hog = exec(&sb, "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}").await;
    assert!(!hog.stdout.contains("survived"), "the memory hog was not stopped: {hog:?}");
    assert_eq!(hog.exit_code, 137, "a memory hog dies of SIGKILL from the OOM killer: {hog:?}");
    assert_eq!(exec(&sb, "echo alive").await.stdout, "alive\n", "the agent survives the OOM kill");

    // While the bomb runs, another sandbox answers and the host still starts processes.
    let bomb = fork_bomb_beside(&sb, &bystander).await;
    // It hits the pids limit, and ends at its timeout (124), or earlier when even its
    // final `sleep` cannot fork (the shell's 2).
    assert!(bomb.stderr.contains("can't fork"), "the pids limit stops the fork bomb: {bomb:?}");
    assert!([124, 2].contains(&bomb.exit_code), "the fork bomb ends: {bomb:?}");
    let limit = docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", &sb.id]);
    assert_eq!(limit.trim(), "48");
    // With cgroup v1 and the cgroupfs driver the limit is in the pids hierarchy.
    let full_id = docker(&["inspect", "-f", "{{.Id}}", &sb.id]);
    if let Ok(max) = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/docker/{}/pids.max", full_id.trim())) {
        assert_eq!(max.trim(), "48", "the pids cgroup holds the limit");
    }
    assert_eq!(exec(&sb, "echo alive").await.stdout, "alive\n", "the sandbox still works after the bomb");
}

#[tokio::test]
async fn running_tells_live_sandboxes_from_dead_ones() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    support::running_follows_the_agent(&f.runtime, &sb.id, || {
        docker(&["kill", &sb.id]);
    })
    .await;
}

#[tokio::test]
async fn bad_specs_are_refused_and_leave_nothing() {
    let Some(f) = fixture() else { return };
    let mut spec = f.spec(Limits { memory_bytes: 1 << 20, ..Limits::default() });
    let err = f.runtime.create(&spec).expect_err("tiny memory");
    assert_eq!(err.to_string(), "invalid sandbox spec: memory must be at least 16 MiB, got 1048576 bytes");
    spec.limits = Limits::default();
    spec.template = "/no/such/template".into();
    assert!(matches!(f.runtime.create(&spec), Err(Error::TemplateMissing(_))));
    assert!(f.runtime.list().expect("list").is_empty());
    assert!(matches!(f.runtime.kill("sb-0000000000"), Err(Error::NotFound(_))));
    assert!(matches!(f.runtime.kill("../../etc"), Err(Error::NotFound(_))));
    // Another runtime's sandbox is not this one's to list or kill.
    let agent: PathBuf = std::env::var_os("SANDSTREAM_STATIC_AGENT").expect("agent").into();
    let second = DockerRuntime::new(config(f.dir.path().join("state2"), agent)).expect("runtime");
    let sb = f.create(Limits::default());
    assert!(second.list().expect("list").is_empty());
    assert!(matches!(second.kill(&sb.id), Err(Error::NotFound(_))));
    assert!(second.recover().expect("recover").is_empty());
    assert_eq!(exec(&sb, "echo still").await.stdout, "still\n", "another runtime's recover left it alone");
}

/// Another machine for the test: a network namespace joined to this host by a veth pair,
/// addressed from 198.18.0.0/15 (RFC 2544's benchmarking range), gone on drop.
#[tokio::test]
async fn egress_follows_the_policy() {
    let Some(f) = fixture() else { return };
    let mut remote = TestHost::new();
    remote.serve(&remote.ip.to_string(), 8080);
    let allow = f.create_with(Egress::Allow, Limits::default());
    let deny = f.create_with(Egress::Deny, Limits::default());
    let listed =
        f.create_with(Egress::AllowList(vec![format!("{}/32", remote.ip).parse().expect("cidr")]), Limits::default());
    let elsewhere = f.create_with(Egress::AllowList(vec!["192.0.2.0/24".parse().expect("cidr")]), Limits::default());
    let r = fetch(&allow, remote.ip, 8080).await;
    assert!(r.is_ok(), "allow policy must reach the test host: {r:?}");
    let r = fetch(&listed, remote.ip, 8080).await;
    assert!(r.is_ok(), "an allow-listed network must be reachable: {r:?}");
    let r = fetch(&deny, remote.ip, 8080).await;
    assert!(r.is_err(), "deny policy reached the test host: {r:?}");
    let r = fetch(&elsewhere, remote.ip, 8080).await;
    assert!(r.is_err(), "a network off the allow-list was reached: {r:?}");
}

#[tokio::test]
async fn link_local_metadata_is_unreachable_even_when_routed() {
    let Some(f) = fixture() else { return };
    // A fake metadata service on 169.254.169.254 inside a test namespace. Only packets
    // from this one sandbox's address arriving on the bridge are routed there (policy
    // routing), so no packet for that address can leave the machine.
    let mut meta = TestHost::new();
    sh(&["ip", "-n", &meta.ns, "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    meta.serve("169.254.169.254", 80);
    let sb = f.create_with(Egress::Allow, Limits::default());
    let std::net::IpAddr::V4(sb_ip) = sb.agent_addr.ip() else { panic!("v4") };
    let bridge = config(PathBuf::new(), PathBuf::new()).bridge;
    let table = (u32::from(sb_ip) % 50_000 + 1000).to_string();
    let sb_ip = sb_ip.to_string();
    let rule = ["from", sb_ip.as_str(), "iif", &bridge, "to", "169.254.169.254", "lookup", &table];
    sh(&[&["ip", "rule", "add"][..], &rule[..]].concat());
    sh(&["ip", "route", "add", "169.254.169.254", "via", &meta.ip.to_string(), "table", &table]);
    // The host routes such a packet to the fake service.
    let route = sh(&["ip", "route", "get", "169.254.169.254", "from", &sb_ip, "iif", &bridge]);
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    // Positive control: with an explicit ACCEPT ahead of the sandbox rules, it works.
    let accept = ["DOCKER-USER", "-s", sb_ip.as_str(), "-d", "169.254.169.254", "-j", "ACCEPT"];
    sh(&[&["iptables", "-w", "-I"][..], &accept[..]].concat());
    let opened = fetch(&sb, "169.254.169.254", 80).await;
    sh(&[&["iptables", "-w", "-D"][..], &accept[..]].concat());
    let blocked = fetch(&sb, "169.254.169.254", 80).await;
    sh(&[&["ip", "rule", "del"][..], &rule[..]].concat());
    let _ = std::process::Command::new("ip").args(["route", "flush", "table", &table]).status();
    assert!(route.contains(&format!("via {}", meta.ip)), "the test route is in place: {route}");
    assert!(opened.is_ok(), "the control path to the fake metadata service must work: {opened:?}");
    assert!(blocked.is_err(), "the sandbox reached 169.254.169.254: {blocked:?}");
}

#[tokio::test]
async fn the_agent_is_published_on_a_host_port_for_other_machines() {
    let Some(f) = fixture() else { return };
    let client = TestHost::new();
    let sb = f.create(Limits::default());
    let call = |token: &str| grpc_list_from(&client, client.host_ip, sb.published_port, token);
    let ok = call(&sb.token);
    assert!(ok.contains("grpc-status: 0"), "a List call through the published port must succeed: {ok}");
    let refused = call("wrong-token-wrong-token");
    assert!(refused.contains("grpc-status: 16"), "a wrong token must be refused (UNAUTHENTICATED): {refused}");
}

#[tokio::test]
async fn user_code_cannot_create_or_join_namespaces() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    // As the sandbox user and again as root inside (issue 21).
    for who in As::BOTH {
        for (cmd, what) in [
            ("unshare -U -r id", "a user namespace"),
            ("unshare -n true", "a network namespace"),
            ("unshare -m true", "a mount namespace"),
            ("unshare -p -f true", "a pid namespace"),
            ("nsenter -t 1 -n true", "joining the agent's namespaces"),
        ] {
            let out = who.run(&sb, &format!("{cmd} 2>&1; echo \"rc=$?\"")).await;
            assert!(!out.stdout.ends_with("rc=0\n"), "{what} must be refused as {who:?}: {cmd} -> {out:?}");
        }
        let out = who.run(&sb, "sh -c 'echo child' & wait; (echo sub)").await;
        assert_eq!(out.stdout, "child\nsub\n");
    }
}

#[tokio::test]
async fn a_restarted_runtime_finds_running_sandboxes_and_removes_dead_ones() {
    let Some(f) = fixture() else { return };
    let state = f.dir.path().join("state");
    let agent: PathBuf = std::env::var_os("SANDSTREAM_STATIC_AGENT").expect("agent").into();
    let alive = f.runtime.create(&f.spec(Limits::default())).expect("create");
    let dead = f.runtime.create(&f.spec(Limits::default())).expect("create");
    assert_eq!(exec(&alive, "echo before > /tmp/mark && echo ok").await.stdout, "ok\n");
    // The owning runtime goes away (nothing is killed), and one container dies meanwhile.
    let runtime = DockerRuntime::new(config(state.clone(), agent)).expect("second runtime");
    docker(&["kill", &dead.id]);
    std::thread::sleep(Duration::from_millis(300));

    let found = runtime.recover().expect("recover");
    let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [alive.id.as_str()], "only the running sandbox is found again");
    let again = &found[0];
    assert_eq!(
        (again.agent_addr, &again.token, again.published_port),
        (alive.agent_addr, &alive.token, alive.published_port)
    );
    assert_eq!(exec(again, "cat /tmp/mark").await.stdout, "before\n", "same sandbox, same files");
    let left = std::process::Command::new("docker")
        .args(["-H", &format!("unix://{}", socket().display()), "inspect", &dead.id])
        .output()
        .expect("docker");
    assert!(!left.status.success(), "the dead sandbox's container is still there");
    let rules = sh(&["iptables-save", "-t", "filter"]);
    let suffix = dead.id.trim_start_matches("sb-");
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(suffix), "the dead sandbox's rules are still there");
    assert!(!state.join(&dead.id).exists());
    assert_eq!(runtime.list().expect("list"), vec![alive.id.clone()]);
    runtime.kill(&alive.id).expect("kill");
    assert!(runtime.list().expect("list").is_empty());
}

/// Host-wide things a sandbox of this backend could leave behind (`host_state`), and
/// the Engine's containers, images, networks and volumes, as lines.
fn host_snapshot(state: &Path) -> BTreeSet<String> {
    let dirs = [
        (state, 2),
        (Path::new("/run/sandstream"), 2),
        // The Engine's runtime state (containerd's task bundles, runc's state) and its
        // per-container directories and layers. Not /run/docker/netns: libnetwork
        // unmounts a container's namespace at once (the mount is counted) but deletes the
        // file in a garbage collection that runs once a minute.
        (Path::new("/run/docker/containerd"), 5),
        (Path::new("/run/docker/runtime-runc"), 3),
        (Path::new("/run/docker/libnetwork"), 2),
        (Path::new("/run/docker/plugins"), 2),
        (Path::new("/var/lib/docker/containers"), 1),
        (Path::new("/var/lib/docker/overlay2"), 1),
        (Path::new("/var/lib/docker/image/overlay2/layerdb/mounts"), 1),
    ];
    let mut lines = snapshot(&dirs);
    // Each container with what names it elsewhere: its layer and network namespace.
    let ids = docker(&["ps", "-a", "-q", "--no-trunc"]);
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        let format = "{{.Id}}|{{.Name}}|{{.GraphDriver.Data.MergedDir}}|{{.NetworkSettings.SandboxKey}}";
        // A container removed meanwhile fails `inspect` for it alone: its line is left out.
        let out = std::process::Command::new("docker")
            .args(["-H", &format!("unix://{}", socket().display()), "inspect", "-f", format])
            .args(&ids)
            .output()
            .expect("docker inspect");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let w: Vec<&str> = l.split('|').collect();
            // The layer's directory (…/overlay2/LAYER/merged) and the namespace's name.
            let name_of = |i: usize, up: usize| {
                w.get(i).and_then(|p| Path::new(p).ancestors().nth(up)?.file_name()?.to_str()).unwrap_or("-")
            };
            lines.insert(format!("container {} {} {} {}", w[0], name_of(1, 0), name_of(2, 1), name_of(3, 0)));
        }
    }
    for (what, args) in [
        ("image", &["images", "-a", "-q", "--no-trunc"][..]),
        ("network", &["network", "ls", "-q", "--no-trunc"][..]),
        ("volume", &["volume", "ls", "-q"][..]),
    ] {
        lines.extend(docker(args).lines().map(|l| format!("{what} {l}")));
    }
    lines
}

/// `CYCLES` sandboxes, one after another, each running a command and leaving a background
/// process behind, then killed: the host is as before (containers, images, networks,
/// volumes, mounts, cgroups, namespaces, links, firewall rules, processes, the Engine's
/// runtime state, the state dir).
#[tokio::test]
async fn create_and_kill_leave_nothing_behind() {
    // A leak of anything per sandbox shows after one cycle; 25 catch one that happens
    // only now and then. Each cycle costs about a second of Docker's time, and the test
    // runs alone.
    const CYCLES: usize = 25;
    let Some(f) = fixture_with(true) else { return };
    let state = f.dir.path().join("state");
    // Sandboxes of users of this host that take no lock are set aside (`set_aside`).
    let take = |ours: &BTreeSet<String>| set_aside(&host_snapshot(&state), ours);
    let suffix = |id: &str| id.trim_start_matches("sb-").to_string();
    // The template image is made by the first create and kept: import it before counting.
    let first = f.runtime.create(&f.spec(Limits::default())).expect("create");
    let mut ours = BTreeSet::from([suffix(&first.id)]);
    f.runtime.kill(&first.id).expect("kill");
    // Shims of the container just removed exit asynchronously: count once things settle.
    let mut before = take(&ours).0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let again = take(&ours).0;
        if again == before {
            break;
        }
        before = again;
    }
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..CYCLES {
        let sb = f.runtime.create(&f.spec(Limits::default())).expect("create");
        ids.push(sb.id.clone());
        ours.insert(suffix(&sb.id));
        assert_eq!(exec(&sb, "echo ok; sleep 30 &").await.stdout, "ok\n");
        if i == 0 {
            // Positive control: a live sandbox shows in every kind of state counted.
            let new = minus(&take(&ours).0, &before);
            for kind in ["container", "mount", "cgroup", "link", "iptables-filter", "iptables-nat", "process", "file"] {
                assert!(
                    new.iter().any(|l| l.starts_with(&format!("{kind} "))),
                    "no {kind} of a live sandbox: {new:#?}"
                );
            }
        }
        f.runtime.kill(&sb.id).expect("kill");
    }
    let cycles = started.elapsed();
    let after = settled(&before, || take(&ours).0);
    println!("{CYCLES} create/exec/kill cycles took {:.1} s", cycles.as_secs_f64());
    assert_unchanged(&before, &after, &take(&ours).1);
    assert!(f.runtime.list().expect("list").is_empty());
    let procs = sh(&["ps", "-eo", "args="]);
    let procs = String::from_utf8_lossy(&procs.stdout);
    for id in &ids {
        assert!(!procs.contains(id.as_str()), "a process of {id} is left");
    }
}

/// A sandbox hogging every CPU it may (default limits: one CPU, on a host with more)
/// leaves another sandbox's `Execute("true")` latency within 2x (`support::cpu`). A
/// measurement: it holds the sandbox tests' lock exclusive.
#[tokio::test]
async fn a_cpu_hog_leaves_another_sandbox_responsive() {
    let Some(f) = fixture_with(true) else { return };
    let limits = Limits::default();
    let hog = f.create(limits);
    let other = f.create(limits);
    let pid = |id: &str| docker(&["inspect", "-f", "{{.State.Pid}}", id]).trim().parse::<u32>().expect("pid");
    let cpus = f64::from(limits.cpu_millis) / 1000.0;
    support::cpu::a_cpu_hog_leaves_another_sandbox_responsive(&hog, pid(&hog.id), cpus, &other, pid(&other.id)).await;
}

/// The default template: python3, node and pip work, with the network reaching PyPI
/// through NAT; ptrace reaches neither a host process nor the agent.
#[tokio::test]
async fn the_default_template_runs_python_node_and_pip() {
    let Some(agent) = prerequisites() else { return };
    let _lock = sandbox_tests_lock(false);
    let template = support::default_template();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = DockerRuntime::new(config(dir.path().join("state"), agent)).expect("runtime");
    let spec =
        SandboxSpec { template: template.clone(), limits: Limits::default(), env: vec![], egress: Egress::Allow };
    let sb = Guard { runtime: &runtime, sandbox: runtime.create(&spec).expect("create") };
    let out = exec(&sb, "python3 -c 'print(6*7)'; node -e 'console.log(6*7)'").await;
    assert_eq!(out.stdout, "42\n42\n", "{out:?}");
    let out = exec(
        &sb,
        "python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --disable-pip-version-check six==1.16.0 2>&1 && \
         /tmp/v/bin/python -c 'import six; print(six.__version__)'",
    )
    .await;
    assert!(out.stdout.ends_with("1.16.0\n"), "pip install through NAT: {out:?}");
    support::ptrace_reaches_only_the_users_own_processes(&sb).await;
    drop(sb);
    // The image of the shared default template stays for the next run: importing it is
    // the slow part.
    assert!(runtime.list().expect("list").is_empty());
}

/// Whether the Docker Engine has the image `tag`.
fn image_present(tag: &str) -> bool {
    let host = format!("unix://{}", socket().display());
    let out = std::process::Command::new("docker").arg("-H").arg(host).args(["image", "inspect", tag]).output();
    out.expect("docker").status.success()
}

#[tokio::test]
async fn the_image_of_a_template_version_that_is_gone_is_removed_once_unused() {
    let Some(f) = fixture() else { return };
    // A template version of this test's own beside the fixture's.
    let dir = tempfile::tempdir().expect("tempdir");
    let old = busybox_template(dir.path());
    let old_tag = f.runtime.template_image(&old).expect("tag");
    let spec = SandboxSpec { template: old.clone(), ..f.spec(Limits::default()) };
    let sb = Guard { runtime: &f.runtime, sandbox: f.runtime.create(&spec).expect("create from the old version") };
    let current = f.create(Limits::default());
    let current_tag = f.runtime.template_image(&f.template).expect("tag");
    assert!(image_present(&old_tag) && image_present(&current_tag));
    // While both versions exist, neither image goes.
    let removed = f.runtime.collect_template_images().expect("collect");
    assert!(!removed.contains(&old_tag) && !removed.contains(&current_tag), "{removed:?}");
    // The old version goes (as the catalog deletes a replaced version) while its sandbox
    // runs: its image is in use and stays.
    std::fs::remove_dir_all(&old).expect("remove the old version");
    let removed = f.runtime.collect_template_images().expect("collect");
    assert!(!removed.contains(&old_tag), "{removed:?}");
    assert!(image_present(&old_tag), "the image of a running sandbox was removed");
    assert_eq!(exec(&sb, "echo still").await.stdout, "still\n");
    // Its last sandbox ends: the image goes at the next collection.
    drop(sb);
    let removed = f.runtime.collect_template_images().expect("collect");
    assert!(removed.contains(&old_tag), "{removed:?}");
    assert!(!image_present(&old_tag), "the unused image of a gone version is still there");
    // The current version's image stays, and so does its sandbox.
    assert!(image_present(&current_tag));
    assert!(!removed.contains(&current_tag), "{removed:?}");
    assert_eq!(exec(&current, "echo ok").await.stdout, "ok\n");
}

/// Issue 19: a sandbox's /proc/self/mountinfo named our host paths (the state dir,
/// where the agent binary and the token live on the host, the checkout), and
/// /proc/cmdline showed the host kernel's command line. Now every bind of ours comes
/// from the runtime's own tmpfs and /proc/cmdline is masked. Docker's own lines (its
/// data root's hostname, hosts and root filesystem) are the Engine's and stay. Positive
/// controls: the agent starts with its token and the tenant's env, resolv.conf and the
/// CA bundle read as the host's, a deadline written by rename still reaches the agent
/// and ends the sandbox, and once the last sandbox is gone the runtime's tmpfs is too.
#[tokio::test]
async fn the_sandbox_sees_no_host_path_of_ours_in_its_mounts_and_no_host_command_line() {
    let Some(f) = fixture() else { return };
    let state = f.dir.path().join("state");
    let sb = f.create(Limits::default());
    let bound = ["/.sandstream/agent", "/.sandstream/token", "/.sandstream/ctl"];
    support::assert_mounts_and_cmdline_hide_the_host(&sb, &state, f.dir.path(), &bound).await;

    let out = exec(&sb, "stat -c '%a %u' /.sandstream/token; echo $GREETING").await;
    assert_eq!(out.stdout, "400 0\nhi\n", "{out:?}");
    // The host's resolv.conf is bound when its resolvers are reachable from a container.
    let resolv = std::fs::read_to_string("/etc/resolv.conf").expect("host resolv.conf");
    if resolv.contains("nameserver") && !resolv.contains("nameserver 127.") {
        let out = exec(&sb, "cat /etc/resolv.conf").await;
        assert_eq!(out.stdout, resolv, "{out:?}");
    }
    if let Ok(ca) = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt") {
        let out = exec(&sb, "cat /etc/ssl/certs/ca-certificates.crt").await;
        assert!(out.stdout == ca, "the CA bundle inside differs from the host's ({} bytes)", out.stdout.len());
    }
    let past = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    f.runtime.set_deadline(&sb.id, Some(past - 1000)).expect("set deadline");
    let set = Instant::now();
    while f.runtime.running(&sb.id) {
        assert!(set.elapsed() < Duration::from_secs(30), "the sandbox outlived its deadline");
        std::thread::sleep(Duration::from_millis(50));
    }
    f.runtime.kill(&sb.id).expect("kill");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let left: Vec<&str> = host_mounts.lines().filter(|l| l.contains(&state.display().to_string())).collect();
    assert!(left.is_empty(), "mounts left under the state dir: {left:#?}");
}
