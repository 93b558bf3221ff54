//! The seccomp filter every sandbox runs under, on either backend. One rule set, given
//! in two forms: the OCI spec's `linux.seccomp` for runc and crun ([`oci_filter`]) and
//! a Docker Engine profile for `HostConfig.SecurityOpt` `seccomp=<json>`
//! ([`docker_profile`]). The Engine's own default profile is not used: before 25.0 (as
//! Debian's 20.10) it lets io_uring and AF_VSOCK sockets through, so the `docker`
//! backend ships this one, and both backends refuse the same calls.
//!
//! A deny-list on a default of allow: what is listed fails with an errno, everything
//! else runs. Docker's profile is an allow-list, which also refuses syscalls newer than
//! itself; this one refuses what that profile refuses to a container without extra
//! capabilities, as far as this list goes.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscallBuilder,
};
use serde_json::json;

use crate::error::{Error, Result};

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

/// A comparison of a syscall's first argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    /// `arg == value`
    Eq(u64),
    /// `arg > value`
    Gt(u64),
    /// `arg & mask == value`
    MaskedEq { mask: u64, value: u64 },
}

impl Cmp {
    /// libseccomp's name of the operator, and the OCI spec's `value` and `valueTwo` (for
    /// a masked comparison `value` is the mask, `valueTwo` the value; runc, crun and the
    /// Docker Engine all read it so).
    fn parts(self) -> (LinuxSeccompOperator, &'static str, u64, u64) {
        match self {
            Cmp::Eq(v) => (LinuxSeccompOperator::ScmpCmpEq, "SCMP_CMP_EQ", v, 0),
            Cmp::Gt(v) => (LinuxSeccompOperator::ScmpCmpGt, "SCMP_CMP_GT", v, 0),
            Cmp::MaskedEq { mask, value } => (LinuxSeccompOperator::ScmpCmpMaskedEq, "SCMP_CMP_MASKED_EQ", mask, value),
        }
    }

    #[cfg(test)]
    fn holds(self, x: u64) -> bool {
        match self {
            Cmp::Eq(v) => x == v,
            Cmp::Gt(v) => x > v,
            Cmp::MaskedEq { mask, value } => x & mask == value,
        }
    }
}

/// A call to one of `names` (whose first argument meets `arg`, when there is one)
/// fails with `errno` and does nothing.
struct Rule {
    names: Vec<&'static str>,
    errno: u32,
    arg: Option<Cmp>,
}

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
fn personality_refusals() -> Vec<Cmp> {
    let mut blocks = Vec::new();
    let mut lo = 0u64;
    for allowed in PERSONALITY_ALLOWED {
        if allowed > lo {
            aligned_blocks(lo, allowed - 1, &mut blocks);
        }
        lo = allowed + 1;
    }
    let mut refusals: Vec<_> = blocks.into_iter().map(|(mask, value)| Cmp::MaskedEq { mask, value }).collect();
    refusals.push(Cmp::Gt(lo - 1));
    refusals
}

/// Every rule, in the order the filter checks them.
fn rules() -> Vec<Rule> {
    let mut rules = vec![
        Rule { names: DENIED_SYSCALLS.to_vec(), errno: EPERM, arg: None },
        // clone3 passes its flags in memory, where seccomp cannot look: refuse it as
        // unknown, and libc falls back to clone, whose flags are checked below.
        Rule { names: vec!["clone3"], errno: ENOSYS, arg: None },
    ];
    for &flag in NAMESPACE_FLAGS {
        rules.push(Rule { names: vec!["clone"], errno: EPERM, arg: Some(Cmp::MaskedEq { mask: flag, value: flag }) });
    }
    rules.push(Rule { names: vec!["socket"], errno: EPERM, arg: Some(Cmp::Eq(AF_VSOCK)) });
    for cmp in personality_refusals() {
        rules.push(Rule { names: vec!["personality"], errno: EPERM, arg: Some(cmp) });
    }
    rules
}

/// Only the native ABI is listed: calls through any other (32-bit int 0x80, x32) hit
/// the filter's bad-architecture action and kill the caller, so they cannot slip by.
fn native_arch() -> (Arch, &'static str) {
    match std::env::consts::ARCH {
        "aarch64" => (Arch::ScmpArchAarch64, "SCMP_ARCH_AARCH64"),
        _ => (Arch::ScmpArchX86_64, "SCMP_ARCH_X86_64"),
    }
}

fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Spec(e.to_string())
}

