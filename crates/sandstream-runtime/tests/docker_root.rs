//! Root inside a `docker` sandbox, which is never root on the host (issue 21): the Engine
//! remaps user namespaces, so root inside is the first host id of the Engine's range
//! (`DockerRuntime::mapped_ids`), with Docker's default capabilities (NET_RAW aside) over
//! its own namespaces only. Each attack runs as root inside through the Engine's exec API
//! (User "0"), and each has its positive control: what root inside may do works. Needs
//! what docker.rs needs (the apt test: the default template and a way to the host's apt
//! mirror).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod support;

use sandstream_runtime::{Egress, Limits, Runtime, SandboxSpec};
use support::docker::{As, Guard, config, docker, fixture, prerequisites};
use support::lock::sandbox_tests_lock;

async fn root(sb: &sandstream_runtime::Sandbox, cmd: &str) -> support::Out {
    As::Root.run(sb, cmd).await
}

/// `cmd` as root inside, with its status on stdout's last line.
async fn root_rc(sb: &sandstream_runtime::Sandbox, cmd: &str) -> String {
    let out = root(sb, &format!("{cmd} 2>&1; echo \"rc=$?\"")).await;
    assert_eq!(out.exit_code, 0, "docker exec itself failed: {out:?}");
    out.stdout
}

/// The start of `user`'s range in /etc/subuid.
fn subuid_start(user: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/subuid").ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{user}:"))?.split(':').next()?.parse().ok())
}

/// The container's writable layer in the Engine's storage, on the host.
fn container_layer(id: &str) -> PathBuf {
    let info = docker(&["info", "-f", "{{.DockerRootDir}}|{{.Driver}}"]);
    let (root, driver) = info.trim().split_once('|').expect("root dir and driver");
    let full = docker(&["inspect", "-f", "{{.Id}}", id]);
    match driver {
        "btrfs" => {
            let mounts = Path::new(root).join("image/btrfs/layerdb/mounts").join(full.trim()).join("mount-id");
            let mount_id = std::fs::read_to_string(&mounts).expect("the container's mount id");
            Path::new(root).join("btrfs/subvolumes").join(mount_id.trim())
        }
        _ => PathBuf::from(docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id]).trim()),
    }
}

/// Docker's default capabilities without NET_RAW, as a /proc/PID/status mask.
fn expected_capabilities() -> u64 {
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, SETPCAP 8,
    // NET_BIND_SERVICE 10, SYS_CHROOT 18, MKNOD 27, AUDIT_WRITE 29, SETFCAP 31.
    [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 29, 31].iter().fold(0, |m, b| m | 1u64 << b)
}

#[tokio::test(flavor = "multi_thread")]
async fn root_inside_is_the_engines_unprivileged_uid_on_the_host() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let ids = f.runtime.mapped_ids();
    assert!(ids.uid_base != 0 && ids.gid_base != 0, "{ids:?}");
    if let Some(start) = subuid_start("dockremap") {
        assert_eq!(ids.uid_base, start, "the Engine's range is dockremap's (userns-remap=default)");
    }
    let out = root(
        &sb,
        "id -u; tr -s ' ' < /proc/self/uid_map; echo r > /made-by-root; grep -E '^(Cap|NoNew)' /proc/self/status",
    )
    .await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", &format!(" 0 {} 65536", ids.uid_base)], "{out:?}");
    let field = |name: &str| lines.iter().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("?");
    let caps = format!("{:016x}", expected_capabilities());
    assert_eq!((field("CapEff:"), field("CapBnd:")), (caps.as_str(), caps.as_str()), "{out:?}");
    // Setuid binaries work (no-new-privileges is off): `sudo` gives root inside.
    assert_eq!(field("NoNewPrivs:"), "0", "{out:?}");
    let out = As::User.run(&sb, "echo u > /home/user/made-by-user; id -u; grep NoNewPrivs /proc/self/status").await;
    assert_eq!(out.stdout, "1000\nNoNewPrivs:\t0\n", "{out:?}");

    // On the host, in the container's storage: the mapped ids, never root's.
    let layer = container_layer(&sb.id);
    let by_root = std::fs::metadata(layer.join("made-by-root")).expect("root's file in the layer");
    assert_eq!((by_root.uid(), by_root.gid()), (ids.uid_base, ids.gid_base), "root's file on the host");
    let by_user = std::fs::metadata(layer.join("home/user/made-by-user")).expect("the user's file in the layer");
    assert_eq!(
        (by_user.uid(), by_user.gid()),
        (ids.uid_base + 1000, ids.gid_base + 1000),
        "the user's file on the host"
    );
    // The agent (PID 1 inside) is the mapped uid on the host too.
    let init = support::docker::init_pid(&sb.id);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).expect("status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("Uid line");
    let want = ids.uid_base.to_string();
    assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), [want.as_str(); 4], "{status}");
}

