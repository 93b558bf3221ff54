//! The sources of every sandbox's read-only binds (the agent, its token, the control
//! directory, resolv.conf, the CA bundle, the host's apt sources), kept in a tmpfs of
//! the runtime's own so that nothing inside a sandbox learns where things live on the
//! host. Who may read which inside a sandbox with a user namespace: [`prepare_for`].
//!
//! A bind's line in the sandbox's /proc/self/mountinfo gives its source's path within the
//! source's filesystem (the fourth field, "root"). Bound straight from the host's disk,
//! those lines showed every tenant the state dir, the data dir, the checkout and where
//! the token lies (issue 19): a map of the host for a targeted attack. Bound from here,
//! they show `/agent`, `/resolv.conf`, `/ca-certificates.crt`, `/sb-XXXXXXXXXX/token`
//! and `/sb-XXXXXXXXXX/ctl` on a filesystem named `tmpfs`.
//!
//! `STATE/.binds/` is that tmpfs (root's, 0700, nosuid, nodev, at most [`SIZE`]):
//! - `agent`, `resolv.conf`, `ca-certificates.crt`: copies of the host's files, copied
//!   again (to a temporary name, then renamed over) when the host's differ in size or
//!   modification time. A running sandbox keeps the copy it started with (a file bind
//!   holds its inode), as it kept the host's file before.
//! - `apt-<fingerprint>/`: copies of the host's apt sources ([`AptSources`]).
//! - `sb-XXXXXXXXXX/` (0700): the sandbox's `token` (0400) and control directory `ctl/`
//!   (`crate::sandbox::make_ctl_dir`; the deadline is replaced by rename there). The
//!   sandbox's own directory `STATE/sb-XXXXXXXXXX/` links `token` and `ctl` to them, so
//!   its layout reads as before and the backends, the runner and an operator find them
//!   where they did.
//!
//! The tmpfs is mounted by the create that finds it missing, found again by a runtime
//! started over the same state dir (its running sandboxes' files are there), and
//! unmounted by the removal that leaves no sandbox's files in it: never while a sandbox
//! it holds files for may still run, and not left behind by the last one. Each of these
//! steps holds an exclusive lock on the state dir (flock), so creates and removals on any
//! thread or runtime see it whole.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::sandbox::{make_ctl_dir, suffix_of, write_token};
use crate::userns::MappedIds;

/// The tmpfs's name in the state dir.
const DIR: &str = ".binds";
/// Its size: a cap, not a reservation (a tmpfs holds only the pages written). The
/// shared copies take about 11 MiB (twice that while the agent is being replaced); a
/// sandbox takes a page for its token, one for its deadline and its env's (a page or
/// two; at most 64 KiB through the runner's API), so this fits every one of the 16,383
/// address slots with small envs, and thousands with the largest.
const SIZE: &str = "256m";

/// The host's files every sandbox gets a read-only copy of.
pub(crate) struct Shared<'a> {
    pub(crate) agent: &'a Path,
    pub(crate) resolv_conf: Option<&'a Path>,
    pub(crate) ca_bundle: Option<&'a Path>,
}

/// A new sandbox's token and the sources of its binds, all in the tmpfs.
pub(crate) struct Binds {
    pub(crate) token: String,
    pub(crate) token_file: PathBuf,
    pub(crate) ctl_dir: PathBuf,
    pub(crate) agent: PathBuf,
    pub(crate) resolv_conf: Option<PathBuf>,
    pub(crate) ca_bundle: Option<PathBuf>,
    /// Copies of the host's apt sources, when they are offered.
    pub(crate) apt: Option<AptSources>,
}

