//! The `oci` backend: an OCI bundle per sandbox, driven through an OCI runtime binary
//! (runc by default; crun, runsc or youki by configuration).
//!
//! Layout of a sandbox under the state directory, `STATE/sb-XXXXXXXXXX/`:
//! `disk.img` (its own filesystem, sized to its disk limit: `crate::disk`) and `disk/`
//! (where that is mounted, holding `upper/` and `work/`, its private overlay layers),
//! `rootfs/` (where the overlay of the read-only template and `upper/` is mounted; both
//! mounts are in the container's mount namespace only: the host's mount table does not
//! grow with the sandboxes), `token` and `ctl` (links to the sandbox's token and control
//! directory in the runtime's tmpfs `STATE/.binds`, where every bind's source is:
//! `crate::binds`), `slot` (its network slot), `config.json`, `agent.log`, `pid` (the
//! container's init on the host, from runc).
//!
//! A create, timed on a 2-core VM (tracing's `sandbox create timings` event has the
//! phases): the namespace (in-process, well under 1 ms), then side by side the link
//! and firewall rules (the link over netlink, then one `iptables-restore`: 3-6 ms) and the
//! container (overlay mount and `runc run --detach`: 20-30 ms with runc, 8-14 ms with
//! crun, nearly all the runtime's), then the agent's first accepted connection (about
//! 1 ms later). These hold with the cgroup filesystem mounted `favordynmods`
//! (`crate::cgroupfs`), which `new` sees to; without it, add 5-25 ms.

mod bundle;

use std::collections::HashMap;
use std::fs::File;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::binds::Binds;
use crate::busy::Busy;
use crate::error::{Error, Result};
use crate::host::{run, run_quiet};
use crate::net;
use crate::sandbox::{random_hex, suffix_of, write_deadline};
use crate::types::{Cidr, Runtime, Sandbox, SandboxSpec};
use crate::undo::Undo;

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
    /// Whether starting the runtime remounts the host's cgroup filesystem with
    /// `favordynmods` (see `cgroupfs.rs`): host-wide, creates 5–25 ms faster, forks and
    /// exits dearer, and on recent kernels not undone until reboot. Default true.
    pub favor_dynamic_cgroups: bool,
    /// The private networks (RFC 1918, 100.64.0.0/10, the host's LAN) sandboxes may
    /// reach, subject to their egress policy; all others are closed to them. Default
    /// none (the host's resolvers stay reachable on port 53 anyway).
    pub private_egress: Vec<Cidr>,
    /// The flows (connection-tracking entries) one sandbox may hold open on the host;
    /// see [`crate::DEFAULT_MAX_FLOWS`], the default.
    pub max_flows_per_sandbox: u32,
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
            favor_dynamic_cgroups: true,
            private_egress: Vec::new(),
            max_flows_per_sandbox: crate::DEFAULT_MAX_FLOWS,
        }
    }
}

