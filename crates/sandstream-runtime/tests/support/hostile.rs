//! `hostile.c`, built static and put in a busybox template: the attacks busybox cannot
//! make (directories nested past PATH_MAX, io_uring, AF_VSOCK, personality flags); and a
//! sandbox whose memory is full of `/tmp` files, watched from the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandstream_runtime::Sandbox;

use super::cpu::CpuUsage;
use super::{client, run};

/// Builds `hostile.c` with `gcc -static` into `dir` and copies it to `template`'s
/// `/bin/hostile`; returns the copy's path on the host.
pub fn install(dir: &Path, template: &Path) -> PathBuf {
    super::install_static_c("hostile", dir, template)
}

/// How deep the hostile tree goes: std's recursive `remove_dir_all` overflowed a 2 MiB
/// stack (a tokio worker's) at about a third of this.
pub const DEPTH: u32 = 20_000;

/// Runs `f` on a thread with a 2 MiB stack, a tokio worker's, as `sandstream up` runs
/// a sandbox's removal; a stack overflow there aborts this whole test process.
pub fn on_a_worker_sized_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new().stack_size(2 << 20).spawn_scoped(s, f).expect("spawn").join().expect("no panic")
    })
}

/// A host directory with a file in it, which the sandbox's symlinks point at.
pub fn host_target(dir: &Path) -> PathBuf {
    let target = dir.join("host-target");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("keep"), "host data").expect("write");
    target
}

pub fn assert_host_target_intact(target: &Path) {
    assert_eq!(std::fs::read_to_string(target.join("keep")).expect("the host's file survives"), "host data");
}

/// Fills the sandbox's home with what a hostile user leaves: a tree `DEPTH` levels deep
/// (with symlinks to `target` and mode-000 directories half-way and at the bottom), a
/// wide directory, names with newlines, control bytes and invalid UTF-8, mode-000
/// directories, symlinks to host paths.
pub async fn plant_hostile_tree(sb: &Sandbox, target: &Path) {
    let t = target.display();
    let script = format!(
        "set -e; cd /home/user; hostile deep {DEPTH} {t}; mkdir wide; cd wide; i=0; \
         while [ $i -lt 3000 ]; do : > f$i; i=$((i+1)); done; cd ..; \
         mkdir \"$(printf 'odd\\n\\001\\377name')\"; : > \"$(printf 'odd\\n\\001\\377name')/x\"; \
         mkdir -p locked/inner; : > locked/inner/f; chmod 000 locked/inner locked; \
         ln -s {t} to-host; ln -s {t}/keep to-host-file; ln -s / to-root; echo planted"
    );
    let out = super::exec_with_token(sb.agent_addr, &sb.token, &script, 60_000).await.expect("execute in sandbox");
    assert_eq!(out.stdout, format!("deep {DEPTH}\nplanted\n"), "{out:?}");
}

/// What `hostile seccomp` prints once the filter refuses io_uring, AF_VSOCK and every
/// personality value but those Docker's default profile allows, while AF_INET sockets
/// and the allowed personality values (0xffffffff only asks) still work.
pub const SECCOMP_REFUSED: &str = "io_uring_setup EPERM\nio_uring_enter EPERM\nio_uring_register EPERM\nvsock EPERM\n\
inet ok\n\
personality 0x0 ok\npersonality 0x8 ok\npersonality 0x20000 ok\npersonality 0x20008 ok\npersonality 0xffffffff ok\n\
personality 0x40000 EPERM\npersonality 0x400000 EPERM\npersonality 0x1 EPERM\npersonality 0x100000008 EPERM\n";

/// OOM kills counted by the memory cgroup of host process `pid` (a sandbox's init), read
/// from the host: `oom_kill` in cgroup v1's `memory.oom_control` (this host: v1, with a
/// hybrid v2 mount that has no memory controller) or v2's `memory.events`.
pub struct OomKills(PathBuf);

impl OomKills {
    pub fn of_pid(pid: u32) -> OomKills {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("the process's cgroups");
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if controllers.split(',').any(|c| c == "memory") {
                return OomKills(PathBuf::from(format!("/sys/fs/cgroup/memory{path}/memory.oom_control")));
            }
        }
        let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("a memory or a v2 cgroup");
        OomKills(PathBuf::from(format!("/sys/fs/cgroup{path}/memory.events")))
    }

    pub fn read(&self) -> u64 {
        let text = std::fs::read_to_string(&self.0).unwrap_or_else(|e| panic!("{}: {e}", self.0.display()));
        let count = text.lines().find_map(|l| l.strip_prefix("oom_kill ")).expect("an oom_kill line (Linux 4.13+)");
        count.trim().parse().expect("a count")
    }
}