/// The filter as the OCI runtime spec's `linux.seccomp`, for runc and crun.
pub(crate) fn oci_filter() -> Result<LinuxSeccomp> {
    let syscalls = rules()
        .into_iter()
        .map(|rule| {
            let mut call = LinuxSyscallBuilder::default()
                .names(rule.names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(rule.errno);
            if let Some(cmp) = rule.arg {
                let (op, _, value, value_two) = cmp.parts();
                let arg = LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(value)
                    .value_two(value_two)
                    .op(op)
                    .build()
                    .map_err(spec_err)?;
                call = call.args(vec![arg]);
            }
            call.build().map_err(spec_err)
        })
        .collect::<Result<Vec<_>>>()?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![native_arch().0])
        .syscalls(syscalls)
        .build()
        .map_err(spec_err)
}

/// The filter as a Docker Engine seccomp profile (the text `--security-opt
/// seccomp=FILE` sends). Only fields Engine 20.10 reads are used: `defaultAction`,
/// `architectures`, and per rule `names`, `action`, `errnoRet` (read since 20.10; an
/// older Engine would ignore it and answer EPERM, which only clone3's ENOSYS needs) and
/// `args`. Not `defaultErrnoRet`, which 20.10 silently drops.
pub(crate) fn docker_profile() -> String {
    let syscalls: Vec<serde_json::Value> = rules()
        .into_iter()
        .map(|rule| {
            let args: Vec<serde_json::Value> = rule
                .arg
                .map(|cmp| {
                    let (_, op, value, value_two) = cmp.parts();
                    json!({ "index": 0, "value": value, "valueTwo": value_two, "op": op })
                })
                .into_iter()
                .collect();
            json!({ "names": rule.names, "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno, "args": args })
        })
        .collect();
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": [native_arch().1], "syscalls": syscalls }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_refusals_cover_exactly_the_values_not_allowed() {
        let refusals = personality_refusals();
        assert!(refusals.len() < 100, "{} rules", refusals.len());
        let refused = |x: u64| refusals.iter().any(|cmp| cmp.holds(x));
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

    /// The Docker profile says exactly what the OCI filter says, in the fields Engine
    /// 20.10 reads (its `profiles/seccomp` types), and in no other: a field the Engine
    /// does not know would be dropped without a word, and its rule with it.
    #[test]
    fn the_docker_profile_is_the_oci_filter_in_fields_engine_20_10_reads() {
        let docker: serde_json::Value = serde_json::from_str(&docker_profile()).expect("json");
        let oci = serde_json::to_value(oci_filter().expect("filter")).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&docker), ["architectures", "defaultAction", "syscalls"]);
        assert_eq!(docker["defaultAction"], oci["defaultAction"]);
        assert_eq!(docker["architectures"], oci["architectures"]);
        let (d, o) = (docker["syscalls"].as_array().expect("rules"), oci["syscalls"].as_array().expect("rules"));
        assert_eq!(d.len(), o.len());
        assert!(d.len() > 80, "{} rules", d.len());
        for (d, o) in d.iter().zip(o) {
            assert_eq!(keys(d), ["action", "args", "errnoRet", "names"], "{d}");
            for field in ["names", "action", "errnoRet"] {
                assert_eq!(d[field], o[field], "{field}: {d} vs {o}");
            }
            let args = d["args"].as_array().expect("args");
            assert_eq!(args.len(), o["args"].as_array().map_or(0, Vec::len), "{d} vs {o}");
            for (da, oa) in args.iter().zip(o["args"].as_array().into_iter().flatten()) {
                assert_eq!(keys(da), ["index", "op", "value", "valueTwo"], "{da}");
                for field in ["index", "op", "value", "valueTwo"] {
                    assert_eq!(da[field], oa[field], "{field}: {da} vs {oa}");
                }
            }
        }
        let rule = |name: &str| -> Vec<serde_json::Value> {
            d.iter().filter(|r| r["names"].as_array().expect("names").iter().any(|n| n == name)).cloned().collect()
        };
        assert_eq!(rule("io_uring_setup").iter().map(|r| r["errnoRet"].clone()).collect::<Vec<_>>(), [1]);
        assert_eq!(rule("clone3").iter().map(|r| r["errnoRet"].clone()).collect::<Vec<_>>(), [38]);
        let vsock = rule("socket");
        assert_eq!(vsock.len(), 1);
        assert_eq!(vsock[0]["args"], json!([{ "index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_EQ" }]));
    }
}