/// What a sandbox has bound from the host, with the host file behind each.
fn bound(state: &Path, id: &str) -> Vec<(String, PathBuf)> {
    let binds = state.join(".binds");
    let mut v = vec![
        ("/.sandstream/agent".to_string(), binds.join("agent")),
        ("/.sandstream/token".to_string(), binds.join(id).join("token")),
        ("/.sandstream/ctl/env".to_string(), binds.join(id).join("ctl/env")),
        ("/.sandstream/ctl/deadline".to_string(), binds.join(id).join("ctl/deadline")),
    ];
    if binds.join("resolv.conf").exists() {
        v.push(("/etc/resolv.conf".into(), binds.join("resolv.conf")));
    }
    if binds.join("ca-certificates.crt").exists() {
        v.push(("/etc/ssl/certs/ca-certificates.crt".into(), binds.join("ca-certificates.crt")));
    }
    for dir in ["/etc/apt/sources.list.d", "/etc/apt/apt.conf.d"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let p = e.path();
                v.push((p.display().to_string(), p));
            }
        }
    }
    v
}

/// Bytes, mode, owner and modification time of a host file.
fn stamp(p: &Path) -> (Vec<u8>, u32, u32, u32, i64, i64) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (std::fs::read(p).expect("read"), m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec())
}

