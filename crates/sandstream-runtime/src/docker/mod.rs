//! The `docker` backend: sandboxes as containers of a Docker Engine, driven through its
//! API on a unix socket (bollard).
//!
//! A template directory becomes an image once (`image.rs`). Each sandbox is a container
//! named after its id, labelled `sandstream.sandbox=1` and `sandstream.runtime=<state
//! dir>` (so runtimes with different state dirs on one daemon never touch each other's),
//! on the dedicated bridge network `sandstream` (inter-container communication off),
//! with the agent as PID 1 and its port 50052 published on a host port Docker picks.
//! The host firewall (`firewall.rs`) keeps it away from the host, other sandboxes and
//! link-local addresses and applies its egress policy. Per sandbox the state dir holds
//! `sb-XXXXXXXXXX/` with links `token` and `ctl` to its token (0400) and control
//! directory in the runtime's tmpfs `STATE/.binds`, where every bind's source is
//! (`crate::binds`: the container's mount table names no host path of ours).
//!
//! Isolation is Docker's as far as it goes, tightened like the `oci` backend's: own
//! namespaces, a user namespace among them (the Engine must remap: root inside is an
//! unprivileged host uid, `userns.rs`), the `oci` backend's seccomp filter (`seccomp.rs`,
//! sent as a profile), Docker's AppArmor profile where the host has AppArmor, Docker's
//! default capabilities but NET_RAW (`spec.rs`), which act inside the sandbox's own
//! namespaces only (root inside installs packages; setuid `sudo` gives it to the sandbox
//! user), memory (swap included), CPU, pids and disk limits (the disk through the
//! storage driver's `size` option: see `ensure_storage`), the agent binary, token, CA
//! bundle, resolv.conf and the host's apt sources bound read-only, a tmpfs /tmp.

mod firewall;
mod image;
mod network;
mod removal;
mod spec;
mod userns;

use std::collections::HashMap;
use std::future::Future;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::EndpointSettings;
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, ListImagesOptions};

use crate::error::{Error, Result};
use crate::sandbox::{random_hex, suffix_of, write_deadline};
use crate::types::{Cidr, Runtime, Sandbox, SandboxSpec};
use crate::undo::Undo;
use crate::userns::MappedIds;
use sandstream_runner_protocol::SshCredential;

pub(crate) use crate::sandbox::{
    AGENT_PATH, AGENT_PORT, CA_BUNDLE_PATH, CTL_DIR, SSH_PORT, TOKEN_PATH, USER_ID, WORKDIR,
};
/// On every sandbox container.
pub const SANDBOX_LABEL: &str = "sandstream.sandbox";
/// The state dir of the runtime that owns a container.
const RUNTIME_LABEL: &str = "sandstream.runtime";

/// How the `docker` backend is set up.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The Engine's API socket.
    pub socket: PathBuf,
    /// Where sandboxes' tokens live (created 0700).
    pub state_dir: PathBuf,
    /// The static agent, bound read-only into every sandbox.
    pub agent_binary: PathBuf,
    /// How long `create` waits for the agent to answer.
    pub ready_timeout: Duration,
    /// A CA bundle bound read-only over the sandbox's (`None` keeps the template's own).
    pub ca_bundle: Option<PathBuf>,
    /// The bridge network sandboxes join, created if missing.
    pub network: String,
    /// Its Linux bridge (at most 15 bytes), which the host firewall rules name.
    pub bridge: String,
    /// Its addresses; must not overlap the host's other networks (the `oci` backend
    /// uses 10.88.0.0/16).
    pub subnet: Cidr,
    /// The private networks sandboxes may reach, as `OciConfig::private_egress`.
    pub private_egress: Vec<Cidr>,
    /// The flows one sandbox may hold open on the host, as
    /// `OciConfig::max_flows_per_sandbox`.
    pub max_flows_per_sandbox: u32,
}

impl DockerConfig {
    /// The defaults: /var/run/docker.sock, network `sandstream` on bridge `sandstream0`
    /// with 10.89.0.0/16, the host's CA bundle if any.
    pub fn new(state_dir: PathBuf, agent_binary: PathBuf) -> DockerConfig {
        let ca = PathBuf::from(CA_BUNDLE_PATH);
        DockerConfig {
            socket: "/var/run/docker.sock".into(),
            state_dir,
            agent_binary,
            ready_timeout: Duration::from_secs(10),
            ca_bundle: ca.is_file().then_some(ca),
            network: "sandstream".into(),
            bridge: "sandstream0".into(),
            subnet: Cidr { addr: Ipv4Addr::new(10, 89, 0, 0), prefix: 16 },
            private_egress: Vec::new(),
            max_flows_per_sandbox: crate::DEFAULT_MAX_FLOWS,
        }
    }
}

