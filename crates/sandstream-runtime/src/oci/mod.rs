//! The `oci` backend: an OCI bundle per sandbox, driven through an OCI runtime binary
//! (runc by default; crun, runsc or youki by configuration).
//!
//! This file is the orchestration: the order of a create's and a destroy's steps, what
//! a failure undoes, and finding sandboxes again after a restart. The steps themselves
//! are elsewhere: `layout.rs` (the state directory's paths and small files), `rootfs.rs`
//! (mounting the sandbox's root), `bundle.rs` (its config.json), `cli.rs` (the OCI
//! runtime's command line, behind the `OciCli` trait), `os.rs` (every other side effect
//! on the host, behind the `Os` trait), `preflight.rs` (what `new` checks). The two
//! traits are the seam the unit tests (`tests.rs`, with the recording double of
//! `fake.rs`) drive this orchestration through, without root.
//!
//! A create, in order: a network slot; the sandbox's directory and its bind sources; its
//! network namespace; then side by side (a) the link and firewall rules and (b) on a
//! thread of its own, in a private mount namespace, the disk image, the root mount, the
//! bundle and the OCI runtime's `run`; then the wait for the agent. Any failure (or
//! panic) after the slot is claimed runs the destroy below (`crate::undo`).
//!
//! A destroy, in order: the network teardown (rules, namespace, link) side by side with
//! the container's: `kill`, its init's death awaited (at most 200 ms), `delete --force`
//! (the OCI runtime removes the cgroup), the host rootfs mount an earlier version left
//! (if any) detached, then, only if the init is dead and nothing is mounted on the
//! rootfs, the directory removed (the disk image with it) and the bind sources released;
//! last, the slot given back. A container that will not stop keeps its files.
//!
//! A create, timed on a 2-core VM (tracing's `sandbox create timings` event has the
//! phases): the namespace (in-process, well under 1 ms), then side by side the link
//! and firewall rules (the link over netlink, then one `iptables-restore`: 3-6 ms) and the
//! container (overlay mount and `runc run --detach`: 20-30 ms with runc, 8-14 ms with
//! crun, nearly all the runtime's), then the agent's first accepted connection (about
//! 1 ms later). These hold with the cgroup filesystem mounted `favordynmods`
//! (`crate::cgroupfs`), which `new` sees to; without it, add 5-25 ms.

mod bundle;
mod cli;
mod config;
#[cfg(test)]
mod fake;
mod layout;
mod os;
mod preflight;
mod rootfs;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::binds::Binds;
use crate::busy::Busy;
use crate::error::{Error, Result};
use crate::net::{self, Published};
use crate::sandbox::{SSH_PORT, random_hex, suffix_of, update_ssh_access, write_deadline};
use crate::types::{Runtime, Sandbox, SandboxSpec};
use crate::undo::Undo;
use crate::userns::MappedIds;
use sandstream_runner_protocol::SshCredential;

pub use config::OciConfig;

/// The host's apt configuration, whose sources sandboxes get (`binds::AptSources`).
const APT_DIR: &str = "/etc/apt";

use cli::OciCli;
use layout::Layout;
use os::Os;

/// Sandboxes as OCI containers on this host.
#[derive(Debug)]
pub struct OciRuntime {
    cfg: OciConfig,
    /// The host ids sandboxes' ids map to (`crate::userns`).
    ids: MappedIds,
    slots: Mutex<HashMap<String, u32>>,
    busy: Busy,
    os: Arc<dyn Os>,
    cli: Arc<dyn OciCli>,
}

impl OciRuntime {
    /// Checks the configuration, installs the host firewall rules for sandbox links and,
    /// unless told not to, has the cgroup filesystem mounted with `favordynmods` (see
    /// `cgroupfs.rs`).
    pub fn new(cfg: OciConfig) -> Result<OciRuntime> {
        let (cfg, ids) = preflight::check(cfg)?;
        let cli = Arc::new(cli::Binary::new(cfg.runtime.clone()));
        Ok(OciRuntime::with(cfg, Arc::new(os::Host), cli, ids))
    }

    /// A runtime doing its work through `os` and `cli`, with `cfg` taken as checked and
    /// sandboxes' ids mapped to `ids`.
    fn with(cfg: OciConfig, os: Arc<dyn Os>, cli: Arc<dyn OciCli>, ids: MappedIds) -> OciRuntime {
        OciRuntime { cfg, ids, slots: Mutex::new(HashMap::new()), busy: Busy::default(), os, cli }
    }

    /// The host ids this runtime's sandboxes' ids map to: root inside is host uid
    /// `uid_base`, `user` (1000) is `uid_base + 1000`.
    pub fn mapped_ids(&self) -> MappedIds {
        self.ids
    }

    /// The host ports of slot `slot`: its agent's, then its SSH server's.
    fn ports(&self, slot: u32) -> Result<[Published; 2]> {
        let port = |base: u16| u16::try_from(u32::from(base) + slot).map_err(|_| Error::NoAddress);
        Ok([
            Published { host: port(self.cfg.publish_port_base)?, inside: bundle::AGENT_PORT },
            Published { host: port(self.cfg.ssh_port_base)?, inside: SSH_PORT },
        ])
    }