/// The host's apt sources as the sandbox gets them, read-only at the same paths:
/// `/etc/apt/sources.list` (when the host has one), `/etc/apt/sources.list.d` and
/// `/etc/apt/apt.conf.d` (a snapshot mirror needs its `Acquire::Check-Valid-Until`).
/// Copies in the tmpfs, shared by the sandboxes that started while the host's files
/// were the same: `apt-<fingerprint of names, sizes, times and modes>/`, made whole
/// under another name and renamed. A running sandbox keeps the copy it started with.
#[derive(Debug, Clone)]
pub(crate) struct AptSources {
    pub(crate) sources_list: Option<PathBuf>,
    pub(crate) sources_list_d: PathBuf,
    pub(crate) apt_conf_d: PathBuf,
}

/// The state dir's lock, held while the tmpfs is mounted, filled, emptied or unmounted.
fn lock(state_dir: &Path) -> Result<Flock<File>> {
    let fail = |e| Error::io(format!("lock {}", state_dir.display()), e);
    let dir = File::open(state_dir).map_err(fail)?;
    Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| fail(e.into()))
}

/// Whether the tmpfs is mounted at `root` in `state_dir`. Anything else mounted there
/// is refused rather than filled.
fn is_mounted(root: &Path, state_dir: &Path) -> Result<bool> {
    let fail = |e| Error::io(format!("stat {}", root.display()), e);
    let parent = std::fs::metadata(state_dir).map_err(fail)?;
    let dev = match std::fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => m.dev(),
        Ok(_) => return Err(Error::InvalidSpec(format!("{} is not a directory", root.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fail(e)),
    };
    if dev == parent.dev() {
        return Ok(false);
    }
    let fs = nix::sys::statfs::statfs(root).map_err(|e| fail(e.into()))?;
    if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Err(Error::InvalidSpec(format!("{} is a mount point, but not a tmpfs", root.display())));
    }
    Ok(true)
}

/// Mounts the tmpfs at `STATE/.binds` unless it is there already; returns that path.
fn mounted(state_dir: &Path) -> Result<PathBuf> {
    let root = state_dir.join(DIR);
    if is_mounted(&root, state_dir)? {
        return Ok(root);
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {}", root.display()), e)),
    }
    let options = format!("mode=0700,size={SIZE}");
    nix::mount::mount(Some("tmpfs"), &root, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(&*options))
        .map_err(|e| Error::io(format!("mount a tmpfs on {}", root.display()), e.into()))?;
    Ok(root)
}

/// `root/name`, a copy of the host's file `src` (its mode without group or other write
/// and without set-id bits), copied again when `src` differs from it in size or
/// modification time.
fn copy_of(root: &Path, src: &Path, name: &str) -> Result<PathBuf> {
    let dst = root.join(name);
    let fail = |e| Error::io(format!("copy {} to {}", src.display(), dst.display()), e);
    let want = std::fs::metadata(src).map_err(fail)?;
    let mode = want.mode() & 0o755;
    let modified = want.modified().map_err(fail)?;
    let current = std::fs::metadata(&dst).is_ok_and(|have| {
        have.len() == want.len() && have.modified().ok() == Some(modified) && have.mode() & 0o7777 == mode
    });
    if current {
        return Ok(dst);
    }
    let tmp = root.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).map_err(fail)?;
    let f = File::options().write(true).open(&tmp).map_err(fail)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    f.set_modified(modified).map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, &dst).map_err(fail)?;
    Ok(dst)
}

/// Makes sandbox `id`'s token and control directory (with the tenant's `env`) in the
/// tmpfs, mounting it first if needed, and brings the shared copies up to date;
/// `sandbox_dir` (`STATE/id`, already made) gets the links `token` and `ctl`. What a
/// failure leaves, [`release`] removes. For a sandbox whose ids are not mapped.
pub(crate) fn prepare(
    state_dir: &Path,
    id: &str,
    sandbox_dir: &Path,
    env: &[(String, String)],
    shared: &Shared<'_>,
) -> Result<Binds> {
    prepare_for(state_dir, id, sandbox_dir, env, shared, None, None)
}