/// Sandboxes as Docker containers.
pub struct DockerRuntime {
    cfg: DockerConfig,
    docker: Docker,
    /// bollard is async and `Runtime` is blocking: calls run on this small runtime.
    /// Always `Some` until drop.
    rt: Option<tokio::runtime::Runtime>,
    /// Template path → image tag, for templates imported (or found) already.
    images: Mutex<HashMap<PathBuf, String>>,
    /// Held while importing, so one template is never imported twice at once.
    importing: Mutex<()>,
    /// The host ids of root inside every sandbox (the Engine's remapping).
    mapped: MappedIds,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Maps a bollard error to ours, naming the operation.
pub(crate) fn api_err(op: &str) -> impl FnOnce(bollard::errors::Error) -> Error + '_ {
    move |e| Error::Command { command: op.to_string(), detail: e.to_string() }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// What `inspect` tells about a sandbox container.
struct Found {
    running: bool,
    ip: Option<Ipv4Addr>,
    published_port: Option<u16>,
    ssh_published_port: Option<u16>,
}

impl DockerRuntime {
    /// Connects to the Engine, makes sure the sandbox network exists with the right
    /// options, and installs the host firewall rules for its bridge.
    pub fn new(cfg: DockerConfig) -> Result<DockerRuntime> {
        if !cfg.agent_binary.is_file() {
            return Err(Error::InvalidSpec(format!("agent binary {} does not exist", cfg.agent_binary.display())));
        }
        for (what, path) in [("agent binary", &cfg.agent_binary), ("state dir", &cfg.state_dir)] {
            // Docker's bind syntax is `source:destination:options`.
            if path.to_string_lossy().contains([':', ',']) || !path.is_absolute() {
                return Err(Error::InvalidSpec(format!(
                    "{what} {} must be absolute without ':' or ','",
                    path.display()
                )));
            }
        }
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 {
            return Err(Error::InvalidSpec(format!("bridge name {:?} must be 1 to 15 bytes", cfg.bridge)));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.state_dir)
            .map_err(|e| Error::io(format!("create state dir {}", cfg.state_dir.display()), e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sandstream-docker")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the docker client's runtime", e))?;
        let socket = cfg.socket.to_string_lossy().into_owned();
        let connect = async {
            let docker = Docker::connect_with_socket(&socket, 120, bollard::API_DEFAULT_VERSION)
                .map_err(api_err(&format!("connect to docker at {socket}")))?;
            // An older Engine refuses requests in a newer API version than its own.
            docker.negotiate_version().await.map_err(api_err(&format!("docker version at {socket}")))
        };
        let checked = block_on(&rt, connect).and_then(|docker| {
            let info = block_on(&rt, docker.info()).map_err(api_err("docker info"))?;
            spec::ensure_storage(&info, &cfg.socket)?;
            Ok((docker, userns::mapped_ids(&info, &cfg.socket)?))
        });
        let (docker, mapped) = match checked {
            Ok(c) => c,
            Err(e) => {
                // Dropping a tokio runtime blocks, which panics inside an async context.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let images = Mutex::new(HashMap::new());
        let runtime = DockerRuntime { cfg, docker, rt: Some(rt), images, importing: Mutex::new(()), mapped };
        runtime.ensure_network()?;
        firewall::ensure(&runtime.cfg.bridge)?;
        Ok(runtime)
    }

    /// The host ids of root inside the sandboxes: a file a sandbox's uid N owns is owned
    /// by host uid `mapped_ids().uid(N)` in the Engine's storage.
    pub fn mapped_ids(&self) -> MappedIds {
        self.mapped
    }

    fn block<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        block_on(self.rt.as_ref().expect("the runtime is only taken on drop"), f)
    }

    /// The image of `template`, imported on first use.
    fn image_for(&self, template: &Path) -> Result<String> {
        let tag = image::tag_for(template)?;
        if self.images.lock().unwrap_or_else(|p| p.into_inner()).get(template) == Some(&tag) {
            return Ok(tag);
        }
        let _importing = self.importing.lock().unwrap_or_else(|p| p.into_inner());
        let docker = &self.docker;
        let present = self.block(async {
            match docker.inspect_image(&tag).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(api_err("docker image inspect")(e)),
            }
        })?;
        if !present {
            let scratch = self.cfg.state_dir.join(format!("import-{}", random_hex(5)?));
            let started = Instant::now();
            tracing::info!(template = %template.display(), image = %tag, "importing template as a docker image");
            let r = self.block(image::import(docker, template, &tag, &scratch));
            let _ = crate::remove::remove_tree(&scratch);
            r?;
            tracing::info!(image = %tag, ms = started.elapsed().as_millis() as u64, "template imported");
        }
        self.images.lock().unwrap_or_else(|p| p.into_inner()).insert(template.to_path_buf(), tag.clone());
        Ok(tag)
    }

