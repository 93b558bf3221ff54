//! The OCI runtime spec (config.json) of one sandbox.
//!
//! Starts from oci-spec's default (runc's `runc spec`: new pid, mount, ipc, uts and
//! network namespaces; Docker's masked and read-only /proc and /sys paths; devices
//! denied but the usual character devices) and tightens it.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::binds::AptSources;
use crate::error::{Error, Result};
use crate::types::Limits;
use crate::userns::{MAPPED_IDS, MappedIds};

pub(crate) use crate::sandbox::{AGENT_PATH, AGENT_PORT, CA_BUNDLE_PATH, CTL_DIR, TOKEN_PATH};

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
    /// The host ids the sandbox's user namespace maps its ids to.
    pub(crate) ids: MappedIds,
    /// Copies of the host's apt sources, when offered.
    pub(crate) apt: Option<&'a AptSources>,
}

/// What the agent (root inside) may do: Docker's default capability set, each of which
/// acts only inside the sandbox's own user namespace (its files, its processes), never
/// on the host's: to start commands as `user` or as root, `sudo`, and `apt-get install`
/// (chown, setuid, setgid, file modes and capabilities). Never CAP_SYS_ADMIN,
/// SYS_MODULE, SYS_RESOURCE, SYS_PTRACE, NET_ADMIN, SYS_TIME, and so on.
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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

pub(crate) fn build(input: &BundleInput<'_>) -> Result<Spec> {
    let mut spec = Spec::default();

    // The agent runs as root inside the sandbox's user namespace (host uid
    // `ids.uid(0)`, no capability over anything of the host's), with Docker's default
    // capabilities (`CAPABILITIES`). no_new_privs is off so that setuid `sudo` works:
    // it makes its caller root inside, which is what root inside already is. The
    // seccomp filter stays (mount, unshare, setns, keyctl, bpf... refused).
    let caps: HashSet<Capability> = CAPABILITIES.into();
    let env = crate::sandbox::agent_env(input.ca_bundle.is_some());
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(spec_err)?)
        .args(crate::sandbox::agent_args(input.id))
        .env(env)
        .cwd("/")
        .no_new_privileges(false)
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
    spec.set_root(Some(
        RootBuilder::default().path(super::rootfs::MOUNT_POINT).readonly(false).build().map_err(spec_err)?,
    ));
    spec.set_hostname(Some("sandbox".into()));

    // No /sys of the spec's own: the sandbox's sysfs is mounted in its root already
    // (`rootfs::mount_sysfs` says why runc cannot).
    let mut mounts: Vec<Mount> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys"))
        .collect();
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
    // The host's apt sources, so that root inside can `apt-get install`.
    if let Some(apt) = input.apt {
        if let Some(list) = &apt.sources_list {
            mounts.push(bind(list, "/etc/apt/sources.list")?);
        }
        mounts.push(bind(&apt.sources_list_d, "/etc/apt/sources.list.d")?);
        mounts.push(bind(&apt.apt_conf_d, "/etc/apt/apt.conf.d")?);
    }
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".into(),
                "nodev".into(),
                "mode=1777".into(),
                format!("size={}", input.limits.tmp_bytes()),
            ])
            .build()
            .map_err(spec_err)?,
    );
    // runc's default /dev/shm is 64 MiB whatever the memory (`Limits::shm_bytes`), and
    // its /dev/pts may take every pseudo-terminal of the host (`PTYS_PER_SANDBOX`).
    for m in &mut mounts {
        let (key, value) = match m.destination() {
            d if d == Path::new("/dev/shm") => ("size=", input.limits.shm_bytes()),
            d if d == Path::new("/dev/pts") => ("max=", u64::from(crate::types::PTYS_PER_SANDBOX)),
            _ => continue,
        };
        let mut options: Vec<String> =
            m.options().clone().unwrap_or_default().into_iter().filter(|o| !o.starts_with(key)).collect();
        options.push(format!("{key}{value}"));
        m.set_options(Some(options));
    }
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
    // A user namespace of its own: root inside is host uid `ids.uid(0)`, unprivileged,
    // and every id inside is one of the range reserved for sandboxes (`crate::userns`).
    let mut namespaces = namespaces;
    namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().map_err(spec_err)?);
    linux.set_namespaces(Some(namespaces));
    let map = |host: u32| {
        LinuxIdMappingBuilder::default().container_id(0u32).host_id(host).size(MAPPED_IDS).build().map_err(spec_err)
    };
    linux.set_uid_mappings(Some(vec![map(input.ids.uid_base)?]));
    linux.set_gid_mappings(Some(vec![map(input.ids.gid_base)?]));
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
    // The filter both backends share (`seccomp.rs`).
    linux.set_seccomp(Some(crate::seccomp::oci_filter()?));
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
            ids: MappedIds { uid_base: 231_072, gid_base: 231_072 },
            apt: Some(&AptSources {
                sources_list: None,
                sources_list_d: "/binds/apt-1/sources.list.d".into(),
                apt_conf_d: "/binds/apt-1/apt.conf.d".into(),
            }),
        };
        let json = serde_json::to_value(build(&input).expect("spec")).expect("json");
        let linux = &json["linux"];
        assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(linux["resources"]["pids"]["limit"], 64);
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        let ns: Vec<&str> =
            linux["namespaces"].as_array().expect("ns").iter().map(|n| n["type"].as_str().expect("type")).collect();
        for t in ["pid", "network", "ipc", "uts", "mount", "user"] {
            assert!(ns.contains(&t), "namespace {t} missing: {ns:?}");
        }
        let want = serde_json::json!([{"containerID": 0, "hostID": 231_072, "size": 65536}]);
        assert_eq!((&linux["uidMappings"], &linux["gidMappings"]), (&want, &want));
        assert_eq!(json["root"]["path"], super::super::rootfs::MOUNT_POINT);
        let mounts = json["mounts"].as_array().expect("mounts");
        assert!(mounts.iter().all(|m| m["destination"] != "/sys"), "sysfs is mounted beforehand: {mounts:?}");
        for d in ["/etc/apt/sources.list.d", "/etc/apt/apt.conf.d"] {
            let m = mounts.iter().find(|m| m["destination"] == d).unwrap_or_else(|| panic!("{d} is bound"));
            assert!(m["options"].as_array().expect("options").iter().any(|o| o == "ro"), "read-only: {m}");
        }
        assert!(mounts.iter().all(|m| m["destination"] != "/etc/apt/sources.list"), "the host has none");
        assert!(linux["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/kcore"));
        assert!(linux["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/cmdline"));
        assert!(linux["readonlyPaths"].as_array().expect("ro").iter().any(|p| p == "/proc/sys"));
        let process = &json["process"];
        assert_eq!(process["noNewPrivileges"], false, "setuid sudo makes its caller root inside");
        let bounding = process["capabilities"]["bounding"].as_array().expect("caps");
        assert_eq!(bounding.len(), 14, "Docker's default set: {bounding:?}");
        for never in ["CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RESOURCE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"] {
            assert!(!bounding.iter().any(|c| c == never), "{never} given: {bounding:?}");
        }
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
}
