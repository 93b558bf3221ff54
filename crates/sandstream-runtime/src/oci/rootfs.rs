//! A sandbox's root filesystem as the `oci` backend mounts it for the OCI runtime: its
//! disk image's filesystem (`crate::disk`) holding the overlay's private upper layer,
//! the overlay of the read-only template under that layer, and the template's home and
//! `/tmp` prepared inside that root (`dir_in_root`: a template's symlinks resolve inside
//! it, never on the host). All of it is mounted in a private mount namespace of the
//! thread that starts the container ([`enter_private_mounts`]), never on the host.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::disk::LoopDevice;
use crate::error::{Error, Result};
use crate::userns::MappedIds;

use super::layout::Layout;
use crate::sandbox::{USER_ID, WORKDIR};

/// What holds a mounted root until the container holds it: the disk image's loop
/// device (autoclearing, so it goes once the container's mounts are all that held it).
/// Dropped once the OCI runtime has started the container.
#[derive(Default)]
pub(crate) struct Mounted {
    _device: Option<LoopDevice>,
}

/// Puts this thread in a mount namespace of its own (a copy of this process's, receiving
/// the host's mounts and unmounts but never sending its own), for mounts that only a
/// container started from this thread should see. The namespace goes when the thread
/// ends and nothing else uses it: call it only on a thread made for one container.
///
/// The overlay is never mounted on the host, only there, and the container's namespace
/// is copied from it. runc reads the mount table many times per container, so every
/// mount the host held per sandbox made every later create slower (about +20 ms per 800
/// mounts here).
pub(crate) fn enter_private_mounts() -> Result<()> {
    // CLONE_NEWNS takes CLONE_FS with it: this thread gets its own root and cwd too,
    // which is allowed for one thread of a multi-threaded process.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::io("unshare a mount namespace", e.into()))?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| Error::io("make the private mount namespace a slave", e.into()))
}

/// Where every sandbox's root is mounted, each in the private mount namespace of the
/// thread that starts its container (so one path serves them all), and where the
/// bundle's spec points the OCI runtime (`bundle.rs`). Not in the sandbox's state
/// directory: runc binds the root from inside the sandbox's user namespace, as the
/// sandbox's root, an unprivileged host uid that may not pass the state directory (nor
/// its parents, such as a test's 0700 temporary directory); every directory on this
/// path is 0755.
pub(crate) const MOUNT_POINT: &str = "/run/sandstream/root";

