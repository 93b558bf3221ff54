//! The `oci` backend: an OCI bundle per sandbox, driven through an OCI runtime binary
//! (runc by default; crun, runsc or youki by configuration).
//!
//! Layout of a sandbox under the state directory, `STATE/sb-XXXXXXXXXX/`:
//! `upper/` and `work/` (its private overlay layers), `rootfs/` (the overlay of the
//! read-only template and `upper/`), `token` (0400), `config.json`, `agent.log`.

mod bundle;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::host::{run, run_quiet};
use crate::net;
use crate::types::{Runtime, Sandbox, SandboxSpec};

/// How the `oci` backend is set up.
#[derive(Debug, Clone)]
pub struct OciConfig {
    /// Where sandboxes' bundles live (created 0700).
    pub state_dir: PathBuf,
    /// The OCI runtime binary: `runc`, `crun`, `runsc`, `youki`.
    pub runtime: PathBuf,
    /// The static agent, bind-mounted read-only into every sandbox.
    pub agent_binary: PathBuf,
    /// How long `create` waits for the agent to answer.
    pub ready_timeout: Duration,
    /// Sandbox agents are published on host ports `publish_port_base + slot` (slots
    /// run from 1 to 16383).
    pub publish_port_base: u16,
    /// A CA bundle bound read-only over the sandbox's, so sandboxes trust what the host
    /// trusts (`None` keeps the template's own).
    pub ca_bundle: Option<PathBuf>,
}

impl OciConfig {
    /// The defaults for this host: runc, port base 40000, the host's CA bundle if any.
    pub fn new(state_dir: PathBuf, agent_binary: PathBuf) -> OciConfig {
        let ca = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        OciConfig {
            state_dir,
            runtime: "runc".into(),
            agent_binary,
            ready_timeout: Duration::from_secs(10),
            publish_port_base: 40000,
            ca_bundle: ca.is_file().then_some(ca),
        }
    }
}

