//! The default template: Debian (or Ubuntu) as a machine to work in: the sandbox user
//! `user` (uid 1000, home /home/user), Python 3 with pip and venv, Node.js
//! [`NODE_VERSION`] with npm and TypeScript, git, curl, wget, a C toolchain and the usual
//! tools (`machine.rs`). Built on first use by mmdebstrap from **the host's own apt
//! sources**, Node.js by the host's npm from its own registry configuration (no mirror or
//! registry is ever named here), then cached in `CACHE/default-<hash of the recipe>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::READY_MARK;
use super::machine::{self, NODE_VERSION, NodeSource};
use crate::error::{Error, Result};

/// Debian packages of the default template, whatever its Node.js comes from.
pub const DEFAULT_PACKAGES: &[&str] = &[
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "ca-certificates",
    "git",
    "curl",
    "wget",
    "build-essential",
    "procps",
    "less",
    "unzip",
    "jq",
    // Root inside the sandbox for `user`, without a password (`machine::finish_root`).
    "sudo",
    // `sftp` and `scp` (which speaks SFTP) through the agent's SSH server.
    "openssh-sftp-server",
];

/// Returns the default template under `cache_dir`, building it first if needed. Each
/// line the build prints goes to `progress`. Concurrent callers (threads or processes)
/// wait for one build; a half-built template is never returned.
pub fn ensure_default_template(cache_dir: &Path, mut progress: impl FnMut(&str)) -> Result<PathBuf> {
    let node = NodeSource::for_host();
    let name = dir_name(&node);
    let target = cache_dir.join(&name);
    if target.join(READY_MARK).exists() {
        progress(&format!("using the cached default template at {}", target.display()));
        return Ok(target);
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(format!("create {}", cache_dir.display()), e))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache_dir.join(format!("{name}.lock")))
        .map_err(|e| Error::io("open template lock", e))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("lock template", e.into()))?;
    if target.join(READY_MARK).exists() {
        progress(&format!("another build finished the default template at {}", target.display()));
        return Ok(target);
    }
    let suite = host_codename()?;
    let sources = host_apt_sources()?;
    let building = cache_dir.join(format!("{name}.building"));
    let node_prefix = cache_dir.join(format!("{name}.node"));
    for stale in [&building, &node_prefix] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| Error::io("remove an interrupted build", e))?;
        }
    }
    let built = build(&node, &suite, &sources, &building, &node_prefix, &mut progress);
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&building);
        let _ = std::fs::remove_dir_all(&node_prefix);
    }
    built?;
    std::fs::rename(&building, &target).map_err(|e| Error::io(format!("move template to {}", target.display()), e))?;
    progress(&format!("default template ready at {}", target.display()));
    Ok(target)
}

/// Builds the template into `building` (Node.js first into `node_prefix`, when it comes
/// from the registry) and marks it ready.
fn build(
    node: &NodeSource,
    suite: &str,
    sources: &[PathBuf],
    building: &Path,
    node_prefix: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let prefix = match node {
        NodeSource::Registry { npm, package } => {
            machine::fetch_node(npm, package, node_prefix, progress)?;
            Some(node_prefix)
        }
        NodeSource::Debian { why } => {
            progress(&format!(
                "the default template gets Debian's Node.js ({}), not Node.js {NODE_VERSION}: {why}",
                node.packages().join(", ")
            ));
            None
        }
    };
    let packages = packages(node);
    progress(&format!("building the default template ({suite}: {}) with mmdebstrap", packages.join(", ")));
    machine::run(
        Command::new("mmdebstrap")
            .args(["--variant=apt", "--mode=root"])
            .arg(format!("--include={}", packages.join(",")))
            // The sandbox gets no apt sources of its own: packages come from its users'
            // own pip and npm, not from the host's mirrors.
            .arg("--customize-hook=rm -f \"$1\"/etc/apt/sources.list \"$1\"/etc/apt/sources.list.d/*")
            .arg(format!("--customize-hook={}", machine::user_hook()))
            .arg(suite)
            .arg(building)
            .args(sources),
        "mmdebstrap",
        progress,
    )?;
    machine::finish_root(building, prefix)?;
    if prefix.is_some() {
        machine::build_typescript_snapshot(building, progress)?;
    }
    std::fs::set_permissions(building, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::io("chmod template", e))?;
    std::fs::write(building.join(READY_MARK), recipe(node)).map_err(|e| Error::io("mark template", e))
}

/// The default template's directory under `cache_dir`, when it has been built.
pub fn default_template_dir(cache_dir: &Path) -> Option<PathBuf> {
    let target = cache_dir.join(default_template_name());
    target.join(READY_MARK).exists().then_some(target)
}

/// The name of the default template's directory in the cache on this host (it depends on
/// whether the host has npm: see `machine::NodeSource`).
pub fn default_template_name() -> String {
    dir_name(&NodeSource::for_host())
}

/// Named after the recipe, so a changed package list or Node.js version builds afresh
/// while sandboxes still running on the old template keep their lower layer.
fn dir_name(node: &NodeSource) -> String {
    format!("default-{:08x}", fnv1a(recipe(node).as_bytes()) as u32)
}

fn packages(node: &NodeSource) -> Vec<&'static str> {
    DEFAULT_PACKAGES.iter().chain(node.packages()).copied().collect()
}

/// Everything the template is made of: its packages, its Node.js and the revision of
/// what `machine::finish_root` does (raise it when that changes).
fn recipe(node: &NodeSource) -> String {
    format!("{}\n{}\nmachine 2", packages(node).join(","), node.recipe())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The host's release codename (`bookworm`, `noble`), from /etc/os-release.
fn host_codename() -> Result<String> {
    let os = std::fs::read_to_string("/etc/os-release").map_err(|e| Error::io("read /etc/os-release", e))?;
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::InvalidSpec("/etc/os-release names no VERSION_CODENAME".into()))
}

/// The host's enabled apt source files, handed to mmdebstrap as they are.
fn host_apt_sources() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if Path::new("/etc/apt/sources.list").is_file() {
        files.push(PathBuf::from("/etc/apt/sources.list"));
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    if files.is_empty() {
        return Err(Error::InvalidSpec("the host has no apt sources to build a template from".into()));
    }
    Ok(files)
}
