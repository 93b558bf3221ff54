//! Recursive removal of a tree the sandbox built, as the user (Remove with `recursive`).
//!
//! Whatever a sandbox can make must not crash or wedge the agent: directories nested far
//! deeper than PATH_MAX (`mkdirat` relative to a directory fd has no such limit), a
//! million entries in one directory, symlinks anywhere, mount points inside, entries
//! swapped while the walk runs. `std::fs::remove_dir_all` recurses once per level, and a
//! 20,000-deep tree overflows a thread's stack. So the walk is iterative, one directory
//! fd open at a time, with the way back up kept on the heap (each level's name and
//! device/inode): constant stack, a handful of fds, no path longer than one name. Every
//! open is relative to the directory above and refuses symlinks and mount crossings
//! (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_BENEATH`), and the way
//! back up (`..`) is checked against the device and inode recorded on the way down, so
//! a directory swapped for a symlink mid-walk is never followed (CVE-2022-21658 is the
//! race std once had here). Symlinks are unlinked, never followed. Unlike the runtime's
//! removal of a dead sandbox's files (`sandstream-runtime`'s `remove.rs`) nothing here is
//! given permissions it lacks: the user removes what the user may remove, as `rm -rf`.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::error::{FsError, FsResult};

type Id = (u64, u64);

fn id_of(st: &FileStat) -> Id {
    (st.st_dev, st.st_ino)
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

/// What the walk could not remove; the first is reported, with a count of the rest.
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
            self.first = Some((format!("cannot {what} {:?}", String::from_utf8_lossy(name.to_bytes())), e));
        }
    }
}

/// Removes directory `path` and everything in it (a non-directory is unlinked). What
/// cannot be removed is left, with the directories above it, and the first such failure
/// is returned once the rest is gone.
pub(crate) fn remove_tree(path: &Path) -> FsResult<()> {
    let fail = |e: Errno| FsError::os(path, e);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(FsError::InvalidArgument(format!("{}: cannot remove the root directory", path.display())));
    };
    let name = CString::new(name.as_bytes()).map_err(|_| fail(Errno::EINVAL))?;
    // The parent is opened as the user's path lookup would go (symlinks on the way are
    // followed, as `rm -r` does); below it nothing is followed.
    let top = nix::fcntl::open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(fail)?;
    let st = nix::sys::stat::fstatat(&top, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail)?;
    if !is_dir(&st) {
        return nix::unistd::unlinkat(&top, name.as_c_str(), UnlinkatFlags::NoRemoveDir).map_err(fail);
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
        let up = match above.last() {
            None => top.try_clone().map_err(|e| FsError::io(path, &e))?,
            Some((_, want)) => {
                let up = nix::fcntl::openat(
                    &cur,
                    c"..",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?;
                // The sandbox moved a directory during the walk: stop rather than remove
                // entries of a directory the walk does not know.
                if id_of(&nix::sys::stat::fstat(&up).map_err(fail)?) != *want {
                    return Err(fail(Errno::ESTALE));
                }
                up
            }
        };
        drop(cur);
        match nix::unistd::unlinkat(&up, cur_name.as_c_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => failures.add(cur_id, "remove", &cur_name, e),
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
        Some((what, errno)) => {
            Err(FsError::TreeLeft { path: path.display().to_string(), errno, what, more: failures.count - 1 })
        }
    }
}

/// Opens directory `name` in `dir`, never through a symlink or into another mount.
fn open_dir(dir: &impl AsFd, name: &CStr) -> nix::Result<OwnedFd> {
    let how =
        OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_BENEATH,
        );
    nix::fcntl::openat2(dir.as_fd(), name, how)
}

/// Removes every entry of `dir` that is not a non-empty directory, until a pass removes
/// nothing more; returns the first non-empty directory found (name, open fd, id) for the
/// walk to go into, or `None` once `dir` holds only what failed.
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
                        failures.add((0, entry.ino()), "examine", name, e);
                    }
                    continue;
                }
            };
            let id = id_of(&st);
            if failures.skip.contains(&id) {
                continue;
            }
            if !is_dir(&st) {
                match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) => removed_any = true,
                    Err(Errno::ENOENT) => {}
                    Err(e) => failures.add(id, "remove", name, e),
                }
                continue;
            }
            match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) => {
                    removed_any = true;
                    continue;
                }
                Err(Errno::ENOENT) => continue,
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
                Err(e) => {
                    failures.add(id, "remove", name, e);
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

    #[test]
    fn removes_a_tree_deeper_than_path_max_on_a_small_stack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("top");
        std::fs::create_dir(&top).expect("mkdir");
        let mut fd = nix::fcntl::open(&top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
        for i in 0..5_000 {
            nix::sys::stat::mkdirat(&fd, c"d", Mode::S_IRWXU).expect("mkdirat");
            fd = nix::fcntl::openat(&fd, c"d", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("openat");
            if i % 1000 == 0 {
                std::os::unix::fs::symlink("/", format!("/proc/self/fd/{}/link", std::os::fd::AsRawFd::as_raw_fd(&fd)))
                    .expect("symlink");
            }
        }
        drop(fd);
        let path = top.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || remove_tree(&path).expect("removed"))
            .expect("thread")
            .join()
            .expect("no overflow");
        assert!(!top.exists());
    }
}
