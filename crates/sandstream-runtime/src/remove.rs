//! Removing a directory tree that a sandbox could have written (its writable layer,
//! its state directory), without trusting anything in it.
//!
//! A sandbox's user owns those files and can make them hostile: directories nested far
//! deeper than any path the kernel accepts (`mkdirat` relative to a directory fd is not
//! limited by PATH_MAX), directories without permission bits, names of any bytes,
//! millions of entries in one directory, symlinks to host paths, and mount points.
//! `std::fs::remove_dir_all` recurses once per level: a 20,000-deep tree overflowed a
//! tokio worker's 2 MiB stack and aborted `sandstream up`, and every restart aborted
//! again in recovery, which removes the same tree.
//!
//! [`remove_tree`] walks the tree iteratively, one directory fd open at a time, with
//! the way back up kept on the heap (each level's name and device/inode, a few dozen
//! bytes): constant stack, a handful of fds, no path ever longer than one name. Every
//! open is relative to the directory above, refuses symlinks and mount crossings
//! (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_BENEATH`), and the
//! way back up (`..`) is checked against the device and inode recorded on the way down.
//! Symlinks are unlinked, never followed (CVE-2022-21658 is the race std once had here).
//! Callers remove a sandbox's files only once nothing runs in it any more.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Error, Result};

/// A directory's identity, so the walk knows it again.
type Id = (u64, u64);

fn id_of(st: &FileStat) -> Id {
    (st.st_dev, st.st_ino)
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// What the walk could not remove; the first error is reported, with a count of the rest.
#[derive(Default)]
struct Failures {
    first: Option<(String, Errno)>,
    count: usize,
    /// Entries that failed once, never tried again (so the walk ends).
    skip: HashSet<Id>,
}

impl Failures {
    fn add(&mut self, id: Id, what: &str, name: &CStr, e: Errno) {
        self.count += 1;
        self.skip.insert(id);
        if self.first.is_none() {
            self.first = Some((format!("{what} {:?}", String::from_utf8_lossy(name.to_bytes())), e));
        }
    }
}

/// Removes `path` and everything under it, as described at the top of this module. A
/// missing `path` is not an error. What cannot be removed (a mount point inside, a file
/// the kernel refuses to unlink) is left, with everything above it, and the first such
/// failure is returned after the rest of the tree is removed.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let fail = |e: Errno| Error::io(format!("remove {}", path.display()), e.into());
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::InvalidSpec(format!("remove {}: not a path to a directory entry", path.display())));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let name = CString::new(name.as_bytes()).map_err(|_| fail(Errno::EINVAL))?;
    // The parent is the caller's (a state directory), trusted.
    let top = nix::fcntl::open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(fail)?;
    let st = match nix::sys::stat::fstatat(&top, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    if !is_dir(&st) {
        return match nix::unistd::unlinkat(&top, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(fail(e)),
        };
    }
    let mut failures = Failures::default();
    let mut cur = open_dir(&top, &name).map_err(fail)?;
    let mut cur_name = name;
    let mut cur_id = id_of(&st);
    // The directories above `cur`, below `top`: each one's name in its parent, and id.
    let mut above: Vec<(CString, Id)> = Vec::new();
    loop {
        if let Some((name, fd, id)) = empty_out(&cur, &mut failures).map_err(fail)? {
            above.push((std::mem::replace(&mut cur_name, name), cur_id));
            cur = fd;
            cur_id = id;
            continue;
        }
        // `cur` holds nothing more that can go: up one level, and remove it there.
        let up = match above.last() {
            None => top.try_clone().map_err(|e| Error::io(format!("remove {}", path.display()), e))?,
            Some((_, want)) => {
                let up = nix::fcntl::openat(
                    &cur,
                    c"..",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?;
                // Nothing moves under a dead sandbox; should something have, the walk
                // stops rather than remove entries of a directory it does not know.
                if id_of(&nix::sys::stat::fstat(&up).map_err(fail)?) != *want {
                    return Err(fail(Errno::ESTALE));
                }
                up
            }
        };
        drop(cur);
        match remove_entry(&up, &cur_name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => failures.add(cur_id, "rmdir", &cur_name, e),
        }
        match above.pop() {
            None => break,
            Some((name, id)) => {
                cur = up;
                cur_name = name;
                cur_id = id;
            }
        }
    }
    match failures.first {
        None => Ok(()),
        Some((what, e)) => Err(Error::io(
            format!("remove {}: {what} (and {} more entries not removed)", path.display(), failures.count - 1),
            e.into(),
        )),
    }
}

/// Opens directory `name` in `dir` for reading, never through a symlink or into another
/// mount. A directory without read or search permission is given them first (root
/// usually needs none, with CAP_DAC_OVERRIDE, but the walk must not depend on it).
fn open_dir(dir: &impl AsFd, name: &CStr) -> nix::Result<OwnedFd> {
    let how =
        OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_BENEATH,
        );
    match nix::fcntl::openat2(dir.as_fd(), name, how) {
        Err(Errno::EACCES) => {
            // `name` was just seen as a directory, not a symlink, and nothing runs in
            // the sandbox any more to swap it; the open below checks again anyway.
            nix::sys::stat::fchmodat(dir.as_fd(), name, Mode::S_IRWXU, FchmodatFlags::FollowSymlink)?;
            nix::fcntl::openat2(dir.as_fd(), name, how)
        }
        r => r,
    }
}