#[tokio::test(flavor = "multi_thread")]
async fn root_inside_cannot_write_chmod_or_chown_a_host_file_through_any_mount() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let state = f.dir.path().join("state");
    f.runtime.set_deadline(&sb.id, Some(1_900_000_000_000)).expect("deadline");
    let files = bound(&state, &sb.id);
    assert!(files.iter().any(|(inside, _)| inside.starts_with("/etc/apt/")), "no apt sources bound: {files:?}");
    let before: Vec<_> = files.iter().map(|(_, host)| stamp(host)).collect();
    for (inside, _) in &files {
        // Positive control: root inside reads each (the apt sources are there for it).
        let out = root_rc(&sb, &format!("cat {inside} >/dev/null")).await;
        assert!(out.ends_with("rc=0\n"), "root inside reads {inside}: {out}");
        for attack in [
            format!("echo x >> {inside}"),
            format!("echo x > {inside}"),
            format!("chmod 666 {inside}"),
            format!("chown 0:0 {inside}"),
            format!("chown 1000 {inside}"),
            format!("touch {inside}"),
            format!("rm -f {inside}"),
            format!("mv {inside} /tmp/moved"),
        ] {
            let out = root_rc(&sb, &attack).await;
            assert!(!out.ends_with("rc=0\n"), "root inside: {attack} -> {out}");
        }
    }
    for dir in ["/.sandstream/ctl", "/etc/apt/sources.list.d"] {
        let out = root_rc(&sb, &format!("touch {dir}/new")).await;
        assert!(!out.ends_with("rc=0\n"), "root inside made a file in {dir}: {out}");
    }
    let after: Vec<_> = files.iter().map(|(_, host)| stamp(host)).collect();
    for (i, (inside, host)) in files.iter().enumerate() {
        assert!(before[i] == after[i], "{} (bound at {inside}) changed on the host", host.display());
    }
    assert!(!Path::new("/etc/apt/sources.list.d/new").exists());
    // Positive control: root inside writes, chmods and chowns the sandbox's own files.
    let out = root_rc(&sb, "echo mine > /etc/own && chmod 600 /etc/own && chown 1000:1000 /etc/own && stat -c '%a %u' /etc/own && cat /etc/own").await;
    assert_eq!(out, "600 1000\nmine\nrc=0\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_inside_cannot_load_a_module_make_a_device_or_mount_anything() {
    let Some(f) = fixture() else { return };
    let sb = f.create(Limits::default());
    let mounts_before = root(&sb, "wc -l < /proc/self/mountinfo").await.stdout;
    // Positive control: the mount point and the files the attacks use are there.
    let out = root_rc(
        &sb,
        "mkdir -p /tmp/m /tmp/u /tmp/w && touch /tmp/m/f && head -c 4096 /dev/zero > /tmp/x.ko && ls /tmp/m",
    )
    .await;
    assert_eq!(out, "f\nrc=0\n");
    let out = root_rc(&sb, "insmod /tmp/x.ko").await;
    assert!(out.contains("not permitted") && !out.ends_with("rc=0\n"), "insmod must fail with EPERM: {out}");
    for attack in [
        "mount -t proc proc /tmp/m",
        "mount -t sysfs sysfs /tmp/m",
        "mount -t tmpfs none /tmp/m",
        "mount -o bind /home /tmp/m",
        "mount -t overlay overlay -o lowerdir=/home,upperdir=/tmp/u,workdir=/tmp/w /tmp/m",
        "mount -t cgroup -o pids none /tmp/m",
        "unshare -m sh -c 'mount -t tmpfs none /tmp/m && echo mounted'",
        "unshare -U -r -m sh -c 'mount -t tmpfs none /tmp/m && echo mounted'",
        "mount -o remount,rw /.sandstream/agent",
        "mount -o remount,rw,bind /etc/resolv.conf",
        "umount /.sandstream/token",
        "umount -l /proc/kcore",
        // A device node of the host's first disk: creating one needs CAP_MKNOD on the host.
        "mknod /tmp/disk b 8 0 && head -c 512 /tmp/disk | wc -c",
        "mknod /tmp/mem c 1 1",
    ] {
        let out = root_rc(&sb, attack).await;
        assert!(!out.ends_with("rc=0\n") && !out.contains("mounted"), "root inside: {attack} -> {out}");
    }
    let out = root(&sb, "wc -l < /proc/self/mountinfo; ls /tmp/m").await;
    assert_eq!(out.stdout, format!("{}f\n", mounts_before), "a mount appeared: {out:?}");
    // Positive control: root inside makes a FIFO (no device) with the same tool.
    assert!(root_rc(&sb, "mknod /tmp/fifo p").await.ends_with("rc=0\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn root_inside_cannot_raise_its_limits() {
    let Some(f) = fixture() else { return };
    let limits = Limits { memory_bytes: 64 << 20, pids: 48, ..Limits::default() }.with_disk_mb(64);
    let sb = f.create(limits);
    // Positive controls: root inside lowers its own limits and reads the cgroup's.
    let out = root_rc(&sb, "ulimit -Hn; ulimit -Sn 100 && ulimit -Sn").await;
    assert_eq!(out, "4096\n100\nrc=0\n");
    let pids = "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max";
    let memory = "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max";
    let out = root(&sb, &format!("cat {pids} {memory} 2>/dev/null")).await;
    assert_eq!(out.stdout, format!("48\n{}\n", 64 << 20), "{out:?}");
    for attack in [
        "ulimit -Hn 8192".to_string(),
        format!("for f in {pids}; do [ -e $f ] && echo max > $f; done"),
        format!("for f in {memory}; do [ -e $f ] && echo 1073741824 > $f; done"),
        "echo -1000 > /proc/1/oom_score_adj".to_string(),
        "echo $$ > /sys/fs/cgroup/pids/cgroup.procs".to_string(),
        "renice -n -10 $$".to_string(),
    ] {
        let out = root_rc(&sb, &attack).await;
        assert!(!out.ends_with("rc=0\n"), "root inside: {attack} -> {out}");
    }
    let out = root(&sb, &format!("cat {pids} {memory} /proc/1/oom_score_adj 2>/dev/null")).await;
    assert_eq!(out.stdout, format!("48\n{}\n0\n", 64 << 20), "the limits changed: {out:?}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}", &sb.id]).trim(),
        "48 67108864"
    );
    // The memory and disk limits hold for root inside as for the user.
    let out = root(&sb, "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}").await;
    assert!(!out.stdout.contains("survived"), "root inside outgrew its memory: {out:?}");
    let out = root_rc(&sb, "dd if=/dev/zero of=/fill bs=1M count=200 2>&1; du -k /fill; rm -f /fill").await;
    assert!(
        out.contains("Disk quota exceeded") || out.contains("No space left"),
        "root inside outgrew its disk: {out}"
    );
    let kib: u64 = out.lines().find_map(|l| l.strip_suffix("\t/fill")).and_then(|k| k.parse().ok()).expect("du");
    assert!(kib <= 64 << 10, "root inside wrote {kib} KiB past a 64 MiB disk");
    assert!(As::User.run(&sb, "echo alive").await.stdout == "alive\n", "the sandbox survives");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_inside_one_sandbox_reaches_nothing_of_another() {
    let Some(f) = fixture() else { return };
    let (a, b) = (f.create(Limits::default()), f.create(Limits::default()));
    let secret = "chmod 600 /root-secret && cat /proc/1/root/root-secret";
    assert_eq!(root(&b, &format!("echo B-SECRET > /root-secret && {secret}")).await.stdout, "B-SECRET\n");
    // Positive control: the same ways find A's own file.
    assert_eq!(root(&a, &format!("echo A-SECRET > /root-secret && {secret}")).await.stdout, "A-SECRET\n");
    let out =
        root(&a, "cat /proc/*/root/root-secret 2>/dev/null | sort -u; find / -xdev -name 'root-secret*' 2>/dev/null")
            .await;
    assert_eq!(out.stdout, "A-SECRET\n/root-secret\n", "{out:?}");
    // Both run as the same host uid: only namespaces keep them apart. A signal to every
    // process A's root can see reaches none of B's.
    let init_b = support::docker::init_pid(&b.id);
    root(&a, &format!("kill -9 -1; kill -9 {init_b}")).await;
    assert_eq!(As::User.run(&b, "echo alive").await.stdout, "alive\n");
    assert_eq!(root(&b, "cat /root-secret").await.stdout, "B-SECRET\n");
}

/// NET_RAW is left out of Docker's default set: sandboxes share one bridge and the host
/// firewall tells them apart by source address (`firewall.rs`), which a raw or packet
/// socket could forge to send as another sandbox, past its own egress policy.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_gets_no_raw_or_packet_socket_and_the_seccomp_filter_holds() {
    let Some(f) = fixture() else { return };
    support::hostile::install(f.dir.path(), &f.template);
    let sb = f.create(Limits::default());
    let out = root_rc(&sb, "arping -c 1 -w 1 -I eth0 10.0.0.1").await;
    assert!(out.contains("not permitted") && !out.ends_with("rc=0\n"), "a packet socket: {out}");
    let out = root_rc(&sb, "traceroute -I -m 1 -w 1 10.0.0.1").await;
    assert!(out.contains("not permitted") || out.contains("raw"), "a raw socket: {out}");
    assert_eq!(root(&sb, "hostile seccomp").await.stdout, support::hostile::SECCOMP_REFUSED);
    // Positive control: ordinary sockets work as root inside.
    let out =
        root_rc(&sb, "nc -l -p 7 > /tmp/got & sleep 0.3; echo hi | nc -w 1 127.0.0.1 7; wait; cat /tmp/got").await;
    assert!(out.ends_with("hi\nrc=0\n"), "{out}");
}