    /// Removes the image `template` was imported as, if no container uses it (Docker
    /// refuses then, and this says so). For templates that are gone or replaced.
    pub fn remove_template_image(&self, template: &Path) -> Result<()> {
        let tag = image::tag_for(template)?;
        self.images.lock().unwrap_or_else(|p| p.into_inner()).remove(template);
        self.remove_image(&tag).map(drop).map_err(api_err(&format!("docker rmi {tag}")))
    }

    /// `docker rmi TAG`: true when it removed the tag, false when there was none. A tag
    /// a container still uses is refused (status 409).
    fn remove_image(&self, tag: &str) -> std::result::Result<bool, bollard::errors::Error> {
        let docker = &self.docker;
        self.block(async {
            match docker.remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// The image tag `template` is (or would be) imported as.
    pub fn template_image(&self, template: &Path) -> Result<String> {
        image::tag_for(template)
    }

    /// Inspects container `id`; `None` when it does not exist or is not ours.
    fn inspect(&self, id: &str) -> Result<Option<Found>> {
        let docker = &self.docker;
        let info = self.block(async {
            match docker.inspect_container(id, None).await {
                Ok(c) => Ok(Some(c)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(api_err(&format!("docker inspect {id}"))(e)),
            }
        })?;
        let Some(info) = info else { return Ok(None) };
        let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        let ours = labels.get(SANDBOX_LABEL).map(String::as_str) == Some("1")
            && labels.get(RUNTIME_LABEL) == Some(&self.cfg.state_dir.display().to_string());
        if !ours {
            return Ok(None);
        }
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let net = info.network_settings.unwrap_or_default();
        let ip = net
            .networks
            .as_ref()
            .and_then(|n| n.get(&self.cfg.network))
            .and_then(|e: &EndpointSettings| e.ip_address.as_deref())
            .and_then(|ip| ip.parse().ok());
        let host_port = |inside: u16| {
            net.ports
                .as_ref()
                .and_then(|p| p.get(&format!("{inside}/tcp")))
                .and_then(|b| b.as_ref())
                .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()))
        };
        let (published_port, ssh_published_port) = (host_port(AGENT_PORT), host_port(SSH_PORT));
        Ok(Some(Found { running, ip, published_port, ssh_published_port }))
    }

    fn create_inner(&self, id: &str, suffix: &str, spec: &SandboxSpec) -> Result<Sandbox> {
        let image = self.image_for(&spec.template)?;
        let dir = self.cfg.state_dir.join(id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let shared = crate::binds::Shared {
            agent: &self.cfg.agent_binary,
            resolv_conf: spec::usable_resolv_conf(),
            ca_bundle: self.cfg.ca_bundle.as_deref(),
        };
        let binds = crate::binds::prepare(&self.cfg.state_dir, id, &dir, &spec.env, &shared)?;
        userns::hand_to_sandbox_root(&binds, self.mapped)?;

        let body = self.container_body(id, image, &binds, spec);
        let docker = &self.docker;
        self.block(async {
            let options = CreateContainerOptions { name: Some(id.to_string()), ..Default::default() };
            docker.create_container(Some(options), body).await.map_err(api_err(&format!("docker create {id}")))?;
            docker.start_container(id, None).await.map_err(api_err(&format!("docker start {id}")))
        })?;
        let found = self.inspect(id)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
        let (Some(ip), Some(published_port)) = (found.ip, found.published_port) else {
            return Err(Error::Command {
                command: format!("docker inspect {id}"),
                detail: format!("no address on network {} or no published port", self.cfg.network),
            });
        };
        // Until this, the catch-all DROP holds every packet the container sends.
        let private = crate::net::PrivateNets::of_host(&self.cfg.private_egress);
        let max_flows = self.cfg.max_flows_per_sandbox;
        firewall::add_sandbox(&self.cfg.bridge, self.cfg.subnet, suffix, ip, &spec.egress, &private, max_flows)?;

        let agent_addr = SocketAddr::from((ip, AGENT_PORT));
        if let Err(waited) = crate::ready::wait(agent_addr, self.cfg.ready_timeout, Duration::from_millis(2)) {
            return Err(Error::AgentNotReady {
                id: id.into(),
                addr: agent_addr.to_string(),
                waited_ms: waited.as_millis() as u64,
                log: self.logs(id),
            });
        }
        let ssh_published_port = found.ssh_published_port;
        Ok(Sandbox { id: id.to_string(), agent_addr, token: binds.token, published_port, ssh_published_port })
    }

    /// The container's own output (the agent's log), for error messages.
    fn logs(&self, id: &str) -> String {
        use futures_util::StreamExt;
        let docker = &self.docker;
        self.block(async {
            let options = bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: "50".into(),
                ..Default::default()
            };
            let mut out = String::new();
            let mut logs = docker.logs(id, Some(options));
            while let Some(Ok(chunk)) = logs.next().await {
                out.push_str(&chunk.to_string());
            }
            out
        })
    }

    /// Removes every trace of `id`; idempotent. The firewall rules go first: once the
    /// container is gone its address can be handed to a new one, which must never pass
    /// through this one's rules. When the container cannot be removed, the error is
    /// returned and its state dir (the token) stays, so a later kill or recovery finds
    /// the sandbox and tries again.
    fn destroy(&self, id: &str) -> Result<()> {
        let Some(suffix) = suffix_of(id) else { return Ok(()) };
        firewall::remove_sandbox(suffix);
        self.remove_container(id)?;
        let dir = self.cfg.state_dir.join(id);
        if let Err(e) = crate::remove::remove_tree(&dir) {
            tracing::warn!(sandbox_id = id, error = %e, "could not remove sandbox dir");
        }
        crate::binds::release(&self.cfg.state_dir, id);
        Ok(())
    }

    /// [`Self::destroy`] where nobody waits for the answer: its failure is logged.
    fn destroy_logged(&self, id: &str) {
        if let Err(e) = self.destroy(id) {
            tracing::warn!(sandbox_id = id, error = %e, "could not remove the sandbox; kept for a later attempt");
        }
    }

    /// Ids of this runtime's containers, sorted: only the running ones unless `all`.
    fn containers_where(&self, all: bool) -> Result<Vec<String>> {
        let docker = &self.docker;
        let filters: HashMap<String, Vec<String>> = [(
            "label".to_string(),
            vec![format!("{SANDBOX_LABEL}=1"), format!("{RUNTIME_LABEL}={}", self.cfg.state_dir.display())],
        )]
        .into();
        let list = self.block(async {
            let options = ListContainersOptions { all, filters: Some(filters), ..Default::default() };
            docker.list_containers(Some(options)).await.map_err(api_err("docker ps"))
        })?;
        let mut ids: Vec<String> = list
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| suffix_of(n).is_some())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Ids of this runtime's containers, running or not.
    fn containers(&self) -> Result<Vec<String>> {
        self.containers_where(true)
    }

    /// A sandbox from a previous run, if its container runs and its agent answers.
    fn adopt(&self, id: &str) -> Option<Sandbox> {
        let found = self.inspect(id).ok()??;
        if !found.running {
            return None;
        }
        let token = std::fs::read_to_string(self.cfg.state_dir.join(id).join("token")).ok()?.trim().to_string();
        let agent_addr = SocketAddr::from((found.ip?, AGENT_PORT));
        if !crate::ready::answers(agent_addr, Duration::from_secs(1)) {
            return None;
        }
        let ssh_published_port = found.ssh_published_port;
        Some(Sandbox {
            id: id.to_string(),
            agent_addr,
            token,
            published_port: found.published_port?,
            ssh_published_port,
        })
    }
}

/// Runs `f` to completion on `rt`, from any thread: inside another async runtime (where
/// blocking on a runtime panics) it is driven from a helper thread.
fn block_on<T: Send>(rt: &tokio::runtime::Runtime, f: impl Future<Output = T> + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(f);
    }
    std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

impl Runtime for DockerRuntime {
    fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        spec.validate()?;
        let suffix = random_hex(5)?;
        let id = format!("sb-{suffix}");
        let undo = Undo::new(|| self.destroy_logged(&id));
        let r = self.create_inner(&id, &suffix, spec);
        match &r {
            Ok(s) => {
                undo.keep();
                tracing::info!(sandbox_id = %id, agent = %s.agent_addr, port = s.published_port, "sandbox created")
            }
            Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "sandbox creation failed; cleaning up"),
        }
        r
    }

