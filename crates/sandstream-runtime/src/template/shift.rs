//! A copy of a template with every owner shifted into the sandboxes' id range
//! (`crate::userns`): uid `u` becomes `uid_base + u`, gid likewise, so that inside a
//! sandbox's user namespace the files have the owners the template gave them (root's
//! /usr is root's, so root inside can write it and `apt-get install` works).
//!
//! Everything else is kept: file contents, hardlinks (as hardlinks), symlinks (never
//! followed), modes with their setuid, setgid and sticky bits, timestamps (Python's
//! bytecode caches compare them), extended attributes where the filesystem takes them
//! (POSIX ACLs and version-3 file capabilities have their ids shifted too), fifos and
//! device nodes. The walk is iterative (no recursion: a template may be deep) and never
//! leaves the source tree: a symlink is copied as a symlink, a directory is entered only
//! when `lstat` says it is one.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};
use crate::userns::MappedIds;

/// What a copy made.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Copied {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

enum Task {
    /// Copy the entries of directory `.0` into `.1` (made already).
    Enter(PathBuf, PathBuf),
    /// Directory `.1` is filled: give it `.0`'s owner, mode, attributes and times.
    Finish(PathBuf, PathBuf, std::fs::Metadata),
}

/// Copies the tree at `from` to `to` (which must not exist), shifting owners by `ids`.
pub(crate) fn copy_shifted(from: &Path, to: &Path, ids: MappedIds) -> Result<Copied> {
    let root = std::fs::symlink_metadata(from).map_err(|e| Error::io(format!("inspect {}", from.display()), e))?;
    if !root.is_dir() {
        return Err(Error::TemplateMissing(from.to_path_buf()));
    }
    make_dir(to)?;
    let mut copied = Copied::default();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut tasks = vec![Task::Finish(from.to_path_buf(), to.to_path_buf(), root), Task::Enter(from.into(), to.into())];
    while let Some(task) = tasks.pop() {
        match task {
            Task::Finish(src, dst, md) => finish(&dst, &md, ids, &src)?,
            Task::Enter(src, dst) => {
                let entries = std::fs::read_dir(&src).map_err(|e| Error::io(format!("read {}", src.display()), e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io(format!("read {}", src.display()), e))?;
                    let (s, d) = (entry.path(), dst.join(entry.file_name()));
                    let md =
                        std::fs::symlink_metadata(&s).map_err(|e| Error::io(format!("inspect {}", s.display()), e))?;
                    copied.entries += 1;
                    if md.is_dir() {
                        make_dir(&d)?;
                        tasks.push(Task::Finish(s.clone(), d.clone(), md));
                        tasks.push(Task::Enter(s, d));
                        continue;
                    }
                    if md.nlink() > 1 {
                        if let Some(first) = links.get(&(md.dev(), md.ino())) {
                            std::fs::hard_link(first, &d).map_err(|e| Error::io(format!("link {}", d.display()), e))?;
                            continue;
                        }
                        links.insert((md.dev(), md.ino()), d.clone());
                    }
                    copied.bytes += copy_one(&s, &d, &md)?;
                    finish(&d, &md, ids, &s)?;
                }
            }
        }
    }
    Ok(copied)
}

/// A new directory only root can enter while it is being filled (its mode comes last).
fn make_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))
}

/// Makes the non-directory `dst` like `src` (contents, link target, node); returns the
/// bytes copied.
fn copy_one(src: &Path, dst: &Path, md: &std::fs::Metadata) -> Result<u64> {
    let fail = |e| Error::io(format!("copy {} to {}", src.display(), dst.display()), e);
    let kind = md.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(src).map_err(fail)?;
        std::os::unix::fs::symlink(target, dst).map_err(fail)?;
        return Ok(0);
    }
    if kind.is_file() {
        let mut from = File::options().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(src).map_err(fail)?;
        let mut to = File::options().write(true).create_new(true).mode(0o600).open(dst).map_err(fail)?;
        // copy_file_range underneath: the kernel copies (or shares extents) itself.
        return std::io::copy(&mut from, &mut to).map_err(fail);
    }
    // A fifo, socket or device node: made anew with the same type and device number.
    let sflag = SFlag::from_bits_truncate(md.mode() & nix::libc::S_IFMT);
    nix::sys::stat::mknod(dst, sflag, Mode::from_bits_truncate(0o600), md.rdev()).map_err(|e| fail(e.into()))?;
    Ok(0)
}