/// Unlinks `name` in `dir`; if `dir` lacks write or search permission, gives it them
/// and tries again.
fn remove_entry(dir: &OwnedFd, name: &CStr, flags: UnlinkatFlags) -> nix::Result<()> {
    match nix::unistd::unlinkat(dir, name, flags) {
        Err(Errno::EACCES) => {
            nix::sys::stat::fchmod(dir, Mode::S_IRWXU)?;
            nix::unistd::unlinkat(dir, name, flags)
        }
        r => r,
    }
}

/// Removes every entry of `dir` that is not a non-empty directory, until a pass over it
/// removes nothing more; returns the first non-empty directory found (name, open fd,
/// id), for the walk to go into, or None once `dir` holds only what failed.
fn empty_out(dir: &OwnedFd, failures: &mut Failures) -> nix::Result<Option<(CString, OwnedFd, Id)>> {
    loop {
        // A fresh open file description each pass, so each reads from the start.
        let reader =
            nix::fcntl::openat(dir, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        let mut entries = nix::dir::Dir::from_fd(reader)?;
        let mut removed_any = false;
        for entry in entries.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let st = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    if !failures.skip.contains(&(0, entry.ino())) {
                        failures.add((0, entry.ino()), "stat", name, e);
                    }
                    continue;
                }
            };
            let id = id_of(&st);
            if failures.skip.contains(&id) {
                continue;
            }
            if !is_dir(&st) {
                // Files, symlinks (never followed), devices, fifos, sockets, whiteouts.
                match remove_entry(dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) => removed_any = true,
                    Err(Errno::ENOENT) => {}
                    Err(e) => failures.add(id, "unlink", name, e),
                }
                continue;
            }
            // An empty directory goes at once; a full one is gone into.
            match remove_entry(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) => {
                    removed_any = true;
                    continue;
                }
                Err(Errno::ENOENT) => continue,
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
                // A mount point (EBUSY) or anything else: left where it is.
                Err(e) => {
                    failures.add(id, "rmdir", name, e);
                    continue;
                }
            }
            match open_dir(dir, name) {
                Ok(fd) => return Ok(Some((name.to_owned(), fd, id))),
                Err(Errno::ENOENT) => {}
                // EXDEV: a mount point, whose contents are not this tree's to remove.
                Err(e) => failures.add(id, "open", name, e),
            }
        }
        if !removed_any {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// Makes `depth` nested directories `d` under `dir` through fds, as a sandbox can,
    /// past PATH_MAX.
    fn nest(dir: &Path, depth: usize) {
        let mut fd = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
        for _ in 0..depth {
            nix::sys::stat::mkdirat(&fd, c"d", Mode::S_IRWXU).expect("mkdirat");
            fd = nix::fcntl::openat(&fd, c"d", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("openat");
        }
    }

    #[test]
    fn removes_a_deep_wide_odd_tree_on_a_small_stack_and_follows_no_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), "keep").expect("write");
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).expect("mkdir");
        nest(&tree, 20_000);
        let wide = tree.join("wide");
        std::fs::create_dir(&wide).expect("mkdir");
        for i in 0..5000 {
            std::fs::write(wide.join(format!("f{i}")), "").expect("write");
        }
        let odd = std::ffi::OsStr::from_bytes(b"a\n\x01\xff b");
        std::fs::create_dir(tree.join(odd)).expect("mkdir odd");
        std::fs::write(tree.join(odd).join("x"), "").expect("write");
        symlink(&outside, tree.join("link-dir")).expect("symlink");
        symlink(outside.join("keep"), tree.join("link-file")).expect("symlink");
        std::fs::create_dir_all(tree.join("locked/inner")).expect("mkdir");
        std::fs::write(tree.join("locked/inner/f"), "").expect("write");
        std::fs::set_permissions(tree.join("locked/inner"), PermissionsExt::from_mode(0o000)).expect("chmod");
        std::fs::set_permissions(tree.join("locked"), PermissionsExt::from_mode(0o000)).expect("chmod");

        let t = tree.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || remove_tree(&t))
            .expect("spawn")
            .join()
            .expect("no overflow")
            .expect("removed");
        assert!(!tree.exists(), "the tree is gone");
        assert_eq!(std::fs::read_to_string(outside.join("keep")).expect("kept"), "keep");
        remove_tree(&tree).expect("a missing tree is not an error");
    }

    #[test]
    fn removes_a_single_file_or_symlink_without_following_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("keep"), "").expect("write");
        symlink(&target, tmp.path().join("link")).expect("symlink");
        remove_tree(&tmp.path().join("link")).expect("remove link");
        assert!(target.join("keep").exists());
        assert!(std::fs::symlink_metadata(tmp.path().join("link")).is_err());
    }
}