    fn kill(&self, id: &str) -> Result<()> {
        if suffix_of(id).is_none() {
            return Err(Error::NotFound(id.to_string()));
        }
        if self.inspect(id)?.is_none() && !self.cfg.state_dir.join(id).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        self.destroy(id)?;
        tracing::info!(sandbox_id = %id, "sandbox killed");
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        self.containers()
    }

    fn recover(&self) -> Result<Vec<Sandbox>> {
        let mut ids = self.containers()?;
        // State left by a runtime that died between writing it and creating the container.
        let entries = std::fs::read_dir(&self.cfg.state_dir)
            .map_err(|e| Error::io(format!("read {}", self.cfg.state_dir.display()), e))?;
        ids.extend(entries.flatten().filter_map(|e| e.file_name().to_str().map(String::from)));
        ids.retain(|n| suffix_of(n).is_some());
        ids.sort();
        ids.dedup();
        Ok(crate::sandbox::recover_each(ids, |id| self.adopt(id), |id| self.destroy_logged(id)))
    }

    fn running(&self, id: &str) -> bool {
        match self.inspect(id) {
            Ok(found) => found.is_some_and(|f| f.running),
            Err(e) => {
                tracing::debug!(sandbox_id = id, error = %e, "could not ask the Docker Engine; taken as running");
                true
            }
        }
    }

