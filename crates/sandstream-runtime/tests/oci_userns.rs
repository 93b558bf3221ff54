//! Root inside an `oci` sandbox (issue 21): sandboxes run in a user namespace of their
//! own, so uid 0 inside is an unprivileged uid of the host (`sandstream_runtime::
//! mapped_ids`). Root inside (with the agent's own privileges) cannot write a host file through any mount, load a module, mount
//! anything, raise its limits, own a file that is host root's outside, or reach another
//! sandbox's files; what it and `user` create shows on the host as the mapped uids; and
//! `sudo` makes `user` root inside. Each with its positive control. Root inside is
//! `asroot` (`support/asroot.c`), setuid root in the test template. Needs what oci.rs
//! needs; the sudo and apt test needs the default template and the host's apt mirror.
//! Every test holds the sandbox tests' lock shared.

use std::path::{Path, PathBuf};

mod support;

use sandstream_runtime::{Egress, Limits, MappedIds, OciConfig, OciRuntime, Runtime, Sandbox, SandboxSpec};
use support::lock::sandbox_tests_lock;
use support::userns::{as_root, host_owner, host_path, init_pid, install_asroot, oci_runtime};
use support::{Out, busybox_template, exec_with_token, static_agent};

struct Fixture {
    // Dropped in this order, the lock last.
    _dir: tempfile::TempDir,
    runtime: OciRuntime,
    template: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

fn fixture() -> Option<Fixture> {
    let agent = static_agent()?;
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    let lock = sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = busybox_template(dir.path());
    install_asroot(dir.path(), &template);
    std::fs::create_dir(template.join("root")).expect("mkdir /root");
    // apt's directory, so the sandbox gets the host's apt sources.
    std::fs::create_dir_all(template.join("etc/apt")).expect("mkdir");
    let cfg = OciConfig { runtime: oci_runtime().into(), ..OciConfig::new(dir.path().join("state"), agent) };
    let runtime = OciRuntime::new(cfg).expect("runtime");
    Some(Fixture { _dir: dir, runtime, template, _lock: lock })
}

impl Fixture {
    fn create_from(&self, template: &Path) -> Guard<'_> {
        let spec = SandboxSpec {
            template: template.to_path_buf(),
            limits: Limits { pids: 64, ..Limits::default() },
            env: vec![("GREETING".into(), "hi".into())],
            egress: Egress::Allow,
        };
        Guard { runtime: &self.runtime, sandbox: self.runtime.create(&spec).expect("create sandbox") }
    }

    fn create(&self) -> Guard<'_> {
        self.create_from(&self.template)
    }

    fn ids(&self) -> MappedIds {
        self.runtime.mapped_ids()
    }
}

/// Kills its sandbox when dropped, so a failing assertion leaves nothing running.
struct Guard<'a> {
    runtime: &'a OciRuntime,
    sandbox: Sandbox,
}

impl std::ops::Deref for Guard<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.runtime.kill(&self.sandbox.id);
    }
}

async fn exec(sb: &Sandbox, command: &str) -> Out {
    exec_with_token(sb.agent_addr, &sb.token, command, 600_000).await.expect("execute in sandbox")
}

/// Runs `script` as root inside `sb` and returns `script`'s exit status and output
/// (stdout and stderr together).
async fn root(sb: &Sandbox, script: &str) -> (i32, String) {
    let out = as_root(sb, &format!("{{ {script}\n}} 2>&1")).await;
    (out.exit_code, out.stdout + &out.stderr)
}

/// The range is the one /etc/subuid and /etc/subgid give the `sandstream` account, and
/// root inside is its first uid.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_is_the_first_uid_of_the_hosts_range_for_sandboxes() {
    let Some(f) = fixture() else { return };
    let ids = f.ids();
    assert_eq!(sandstream_runtime::mapped_ids().expect("the range"), ids);
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).expect(file);
        let base = if file.ends_with("uid") { ids.uid_base } else { ids.gid_base };
        assert!(text.lines().any(|l| l == format!("sandstream:{base}:65536")), "{file}: {text}");
    }
    assert!(ids.uid_base >= 100_000, "{ids:?}");
    let sb = f.create();
    let (rc, out) = root(&sb, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map").await;
    let want =
        format!("0\n0\n{:>10} {:>10} {:>10}\n{:>10} {:>10} {:>10}\n", 0, ids.uid_base, 65536, 0, ids.gid_base, 65536);
    assert_eq!((rc, out.replace(' ', "")), (0, want.replace(' ', "")));
    let host = std::fs::read_to_string(format!("/proc/{}/status", init_pid(&sb.id))).expect("status");
    let uid_line = host.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == ids.uid_base.to_string()), "{uid_line}");
}