/// Mounts the sandbox's root at [`MOUNT_POINT`]: its disk image (made already:
/// `crate::disk::make`) at `disk/`, the overlay of `template`'s mapped copy for `ids`
/// (`crate::template::mapped`, made first if need be) under `disk/upper`, then the
/// template's home (owned by the sandbox user) and `/tmp` (1777) made ready inside it,
/// and the sandbox's `/sys` mounted from its network namespace `netns`
/// ([`mount_sysfs`]). Call only after [`enter_private_mounts`].
pub(crate) fn mount(layout: &Layout, template: &Path, ids: MappedIds, netns: &Path) -> Result<Mounted> {
    let lower = crate::template::mapped::ensure_mapped(template, ids)?;
    // The writable layer lives in the sandbox's own filesystem (`disk.rs`): its size and
    // inode count are the sandbox's disk limits, enforced by the kernel.
    let device = crate::disk::attach(&layout.disk_image())?;
    crate::disk::mount(&device, &layout.disk())?;
    let (upper, work) = (layout.upper(), layout.work());
    // The merged root takes its owner and mode from the upper layer's root, so that
    // one must be traversable by the sandbox user, like any root directory, and owned
    // by the sandbox's root (mapped), as the whole writable layer is.
    let root = (Some(ids.uid(0)), Some(ids.gid(0)));
    for (sub, mode) in [(&upper, 0o755), (&work, 0o700)] {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(sub)
            .map_err(|e| Error::io(format!("create {}", sub.display()), e))?;
    }
    for dir in [&layout.disk(), &upper, &work] {
        std::os::unix::fs::chown(dir, root.0, root.1).map_err(|e| Error::io(format!("chown {}", dir.display()), e))?;
    }
    let rootfs = PathBuf::from(MOUNT_POINT);
    std::fs::create_dir_all(&rootfs).map_err(|e| Error::io(format!("create {MOUNT_POINT}"), e))?;
    // The kernel shows the options as given in the sandbox's own /proc/self/mountinfo,
    // where host paths told every tenant the state dir and the template's place on the
    // host. So the private layers are named by descriptors (`/proc/self/fd/N`), and the
    // template by its directory's name alone, relative to its parent as this thread's
    // working directory (private to it: see `enter_private_mounts`). That name (the
    // template's name and version, nothing of the host) is also how the catalog finds
    // the versions still in use (`template::mounts`).
    let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("open {}", p.display()), e));
    let (upper, work) = (open(&upper)?, open(&work)?);
    let fd = |f: &File| format!("/proc/self/fd/{}", f.as_raw_fd());
    let (Some(parent), Some(leaf)) = (lower.parent(), lower.file_name()) else {
        return Err(Error::Spec(format!("template path {} has no parent", template.display())));
    };
    let leaf = leaf.to_str().filter(|l| !l.contains([',', ':', '=', '\\'])).ok_or_else(|| {
        Error::Spec(format!("template directory {} cannot be named in overlay options", template.display()))
    })?;
    std::env::set_current_dir(parent).map_err(|e| Error::io(format!("enter {}", parent.display()), e))?;
    let options = format!("lowerdir={leaf},upperdir={},workdir={}", fd(&upper), fd(&work));
    // Not nosuid: `sudo` must work inside. Its setuid bit makes a caller the sandbox's
    // root, an unprivileged uid of the host (the copy's owners are the mapped range),
    // and no host user can reach the overlay (it is mounted in private mount
    // namespaces only) nor the copy (a 0700 directory: `mapped.rs`).
    nix::mount::mount(Some("overlay"), &rootfs, Some("overlay"), MsFlags::MS_NODEV, Some(options.as_str()))
        .map_err(|e| Error::io(format!("mount overlay on {}", rootfs.display()), e.into()))?;
    drop((upper, work));
    std::env::set_current_dir("/").map_err(|e| Error::io("leave the template's directory", e))?;
    // The template is someone else's image, and its /home, /home/user or /tmp may be
    // a symlink: each is resolved in the sandbox's root, as the sandbox will see it,
    // never on the host (where `home -> /etc` would have the host's /etc chowned).
    // The writable layer is fresh and nothing has run in the sandbox yet, so only the
    // template can have planted such links.
    let home = dir_in_root(&rootfs, Path::new(WORKDIR), template)?;
    std::os::unix::fs::fchown(&home, Some(ids.uid(USER_ID)), Some(ids.gid(USER_ID)))
        .map_err(|e| Error::io(format!("template {}: chown {}", template.display(), WORKDIR), e))?;
    // runc mounts /tmp's tmpfs with the mode of the directory it covers (its `mode=`
    // option is not honoured), so the mount point must already be world-writable and
    // sticky, whatever the template has.
    let tmp = dir_in_root(&rootfs, Path::new("/tmp"), template)?;
    std::os::unix::fs::fchown(&tmp, root.0, root.1)
        .map_err(|e| Error::io(format!("template {}: chown /tmp", template.display()), e))?;
    nix::sys::stat::fchmod(&tmp, Mode::from_bits_truncate(0o1777))
        .map_err(|e| Error::io(format!("template {}: chmod /tmp", template.display()), e.into()))?;
    mount_sysfs(&rootfs, netns, template)?;
    Ok(Mounted { _device: Some(device) })
}