    fn alloc_slot(&self, id: &str) -> Result<u32> {
        let slot = self.os.claim_slot()?;
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), slot);
        Ok(slot)
    }

    fn create_inner(&self, id: &str, suffix: &str, slot: u32, spec: &SandboxSpec) -> Result<Sandbox> {
        let started = Instant::now();
        let layout = Layout::new(&self.cfg.state_dir, id);
        layout.create(slot)?;
        let resolv_conf = Path::new("/etc/resolv.conf");
        let shared = crate::binds::Shared {
            agent: &self.cfg.agent_binary,
            resolv_conf: resolv_conf.exists().then_some(resolv_conf),
            ca_bundle: self.cfg.ca_bundle.as_deref(),
        };
        // The host's apt sources, for a template that has apt (`binds::AptSources`).
        let apt = Path::new(APT_DIR);
        let apt = (apt.is_dir() && spec.template.join("etc/apt").is_dir()).then_some(apt);
        let binds = self.os.prepare_binds(&self.cfg.state_dir, id, layout.dir(), &spec.env, &shared, self.ids, apt)?;

        let prepared = started.elapsed();

        // runc joins the namespace, so it must exist first; the link and the firewall
        // rules are made while runc starts the container. Nothing in the sandbox runs
        // before `create` returns (the agent runs commands only for its token's
        // holder), and both are in place by then.
        let ports = self.ports(slot)?;
        self.os.create_namespace(suffix)?;
        let (network, container) = std::thread::scope(|s| {
            let network = s.spawn(|| {
                let t = Instant::now();
                let (private, max_flows) = (&self.cfg.private_egress, self.cfg.max_flows_per_sandbox);
                self.os.connect(suffix, slot, &spec.egress, private, max_flows, &ports).map(|()| t.elapsed())
            });
            let t = Instant::now();
            let container = s
                .spawn(|| {
                    self.os.enter_private_mounts()?;
                    self.start_container(id, &layout, &binds, spec)
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map(|oci_run| (t.elapsed(), oci_run));
            (network.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), container)
        });
        let (container, oci_run) = container?;
        let network = network?;

        let agent_addr = SocketAddr::from((net::slot_addrs(slot).1, bundle::AGENT_PORT));
        let waited =
            self.os.wait_for_agent(agent_addr, self.cfg.ready_timeout).map_err(|waited| Error::AgentNotReady {
                id: id.into(),
                addr: agent_addr.to_string(),
                waited_ms: waited.as_millis() as u64,
                log: layout.agent_log_text(),
            })?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            sandbox_id = id,
            prepare_ms = ms(prepared),
            network_ms = ms(network),
            container_ms = ms(container),
            oci_run_ms = ms(oci_run),
            ready_wait_ms = ms(waited),
            total_ms = ms(started.elapsed()),
            "sandbox create timings"
        );
        Ok(Sandbox {
            id: id.to_string(),
            agent_addr,
            token: binds.token,
            published_port: ports[0].host,
            ssh_published_port: Some(ports[1].host),
        })
    }

    /// Makes the sandbox's disk, mounts its root (the template under its private upper
    /// layer: `rootfs.rs`), writes the bundle's config.json and runs the container. Call
    /// on a thread in a private mount namespace (`rootfs::enter_private_mounts`): the
    /// container's namespace is copied from it, and the mounts go when the container does.
    /// Returns how long the OCI runtime's `run` took.
    fn start_container(&self, id: &str, layout: &Layout, binds: &Binds, spec: &SandboxSpec) -> Result<Duration> {
        self.os.make_disk(&layout.disk_image(), &spec.limits, &layout::blanks(&self.cfg.state_dir))?;
        let netns = net::netns_path(suffix_of(id).unwrap_or_default());
        let mounted = self.os.mount_root(layout, &spec.template, self.ids, Path::new(&netns))?;
        let oci = bundle::build(&bundle::BundleInput {
            id,
            netns_path: &netns,
            ids: self.ids,
            apt: binds.apt.as_ref(),
            agent_binary: &binds.agent,
            token_file: &binds.token_file,
            limits: spec.limits,
            ctl_dir: &binds.ctl_dir,
            resolv_conf: binds.resolv_conf.as_deref(),
            ca_bundle: binds.ca_bundle.as_deref(),
        })?;
        oci.save(layout.config()).map_err(|e| Error::Spec(e.to_string()))?;
        let started = Instant::now();
        self.cli.run(id, layout.dir(), &layout.pid(), &layout.agent_log())?;
        // The container's mounts now hold the filesystem, and the loop device with it.
        drop(mounted);
        Ok(started.elapsed())
    }

    /// Removes every trace of `id`, in the order given at the top of this module; best
    /// effort and idempotent. The container and its network are taken down side by
    /// side: removing a sandbox's rules first only ever takes reach away from it (its
    /// packets then meet the shared chains' DROPs), and its link goes with its
    /// namespace. Its files go once its rootfs is unmounted, and its address slot is
    /// given back last.
    fn destroy(&self, id: &str) {
        let Some(suffix) = suffix_of(id) else { return };
        // A second destroy of this sandbox waits here, then finds its slot given back.
        let _held = self.busy.hold(id);
        let layout = Layout::new(&self.cfg.state_dir, id);
        let remembered = self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let slot = remembered.or_else(|| layout.read_slot());
        let started = Instant::now();
        let (network, (container, unmounted)) = std::thread::scope(|s| {
            let network = slot.map(|slot| {
                let ports = self.ports(slot).map(|p| p.to_vec()).unwrap_or_default();
                s.spawn(move || {
                    self.os.disconnect(suffix, slot, &ports);
                    started.elapsed()
                })
            });
            let stopped = self.stop_container(id, &layout);
            let container = started.elapsed();
            let rootfs_clear = match self.os.unmount_host_rootfs(&layout.rootfs()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(sandbox_id = id, error = %e, "could not unmount rootfs; its files are kept");
                    false
                }
            };
            let unmounted = started.elapsed();
            // Never delete through a still-mounted rootfs, nor under a container that
            // still runs on it.
            if !stopped {
                tracing::warn!(sandbox_id = id, "container still runs; its files are kept");
            } else if rootfs_clear {
                if let Err(e) = self.os.remove_dir(layout.dir()) {
                    tracing::warn!(sandbox_id = id, error = %e, "could not remove sandbox dir");
                }
                self.os.release_binds(&self.cfg.state_dir, id);
            }
            (network.map(|n| n.join().unwrap_or_else(|p| std::panic::resume_unwind(p))), (container, unmounted))
        });
        if let Some(slot) = slot {
            layout.forget_slot();
            self.os.release_slot(slot);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            sandbox_id = id,
            container_ms = ms(container),
            unmounted_ms = ms(unmounted),
            network_ms = network.map_or(0.0, ms),
            total_ms = ms(started.elapsed()),
            "sandbox destroy timings"
        );
    }

    /// Kills the container and deletes it from the OCI runtime; false if its init still
    /// runs afterwards. `runc delete --force` on a container whose init has not died yet
    /// sleeps 100 ms before looking again, so its death is awaited here first (a zombie
    /// counts as dead, as it does for runc).
    fn stop_container(&self, id: &str, layout: &Layout) -> bool {
        self.cli.kill(id);
        let pid = layout.read_pid();
        if let Some(pid) = pid {
            let started = Instant::now();
            while self.os.runs(pid, id) && started.elapsed() < Duration::from_millis(200) {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        self.cli.delete(id);
        !pid.is_some_and(|pid| self.os.runs(pid, id))
    }

    /// A sandbox from a previous run, if its container runs and its agent answers.
    fn adopt(&self, id: &str) -> Option<Sandbox> {
        let layout = Layout::new(&self.cfg.state_dir, id);
        let slot = layout.read_slot()?;
        let token = layout.read_token()?;
        if !cli::is_running(&self.cli.state(id).ok()?) {
            return None;
        }
        let agent_addr = SocketAddr::from((net::slot_addrs(slot).1, bundle::AGENT_PORT));
        if !self.os.agent_answers(agent_addr) {
            return None;
        }
        let ports = self.ports(slot).ok()?;
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), slot);
        Some(Sandbox {
            id: id.to_string(),
            agent_addr,
            token,
            published_port: ports[0].host,
            ssh_published_port: Some(ports[1].host),
        })
    }
}