/// The default template as root inside: the host's apt sources are there, and
/// `apt-get update && apt-get install -y tree` works; `sudo` works for the user where the
/// template has it.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_installs_packages_with_the_hosts_apt_sources() {
    let Some(agent) = prerequisites() else { return };
    let _lock = sandbox_tests_lock(false);
    let template = support::default_template();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = sandstream_runtime::DockerRuntime::new(config(dir.path().join("state"), agent)).expect("runtime");
    let spec = SandboxSpec { template, limits: Limits::default(), env: vec![], egress: Egress::Allow };
    let sb = Guard { runtime: &runtime, sandbox: runtime.create(&spec).expect("create") };
    if let Ok(host) = std::fs::read("/etc/apt/sources.list.d/debian.sources") {
        let out = root(&sb, "cat /etc/apt/sources.list.d/debian.sources").await;
        assert_eq!(out.stdout.as_bytes(), host, "the host's apt sources inside");
    }
    let out = As::Root
        .run_for(
            &sb,
            "apt-get update -qq 2>&1 && apt-get install -y -qq tree >/dev/null 2>&1 && tree --version",
            300_000,
        )
        .await;
    assert!(out.stdout.contains("tree v"), "apt-get install as root inside: {out:?}");
    assert_eq!(As::User.run(&sb, "tree --version | head -c 6").await.stdout, "tree v", "the user runs it");
    let sudo = As::User.run(&sb, "command -v sudo").await;
    if sudo.exit_code == 0 {
        let out = As::User.run(&sb, "sudo -n id -u").await;
        assert_eq!(out.stdout, "0\n", "sudo as the user: {out:?}");
    } else {
        eprintln!("the default template has no sudo: not tried");
    }
    drop(sb);
    assert!(runtime.list().expect("list").is_empty());
}