    fn set_deadline(&self, id: &str, deadline_ms: Option<i64>) -> Result<()> {
        if suffix_of(id).is_none() {
            return Err(Error::NotFound(id.to_string()));
        }
        let dir = self.cfg.state_dir.join(id);
        write_deadline(id, &dir, deadline_ms)?;
        userns::hand_ctl_file_to_sandbox_root(&dir.join("ctl"), "deadline", self.mapped)
    }

    fn update_ssh_access(&self, id: &str, add: &[SshCredential], revoke_passwords: bool) -> Result<()> {
        let dir = self.cfg.state_dir.join(id);
        crate::sandbox::update_ssh_access(id, &dir, add, revoke_passwords)?;
        userns::hand_ctl_file_to_sandbox_root(&dir.join("ctl"), crate::sandbox::SSH_ACCESS_FILE, self.mapped)
    }

    /// One list of this runtime's running containers, not one inspect per sandbox: the
    /// runner asks every 2 s.
    fn not_running(&self, ids: &[String]) -> Vec<String> {
        match self.containers_where(false) {
            Ok(running) => ids.iter().filter(|id| running.binary_search(id).is_err()).cloned().collect(),
            Err(e) => {
                tracing::debug!(error = %e, "could not ask the Docker Engine; all taken as running");
                Vec::new()
            }
        }
    }

    /// Template images whose template directory is gone, or is no longer the version the
    /// image was imported from (a replaced or removed template, a rebuilt default), are
    /// removed. One a container still uses is refused by the Engine and kept for a later
    /// collection. Images from before they named their template are left alone.
    fn collect_template_images(&self) -> Result<Vec<String>> {
        // Not while a template is being imported (its new tag is not current yet).
        let _importing = self.importing.lock().unwrap_or_else(|p| p.into_inner());
        let docker = &self.docker;
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![image::SOURCE_LABEL.to_string()])].into();
        let images = self.block(async {
            let options = ListImagesOptions { filters: Some(filters), ..Default::default() };
            docker.list_images(Some(options)).await.map_err(api_err("docker images"))
        })?;
        let prefix = format!("{}:", image::REPOSITORY);
        let mut removed = Vec::new();
        for img in images {
            let Some(template) = img.labels.get(image::SOURCE_LABEL).and_then(|l| image::source_of(l)) else {
                continue;
            };
            let current = image::tag_for(&template).ok();
            for tag in img.repo_tags.iter().filter(|t| t.starts_with(&prefix) && current.as_ref() != Some(*t)) {
                let gone = match self.remove_image(tag) {
                    Ok(gone) => gone,
                    // A container still uses it.
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => false,
                    Err(e) => return Err(api_err(&format!("docker rmi {tag}"))(e)),
                };
                if gone {
                    tracing::info!(image = %tag, template = %template.display(), "removed the image of a template version that is gone");
                    removed.push(tag.clone());
                }
            }
        }
        self.images.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, tag| !removed.contains(tag));
        Ok(removed)
    }
}
