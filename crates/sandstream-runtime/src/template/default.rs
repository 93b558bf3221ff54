//! The default template: Debian (or Ubuntu) with python3, pip, venv, nodejs, npm and CA
//! certificates, built on first use by mmdebstrap from **the host's own apt sources** (no
//! mirror is ever named here), then cached in `CACHE/default-<hash of the package list>`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::READY_MARK;
use crate::error::{Error, Result};

/// Packages of the default template.
pub const DEFAULT_PACKAGES: &[&str] =
    &["python3", "python3-pip", "python3-venv", "nodejs", "npm", "node-typescript", "ca-certificates"];

/// Returns the default template under `cache_dir`, building it first if needed. Each
/// line mmdebstrap prints goes to `progress`. Concurrent callers (threads or processes)
/// wait for one build; a half-built template is never returned.
pub fn ensure_default_template(cache_dir: &Path, mut progress: impl FnMut(&str)) -> Result<PathBuf> {
    let name = dir_name();
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
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(|e| Error::io("remove an interrupted build", e))?;
    }
    progress(&format!("building the default template ({suite}: {}) with mmdebstrap", DEFAULT_PACKAGES.join(", ")));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=apt", "--mode=root"])
        .arg(format!("--include={}", DEFAULT_PACKAGES.join(",")))
        // The sandbox gets no apt sources of its own: packages come from its users' own
        // pip and npm, not from the host's mirrors.
        .arg("--customize-hook=rm -f \"$1\"/etc/apt/sources.list \"$1\"/etc/apt/sources.list.d/*")
        .arg(&suite)
        .arg(&building)
        .args(&sources)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Command { command: "mmdebstrap".into(), detail: e.to_string() })?;
    // mmdebstrap reports on stderr; stdout is drained on a thread so neither pipe fills.
    let stdout = child.stdout.take();
    let drain = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(out) = stdout {
            lines.extend(BufReader::new(out).lines().map_while(std::result::Result::ok));
        }
        lines
    });
    let mut tail = std::collections::VecDeque::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(std::result::Result::ok) {
            progress(&line);
            tail.push_back(line);
            if tail.len() > 20 {
                tail.pop_front();
            }
        }
    }
    for line in drain.join().unwrap_or_default() {
        progress(&line);
    }
    let status = child.wait().map_err(|e| Error::Command { command: "mmdebstrap".into(), detail: e.to_string() })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&building);
        return Err(Error::Command {
            command: "mmdebstrap".into(),
            detail: format!("{status}: {}", tail.into_iter().collect::<Vec<_>>().join("\n")),
        });
    }
    std::fs::set_permissions(&building, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::io("chmod template", e))?;
    std::fs::write(building.join(READY_MARK), DEFAULT_PACKAGES.join("\n"))
        .map_err(|e| Error::io("mark template", e))?;
    std::fs::rename(&building, &target).map_err(|e| Error::io(format!("move template to {}", target.display()), e))?;
    progress(&format!("default template ready at {}", target.display()));
    Ok(target)
}

/// The default template's directory under `cache_dir`, when it has been built.
pub fn default_template_dir(cache_dir: &Path) -> Option<PathBuf> {
    let target = cache_dir.join(dir_name());
    target.join(READY_MARK).exists().then_some(target)
}

/// Named after the package list, so a changed list builds afresh while sandboxes still
/// running on the old template keep their lower layer.
fn dir_name() -> String {
    format!("default-{:08x}", fnv1a(DEFAULT_PACKAGES.join(",").as_bytes()) as u32)
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