/// Mounts a new sysfs (read-only, nosuid, nodev, noexec) on the sandbox's `/sys`, made
/// from its network namespace `netns`: what a sandbox has always seen there (the host's
/// devices read-only, and its own network interfaces alone under /sys/class/net).
///
/// Why here and not by the OCI runtime: runc mounts from inside the sandbox's new user
/// namespace, and the kernel lets sysfs be mounted only by a holder of CAP_SYS_ADMIN
/// over the user namespace that owns the current network namespace. The sandbox's is
/// made on the host beforehand (`net.rs`), so runc's mount fails with EPERM and runc
/// 1.1 then binds the host's whole /sys instead, read-only but recursively: the host's
/// network interfaces (every sandbox's link, named after its id), and every filesystem
/// mounted under it (the host's whole cgroup tree, securityfs, tracing, bpf). Mounted
/// here, by host root with this thread in the sandbox's network namespace for the one
/// call, it holds exactly the old content; carried into the container's mount namespace
/// its read-only flag is locked, so not even a root inside with CAP_SYS_ADMIN could
/// make it writable. The OCI spec then has no /sys mount of its own (`bundle.rs`).
fn mount_sysfs(rootfs: &Path, netns: &Path, template: &Path) -> Result<()> {
    let sys = dir_in_root(rootfs, Path::new("/sys"), template)?;
    let open = |p: &Path| File::open(p).map_err(|e| Error::io(format!("open {}", p.display()), e));
    let (own, theirs) = (open(Path::new("/proc/thread-self/ns/net"))?, open(netns)?);
    let enter = |ns: &File, which: &Path| {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("enter the network namespace {}", which.display()), e.into()))
    };
    enter(&theirs, netns)?;
    let target = format!("/proc/self/fd/{}", sys.as_raw_fd());
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounted = nix::mount::mount(Some("sysfs"), target.as_str(), Some("sysfs"), flags, None::<&str>)
        .map_err(|e| Error::io(format!("mount sysfs on {}/sys", rootfs.display()), e.into()));
    enter(&own, Path::new("/proc/thread-self/ns/net"))?;
    mounted
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

fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

/// Only a sandbox made by an earlier version has its rootfs mounted on the host (now it
/// is mounted in the container's own namespace alone): detaches it. Ok when nothing is
/// mounted at `rootfs` afterwards, so its files may be removed.
pub(crate) fn unmount_from_host(rootfs: &Path) -> Result<()> {
    if !is_mount_point(rootfs) {
        return Ok(());
    }
    nix::mount::umount2(rootfs, MntFlags::MNT_DETACH)
        .map_err(|e| Error::io(format!("unmount {}", rootfs.display()), e.into()))?;
    if is_mount_point(rootfs) {
        return Err(Error::io(format!("unmount {}", rootfs.display()), Errno::EBUSY.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The hardening `mount` relies on, on a plain directory (no mount needed): a
    /// template whose /home is a link to /etc gets its home made inside its own root,
    /// never in the host's /etc; a link to a directory it lacks is refused.
    #[test]
    fn dir_in_root_resolves_links_inside_the_root_and_refuses_dangling_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        symlink("/etc", root.join("home")).expect("symlink");
        let home = dir_in_root(&root, Path::new("/home/user"), &root).expect("home");
        assert!(root.join("etc/user").is_dir(), "made in the root's /etc");
        let st = nix::sys::stat::fstat(&home).expect("fstat");
        let made = std::fs::metadata(root.join("etc/user")).expect("stat");
        assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&made));

        symlink("/nowhere/tmp", root.join("tmp")).expect("symlink");
        let err = dir_in_root(&root, Path::new("/tmp"), &root).expect_err("dangling");
        assert!(err.to_string().contains("/tmp is a link to a directory the template does not have"), "{err}");
    }

    #[test]
    fn a_directory_nothing_is_mounted_on_is_left_as_it_is() {
        let tmp = tempfile::tempdir().expect("tempdir");
        unmount_from_host(tmp.path()).expect("nothing mounted");
        assert!(tmp.path().is_dir());
    }
}