/// Issue 21: nothing the runtime binds into the sandbox can be written by root inside
/// (the agent, its token, the control directory, resolv.conf, the CA bundle, the apt
/// sources): neither its bytes, nor its mode, nor its owner, nor new files beside it.
/// Positive controls: root inside reads what the agent needs (the token, the env file)
/// and the host's files as the host has them, writes its own files (the template's,
/// owned by root inside), and `user` still cannot read the token.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_writes_no_host_file_through_any_mount() {
    let Some(f) = fixture() else { return };
    let sb = f.create();
    let mut bound = vec![
        "/.sandstream/agent",
        "/.sandstream/token",
        "/.sandstream/ctl/env",
        "/.sandstream/ctl",
        "/etc/resolv.conf",
        "/etc/apt/sources.list.d",
        "/etc/apt/apt.conf.d",
    ];
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.exists() {
        bound.push("/etc/ssl/certs/ca-certificates.crt");
    }
    let (_, listed) = root(&sb, "ls /etc/apt/sources.list.d /etc/apt/apt.conf.d").await;
    let mut files: Vec<String> = Vec::new();
    for p in &bound {
        let (_, kind) = root(&sb, &format!("[ -d {p} ] && echo dir || echo file")).await;
        if kind.trim() == "dir" {
            files.push(format!("{p}/new"));
        } else {
            files.push(p.to_string());
        }
    }
    for p in &bound {
        for attack in
            [format!("echo pwned >> {p}"), format!("chmod 777 {p}"), format!("chown 0:0 {p}"), format!("touch {p}")]
        {
            let (rc, out) = root(&sb, &attack).await;
            assert_ne!(rc, 0, "root inside: {attack} -> {out}");
        }
    }
    for p in &files {
        let (rc, out) = root(&sb, &format!("echo pwned > {p}")).await;
        assert_ne!(rc, 0, "root inside: write {p} -> {out}");
    }
    // What the host has is what the sandbox reads, unchanged.
    let agent = std::fs::read(static_agent().expect("agent")).expect("agent");
    let inside = std::fs::read(host_path(init_pid(&sb.id), "/.sandstream/agent")).expect("agent inside");
    assert!(inside == agent, "the agent inside differs from the host's");
    let (rc, out) = root(&sb, "cat /etc/resolv.conf").await;
    assert_eq!((rc, out), (0, std::fs::read_to_string("/etc/resolv.conf").expect("host resolv.conf")));
    for d in ["sources.list.d", "apt.conf.d"] {
        let host = std::fs::read_dir(Path::new("/etc/apt").join(d)).expect("host apt").count();
        assert!(host > 0 && listed.contains(&format!("/etc/apt/{d}:")), "{listed}");
    }
    if let Ok(host) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in host.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".sources")) {
            let name = e.file_name().to_string_lossy().into_owned();
            let (rc, out) = root(&sb, &format!("cat /etc/apt/sources.list.d/{name}")).await;
            assert_eq!((rc, out), (0, std::fs::read_to_string(e.path()).expect("host source")), "{name}");
        }
    }
    // Positive controls.
    let (rc, out) = root(&sb, "cat /.sandstream/token").await;
    assert_eq!((rc, out.as_str()), (0, sb.token.as_str()), "root inside reads the token it serves with");
    let (rc, out) = root(&sb, "tr '\\0' '\\n' < /.sandstream/ctl/env").await;
    assert_eq!((rc, out.as_str()), (0, "GREETING=hi\n"));
    let (rc, out) = root(&sb, "echo mine >> /etc/passwd && echo x > /bin/new && echo ok").await;
    assert_eq!((rc, out.as_str()), (0, "ok\n"), "root inside writes the template's files, its own");
    let out = exec(&sb, "cat /.sandstream/token; echo rc=$?; cat /.sandstream/ctl/env; echo rc=$?").await;
    assert_eq!(out.stdout, "rc=1\nrc=1\n", "user reads neither the token nor the env: {out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
}