/// Gives `dst` `md`'s owners shifted by `ids`, then its mode (chown clears setuid and
/// setgid, so the mode comes after it), its extended attributes (read from `src`) and
/// its times.
fn finish(dst: &Path, md: &std::fs::Metadata, ids: MappedIds, src: &Path) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", dst.display()), e);
    let (uid, gid) = (shift(md.uid(), ids.uid_base), shift(md.gid(), ids.gid_base));
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(|e| fail("chown", e))?;
    let symlink = md.file_type().is_symlink();
    if !symlink {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| fail("chmod", e))?;
    }
    copy_xattrs(src, dst, ids);
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, dst, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| fail("set the times of", e.into()))
}

/// `id` moved into the range at `base`; ids past the range's size keep their offset
/// (the kernel shows them as the overflow id inside, as any unmapped id).
fn shift(id: u32, base: u32) -> u32 {
    base.saturating_add(id)
}

fn c_path(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// Copies every extended attribute of `src` to `dst`, ids shifted where a value holds
/// some; one the filesystem or the kernel refuses is left out (logged).
fn copy_xattrs(src: &Path, dst: &Path, ids: MappedIds) {
    let (Some(s), Some(d)) = (c_path(src), c_path(dst)) else { return };
    let mut names = vec![0u8; 4096];
    // SAFETY: `s` is a NUL-terminated path; the buffer's length is passed with it.
    let n = unsafe { nix::libc::llistxattr(s.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let Ok(n) = usize::try_from(n) else { return };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: as above; `cname` is NUL-terminated.
        let len = unsafe { nix::libc::lgetxattr(s.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        let Ok(len) = usize::try_from(len) else { continue };
        value.truncate(len);
        shift_xattr(name, &mut value, ids);
        // SAFETY: as above; `value` holds `value.len()` bytes.
        let r = unsafe { nix::libc::lsetxattr(d.as_ptr(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            tracing::debug!(path = %dst.display(), xattr = %OsStr::from_bytes(name).to_string_lossy(), error = %e, "extended attribute left out of the mapped template");
        }
    }
}

/// `<linux/xattr.h>`, `<linux/capability.h>`, `<linux/posix_acl_xattr.h>`.
const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;

/// Shifts the ids a value of attribute `name` holds: a POSIX ACL's named users and
/// groups, a version-3 file capability's root id.
fn shift_xattr(name: &[u8], value: &mut [u8], ids: MappedIds) {
    let word = |v: &[u8], at: usize| u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
    match name {
        b"system.posix_acl_access" | b"system.posix_acl_default" if value.len() >= 4 => {
            // A 4-byte header, then entries of (tag u16, perm u16, id u32).
            for entry in value[4..].chunks_exact_mut(8) {
                let tag = u16::from_le_bytes([entry[0], entry[1]]);
                let base = match tag {
                    ACL_USER => ids.uid_base,
                    ACL_GROUP => ids.gid_base,
                    _ => continue,
                };
                let id = shift(word(entry, 4), base);
                entry[4..8].copy_from_slice(&id.to_le_bytes());
            }
        }
        b"security.capability" if value.len() >= 24 && word(value, 0) & VFS_CAP_REVISION_MASK == VFS_CAP_REVISION_3 => {
            let root = shift(word(value, 20), ids.uid_base);
            value[20..24].copy_from_slice(&root.to_le_bytes());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_and_v3_capability_ids_are_shifted_and_others_kept() {
        let ids = MappedIds { uid_base: 100_000, gid_base: 200_000 };
        let mut acl = vec![2, 0, 0, 0];
        for (tag, id) in [(0x01u16, u32::MAX), (ACL_USER, 1000), (ACL_GROUP, 5), (0x20, u32::MAX)] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        shift_xattr(b"system.posix_acl_access", &mut acl, ids);
        let ids_of: Vec<u32> = acl[4..].chunks_exact(8).map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]])).collect();
        assert_eq!(ids_of, [u32::MAX, 101_000, 200_005, u32::MAX]);

        let mut v3 = vec![0u8; 24];
        v3[..4].copy_from_slice(&(VFS_CAP_REVISION_3 | 1).to_le_bytes());
        shift_xattr(b"security.capability", &mut v3, ids);
        assert_eq!(u32::from_le_bytes([v3[20], v3[21], v3[22], v3[23]]), 100_000);
        let mut v2 = vec![0u8; 20];
        v2[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        let before = v2.clone();
        shift_xattr(b"security.capability", &mut v2, ids);
        assert_eq!(v2, before, "a version-2 capability names no id");
    }
}
