//! Whether any mount namespace on this host still has a template version mounted: the
//! catalog deletes a version only when none has.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// For each of `paths`, whether some mount on this host (in any mount namespace that has
/// a process: the runner's, every sandbox's own) names it: by its whole path, or as an
/// overlay's lower directory by its directory name alone, which is how the oci backend
/// mounts a template (so a sandbox's mount table names no host path). Two template
/// directories of the same name under different caches count for each other: a version
/// is kept longer, never deleted in use. When the mount table cannot be read, everything
/// counts as mounted.
pub(super) fn mounted_anywhere(paths: &[PathBuf]) -> Vec<bool> {
    let needles: Vec<[String; 2]> = paths
        .iter()
        .map(|p| {
            let leaf = p.file_name().map(mangle).unwrap_or_else(|| mangle(p.as_os_str()));
            [mangle(p.as_os_str()), format!("lowerdir={leaf}")]
        })
        .collect();
    let mut found = vec![false; paths.len()];
    let mut seen = std::collections::HashSet::new();
    let mut tables = 0;
    let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let pids = std::iter::once(PathBuf::from("/proc/self")).chain(
        procs
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))),
    );
    for pid in pids {
        let Ok(ns) = std::fs::metadata(pid.join("ns/mnt")) else { continue };
        if !seen.insert((ns.dev(), ns.ino())) {
            continue;
        }
        let Ok(table) = std::fs::read_to_string(pid.join("mountinfo")) else { continue };
        tables += 1;
        for (i, [path, lower]) in needles.iter().enumerate() {
            found[i] |= names(&table, path) || names(&table, lower);
        }
    }
    if tables == 0 {
        return vec![true; paths.len()];
    }
    found
}

/// Whether `table` has `needle` as a whole path (followed by a separator, not by more of
/// a longer name).
fn names(table: &str, needle: &str) -> bool {
    table
        .match_indices(needle)
        .any(|(i, _)| matches!(table.as_bytes().get(i + needle.len()), None | Some(b',' | b' ' | b':' | b'\n' | b'/')))
}

/// A path as the kernel writes it in a mount table (`seq_escape` of space, tab, newline,
/// backslash, and, in mount options, comma and `=`, as octal escapes).
fn mangle(path: &OsStr) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' | ',' | '=' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_tables_are_matched_on_whole_paths() {
        let t = "40 1 0:40 / /x rw - overlay overlay rw,lowerdir=/c/templates/.versions/a@1-ab,upperdir=/u\n";
        assert!(names(t, "/c/templates/.versions/a@1-ab"));
        assert!(!names(t, "/c/templates/.versions/a@1-a"));
        assert!(names("... lowerdir=/c/x\\040y,upperdir", &mangle(OsStr::new("/c/x y"))));
        let t = "40 1 0:40 / / rw - overlay overlay rw,lowerdir=a@1-ab,upperdir=/proc/self/fd/7\n";
        assert!(names(t, "lowerdir=a@1-ab"));
        assert!(!names(t, "lowerdir=a@1-a"));
        assert!(!names(t, "lowerdir=b@1-ab"));
    }
}