/// Sandboxes as OCI containers on this host.
#[derive(Debug)]
pub struct OciRuntime {
    cfg: OciConfig,
    slots: Mutex<HashMap<String, u32>>,
    busy: Busy,
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// On a host with the hybrid cgroup layout (v1 hierarchies, v2 at
/// /sys/fs/cgroup/unified), the controllers the v2 hierarchy still has, when any.
fn hybrid_v2_controllers() -> Option<String> {
    if nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    {
        return None;
    }
    let c = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").ok()?;
    let c = c.trim();
    (!c.is_empty()).then(|| c.to_string())
}

impl OciRuntime {
    /// Checks the configuration, installs the host firewall rules for sandbox links and,
    /// unless told not to, has the cgroup filesystem mounted with `favordynmods` (see
    /// `cgroupfs.rs`).
    pub fn new(mut cfg: OciConfig) -> Result<OciRuntime> {
        // Absolute, so nothing depends on the working directory (a create changes its
        // thread's own: `start_container`).
        cfg.state_dir = std::path::absolute(&cfg.state_dir)
            .map_err(|e| Error::io(format!("resolve state dir {}", cfg.state_dir.display()), e))?;
        if !cfg.agent_binary.is_file() {
            return Err(Error::InvalidSpec(format!("agent binary {} does not exist", cfg.agent_binary.display())));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.state_dir)
            .map_err(|e| Error::io(format!("create state dir {}", cfg.state_dir.display()), e))?;
        if cfg.runtime.file_name().is_some_and(|n| n == "crun")
            && let Some(controllers) = hybrid_v2_controllers()
        {
            return Err(Error::InvalidSpec(format!(
                "crun cannot run sandboxes on this host: its cgroup layout is hybrid (v1 and v2) and the v2 \
                 hierarchy has controllers ({controllers}); scripts/cgroups.sh binds them to cgroup v1"
            )));
        }
        net::ensure_firewall()?;
        if cfg.favor_dynamic_cgroups {
            crate::cgroupfs::favor_dynamic_changes();
        }
        Ok(OciRuntime { cfg, slots: Mutex::new(HashMap::new()), busy: Busy::default() })
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
        let started = Instant::now();
        let dir = self.cfg.state_dir.join(id);
        let mkdir = |p: &Path| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))
        };
        mkdir(&dir)?;
        std::fs::write(dir.join("slot"), slot.to_string()).map_err(|e| Error::io("write slot", e))?;
        for sub in ["disk", "rootfs"] {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir.join(sub))
                .map_err(|e| Error::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let resolv_conf = Path::new("/etc/resolv.conf");
        let shared = crate::binds::Shared {
            agent: &self.cfg.agent_binary,
            resolv_conf: resolv_conf.exists().then_some(resolv_conf),
            ca_bundle: self.cfg.ca_bundle.as_deref(),
        };
        let binds = crate::binds::prepare(&self.cfg.state_dir, id, &dir, &spec.env, &shared)?;

        let prepared = started.elapsed();

        // runc joins the namespace, so it must exist first; the link and the firewall
        // rules are made while runc starts the container. Nothing in the sandbox runs
        // before `create` returns (the agent runs commands only for its token's
        // holder), and both are in place by then.
        let published_port = self.published_port(slot)?;
        net::create_namespace(suffix)?;
        let (network, container) = std::thread::scope(|s| {
            let network = s.spawn(|| {
                let t = Instant::now();
                let private = net::PrivateNets::of_host(&self.cfg.private_egress);
                let max_flows = self.cfg.max_flows_per_sandbox;
                net::connect(suffix, slot, &spec.egress, &private, max_flows, published_port, bundle::AGENT_PORT)
                    .map(|()| t.elapsed())
            });
            let t = Instant::now();
            let container = s
                .spawn(|| in_private_mounts(|| self.start_container(id, &dir, &binds, spec)))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map(|oci_run| (t.elapsed(), oci_run));
            (network.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), container)
        });
        let (container, oci_run) = container?;
        let network = network?;

        let agent_addr = SocketAddr::from((net::slot_addrs(slot).1, bundle::AGENT_PORT));
        let waiting = Instant::now();
        // A refused connection costs a round trip on the veth link, so the agent is asked
        // often: it usually listens 2-3 ms after runc returns.
        while TcpStream::connect_timeout(&agent_addr, Duration::from_millis(200)).is_err() {
            if waiting.elapsed() > self.cfg.ready_timeout {
                let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
                return Err(Error::AgentNotReady {
                    id: id.into(),
                    addr: agent_addr.to_string(),
                    waited_ms: waiting.elapsed().as_millis() as u64,
                    log,
                });
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            sandbox_id = id,
            prepare_ms = ms(prepared),
            network_ms = ms(network),
            container_ms = ms(container),
            oci_run_ms = ms(oci_run),
            ready_wait_ms = ms(waiting.elapsed()),
            total_ms = ms(started.elapsed()),
            "sandbox create timings"
        );
        Ok(Sandbox { id: id.to_string(), agent_addr, token: binds.token, published_port })
    }

    /// Mounts the sandbox's root (the template under its private upper layer), prepares
    /// it, writes the bundle's config.json and runs the container (`runc run --detach`:
    /// one runc process instead of `create` and `start`). The agent's stdout and stderr
    /// go to agent.log; runc hands its own stdio over.
    ///
    /// Called in a private mount namespace ([`in_private_mounts`]): the overlay is never
    /// mounted on the host, only in that namespace, which the container's is copied
    /// from, and it goes when the container does. runc reads the mount table many
    /// times per container, so every mount the host holds per sandbox makes every later
    /// create slower (about +20 ms per 800 mounts here).
    /// Returns how long the OCI runtime's `run` took.
    fn start_container(&self, id: &str, dir: &Path, binds: &Binds, spec: &SandboxSpec) -> Result<Duration> {
        // The writable layer lives in the sandbox's own filesystem (`disk.rs`), mounted
        // here in this thread's private namespace: its size and inode count are the
        // sandbox's disk limits, enforced by the kernel.
        let image = dir.join("disk.img");
        crate::disk::make(&image, &spec.limits, &self.cfg.state_dir.join(".disks"))?;
        let device = crate::disk::attach(&image)?;
        let disk = dir.join("disk");
        crate::disk::mount(&device, &disk)?;
        let (upper, work) = (disk.join("upper"), disk.join("work"));
        // The merged root takes its owner and mode from the upper layer's root, so that
        // one must be traversable by the sandbox user, like any root directory.
        for (sub, mode) in [(&upper, 0o755), (&work, 0o700)] {
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(sub)
                .map_err(|e| Error::io(format!("create {}", sub.display()), e))?;
        }
        let rootfs = dir.join("rootfs");
        // The kernel shows the options as given in the sandbox's own /proc/self/mountinfo,
        // where host paths told every tenant the state dir and the template's place on the
        // host. So the private layers are named by descriptors (`/proc/self/fd/N`), and the
        // template by its directory's name alone, relative to its parent as this thread's
        // working directory (private to it: see `in_private_mounts`). That name (the
        // template's name and version, nothing of the host) is also how the catalog finds
        // the versions still in use (`template::mounts`).
        let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("open {}", p.display()), e));
        let (upper, work) = (open(&upper)?, open(&work)?);
        let fd = |f: &File| format!("/proc/self/fd/{}", f.as_raw_fd());
        let template = std::path::absolute(&spec.template)
            .map_err(|e| Error::io(format!("resolve {}", spec.template.display()), e))?;
        let (Some(parent), Some(leaf)) = (template.parent(), template.file_name()) else {
            return Err(Error::Spec(format!("template path {} has no parent", spec.template.display())));
        };
        let leaf = leaf.to_str().filter(|l| !l.contains([',', ':', '=', '\\'])).ok_or_else(|| {
            Error::Spec(format!("template directory {} cannot be named in overlay options", spec.template.display()))
        })?;
        std::env::set_current_dir(parent).map_err(|e| Error::io(format!("enter {}", parent.display()), e))?;
        let options = format!("lowerdir={leaf},upperdir={},workdir={}", fd(&upper), fd(&work));
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| Error::io(format!("mount overlay on {}", rootfs.display()), e.into()))?;
        drop((upper, work));
        std::env::set_current_dir("/").map_err(|e| Error::io("leave the template's directory", e))?;
        // The template is someone else's image, and its /home, /home/user or /tmp may be
        // a symlink: each is resolved in the sandbox's root, as the sandbox will see it,
        // never on the host (where `home -> /etc` would have the host's /etc chowned).
        // The writable layer is fresh and nothing has run in the sandbox yet, so only the
        // template can have planted such links.
        let home = dir_in_root(&rootfs, Path::new(bundle::WORKDIR), &spec.template)?;
        std::os::unix::fs::fchown(&home, Some(bundle::USER_ID), Some(bundle::USER_ID))
            .map_err(|e| Error::io(format!("template {}: chown {}", spec.template.display(), bundle::WORKDIR), e))?;
        // runc mounts /tmp's tmpfs with the mode of the directory it covers (its `mode=`
        // option is not honoured), so the mount point must already be world-writable and
        // sticky, whatever the template has.
        let tmp = dir_in_root(&rootfs, Path::new("/tmp"), &spec.template)?;
        nix::sys::stat::fchmod(&tmp, Mode::from_bits_truncate(0o1777))
            .map_err(|e| Error::io(format!("template {}: chmod /tmp", spec.template.display()), e.into()))?;

        let netns = net::netns_path(suffix_of(id).unwrap_or_default());
        let oci = bundle::build(&bundle::BundleInput {
            id,
            netns_path: &netns,
            agent_binary: &binds.agent,
            token_file: &binds.token_file,
            limits: spec.limits,
            ctl_dir: &binds.ctl_dir,
            resolv_conf: binds.resolv_conf.as_deref(),
            ca_bundle: binds.ca_bundle.as_deref(),
        })?;
        oci.save(dir.join("config.json")).map_err(|e| Error::Spec(e.to_string()))?;
        let log = File::create(dir.join("agent.log")).map_err(|e| Error::io("create agent.log", e))?;
        let log2 = log.try_clone().map_err(|e| Error::io("agent.log", e))?;
        let started = Instant::now();
        let status = Command::new(&self.cfg.runtime)
            .args(["run", "--detach", "--bundle"])
            .arg(dir)
            .arg("--pid-file")
            .arg(dir.join("pid"))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .status()
            .map_err(|e| Error::Command { command: format!("{} run", self.runtime()), detail: e.to_string() })?;
        if !status.success() {
            let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            return Err(Error::Command { command: format!("{} run --detach {id}", self.runtime()), detail: log });
        }
        // The container's mounts now hold the filesystem, and the loop device with it.
        drop(device);
        Ok(started.elapsed())
    }

    /// Removes every trace of `id`; best effort and idempotent. The container and its
    /// network are taken down side by side: removing a sandbox's rules first only ever
    /// takes reach away from it (its packets then meet the shared chains' DROPs), and
    /// its link goes with its namespace. Its files go once its rootfs is unmounted, and
    /// its address slot is given back last.
    fn destroy(&self, id: &str) {
        let Some(suffix) = suffix_of(id) else { return };
        // A second destroy of this sandbox waits here, then finds its slot given back.
        let _held = self.busy.hold(id);
        let dir = self.cfg.state_dir.join(id);
        let remembered = self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let slot = remembered.or_else(|| std::fs::read_to_string(dir.join("slot")).ok()?.trim().parse().ok());
        let started = Instant::now();
        let (network, (container, unmounted)) = std::thread::scope(|s| {
            let network = slot.map(|slot| {
                let port = self.published_port(slot).unwrap_or(0);
                s.spawn(move || {
                    net::destroy(suffix, slot, port, bundle::AGENT_PORT);
                    started.elapsed()
                })
            });
            let stopped = self.stop_container(id, &dir);
            let container = started.elapsed();
            // Only a sandbox made by an earlier version has its rootfs mounted on the
            // host; now it is mounted in the container's own namespace alone.
            let rootfs = dir.join("rootfs");
            if is_mount_point(&rootfs)
                && let Err(e) = nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH)
            {
                tracing::warn!(sandbox_id = id, error = %e, "could not unmount rootfs");
            }
            let unmounted = started.elapsed();
            // Never delete through a still-mounted rootfs, nor under a container that
            // still runs on it.
            if !stopped {
                tracing::warn!(sandbox_id = id, "container still runs; its files are kept");
            } else if !is_mount_point(&rootfs) {
                if let Err(e) = crate::remove::remove_tree(&dir) {
                    tracing::warn!(sandbox_id = id, error = %e, "could not remove sandbox dir");
                }
                crate::binds::release(&self.cfg.state_dir, id);
            }
            (network.map(|n| n.join().unwrap_or_else(|p| std::panic::resume_unwind(p))), (container, unmounted))
        });
        if let Some(slot) = slot {
            // A kept sandbox dir no longer names the slot: it is given back once.
            let _ = std::fs::remove_file(dir.join("slot"));
            net::release_slot(slot);
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

    /// Kills the container and deletes it from runc; false if its init still runs
    /// afterwards. `runc delete --force` on a container whose init has not died yet
    /// sleeps 100 ms before looking again, so its death is awaited here first (a zombie
    /// counts as dead, as it does for runc).
    fn stop_container(&self, id: &str, dir: &Path) -> bool {
        run_quiet(self.runtime(), &["kill", id, "KILL"]);
        let pid = std::fs::read_to_string(dir.join("pid")).ok().and_then(|p| p.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            let started = Instant::now();
            while runs_in_sandbox(pid, id) && started.elapsed() < Duration::from_millis(200) {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        run_quiet(self.runtime(), &["delete", "--force", id]);
        !pid.is_some_and(|pid| runs_in_sandbox(pid, id))
    }
}

/// Opens directory `path` of the root filesystem at `root` as a process chrooted there
/// would find it: symlinks on the way resolve inside `root` (`openat2`'s
/// `RESOLVE_IN_ROOT`; an absolute target starts at `root`, `..` stops there) and never
/// leave it for the host. Missing directories are made (root's, 0755). A link to a
/// directory that does not exist is refused: its target is the template's to provide.
fn dir_in_root(root: &Path, path: &Path, template: &Path) -> Result<OwnedFd> {
    let fail = |what: &str, e: Errno| Error::io(format!("template {}: {what}", template.display()), e.into());
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail("open its root", e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    let mut dir = nix::fcntl::openat2(&root_fd, ".", how).map_err(|e| fail("open its root", e))?;
    let mut prefix = PathBuf::new();
    for part in path.components().filter(|c| matches!(c, Component::Normal(_))) {
        prefix.push(part);
        let shown = format!("/{}", prefix.display());
        let mut next = nix::fcntl::openat2(&root_fd, &prefix, how);
        if matches!(next, Err(Errno::ENOENT)) {
            // `part` is a plain name in the directory resolved so far: made there, or
            // already there as a dangling link (EEXIST), never followed.
            match nix::sys::stat::mkdirat(&dir, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(fail(&format!("mkdir {shown}"), e)),
            }
            next = nix::fcntl::openat2(&root_fd, &prefix, how);
        }
        dir = next.map_err(|e| match e {
            Errno::ENOENT => fail(&format!("{shown} is a link to a directory the template does not have"), e),
            e => fail(&format!("open {shown}"), e),
        })?;
    }
    Ok(dir)
}

/// Runs `f` on this thread in a mount namespace of its own (a copy of this process's,
/// receiving the host's mounts and unmounts but never sending its own), for mounts
/// that only a container started from this thread should see. The namespace goes when
/// the thread ends and nothing else uses it.
fn in_private_mounts<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    // CLONE_NEWNS takes CLONE_FS with it: this thread gets its own root and cwd too,
    // which is allowed for one thread of a multi-threaded process.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::io("unshare a mount namespace", e.into()))?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| Error::io("make the private mount namespace a slave", e.into()))?;
    f()
}

/// Whether process `pid` is a live process of sandbox `id` (exists, is neither a zombie
/// nor dead, and is in the sandbox's cgroup): so a pid reused by another process since
/// never counts.
fn runs_in_sandbox(pid: u32, id: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may hold any byte.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z' | 'X' | 'x')) {
        return false;
    }
    let cgroup = format!("/sandstream/{id}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.ends_with(&cgroup) || l.contains(&format!("{cgroup}/"))))
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
            && std::fs::read_to_string(self.cfg.state_dir.join(id).join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(|pid| runs_in_sandbox(pid, id))
    }

    fn set_deadline(&self, id: &str, deadline_ms: Option<i64>) -> Result<()> {
        if suffix_of(id).is_none() {
            return Err(Error::NotFound(id.to_string()));
        }
        write_deadline(id, &self.cfg.state_dir.join(id), deadline_ms)
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