/// Issue 21: root inside cannot load a kernel module, mount anything (proc, sysfs,
/// tmpfs, a bind, an overlay, a remount of /sys; nor after `unshare -m`), nor raise its
/// limits (its open-files limit, its cgroup's pids and memory limits, read from the
/// host afterwards). Positive controls: root inside has capabilities (it chowns,
/// makes directories), lowers a limit, reads its cgroup's.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_cannot_load_modules_mount_or_raise_its_limits() {
    let Some(f) = fixture() else { return };
    let sb = f.create();
    let (rc, out) = root(&sb, "head -c 4096 /dev/zero > /tmp/x.ko; insmod /tmp/x.ko").await;
    assert!(rc != 0 && out.contains("not permitted"), "insmod as root inside: {rc} {out}");
    let (rc, out) =
        root(&sb, "mkdir -p /mnt/a /mnt/b /mnt/w /mnt/u && touch /root/f && chown 1000:1000 /root/f && echo ok").await;
    assert_eq!((rc, out.as_str()), (0, "ok\n"), "root inside is root of its own files");
    for attack in [
        "mount -t proc proc /mnt/a",
        "mount -t sysfs sysfs /mnt/a",
        "mount -t tmpfs none /mnt/a",
        "mount --bind / /mnt/a",
        "mount -t overlay overlay -o lowerdir=/mnt/a,upperdir=/mnt/u,workdir=/mnt/w /mnt/b",
        "mount -o remount,rw /sys",
        "mount -o remount,rw /.sandstream",
        "unshare -m sh -c 'mount -t tmpfs none /mnt/a'",
        "unshare -U -r sh -c 'mount -t tmpfs none /mnt/a'",
    ] {
        let (rc, out) = root(&sb, attack).await;
        assert_ne!(rc, 0, "root inside: {attack} -> {out}");
    }
    let (_, mounts) = root(&sb, "grep -c ' /mnt/' /proc/self/mountinfo").await;
    assert_eq!(mounts.trim(), "0", "nothing got mounted");

    let pids = format!("/sys/fs/cgroup/pids/sandstream/{}/pids.max", sb.id);
    let memory = format!("/sys/fs/cgroup/memory/sandstream/{}/memory.limit_in_bytes", sb.id);
    let (before_pids, before_memory) = (std::fs::read_to_string(&pids), std::fs::read_to_string(&memory));
    for attack in [
        "ulimit -n 8192",
        "ulimit -Hn 8192",
        "echo max > /sys/fs/cgroup/pids/pids.max",
        "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "echo $$ > /sys/fs/cgroup/pids/cgroup.procs",
        "mkdir /sys/fs/cgroup/pids/escape",
    ] {
        let (rc, out) = root(&sb, attack).await;
        assert_ne!(rc, 0, "root inside: {attack} -> {out}");
    }
    let (rc, out) = root(&sb, "ulimit -n 1000 && ulimit -n; cat /sys/fs/cgroup/pids/pids.max").await;
    assert_eq!((rc, out.as_str()), (0, "1000\n64\n"), "root lowers its limit and reads its cgroup's");
    assert_eq!(before_pids.as_deref().map(str::trim).ok(), Some("64"), "{pids}");
    assert_eq!(std::fs::read_to_string(&pids).ok(), before_pids.ok(), "the host's pids limit");
    assert_eq!(std::fs::read_to_string(&memory).ok(), before_memory.ok(), "the host's memory limit");
}

