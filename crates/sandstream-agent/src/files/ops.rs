//! MakeDir, Move and Remove. Every function here runs on a pool thread with the user's
//! credentials (`pool.rs`), so what it creates is the user's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::Mode;
use sandstream_proto::v1::EntryInfo;

use super::entries;
use super::error::{FsError, FsResult};

/// Permission bits of directories created without a mode.
pub(crate) const DEFAULT_DIR_MODE: u32 = 0o755;

/// Creates directory `path` and its missing parents, each with exactly `mode` (a
/// `chmod` after the `mkdir`, so the agent's umask does not apply). Returns whether
/// `path` itself was created (false: it was already a directory). Iterative: the
/// missing ancestors are kept on the heap.
pub(crate) fn make_dirs(path: &Path, mode: u32) -> Result<bool, Errno> {
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        match mkdir(cur, mode) {
            Ok(()) => break,
            Err(Errno::EEXIST) => {
                if !std::fs::metadata(cur).is_ok_and(|m| m.is_dir()) {
                    return Err(if cur == path { Errno::EEXIST } else { Errno::ENOTDIR });
                }
                if cur == path {
                    return Ok(false);
                }
                break;
            }
            Err(Errno::ENOENT) => {
                missing.push(cur);
                match cur.parent() {
                    Some(parent) => cur = parent,
                    None => return Err(Errno::ENOENT),
                }
            }
            Err(e) => return Err(e),
        }
    }
    for dir in missing.into_iter().rev() {
        match mkdir(dir, mode) {
            Ok(()) => {}
            // Made meanwhile by someone else: fine if it is a directory.
            Err(Errno::EEXIST) if std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), Errno> {
    nix::unistd::mkdir(dir, Mode::from_bits_truncate(mode))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))
}

/// MakeDir: the directory's entry and whether it was created.
pub(crate) fn make_dir(path: &Path, mode: u32) -> FsResult<(EntryInfo, bool)> {
    // EEXIST here: `path` is there and is not a directory (ALREADY_EXISTS).
    let created = make_dirs(path, mode).map_err(|e| FsError::os(path, e))?;
    Ok((entries::stat(path)?, created))
}

/// Move: renames `source` to `destination` (rename(2): a file replaces a file there, a
/// directory an empty directory), creating the destination's missing parents. Errors
/// name the source, or the destination when its parents cannot be made.
pub(crate) fn move_entry(source: &Path, destination: &Path) -> FsResult<EntryInfo> {
    if let Some(parent) = destination.parent() {
        make_dirs(parent, DEFAULT_DIR_MODE).map_err(|e| FsError::os(destination, e))?;
    }
    std::fs::rename(source, destination).map_err(|e| FsError::io(source, &e))?;
    entries::stat(destination)
}

/// Remove: a file, a symlink (not its target), an empty directory, or with `recursive`
/// a directory and everything in it (`tree.rs`).
pub(crate) fn remove(path: &Path, recursive: bool) -> FsResult<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| FsError::io(path, &e))?;
    if !meta.is_dir() {
        return std::fs::remove_file(path).map_err(|e| FsError::io(path, &e));
    }
    if recursive {
        super::tree::remove_tree(path)
    } else {
        std::fs::remove_dir(path).map_err(|e| FsError::io(path, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_dirs_creates_parents_with_the_exact_mode_and_says_whether_it_made_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        assert_eq!(make_dirs(&deep, 0o750), Ok(true));
        assert_eq!(make_dirs(&deep, 0o750), Ok(false));
        for d in ["a", "a/b", "a/b/c"] {
            let mode = std::fs::metadata(dir.path().join(d)).expect("meta").permissions().mode() & 0o7777;
            assert_eq!(mode, 0o750, "{d}");
        }
        std::fs::write(dir.path().join("f"), b"").expect("write");
        assert_eq!(make_dirs(&dir.path().join("f"), 0o755), Err(Errno::EEXIST));
        assert_eq!(make_dirs(&dir.path().join("f/g/h"), 0o755), Err(Errno::ENOTDIR));
    }

    #[test]
    fn remove_is_recursive_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("t/u")).expect("mkdir");
        let err = remove(&dir.path().join("t"), false).expect_err("not empty");
        assert!(matches!(err, FsError::Os { errno: Errno::ENOTEMPTY, .. }), "{err:?}");
        remove(&dir.path().join("t"), true).expect("recursive");
        assert!(!dir.path().join("t").exists());
    }
}
