//! Root inside a sandbox that is never root on the host (issue 21): the `docker` backend
//! runs only on an Engine that remaps user namespaces (`dockerd --userns-remap`), so that
//! every container's ids 0..65535 are the unprivileged host ids BASE..BASE+65535 of one
//! range (`dockremap`'s in /etc/subuid and /etc/subgid), shared by the host's sandboxes
//! and owning no other host file. Root inside then has capabilities over its own
//! namespaces only: a capability acts on a file only when the file's owner is mapped in
//! (`capable_wrt_inode_uidgid`), so host-root-owned files (the agent binary, resolv.conf,
//! the apt sources, anything bound in) stay as read-only to it as to any other user.
//!
//! The files the agent itself must read (its token, the control directory with the
//! tenant's env and the deadline) are made in the runtime's tmpfs by host root, 0400 and
//! 0600: they are handed to the mapped root here, and bound read-only, so the agent reads
//! them and nothing inside can change them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bollard::models::SystemInfo;

use crate::binds::Binds;
use crate::error::{Error, Result};
use crate::userns::MappedIds;

/// The Engine's mapping, from `docker info`: remapping shows as the security option
/// `name=userns`, and the Engine then keeps its data in `<data root>/UID.GID`, named after
/// the host ids of root inside. An Engine without it would run every sandbox's root as
/// the host's root (with `sudo` inside, anyone's): refused, saying how to turn it on.
pub(super) fn mapped_ids(info: &SystemInfo, socket: &Path) -> Result<MappedIds> {
    let remaps = info.security_options.iter().flatten().any(|o| o.split(',').any(|kv| kv == "name=userns"));
    if !remaps {
        return Err(Error::InvalidSpec(format!(
            "the Docker Engine at {} does not remap user namespaces, so a sandbox's root would be the host's root: \
             start dockerd with --userns-remap=default (or \"userns-remap\": \"default\" in its daemon.json); \
             scripts/docker.sh does",
            socket.display()
        )));
    }
    let root = info.docker_root_dir.clone().unwrap_or_default();
    let parsed = Path::new(&root).file_name().and_then(|n| n.to_str()).and_then(|n| {
        let (uid, gid) = n.split_once('.')?;
        Some(MappedIds { uid_base: uid.parse().ok()?, gid_base: gid.parse().ok()? })
    });
    match parsed {
        // Root inside mapped to host root would be no remapping at all.
        Some(ids) if ids.uid_base != 0 && ids.gid_base != 0 => Ok(ids),
        _ => Err(Error::InvalidSpec(format!(
            "the Docker Engine at {} remaps user namespaces, but its data root {root:?} does not name the host ids \
             of root inside (UID.GID)",
            socket.display()
        ))),
    }
}

fn chown(path: &Path, ids: MappedIds) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid_base), Some(ids.gid_base))
        .map_err(|e| Error::io(format!("chown {} to {}:{}", path.display(), ids.uid_base, ids.gid_base), e))
}

/// Hands the sandbox's token and control directory (and what is in it) to root inside.
/// They are bound read-only: root inside reads them, as the agent must, and changes none.
pub(super) fn hand_to_sandbox_root(binds: &Binds, ids: MappedIds) -> Result<()> {
    chown(&binds.token_file, ids)?;
    chown(&binds.ctl_dir, ids)?;
    let entries =
        std::fs::read_dir(&binds.ctl_dir).map_err(|e| Error::io(format!("read {}", binds.ctl_dir.display()), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(format!("read {}", binds.ctl_dir.display()), e))?;
        chown(&e.path(), ids)?;
    }
    Ok(())
}

/// A file `crate::sandbox` just put (by rename, as host root, 0600) in the control
/// directory `ctl` (the deadline, the SSH access), handed to root inside. Until then the
/// agent fails to read it: it keeps its previous deadline and reads it again a second
/// later, and lets no one log in over SSH.
pub(super) fn hand_ctl_file_to_sandbox_root(ctl: &Path, name: &str, ids: MappedIds) -> Result<()> {
    let file = ctl.join(name);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.uid() == ids.uid_base => Ok(()),
        Ok(_) => chown(&file, ids),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("stat {}", file.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(options: &[&str], root: &str) -> SystemInfo {
        SystemInfo {
            security_options: Some(options.iter().map(|s| s.to_string()).collect()),
            docker_root_dir: Some(root.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_mapping_is_read_from_the_engines_data_root() {
        let socket = Path::new("/run/d.sock");
        let remapped = info(&["name=seccomp,profile=default", "name=userns"], "/var/lib/d/data/100000.100000");
        assert_eq!(mapped_ids(&remapped, socket).expect("remapped"), MappedIds { uid_base: 100000, gid_base: 100000 });
        let plain = info(&["name=seccomp,profile=default"], "/var/lib/d/data");
        let err = mapped_ids(&plain, socket).expect_err("not remapped").to_string();
        assert!(err.contains("does not remap user namespaces") && err.contains("--userns-remap=default"), "{err}");
        let odd = info(&["name=userns"], "/var/lib/d/data");
        assert!(mapped_ids(&odd, socket).is_err());
    }
}
