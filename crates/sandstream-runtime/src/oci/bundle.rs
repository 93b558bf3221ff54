//! The OCI runtime spec (config.json) of one sandbox.
//!
//! Starts from oci-spec's default (runc's `runc spec`: new pid, mount, ipc, uts and
//! network namespaces; Docker's masked and read-only /proc and /sys paths; devices
//! denied but the usual character devices) and tightens it.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::error::{Error, Result};
use crate::types::Limits;

pub(crate) use crate::sandbox::{AGENT_PATH, AGENT_PORT, CA_BUNDLE_PATH, CTL_DIR, TOKEN_PATH, USER_ID, WORKDIR};

/// What the sandbox is made of. The bind sources (the agent, the token, the control
/// directory, resolv.conf, the CA bundle) are in the runtime's tmpfs (`crate::binds`),
/// so the sandbox's mount table names no host path.
pub(crate) struct BundleInput<'a> {
    pub(crate) id: &'a str,
    pub(crate) netns_path: &'a str,
    pub(crate) agent_binary: &'a Path,
    pub(crate) token_file: &'a Path,
    pub(crate) limits: Limits,
    /// The sandbox's control directory (`crate::sandbox::make_ctl_dir`).
    pub(crate) ctl_dir: &'a Path,
    /// A copy of the host's resolv.conf, when it has one.
    pub(crate) resolv_conf: Option<&'a Path>,
    pub(crate) ca_bundle: Option<&'a Path>,
}

fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Spec(e.to_string())
}

fn bind(source: &Path, destination: &str) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["bind".into(), "ro".into(), "nosuid".into(), "nodev".into()])
        .build()
        .map_err(spec_err)
}

/// Syscalls refused with EPERM. These are the ones Docker's default profile refuses to a
/// container without extra capabilities: namespace creation and entry (the way into most
/// of the kernel's recent privilege escalations once user namespaces are unprivileged,
/// as on this kernel), kernel keyrings, module loading, BPF, perf, userfaultfd (a common
/// exploit primitive), mounting, clock and swap control, reboot, kexec, handle-based opens
/// (CVE-2014-3519, "shocker"), and NUMA policy. ptrace stays allowed, as in Docker: the
/// pid namespace already hides every process outside the sandbox.
/// TODO(issue 6): Docker's profile is an allow-list; this deny-list is narrower.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    // io_uring: a large kernel surface behind many recent privilege escalations, which
    // seccomp cannot look into (its operations are not syscalls); Docker refuses it too.
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
];

/// `clone` flags that create namespaces (CLONE_NEWNS … CLONE_NEWNET).
const NAMESPACE_FLAGS: &[u64] =
    &[0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000];
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// `socket`'s AF_VSOCK: host-guest sockets, a way to a hypervisor's or host's services
/// that no sandbox needs (CVE-2021-26708 was in this code); Docker refuses it too.
const AF_VSOCK: u64 = 40;
/// The `personality` values Docker's default profile allows: PER_LINUX, PER_LINUX32,
/// UNAME26, both, and 0xffffffff (which only asks). Any other flag is refused; some
/// weaken the sandbox's own defences (ADDR_NO_RANDOMIZE turns ASLR off,
/// READ_IMPLIES_EXEC makes readable memory executable).
const PERSONALITY_ALLOWED: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The 64-bit values from `lo` to `hi` as aligned power-of-two blocks, each a `(mask,
/// value)` that exactly its members meet (`x & mask == value`).
fn aligned_blocks(lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let (mut lo, hi) = (u128::from(lo), u128::from(hi));
    while lo <= hi {
        let mut size: u128 = if lo == 0 { 1 << 64 } else { 1 << lo.trailing_zeros() };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((!((size - 1) as u64), lo as u64));
        lo += size;
    }
}

/// The comparisons on `personality`'s argument that refuse every value but
/// [`PERSONALITY_ALLOWED`]. The filter's default is to allow, and one rule cannot
/// compare the same argument twice (libseccomp), so the refused values are the gaps
/// between the allowed ones: above the largest, one `>`; below, aligned blocks, one
/// masked `==` each (about 80 rules, all on this one syscall).
fn personality_refusals() -> Vec<(LinuxSeccompOperator, u64, u64)> {
    let mut blocks = Vec::new();
    let mut lo = 0u64;
    for allowed in PERSONALITY_ALLOWED {
        if allowed > lo {
            aligned_blocks(lo, allowed - 1, &mut blocks);
        }
        lo = allowed + 1;
    }
    let mut rules: Vec<_> =
        blocks.into_iter().map(|(mask, value)| (LinuxSeccompOperator::ScmpCmpMaskedEq, value, mask)).collect();
    rules.push((LinuxSeccompOperator::ScmpCmpGt, lo - 1, 0));
    rules
}