/// [`prepare`] for a sandbox in a user namespace mapped to `ids` (when given), with
/// copies of the apt sources of the host's `apt` directory (when given).
///
/// Ownership, as the sandbox sees it: the shared copies (agent, resolv.conf, CA bundle,
/// apt sources) stay host root's, which has no id inside: everyone inside reads them
/// (modes 0755/0644), nobody inside owns them, so not even root inside could change
/// them on a writable mount. The token (0400) and the control directory (0700, its
/// files 0600) become the sandbox root's (`ids.uid(0)`), because only the agent, root
/// inside, may read them: root inside has no `CAP_DAC_OVERRIDE` over files of ids its
/// namespace does not map, and `user` (`ids.uid(1000)`) must never read the token. All
/// of them are bound read-only, and only the runtime writes them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_for(
    state_dir: &Path,
    id: &str,
    sandbox_dir: &Path,
    env: &[(String, String)],
    shared: &Shared<'_>,
    ids: Option<MappedIds>,
    apt: Option<&Path>,
) -> Result<Binds> {
    let _lock = lock(state_dir)?;
    let root = mounted(state_dir)?;
    let agent = copy_of(&root, shared.agent, "agent")?;
    let resolv_conf = shared.resolv_conf.map(|p| copy_of(&root, p, "resolv.conf")).transpose()?;
    let ca_bundle = shared.ca_bundle.map(|p| copy_of(&root, p, "ca-certificates.crt")).transpose()?;
    let apt = apt.map(|dir| apt_sources(&root, dir)).transpose()?.flatten();
    let own = root.join(id);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&own)
        .map_err(|e| Error::io(format!("create {}", own.display()), e))?;
    let (token, token_file) = write_token(&own)?;
    let ctl_dir = make_ctl_dir(&own, env)?;
    if let Some(ids) = ids {
        let env_file = ctl_dir.join(crate::sandbox::ENV_FILE);
        for p in [&token_file, &ctl_dir, &env_file] {
            std::os::unix::fs::lchown(p, Some(ids.uid(0)), Some(ids.gid(0)))
                .map_err(|e| Error::io(format!("chown {}", p.display()), e))?;
        }
    }
    for name in ["token", "ctl"] {
        let link = sandbox_dir.join(name);
        std::os::unix::fs::symlink(Path::new("..").join(DIR).join(id).join(name), &link)
            .map_err(|e| Error::io(format!("link {}", link.display()), e))?;
    }
    Ok(Binds { token, token_file, ctl_dir, agent, resolv_conf, ca_bundle, apt })
}