/// How long the sandbox is watched while its memory is full, and how often a client sends
/// it a command meanwhile (as a user or a program retrying one that failed).
const FULL_WINDOW: Duration = Duration::from_secs(10);
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Standby shells the agent may start in [`FULL_WINDOW`] when each dies at once: its
/// backoff (50 ms doubling to 5 s) allows about nine; without it, one followed every
/// command.
const STANDBY_STARTS: u64 = 10;

/// Issue: in a sandbox whose memory cgroup was full of tmpfs files plus a memory hog, the
/// agent restarted its standby shell after every command, each one OOM-killed at once
/// (37,000 OOM kills in one sandbox, a host load near 200); and with `/tmp` as large as
/// the memory, the OOM killer, once no user process was left, killed the agent. `sb` (a
/// template with bash, so the agent keeps a standby shell; host process `init_pid` its
/// init) has `memory_bytes` of memory and `cpus` CPUs: its `/tmp` and `/dev/shm` are
/// filled to their caps (`Limits::tmp_bytes`, `shm_bytes`: ENOSPC, not an OOM kill), a
/// hog (`tail /dev/zero`) is killed, and for 10 s a client sends `echo ok` every 200 ms:
/// every one runs, the sandbox's cgroup, read from the host, counts no more OOM kills
/// than those commands' shells and a backed-off standby's, and its CPU time stays within
/// its quota. Positive control: once the files are gone (removed from the host), the
/// same sandbox answers `echo ok`.
pub async fn a_sandbox_full_of_tmp_files_costs_the_host_little(
    sb: &Sandbox,
    init_pid: u32,
    memory_bytes: u64,
    cpus: f64,
) {
    let (oom, cpu) = (OomKills::of_pid(init_pid), CpuUsage::of_pid(init_pid));
    let mut c = client(sb.agent_addr, &sb.token).await.expect("connect to the sandbox's agent");
    let before = oom.read();
    let fill = format!(
        "head -c {memory_bytes} /dev/zero > /tmp/fill 2>/dev/null; echo tmp=$?; \
         head -c {memory_bytes} /dev/zero > /dev/shm/fill 2>/dev/null; echo shm=$?"
    );
    let fill = run(&mut c, &fill, 60_000).await.expect("fill /tmp and /dev/shm");
    assert_eq!(fill.stdout, "tmp=1\nshm=1\n", "tmpfs stops at its cap, below the memory limit: {fill:?}");
    let hog = run(&mut c, "tail /dev/zero", 60_000).await.expect("the memory hog");
    assert_eq!(hog.exit_code, 137, "a memory hog in a full sandbox is killed: {hog:?}");
    assert!(oom.read() > before, "the OOM killer killed them");

    let (oom0, cpu0, t0) = (oom.read(), cpu.read(), Instant::now());
    let mut outcomes = std::collections::BTreeMap::new();
    let mut commands = 0u64;
    while t0.elapsed() < FULL_WINDOW {
        let out = tokio::time::timeout(Duration::from_secs(30), run(&mut c, "echo ok", 10_000))
            .await
            .expect("the agent answers within 30 s")
            .expect("the agent of a full sandbox still runs commands");
        assert_eq!((out.stdout.as_str(), out.exit_code), ("ok\n", 0), "{out:?}");
        *outcomes.entry(format!("exit {} {:?}", out.exit_code, out.error)).or_insert(0) += 1;
        commands += 1;
        tokio::time::sleep(RETRY_EVERY).await;
    }
    let window = t0.elapsed().as_secs_f64();
    let (kills, used) = (oom.read() - oom0, (cpu.read() - cpu0).as_secs_f64() / window);
    println!("memory full for {window:.1} s: {commands} commands ({outcomes:?}), {kills} OOM kills, {used:.2} CPUs");

    for file in ["tmp/fill", "dev/shm/fill"] {
        let fill = PathBuf::from(format!("/proc/{init_pid}/root/{file}"));
        std::fs::remove_file(&fill).unwrap_or_else(|e| panic!("remove {}: {e}", fill.display()));
    }
    let out = run(&mut c, "echo ok", 60_000).await.expect("a command once /tmp is freed");
    assert_eq!((out.stdout.as_str(), out.exit_code), ("ok\n", 0), "{out:?}");

    assert!(
        kills <= commands + STANDBY_STARTS,
        "{kills} OOM kills in {window:.1} s for {commands} commands: the agent restarts what the OOM killer kills"
    );
    assert!(used < cpus + 0.1, "the full sandbox used {used:.2} CPUs, over its limit of {cpus}");
}