fn seccomp() -> Result<LinuxSeccomp> {
    let deny = |names: Vec<String>, errno: u32| -> Result<LinuxSyscall> {
        LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno)
            .build()
            .map_err(spec_err)
    };
    let mut rules = vec![
        deny(DENIED_SYSCALLS.iter().map(|s| s.to_string()).collect(), EPERM)?,
        // clone3 passes its flags in memory, where seccomp cannot look: refuse it as
        // unknown, and libc falls back to clone, whose flags are checked below.
        deny(vec!["clone3".into()], ENOSYS)?,
    ];
    for flag in NAMESPACE_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*flag)
            .value_two(*flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(spec_err)?;
        rules.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![arg])
                .build()
                .map_err(spec_err)?,
        );
    }
    let refuse_when = |name: &str, op: LinuxSeccompOperator, value: u64, value_two: u64| -> Result<LinuxSyscall> {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(value)
            .value_two(value_two)
            .op(op)
            .build()
            .map_err(spec_err)?;
        LinuxSyscallBuilder::default()
            .names(vec![name.to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(EPERM)
            .args(vec![arg])
            .build()
            .map_err(spec_err)
    };
    rules.push(refuse_when("socket", LinuxSeccompOperator::ScmpCmpEq, AF_VSOCK, 0)?);
    for (op, value, mask) in personality_refusals() {
        // For a masked comparison the OCI spec's `value` is the mask, `valueTwo` the value.
        let (v1, v2) = if op == LinuxSeccompOperator::ScmpCmpMaskedEq { (mask, value) } else { (value, 0) };
        rules.push(refuse_when("personality", op, v1, v2)?);
    }
    // Only the native ABI is listed: calls through any other (32-bit int 0x80, x32) hit
    // the filter's bad-architecture action and kill the caller, so they cannot slip by.
    let arch = match std::env::consts::ARCH {
        "aarch64" => Arch::ScmpArchAarch64,
        _ => Arch::ScmpArchX86_64,
    };
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![arch])
        .syscalls(rules)
        .build()
        .map_err(spec_err)
}