/// Issue 21: a file root inside creates shows on the host as the range's first uid, one
/// `user` creates as that plus 1000; and root inside cannot take (chown, chmod) a file
/// that is host root's outside (the device nodes and the agent bound from the host,
/// shown inside as owned by nobody).
#[tokio::test(flavor = "multi_thread")]
async fn files_show_on_the_host_as_the_mapped_range_and_host_roots_files_stay_its() {
    let Some(f) = fixture() else { return };
    let ids = f.ids();
    let sb = f.create();
    let (rc, out) = root(&sb, "echo root > /root/by-root && echo ok").await;
    assert_eq!((rc, out.as_str()), (0, "ok\n"));
    let out = exec(&sb, "echo user > ~/by-user && echo ok").await;
    assert_eq!(out.stdout, "ok\n", "{out:?}");
    let pid = init_pid(&sb.id);
    assert_eq!(host_owner(&host_path(pid, "/root/by-root")), (ids.uid(0), ids.gid(0)));
    assert_eq!(host_owner(&host_path(pid, "/home/user/by-user")), (ids.uid(1000), ids.gid(1000)));
    assert_eq!(host_owner(&host_path(pid, "/home/user")), (ids.uid(1000), ids.gid(1000)));
    assert_eq!(host_owner(&host_path(pid, "/")), (ids.uid(0), ids.gid(0)), "the sandbox's root is its root's");
    let (_, shown) = root(&sb, "stat -c '%u:%g' /.sandstream/agent /dev/null /etc/passwd").await;
    assert_eq!(shown, "65534:65534\n65534:65534\n0:0\n", "host root's files are nobody's inside");
    for attack in ["chown 0:0 /dev/null", "chmod 600 /dev/null", "chown 0:0 /.sandstream/agent", "chgrp 0 /dev/null"] {
        let (rc, out) = root(&sb, attack).await;
        assert_ne!(rc, 0, "root inside: {attack} -> {out}");
    }
    assert_eq!(host_owner(Path::new("/dev/null")), (0, 0));
    let (rc, out) = root(&sb, "echo x > /dev/null && chown 1000 /root/by-root && stat -c %u /root/by-root").await;
    assert_eq!((rc, out.as_str()), (0, "1000\n"), "root inside uses /dev/null and owns its own files");
}

/// Every sandbox maps to the same range, so only their other namespaces keep them
/// apart: root inside one finds no path to another's files. Positive control: each
/// root reads its own secret.
#[tokio::test(flavor = "multi_thread")]
async fn root_inside_cannot_reach_another_sandboxs_files() {
    let Some(f) = fixture() else { return };
    let (a, b) = (f.create(), f.create());
    for (sb, secret) in [(&a, "A-SECRET"), (&b, "B-SECRET")] {
        let (rc, out) =
            root(sb, &format!("echo {secret} > /root/secret && chmod 600 /root/secret && cat /root/secret")).await;
        assert_eq!((rc, out), (0, format!("{secret}\n")));
    }
    let (_, found) = root(&a, "find / -xdev -type f -exec grep -l B-SECRET {} + 2>/dev/null; echo searched").await;
    assert_eq!(found, "searched\n", "a found b's secret");
    let (_, found) = root(&a, "cat /proc/*/root/root/secret 2>/dev/null | sort -u").await;
    assert_eq!(found, "A-SECRET\n", "through its processes' roots, a reaches its own root alone");
    let (_, listed) = root(&a, "ls /proc | grep -c '^[0-9]'").await;
    assert!(listed.trim().parse::<u32>().expect("count") < 10, "a sees another's processes: {listed}");
}

/// Issue 21: `sudo` makes `user` root inside, without a password (through the agent, as
/// every command runs), and `apt-get
/// install` works with the host's apt sources; the package is then the sandbox's, owned
/// on the host by the mapped root.
#[tokio::test(flavor = "multi_thread")]
async fn sudo_makes_user_root_inside_and_apt_get_installs_a_package() {
    let Some(f) = fixture() else { return };
    let template = support::default_template();
    let ids = f.ids();
    let sb = f.create_from(&template);
    let out = exec(&sb, "whoami; id -u; sudo id -u; sudo -n true && echo no-password").await;
    assert_eq!((out.stdout.as_str(), out.exit_code), ("user\n1000\n0\nno-password\n", 0), "{out:?}");
    let out = exec(&sb, "sudo stat -c '%a %U' /etc/sudoers.d/user /usr/bin/sudo").await;
    assert_eq!(out.stdout, "440 root\n4755 root\n", "{out:?}");
    let out = exec(
        &sb,
        "command -v tree || echo none; sudo apt-get update -qq >/dev/null 2>&1 && echo updated; \
         sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tree >/dev/null 2>&1 && echo installed; \
         tree --version | head -c 6",
    )
    .await;
    assert_eq!(out.stdout, "none\nupdated\ninstalled\ntree v", "{out:?}");
    assert_eq!(host_owner(&host_path(init_pid(&sb.id), "/usr/bin/tree")), (ids.uid(0), ids.gid(0)));
}
