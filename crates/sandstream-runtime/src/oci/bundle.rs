//! The OCI runtime spec (config.json) of one sandbox.
//!
//! Starts from oci-spec's default (runc's `runc spec`: new pid, mount, ipc, uts and
//! network namespaces; Docker's masked and read-only /proc and /sys paths; devices
//! denied but the usual character devices) and tightens it.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
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
            .options(vec![
                "nosuid".into(),
                "nodev".into(),
                "mode=1777".into(),
                format!("size={}", input.limits.tmp_bytes()),
            ])
            .build()
            .map_err(spec_err)?,
    );
    // runc's default /dev/shm is 64 MiB whatever the memory (`Limits::shm_bytes`).
    for m in &mut mounts {
        if m.destination() == Path::new("/dev/shm") {
            let mut options: Vec<String> =
                m.options().clone().unwrap_or_default().into_iter().filter(|o| !o.starts_with("size=")).collect();
            options.push(format!("size={}", input.limits.shm_bytes()));
            m.set_options(Some(options));
        }
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
}
