//! A sandbox's network namespace and its address slot, as `ip netns` and a lock file
//! per slot would keep them: claimed and created before runc starts, removed by
//! `net::destroy`.

use crate::error::{Error, Result};

/// Host-side veth names all start with this, so one iptables rule covers them all.
pub(crate) const HOST_LINK_PREFIX: &str = "vs";
/// Sandbox slots: 10.88.0.0/16 in /30s, slot 0 unused.
pub(crate) const MAX_SLOT: u32 = (1 << 14) - 1;

/// Names derived from a sandbox's random suffix: (netns, host link). The sandbox end of
/// the link is `eth0` inside the namespace.
pub(crate) fn names(suffix: &str) -> (String, String) {
    (format!("sb-{suffix}"), format!("{HOST_LINK_PREFIX}{suffix}"))
}

/// Slots are claimed host-wide with a lock file each, so runtimes in different
/// processes never hand out the same addresses.
const SLOT_DIR: &str = "/run/sandstream/slots";

/// Where this process's next slot search starts: just after the slot it claimed last.
static NEXT_SLOT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Claims a free slot: the first free one from just after the one this process claimed
/// last, wrapping around. So with hundreds of sandboxes a claim tries one file, not
/// hundreds, and a slot just given back (whose address connection tracking may still
/// remember) is the last to be handed out again.
pub(crate) fn claim_slot() -> Result<u32> {
    use std::sync::atomic::Ordering;
    std::fs::create_dir_all(SLOT_DIR).map_err(|e| Error::io(format!("create {SLOT_DIR}"), e))?;
    let start = NEXT_SLOT.load(Ordering::Relaxed).clamp(1, MAX_SLOT);
    for slot in (start..=MAX_SLOT).chain(1..start) {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(format!("{SLOT_DIR}/{slot}")) {
            Ok(_) => {
                NEXT_SLOT.store(slot % MAX_SLOT + 1, Ordering::Relaxed);
                return Ok(slot);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("claim slot {slot}"), e)),
        }
    }
    Err(Error::NoAddress)
}

pub(crate) fn release_slot(slot: u32) {
    let _ = std::fs::remove_file(format!("{SLOT_DIR}/{slot}"));
}

/// Where `ip netns` keeps named network namespaces (bind mounts of `/proc/…/ns/net`).
const NETNS_DIR: &str = "/var/run/netns";

/// Creates the sandbox's network namespace, empty (not even `lo` up), as
/// `ip netns add` would: a namespace file bind-mounted at [`netns_path`] under a shared
/// mount, so runc can join it and other mount namespaces see it go when it is
/// removed. Done in-process: it is on the critical path of every create, before runc
/// may start.
pub(crate) fn create_namespace(suffix: &str) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| Error::io(format!("create {NETNS_DIR}"), e))?;
    let shared = || mount(Some(""), NETNS_DIR, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    // What `ip netns add` does: make the directory a shared mount point (binding it
    // onto itself first if it is not a mount point yet).
    if shared().is_err() {
        mount(Some(NETNS_DIR), NETNS_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| Error::io(format!("bind {NETNS_DIR} onto itself"), e.into()))?;
        shared().map_err(|e| Error::io(format!("make {NETNS_DIR} shared"), e.into()))?;
    }
    let path = netns_path(suffix);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("create {path}"), e))?;
    // A namespace belongs to a thread: a short-lived thread enters a new one and pins it
    // with the bind mount (it shares this process's mount namespace), then exits.
    let pinned = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("unshare a network namespace", e.into()))?;
            mount(Some("/proc/thread-self/ns/net"), path.as_str(), Some("none"), MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| Error::io(format!("bind the network namespace on {path}"), e.into()))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if pinned.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    pinned
}

/// What `ip netns del` does: detach the namespace's bind mount and remove its file. The
/// namespace (and the veth pair with it) goes once nothing runs in it.
pub(crate) fn remove_namespace(suffix: &str) {
    let path = netns_path(suffix);
    if let Err(e) = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH)
        && e != nix::errno::Errno::ENOENT
        && e != nix::errno::Errno::EINVAL
    {
        tracing::debug!(error = %e, path, "could not unmount the network namespace");
    }
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(error = %e, path, "could not remove the network namespace file");
    }
}

/// The path runc joins for the sandbox's network namespace.
pub(crate) fn netns_path(suffix: &str) -> String {
    format!("{NETNS_DIR}/{}", names(suffix).0)
}
