//! Whom a file request is for, and what its paths name.

use std::path::{Component, Path, PathBuf};

use super::creds::Creds;
use super::error::{FsError, FsResult};
use super::pool::Pool;

/// Longest path a request may give (the kernel's PATH_MAX).
pub(crate) const MAX_PATH_BYTES: usize = 4096;

/// A request's user, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    /// The credentials its file system calls run with; `None`: the agent's own.
    pub(crate) creds: Option<Creds>,
    /// What relative paths resolve against.
    pub(crate) home: PathBuf,
}

/// The sandbox's default user, as commands have it.
#[derive(Debug, Clone)]
pub(crate) struct Users {
    /// `--run-as`; `None`: the agent's own user.
    pub(crate) run_as: Option<(u32, u32)>,
    /// The agent's workdir: where the default user's commands start.
    pub(crate) workdir: PathBuf,
}

impl Users {
    /// Resolves a request's `user` exactly as a command's: empty is the default user
    /// (`--run-as`, without supplementary groups; relative paths from the workdir, as
    /// its commands' relative cwd), otherwise a name or uid from the sandbox's
    /// /etc/passwd (`user.rs`) with its groups, relative paths from its home. An agent
    /// that does not run as root can act only as itself: any other user is refused.
    pub(crate) async fn resolve(&self, pool: &Pool, user: &str) -> FsResult<Who> {
        let (wanted, home) = if user.is_empty() {
            let creds = self.run_as.map(|(uid, gid)| Creds { uid, gid, groups: Vec::new() });
            (creds, self.workdir.clone())
        } else {
            let name = user.to_string();
            let (identity, home) = pool
                .run(None, move || {
                    let identity = crate::user::lookup(&name)?;
                    let home = identity.default_cwd();
                    Ok((identity, home))
                })
                .await?;
            (Some(Creds { uid: identity.uid, gid: identity.gid, groups: identity.groups }), home)
        };
        let agent = pool.agent();
        let creds = match wanted {
            None => None,
            Some(c) if agent.is_root() => Some(c),
            Some(c) if c.uid == agent.uid => None,
            Some(c) => {
                return Err(FsError::Denied(format!(
                    "the agent runs as uid {}, not root, and can act only as that user, not as uid {}",
                    agent.uid, c.uid
                )));
            }
        };
        Ok(Who { creds, home })
    }
}

/// The absolute path a request's `raw` path names: relative ones from `home`; `.`
/// components and repeated or trailing slashes dropped, `..` kept (the kernel resolves
/// it, through symlinks, as the user's own process would). `what` names the field in
/// errors. Empty paths, NUL bytes and paths past [`MAX_PATH_BYTES`] are refused.
pub(crate) fn resolve(home: &Path, raw: &str, what: &str) -> FsResult<PathBuf> {
    if raw.is_empty() {
        return Err(FsError::InvalidArgument(format!("{what} is empty")));
    }
    if raw.contains('\0') {
        return Err(FsError::InvalidArgument(format!("{what} contains a NUL byte")));
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(FsError::InvalidArgument(format!("{what} is longer than {MAX_PATH_BYTES} bytes")));
    }
    let joined = home.join(raw);
    let mut path = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => path.push(n),
            Component::ParentDir => path.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if path.as_os_str().len() > MAX_PATH_BYTES {
        return Err(FsError::InvalidArgument(format!("{what} is longer than {MAX_PATH_BYTES} bytes")));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_from_home_and_bad_ones_are_refused() {
        let home = Path::new("/home/user");
        let ok = |raw: &str| resolve(home, raw, "path").expect(raw).display().to_string();
        assert_eq!(ok("f.txt"), "/home/user/f.txt");
        assert_eq!(ok("./a//b/"), "/home/user/a/b");
        assert_eq!(ok("/etc/passwd"), "/etc/passwd");
        assert_eq!(ok("../x"), "/home/user/../x");
        assert_eq!(ok("/"), "/");
        let err = |raw: &str| resolve(home, raw, "path").expect_err(raw).to_string();
        assert_eq!(err(""), "path is empty");
        assert_eq!(err("a\0b"), "path contains a NUL byte");
        assert_eq!(err(&"a".repeat(5000)), "path is longer than 4096 bytes");
    }
}