/// Sandboxes as OCI containers on this host.
#[derive(Debug)]
pub struct OciRuntime {
    cfg: OciConfig,
    slots: Mutex<HashMap<String, u32>>,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::io("random bytes", std::io::Error::other(e.to_string())))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn suffix_of(id: &str) -> Option<&str> {
    id.strip_prefix("sb-").filter(|s| s.len() == 10 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

impl OciRuntime {
    /// Checks the configuration and installs the host firewall rules for sandbox links.
    pub fn new(cfg: OciConfig) -> Result<OciRuntime> {
        if !cfg.agent_binary.is_file() {
            return Err(Error::InvalidSpec(format!("agent binary {} does not exist", cfg.agent_binary.display())));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.state_dir)
            .map_err(|e| Error::io(format!("create state dir {}", cfg.state_dir.display()), e))?;
        net::ensure_firewall()?;
        Ok(OciRuntime { cfg, slots: Mutex::new(HashMap::new()) })
    }

    fn runtime(&self) -> &str {
        self.cfg.runtime.to_str().unwrap_or("runc")
    }

    fn published_port(&self, slot: u32) -> Result<u16> {
        u16::try_from(u32::from(self.cfg.publish_port_base) + slot).map_err(|_| Error::NoAddress)
    }

    fn alloc_slot(&self, id: &str) -> Result<u32> {
        let slot = net::claim_slot()?;
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), slot);
        Ok(slot)
    }

    fn create_inner(&self, id: &str, suffix: &str, slot: u32, spec: &SandboxSpec) -> Result<Sandbox> {
        let dir = self.cfg.state_dir.join(id);
        let mkdir = |p: &Path| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))
        };
        mkdir(&dir)?;
        std::fs::write(dir.join("slot"), slot.to_string()).map_err(|e| Error::io("write slot", e))?;
        mkdir(&dir.join("work"))?;
        // The merged root takes its owner and mode from the upper layer's root, so that
        // one must be traversable by the sandbox user, like any root directory.
        for sub in ["upper", "rootfs"] {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir.join(sub))
                .map_err(|e| Error::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let token = random_hex(24)?;
        let token_file = dir.join("token");
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o400)
            .open(&token_file)
            .map_err(|e| Error::io("write token", e))?;
        f.write_all(token.as_bytes()).map_err(|e| Error::io("write token", e))?;

        let rootfs = dir.join("rootfs");
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            spec.template.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| Error::io(format!("mount overlay on {}", rootfs.display()), e.into()))?;
        // The writable layer is fresh and nothing has run in the sandbox yet, so no path
        // here can be a link planted by sandbox code (the Judge0 escapes came from a host
        // acting as root on paths the sandbox could write).
        let home = rootfs.join(bundle::WORKDIR.trim_start_matches('/'));
        std::fs::create_dir_all(&home).map_err(|e| Error::io(format!("create {}", home.display()), e))?;
        let uid = nix::unistd::Uid::from_raw(bundle::USER_ID);
        let gid = nix::unistd::Gid::from_raw(bundle::USER_ID);
        nix::unistd::chown(&home, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {}", home.display()), e.into()))?;
        // runc mounts /tmp's tmpfs with the mode of the directory it covers (its `mode=`
        // option is not honoured), so the mount point must already be world-writable and
        // sticky, whatever the template has.
        let tmp = rootfs.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .map_err(|e| Error::io(format!("chmod {}", tmp.display()), e))?;

        let published_port = self.published_port(slot)?;
        net::create(suffix, slot, &spec.egress, published_port, bundle::AGENT_PORT)?;
        let netns = net::netns_path(suffix);
        let oci = bundle::build(&bundle::BundleInput {
            id,
            netns_path: &netns,
            agent_binary: &self.cfg.agent_binary,
            token_file: &token_file,
            limits: spec.limits,
            env: &spec.env,
            ca_bundle: self.cfg.ca_bundle.as_deref(),
        })?;
        oci.save(dir.join("config.json")).map_err(|e| Error::Spec(e.to_string()))?;

        // The agent's stdout and stderr go to agent.log; runc hands its own stdio over.
        let log = File::create(dir.join("agent.log")).map_err(|e| Error::io("create agent.log", e))?;
        let log2 = log.try_clone().map_err(|e| Error::io("agent.log", e))?;
        let status = Command::new(&self.cfg.runtime)
            .args(["create", "--bundle"])
            .arg(&dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .status()
            .map_err(|e| Error::Command { command: format!("{} create", self.runtime()), detail: e.to_string() })?;
        if !status.success() {
            let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            return Err(Error::Command { command: format!("{} create {id}", self.runtime()), detail: log });
        }
        run(self.runtime(), &["start", id])?;

        let agent_addr = SocketAddr::from((net::slot_addrs(slot).1, bundle::AGENT_PORT));
        let started = Instant::now();
        while TcpStream::connect_timeout(&agent_addr, Duration::from_millis(200)).is_err() {
            if started.elapsed() > self.cfg.ready_timeout {
                let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
                return Err(Error::AgentNotReady {
                    id: id.into(),
                    addr: agent_addr.to_string(),
                    waited_ms: started.elapsed().as_millis() as u64,
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Sandbox { id: id.to_string(), agent_addr, token, published_port })
    }

    /// Removes every trace of `id`; best effort and idempotent.
    fn destroy(&self, id: &str) {
        let Some(suffix) = suffix_of(id) else { return };
        run_quiet(self.runtime(), &["kill", id, "KILL"]);
        run_quiet(self.runtime(), &["delete", "--force", id]);
        let dir = self.cfg.state_dir.join(id);
        let rootfs = dir.join("rootfs");
        if is_mount_point(&rootfs)
            && let Err(e) = nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH)
        {
            tracing::warn!(sandbox_id = id, error = %e, "could not unmount rootfs");
        }
        let remembered = self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let slot = remembered.or_else(|| std::fs::read_to_string(dir.join("slot")).ok()?.trim().parse().ok());
        if let Some(slot) = slot {
            let port = self.published_port(slot).unwrap_or(0);
            net::destroy(suffix, slot, port, bundle::AGENT_PORT);
            net::release_slot(slot);
        }
        // Never delete through a still-mounted rootfs.
        if !is_mount_point(&rootfs)
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(sandbox_id = id, error = %e, "could not remove sandbox dir");
        }
    }
}

impl Runtime for OciRuntime {
    fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        spec.validate()?;
        let suffix = random_hex(5)?;
        let id = format!("sb-{suffix}");
        let slot = self.alloc_slot(&id)?;
        let r = self.create_inner(&id, &suffix, slot, spec);
        match &r {
            Ok(s) => tracing::info!(sandbox_id = %id, agent = %s.agent_addr, "sandbox created"),
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "sandbox creation failed; cleaning up");
                self.destroy(&id);
            }
        }
        r
    }

    fn kill(&self, id: &str) -> Result<()> {
        if suffix_of(id).is_none() || !self.cfg.state_dir.join(id).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        self.destroy(id);
        tracing::info!(sandbox_id = %id, "sandbox killed");
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.cfg.state_dir)
            .map_err(|e| Error::io(format!("read {}", self.cfg.state_dir.display()), e))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| suffix_of(n).is_some())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn recover(&self) -> Result<Vec<Sandbox>> {
        Ok(crate::sandbox::recover_each(self.list()?, |id| self.adopt(id), |id| self.destroy(id)))
    }
}

impl OciRuntime {
    /// A sandbox from a previous run, if its container runs and its agent answers.
    fn adopt(&self, id: &str) -> Option<Sandbox> {
        let dir = self.cfg.state_dir.join(id);
        let slot: u32 = std::fs::read_to_string(dir.join("slot")).ok()?.trim().parse().ok()?;
        let token = std::fs::read_to_string(dir.join("token")).ok()?.trim().to_string();
        let state = run(self.runtime(), &["state", id]).ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        if state.get("status").and_then(|s| s.as_str()) != Some("running") {
            return None;
        }
        let agent_addr = SocketAddr::from((net::slot_addrs(slot).1, bundle::AGENT_PORT));
        TcpStream::connect_timeout(&agent_addr, Duration::from_secs(1)).ok()?;
        let published_port = self.published_port(slot).ok()?;
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), slot);
        Some(Sandbox { id: id.to_string(), agent_addr, token, published_port })
    }
}
