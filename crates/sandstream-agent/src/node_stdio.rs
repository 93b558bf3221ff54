//! Node.js programs keep their output when they exit.
//!
//! Node.js makes a pipe on stdout or stderr non-blocking and queues what the pipe does
//! not take at once; `process.exit()` then ends the process with that queue unwritten.
//! A program that prints 1 MiB and calls `process.exit()` loses all but what the pipe
//! held: 64 KiB under `docker run`, and a page with the agent's in-step pipes
//! (`pipes.rs`). The agent writes a small module at start and preloads it into every
//! command's Node.js programs through `NODE_OPTIONS=--require=PATH`: it makes their
//! stdout and stderr writes blocking, as Node.js already does for files and terminals,
//! so nothing is queued and nothing is lost. A program still sees a pipe.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The preloaded module. It only touches handles that can block (pipes and sockets;
/// files and terminals are written synchronously already) and never throws.
pub(crate) const MODULE: &str = "'use strict';
// Written by the Sandstream agent: stdout and stderr writes block, so a program that
// calls process.exit() right after writing loses nothing (NODE_OPTIONS preloads it).
try {
  for (const stream of [process.stdout, process.stderr]) {
    const handle = stream && stream._handle;
    if (handle && typeof handle.setBlocking === 'function') handle.setBlocking(true);
  }
} catch {}
";

/// The variable that carries the preload.
const NODE_OPTIONS: &str = "NODE_OPTIONS";

/// Whether `path` can stand in `NODE_OPTIONS` unquoted (it splits on whitespace and
/// reads quotes and backslashes).
pub(crate) fn usable_path(path: &Path) -> bool {
    let Some(s) = path.to_str() else { return false };
    path.is_absolute() && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
}

/// Writes the module at `path` (its directory made if missing), readable by every user,
/// replacing what was there in one rename.
pub(crate) fn install(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("the preload path has no directory"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let tmp =
        dir.join(format!(".{}.{}", path.file_name().and_then(OsStr::to_str).unwrap_or("preload"), std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    file.write_all(MODULE.as_bytes())?;
    // Whatever the umask: every user's programs read it.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Puts `--require=PATH` first in the command's `NODE_OPTIONS`, keeping any options it
/// has of its own (from the sandbox's envs or the request).
pub(crate) fn add_preload(vars: &mut Vec<(OsString, OsString)>, path: &Path) {
    let mut require = OsString::from("--require=");
    require.push(path);
    match vars.iter_mut().find(|(k, _)| k == NODE_OPTIONS) {
        Some((_, v)) if v.is_empty() => *v = require,
        Some((_, v)) => {
            require.push(" ");
            require.push(&*v);
            *v = require;
        }
        None => vars.push((NODE_OPTIONS.into(), require)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preload_comes_first_and_the_commands_own_options_stay() {
        let path = Path::new("/run/sandstream-agent/node-stdio.cjs");
        let mut none: Vec<(OsString, OsString)> = vec![("PATH".into(), "/bin".into())];
        add_preload(&mut none, path);
        assert_eq!(none[1], ("NODE_OPTIONS".into(), "--require=/run/sandstream-agent/node-stdio.cjs".into()));
        let mut own: Vec<(OsString, OsString)> = vec![("NODE_OPTIONS".into(), "--max-old-space-size=64".into())];
        add_preload(&mut own, path);
        assert_eq!(own[0].1, "--require=/run/sandstream-agent/node-stdio.cjs --max-old-space-size=64");
        let mut empty: Vec<(OsString, OsString)> = vec![("NODE_OPTIONS".into(), "".into())];
        add_preload(&mut empty, path);
        assert_eq!(empty[0].1, "--require=/run/sandstream-agent/node-stdio.cjs");
    }

    #[test]
    fn only_paths_node_options_reads_whole_are_usable() {
        assert!(usable_path(Path::new("/run/sandstream-agent/node-stdio.cjs")));
        for bad in ["relative.cjs", "/a b.cjs", "/a\"b.cjs", "/a'b.cjs", "/a\\b.cjs", "/a\tb.cjs"] {
            assert!(!usable_path(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn install_writes_a_module_every_user_can_read_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/node-stdio.cjs");
        install(&path).expect("install");
        std::fs::write(&path, "stale").expect("write");
        install(&path).expect("install again");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), MODULE);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        assert_eq!(mode(path.parent().expect("dir")), 0o755);
        assert_eq!(std::fs::read_dir(path.parent().expect("dir")).expect("list").count(), 1, "no temporary left");
    }
}