/// The host's apt sources under `apt` (its `sources.list`, the `.list` and `.sources`
/// files of `sources.list.d/`, the files of `apt.conf.d/`), copied into `root` as
/// [`AptSources`] says; None when the host has no source.
fn apt_sources(root: &Path, apt: &Path) -> Result<Option<AptSources>> {
    let files_of = |sub: &str, keep: &dyn Fn(&str) -> bool| -> Vec<(String, PathBuf)> {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(apt.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
            .filter(|(n, _)| !n.starts_with('.') && keep(n))
            .map(|(n, p)| (format!("{sub}/{n}"), p))
            .collect();
        found.sort();
        found
    };
    let mut files = files_of("sources.list.d", &|n| n.ends_with(".list") || n.ends_with(".sources"));
    let list = apt.join("sources.list");
    if std::fs::metadata(&list).is_ok_and(|m| m.is_file()) {
        files.push(("sources.list".into(), list));
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.extend(files_of("apt.conf.d", &|_| true));
    let mut fingerprint = 0xcbf2_9ce4_8422_2325u64;
    for (name, path) in &files {
        let md = std::fs::metadata(path).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        let stamp = format!("{name}\0{}\0{}.{}\0{:o}\0", md.len(), md.mtime(), md.mtime_nsec(), md.mode());
        fingerprint = stamp.bytes().fold(fingerprint, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    }
    let dir = root.join(format!("apt-{fingerprint:016x}"));
    let sources = AptSources {
        sources_list: files.iter().any(|(n, _)| n == "sources.list").then(|| dir.join("sources.list")),
        sources_list_d: dir.join("sources.list.d"),
        apt_conf_d: dir.join("apt.conf.d"),
    };
    if dir.is_dir() {
        return Ok(Some(sources));
    }
    let tmp = root.join(".apt.tmp");
    let fail = |p: &Path, e| Error::io(format!("copy the host's apt sources to {}", p.display()), e);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| fail(&tmp, e))?;
    }
    for sub in ["", "sources.list.d", "apt.conf.d"] {
        let d = tmp.join(sub);
        std::fs::DirBuilder::new().mode(0o755).create(&d).map_err(|e| fail(&d, e))?;
    }
    for (name, path) in &files {
        let to = tmp.join(name);
        std::fs::copy(path, &to).map_err(|e| fail(&to, e))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).map_err(|e| fail(&to, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| fail(&dir, e))?;
    Ok(Some(sources))
}

/// Removes sandbox `id`'s files from the tmpfs, once nothing runs in it any more, and
/// unmounts the tmpfs when no sandbox's files are left in it. Best effort and
/// idempotent: a failure is logged.
pub(crate) fn release(state_dir: &Path, id: &str) {
    let _lock = match lock(state_dir) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::debug!(sandbox_id = id, error = %e, "no state dir to release bind sources from");
            return;
        }
    };
    let root = state_dir.join(DIR);
    match is_mounted(&root, state_dir) {
        Ok(true) => {}
        Ok(false) => {
            // A mount point left empty by a reboot or a crash goes too.
            let _ = std::fs::remove_dir(&root);
            return;
        }
        Err(e) => {
            tracing::warn!(sandbox_id = id, error = %e, "bind sources left alone");
            return;
        }
    }
    if let Err(e) = crate::remove::remove_tree(&root.join(id)) {
        tracing::warn!(sandbox_id = id, error = %e, "could not remove the sandbox's bind sources");
    }
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, dir = %root.display(), "could not list bind sources");
            return;
        }
    };
    if entries.flatten().any(|e| e.file_name().to_str().is_some_and(|n| suffix_of(n).is_some())) {
        return;
    }
    // No sandbox's files are left, so no sandbox needs it; a container still being torn
    // down holds the inodes its binds were made from whatever happens here.
    match nix::mount::umount2(&root, MntFlags::MNT_DETACH) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&root);
        }
        Err(e) => tracing::warn!(error = %e, dir = %root.display(), "could not unmount the bind sources' tmpfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host file replaced after its copy was made (a new agent build, a new
    /// resolv.conf) is copied again, by rename: a sandbox holding the old copy keeps its
    /// bytes, the next one gets the new ones. An unchanged file is not copied again.
    #[test]
    fn a_copy_follows_its_source_by_rename_and_only_when_it_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, root) = (dir.path().join("agent"), dir.path().join("binds"));
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(&src, "v1").expect("write");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o4777)).expect("chmod");
        let copy = copy_of(&root, &src, "agent").expect("copy");
        assert_eq!(std::fs::read_to_string(&copy).expect("read"), "v1");
        let first = std::fs::metadata(&copy).expect("stat");
        assert_eq!(first.mode() & 0o7777, 0o755, "no set-id bit, no group or other write");
        assert_eq!(copy_of(&root, &src, "agent").expect("copy"), copy);
        assert_eq!(std::fs::metadata(&copy).expect("stat").ino(), first.ino(), "unchanged: not copied again");

        let held = File::open(&copy).expect("open");
        std::fs::write(dir.path().join("new"), "v2, longer").expect("write");
        std::fs::rename(dir.path().join("new"), &src).expect("replace");
        copy_of(&root, &src, "agent").expect("copy");
        assert_eq!(std::fs::read_to_string(&copy).expect("read"), "v2, longer");
        let old = std::io::read_to_string(held).expect("read held");
        assert_eq!(old, "v1", "the copy a sandbox holds is never rewritten in place");
        let names: Vec<_> = std::fs::read_dir(&root).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["agent"], "no temporary file left");
    }
}
