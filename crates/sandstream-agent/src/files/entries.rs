//! Describing entries: Stat and ListDir. Every function here runs on a pool thread with
//! the user's credentials (`pool.rs`).

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sandstream_proto::v1::{EntryInfo, FileType};

use super::error::{FsError, FsResult};
use crate::user::IdNames;

/// Most entries one ListDir returns; past it the request fails rather than build an
/// unbounded reply (a sandbox can make millions of files).
pub(crate) const MAX_LIST_ENTRIES: usize = 100_000;

fn file_type(meta: &Metadata) -> FileType {
    let t = meta.file_type();
    if t.is_symlink() {
        FileType::Symlink
    } else if t.is_dir() {
        FileType::Dir
    } else if t.is_file() {
        FileType::File
    } else if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
        FileType::Other
    } else {
        FileType::Unspecified
    }
}

/// `path`'s entry from its metadata (`lstat`'s, or `fstat`'s of an opened file). A
/// symlink's target is read as written in it.
pub(crate) fn describe(path: &Path, meta: &Metadata, names: &IdNames) -> EntryInfo {
    let kind = file_type(meta);
    let symlink_target = if kind == FileType::Symlink {
        std::fs::read_link(path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default()
    } else {
        String::new()
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    EntryInfo {
        name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: path.to_string_lossy().into_owned(),
        r#type: kind as i32,
        symlink_target,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        owner: names.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        group: names.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string()),
        modified_at_ms: meta.mtime().saturating_mul(1000).saturating_add(meta.mtime_nsec() / 1_000_000),
        uid,
        gid,
    }
}

/// Stat: `path` itself, a symlink described rather than followed.
pub(crate) fn stat(path: &Path) -> FsResult<EntryInfo> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| FsError::io(path, &e))?;
    Ok(describe(path, &meta, &IdNames::load()))
}

/// ListDir: the entries under `root` down to `depth` levels (0 and 1: its children),
/// sorted by path. `root` itself may be a symlink to a directory; symlinks below it are
/// listed, never followed. Subdirectories that cannot be read (no permission, gone
/// meanwhile) are listed without their contents; entries that vanish while listed are
/// left out. More than `limit` entries is [`FsError::Exhausted`].
pub(crate) fn list(root: &Path, depth: u32, limit: usize) -> FsResult<Vec<EntryInfo>> {
    let depth = depth.max(1);
    let names = IdNames::load();
    let mut out = Vec::new();
    // Directories still to read, with their level (1: the root's children). A stack on
    // the heap: a tree nested 20,000 deep costs memory for its paths, never call depth.
    let mut todo: Vec<(PathBuf, u32)> = vec![(root.to_path_buf(), 1)];
    while let Some((dir, level)) = todo.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(FsError::io(root, &e)),
            Err(_) => continue,
        };
        for entry in entries {
            let Ok(entry) = entry else { break };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if out.len() >= limit {
                return Err(FsError::Exhausted(format!(
                    "{}: too many entries (more than {limit}); list a smaller depth or a subdirectory",
                    root.display()
                )));
            }
            if meta.is_dir() && level < depth {
                todo.push((path.clone(), level + 1));
            }
            out.push(describe(&path, &meta, &names));
        }
    }
    out.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_to_a_depth_sorted_and_bounded_without_following_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/c/d")).expect("mkdir");
        std::fs::write(d.join("a.txt"), b"abc").expect("write");
        std::fs::write(d.join("b/c/f"), b"").expect("write");
        std::os::unix::fs::symlink("/", d.join("b/root")).expect("symlink");
        let rel = |v: Vec<EntryInfo>| {
            v.into_iter()
                .map(|e| e.path.strip_prefix(&*d.to_string_lossy()).expect("under").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(rel(list(d, 0, 100).expect("list")), ["/a.txt", "/b"]);
        assert_eq!(rel(list(d, 2, 100).expect("list")), ["/a.txt", "/b", "/b/c", "/b/root"]);
        assert_eq!(rel(list(d, 9, 100).expect("list")), ["/a.txt", "/b", "/b/c", "/b/c/d", "/b/c/f", "/b/root"]);
        let link = list(&d.join("b"), 1, 100).expect("list").into_iter().find(|e| e.name == "root").expect("link");
        assert_eq!((link.r#type, link.symlink_target.as_str()), (FileType::Symlink as i32, "/"));
        let err = list(d, 9, 5).expect_err("bounded");
        assert!(err.to_string().ends_with("too many entries (more than 5); list a smaller depth or a subdirectory"));
        let a = stat(&d.join("a.txt")).expect("stat");
        assert_eq!((a.name.as_str(), a.size, a.r#type), ("a.txt", 3, FileType::File as i32));
        assert!(matches!(list(&d.join("a.txt"), 1, 9), Err(FsError::Os { errno: nix::errno::Errno::ENOTDIR, .. })));
    }
}