impl Runtime for OciRuntime {
    fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        spec.validate()?;
        let suffix = random_hex(5)?;
        let id = format!("sb-{suffix}");
        let slot = self.alloc_slot(&id)?;
        let undo = Undo::new(|| self.destroy(&id));
        let r = self.create_inner(&id, &suffix, slot, spec);
        match &r {
            Ok(s) => {
                undo.keep();
                tracing::info!(sandbox_id = %id, agent = %s.agent_addr, "sandbox created")
            }
            Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "sandbox creation failed; cleaning up"),
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

    fn running(&self, id: &str) -> bool {
        // Two reads in /proc: cheap enough to ask for every sandbox every few seconds.
        suffix_of(id).is_some()
            && Layout::new(&self.cfg.state_dir, id).read_pid().is_some_and(|pid| self.os.runs(pid, id))
    }

    fn set_deadline(&self, id: &str, deadline_ms: Option<i64>) -> Result<()> {
        if suffix_of(id).is_none() {
            return Err(Error::NotFound(id.to_string()));
        }
        write_deadline(id, &self.cfg.state_dir.join(id), deadline_ms)
    }

    fn update_ssh_access(&self, id: &str, add: &[SshCredential], revoke_passwords: bool) -> Result<()> {
        update_ssh_access(id, &self.cfg.state_dir.join(id), add, revoke_passwords)
    }
}