pub(crate) fn build(input: &BundleInput<'_>) -> Result<Spec> {
    let mut spec = Spec::default();

    // The agent runs as root inside, with only what it needs to start commands as the
    // sandbox user and to signal them; no_new_privs keeps setuid binaries inert.
    let caps: HashSet<Capability> = [Capability::Setuid, Capability::Setgid, Capability::Kill].into();
    let env = crate::sandbox::agent_env(input.ca_bundle.is_some());
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(spec_err)?)
        .args(crate::sandbox::agent_args(input.id))
        .env(env)
        .cwd("/")
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()
                .map_err(spec_err)?,
        )
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(4096u64)
                .soft(4096u64)
                .build()
                .map_err(spec_err)?,
        ])
        .build()
        .map_err(spec_err)?;
    spec.set_process(Some(process));
    spec.set_root(Some(RootBuilder::default().path("rootfs").readonly(false).build().map_err(spec_err)?));
    spec.set_hostname(Some("sandbox".into()));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(bind(input.agent_binary, AGENT_PATH)?);
    mounts.push(bind(input.token_file, TOKEN_PATH)?);
    // A directory, read-only: the runtime replaces files in it by rename (the deadline)
    // and the sandbox sees each new one; nothing inside can write there.
    mounts.push(bind(input.ctl_dir, CTL_DIR)?);
    // The host's resolver configuration, so egress by name works.
    if let Some(resolv_conf) = input.resolv_conf {
        mounts.push(bind(resolv_conf, "/etc/resolv.conf")?);
    }
    // The CAs the host trusts (a TLS-inspecting egress proxy's among them), where
    // Debian-style tools look for them.
    if let Some(ca) = input.ca_bundle {
        mounts.push(bind(ca, CA_BUNDLE_PATH)?);
    }
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec!["nosuid".into(), "nodev".into(), "mode=1777".into(), "size=256m".into()])
            .build()
            .map_err(spec_err)?,
    );
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().ok_or_else(|| Error::Spec("default spec has no linux section".into()))?;
    let namespaces: Vec<LinuxNamespace> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|ns| {
            if ns.typ() == LinuxNamespaceType::Network {
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(input.netns_path)
                    .build()
                    .map_err(spec_err)
            } else {
                Ok(ns)
            }
        })
        .collect::<Result<_>>()?;
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(format!("/sandstream/{}", input.id).into()));
    // The host kernel's command line (root device, boot options, sometimes secrets a
    // boot loader passed) is nothing a sandbox needs: read as empty (issue 19).
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    masked.push("/proc/cmdline".into());
    linux.set_masked_paths(Some(masked));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let memory = i64::try_from(input.limits.memory_bytes).map_err(spec_err)?;
    resources.set_memory(Some(LinuxMemoryBuilder::default().limit(memory).swap(memory).build().map_err(spec_err)?));
    resources
        .set_pids(Some(LinuxPidsBuilder::default().limit(i64::from(input.limits.pids)).build().map_err(spec_err)?));
    resources.set_cpu(Some(
        LinuxCpuBuilder::default()
            .period(100_000u64)
            .quota(i64::from(input.limits.cpu_millis) * 100)
            .build()
            .map_err(spec_err)?,
    ));
    linux.set_resources(Some(resources));
    linux.set_seccomp(Some(seccomp()?));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_limits_and_isolates() {
        let input = BundleInput {
            id: "sb-0123456789",
            netns_path: "/var/run/netns/sb-0123456789",
            agent_binary: Path::new("/opt/agent"),
            token_file: Path::new("/state/token"),
            limits: Limits { memory_bytes: 64 << 20, cpu_millis: 500, pids: 64, ..Limits::default() },
            ctl_dir: Path::new("/state/ctl"),
            resolv_conf: None,
            ca_bundle: None,
        };
        let json = serde_json::to_value(build(&input).expect("spec")).expect("json");
        let linux = &json["linux"];
        assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(linux["resources"]["pids"]["limit"], 64);
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        let ns: Vec<&str> =
            linux["namespaces"].as_array().expect("ns").iter().map(|n| n["type"].as_str().expect("type")).collect();
        for t in ["pid", "network", "ipc", "uts", "mount"] {
            assert!(ns.contains(&t), "namespace {t} missing: {ns:?}");
        }
        assert!(linux["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/kcore"));
        assert!(linux["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/cmdline"));
        assert!(linux["readonlyPaths"].as_array().expect("ro").iter().any(|p| p == "/proc/sys"));
        let process = &json["process"];
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(process["capabilities"]["bounding"].as_array().expect("caps").len(), 3);
        assert!(process["args"].as_array().expect("args").iter().any(|a| a == "1000:1000"));
        let args: Vec<&str> =
            process["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("arg")).collect();
        assert!(args.windows(2).any(|w| w == ["--command-env-file", "/.sandstream/ctl/env"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["--deadline-file", "/.sandstream/ctl/deadline"]), "{args:?}");
        let ctl = json["mounts"].as_array().expect("mounts").iter().find(|m| m["destination"] == CTL_DIR);
        let ctl = ctl.expect("the control directory is bound");
        assert_eq!(ctl["source"], "/state/ctl");
        assert!(ctl["options"].as_array().expect("options").iter().any(|o| o == "ro"), "read-only: {ctl}");
        // The tenant's variables never reach PID 1's environment.
        assert!(
            process["env"]
                .as_array()
                .expect("env")
                .iter()
                .all(|a| !a.as_str().unwrap_or("").starts_with("SANDSTREAM_AGENT")),
            "{}",
            process["env"]
        );
        let seccomp = &linux["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ALLOW");
        let denied: Vec<&str> = seccomp["syscalls"][0]["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("name"))
            .collect();
        for s in ["unshare", "setns", "keyctl", "bpf", "userfaultfd", "mount", "open_by_handle_at", "io_uring_setup"] {
            assert!(denied.contains(&s), "{s} must be denied");
        }
    }

    #[test]
    fn personality_refusals_cover_exactly_the_values_not_allowed() {
        let rules = personality_refusals();
        assert!(rules.len() < 100, "{} rules", rules.len());
        let refused = |x: u64| {
            rules.iter().any(|&(op, value, mask)| match op {
                LinuxSeccompOperator::ScmpCmpMaskedEq => x & mask == value,
                LinuxSeccompOperator::ScmpCmpGt => x > value,
                _ => unreachable!("only these two are made"),
            })
        };
        let mut samples: Vec<u64> = vec![1, 7, 9, 0x1_ffff, 0x2_0001, 0x2_0007, 0x2_0009, 0x4_0000, 0x40_0000];
        samples.extend([0xffff_fffe, 0x1_0000_0000, 0x1_0000_0008, u64::MAX, 1 << 63]);
        for a in PERSONALITY_ALLOWED {
            assert!(!refused(a), "{a:#x} is allowed");
            samples.extend([a.wrapping_sub(1), a + 1]);
        }
        for bit in 0..64 {
            samples.push(1 << bit);
            samples.push((1 << bit) | 8);
        }
        for x in samples {
            assert_eq!(refused(x), !PERSONALITY_ALLOWED.contains(&x), "{x:#x}");
        }
    }
}
