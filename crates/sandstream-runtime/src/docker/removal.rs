//! Removing a sandbox's container, whatever the sandbox left in it.
//!
//! The Engine's btrfs storage driver walks a container's whole writable layer by path
//! before deleting it (to find nested subvolumes). A sandbox can nest directories far
//! deeper than any path the kernel accepts (`mkdirat` relative to a directory fd is not
//! limited by PATH_MAX): on a 20,000-level tree the walk stops at "lstat …: file name
//! too long", the removal fails, and the container stays "Removal In Progress" with its
//! storage, for good (issue 19, item 1). Other drivers have their own limits.
//!
//! So when the Engine cannot remove a stopped container, the runtime empties the
//! container's writable layer itself with `crate::remove::remove_tree` (iterative,
//! descriptor-relative, never following a link or crossing a mount) and asks again. A
//! removal that still fails is an error for the caller, never reported as done.

use std::path::{Path, PathBuf};

use bollard::query_parameters::RemoveContainerOptions;

use super::{DockerRuntime, api_err, is_not_found};
use crate::error::{Error, Result};

impl DockerRuntime {
    /// Removes container `id` (stopping it first); a container that is not there is
    /// removed already.
    pub(super) fn remove_container(&self, id: &str) -> Result<()> {
        let Err(first) = self.engine_remove(id) else { return Ok(()) };
        tracing::warn!(sandbox_id = id, error = %first, "the Engine could not remove the container; emptying its writable layer and asking again");
        match self.writable_layer(id) {
            Ok(Some(layer)) => empty_dir(&layer),
            Ok(None) => tracing::warn!(sandbox_id = id, "found no writable layer of a stopped container to empty"),
            Err(e) => tracing::warn!(sandbox_id = id, error = %e, "could not find the container's writable layer"),
        }
        self.engine_remove(id).map_err(api_err(&format!("docker rm {id}")))
    }

    fn engine_remove(&self, id: &str) -> std::result::Result<(), bollard::errors::Error> {
        let docker = &self.docker;
        self.block(async {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            match docker.remove_container(id, Some(options)).await {
                Err(e) if !is_not_found(&e) => Err(e),
                _ => Ok(()),
            }
        })
    }

    /// Where the writable layer of stopped container `id` is on this host: the overlay
    /// drivers name it (`UpperDir`); btrfs's is the subvolume named by the layer store's
    /// `mount-id`. `None` for a container that is gone, still running (its files are
    /// never touched while anything runs in it), or on a driver that names neither.
    fn writable_layer(&self, id: &str) -> Result<Option<PathBuf>> {
        let docker = &self.docker;
        let (info, system) = self.block(async {
            let info = match docker.inspect_container(id, None).await {
                Ok(info) => Some(info),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(api_err(&format!("docker inspect {id}"))(e)),
            };
            Ok((info, docker.info().await.map_err(api_err("docker info"))?))
        })?;
        let Some(info) = info else { return Ok(None) };
        if info.state.as_ref().and_then(|s| s.running).unwrap_or(true) {
            return Ok(None);
        }
        let Some(driver) = info.graph_driver else { return Ok(None) };
        if let Some(upper) = driver.data.get("UpperDir") {
            return Ok(Some(PathBuf::from(upper)));
        }
        let (Some(full_id), Some(root), "btrfs") = (info.id, system.docker_root_dir, driver.name.as_str()) else {
            return Ok(None);
        };
        btrfs_subvolume(Path::new(&root), &full_id)
    }
}

/// The btrfs subvolume holding container `full_id`'s writable layer, under the Engine's
/// data root `root`.
fn btrfs_subvolume(root: &Path, full_id: &str) -> Result<Option<PathBuf>> {
    if !is_hex_id(full_id) {
        return Err(Error::Spec(format!("container id {full_id:?} is not an Engine id")));
    }
    let file = root.join("image/btrfs/layerdb/mounts").join(full_id).join("mount-id");
    let mount_id = match std::fs::read_to_string(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
    };
    // The layer store is the Engine's; the name still must be one, not a path.
    let mount_id = mount_id.trim();
    if !is_hex_id(mount_id) {
        return Err(Error::Spec(format!("{}: {mount_id:?} is not a layer id", file.display())));
    }
    Ok(Some(root.join("btrfs/subvolumes").join(mount_id)))
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes everything in `dir` (the directory itself is the Engine's to delete), each
/// entry as an untrusted tree; what cannot go is logged and left for the Engine.
fn empty_dir(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not read the writable layer");
            return;
        }
    };
    for entry in entries.flatten() {
        if let Err(e) = crate::remove::remove_tree(&entry.path()) {
            tracing::warn!(error = %e, "could not remove an entry of the writable layer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_btrfs_layer_is_found_by_its_mount_id_and_only_ids_are_used_as_names() {
        let root = tempfile::tempdir().expect("tempdir");
        let full = "a".repeat(64);
        assert_eq!(btrfs_subvolume(root.path(), &full).expect("no layer"), None, "no mounts entry: nothing");
        let dir = root.path().join("image/btrfs/layerdb/mounts").join(&full);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mount = "0123456789abcdef".repeat(4);
        std::fs::write(dir.join("mount-id"), format!("{mount}\n")).expect("write");
        assert_eq!(
            btrfs_subvolume(root.path(), &full).expect("layer"),
            Some(root.path().join("btrfs/subvolumes").join(&mount))
        );
        std::fs::write(dir.join("mount-id"), "../../../etc").expect("write");
        assert!(btrfs_subvolume(root.path(), &full).is_err(), "a path is refused");
        assert!(btrfs_subvolume(root.path(), "../x").is_err(), "a container id that is a path is refused");
    }

    #[test]
    fn emptying_removes_every_entry_and_keeps_the_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let layer = root.path().join("layer");
        std::fs::create_dir_all(layer.join("home/user/d/d")).expect("mkdir");
        std::fs::write(layer.join("f"), "x").expect("write");
        std::os::unix::fs::symlink(root.path(), layer.join("to-outside")).expect("symlink");
        std::fs::write(root.path().join("keep"), "host").expect("write");
        empty_dir(&layer);
        assert!(layer.is_dir(), "the directory stays");
        assert_eq!(std::fs::read_dir(&layer).expect("read").count(), 0, "nothing left in it");
        assert_eq!(std::fs::read_to_string(root.path().join("keep")).expect("kept"), "host", "links not followed");
    }
}
