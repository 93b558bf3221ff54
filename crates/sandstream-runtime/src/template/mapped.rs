//! A template's mapped copy: the lower layer `oci` sandboxes get, owned by the sandboxes'
//! id range (`crate::userns`) instead of host root.
//!
//! Why a copy: a template is owned by host root, which has no id inside a sandbox's user
//! namespace, so root inside would find /usr, /etc and /var owned by `nobody` and could
//! change none of it (no `apt-get install`). The template itself is never shifted in
//! place: the Docker backend imports it unshifted (dockerd shifts its own copy), and a
//! template is immutable once published.
//!
//! Template directory `P/LEAF` (a catalog version `.versions/NAME@V`, the default
//! `default-<hash>`) has its copy for ids `U`/`G` at `P/.mapped-U-G/LEAF`: made once per
//! version and range, by the first sandbox that needs it, into `LEAF.building` and
//! renamed into place (so a copy found is whole), under the lock `LEAF.lock` (concurrent
//! creates wait for it, then use it). `.mapped-U-G/` is 0700: the copy has setuid files
//! owned by the sandboxes' root, which no host user may reach. The copy keeps the leaf,
//! so an overlay's `lowerdir=LEAF` names the version whichever of the two it is
//! (`mounts.rs`), and the catalog deletes a version's copies with it
//! ([`collect_orphans`]). **A template directory is immutable once a sandbox used it**:
//! the copy is never refreshed.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::userns::MappedIds;

const PREFIX: &str = ".mapped-";
const BUILDING: &str = ".building";
const LOCK: &str = ".lock";

/// The directory beside a template that holds its copies for `ids`.
fn copies_dir(parent: &Path, ids: MappedIds) -> PathBuf {
    parent.join(format!("{PREFIX}{}-{}", ids.uid_base, ids.gid_base))
}

/// Whether `name` (an entry of a directory templates are in) holds mapped copies.
pub(crate) fn is_copies_dir(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The copy of template directory `template` for `ids`, made first if there is none
/// yet (see the module's documentation). Its path ends in the template's own leaf.
pub(crate) fn ensure_mapped(template: &Path, ids: MappedIds) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(template).map_err(|e| Error::io(format!("resolve {}", template.display()), e))?;
    let (Some(parent), Some(leaf)) = (absolute.parent(), absolute.file_name()) else {
        return Err(Error::Spec(format!("template path {} has no parent", template.display())));
    };
    let dir = copies_dir(parent, ids);
    let target = dir.join(leaf);
    if target.is_dir() {
        return Ok(target);
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
    let name = leaf.to_string_lossy();
    let lock_path = dir.join(format!("{name}{LOCK}"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
    let _held = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("lock {}", lock_path.display()), e.into()))?;
    if target.is_dir() {
        return Ok(target);
    }
    let building = dir.join(format!("{name}{BUILDING}"));
    if std::fs::symlink_metadata(&building).is_ok() {
        // An interrupted copy: its maker is gone (it would hold the lock).
        crate::remove::remove_tree(&building)?;
    }
    let started = Instant::now();
    let made = super::shift::copy_shifted(&absolute, &building, ids).and_then(|copied| {
        // On disk before it is published: a crash never leaves a half copy in place.
        let d = File::open(&building).map_err(|e| Error::io(format!("open {}", building.display()), e))?;
        nix::unistd::syncfs(&d).map_err(|e| Error::io(format!("sync {}", building.display()), e.into()))?;
        std::fs::rename(&building, &target).map_err(|e| Error::io(format!("rename to {}", target.display()), e))?;
        Ok(copied)
    });
    match made {
        Ok(copied) => {
            tracing::info!(
                template = %absolute.display(),
                copy = %target.display(),
                entries = copied.entries,
                bytes = copied.bytes,
                ms = started.elapsed().as_millis() as u64,
                "template copied for the sandboxes' user namespace"
            );
            Ok(target)
        }
        Err(e) => {
            let _ = crate::remove::remove_tree(&building);
            Err(e)
        }
    }
}

/// For the catalog's collection, with its locks held (no create between resolving a
/// template and mounting it): the mapped copies in `dir`'s `.mapped-*/` whose template
/// `dir/LEAF` is gone and that no mount namespace has mounted are moved to `trash` (a
/// path the caller makes of a unique name, ending as its trash names do), their lock
/// files removed; returns the copies' leaves.
pub(crate) fn collect_orphans(dir: &Path, trash: impl Fn(&str) -> PathBuf) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for copies in entries.flatten().filter(|e| e.file_name().to_str().is_some_and(is_copies_dir)) {
        let Ok(inner) = std::fs::read_dir(copies.path()) else { continue };
        let mut orphans = Vec::new();
        for e in inner.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let leaf = name.strip_suffix(LOCK).or_else(|| name.strip_suffix(BUILDING)).unwrap_or(&name).to_string();
            if !dir.join(&leaf).is_dir() {
                orphans.push((name, leaf, e.path()));
            }
        }
        let dirs: Vec<PathBuf> = orphans.iter().filter(|(n, ..)| !n.ends_with(LOCK)).map(|(.., p)| p.clone()).collect();
        let mounted = super::mounts::mounted_anywhere(&dirs);
        let busy: Vec<&PathBuf> = dirs.iter().zip(mounted).filter(|(_, m)| *m).map(|(p, _)| p).collect();
        for (name, leaf, path) in orphans {
            if name.ends_with(LOCK) {
                if !busy.iter().any(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == leaf)) {
                    let _ = std::fs::remove_file(&path);
                }
            } else if !busy.contains(&&path)
                && std::fs::rename(&path, trash(&format!("{name}{}", copies.file_name().to_string_lossy()))).is_ok()
            {
                removed.push(name);
            }
        }
        // An emptied `.mapped-*/` goes too (a later copy makes it again).
        let _ = std::fs::remove_dir(copies.path());
    }
    removed
}
