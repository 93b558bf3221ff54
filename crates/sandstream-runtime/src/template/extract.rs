//! Writes a root filesystem described by someone else (a tarball's members, or a walk of
//! a directory) into a fresh directory, **without ever writing outside it**.
//!
//! A template tarball is untrusted input: `docker export` of an image someone else built,
//! or a file downloaded from anywhere. What a hostile one may carry, and what is done:
//!
//! - **`..` members** (`../../etc/cron.d/x`, the "zip slip" family): names are normalised
//!   lexically; a `..` component refuses the whole import.
//! - **Absolute members** (`/etc/cron.d/x`): the leading `/` is dropped, as GNU tar does,
//!   so the member lands inside the template.
//! - **A symlink, then a member through it** (`evil -> /etc`, then `evil/passwd`; the bug
//!   behind CVE-2018-20990 in tar-rs and many unpackers since): every parent directory is
//!   opened one component at a time with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH |
//!   RESOLVE_NO_XDEV)`, so the kernel refuses to follow any symlink on the way, whatever
//!   the member order; such a member refuses the import. The last component is created
//!   with calls that never follow it (`O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`,
//!   `symlinkat`, `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`) after whatever
//!   non-directory held the name is unlinked. Symlinks themselves are stored as they are:
//!   they only ever resolve inside a sandbox's own root.
//! - **Hard links to host files** (`x` linked to `/etc/shadow`): link targets are
//!   normalised and resolved like member names, so they can only name a file already
//!   written inside the template.
//! - **Device nodes** (a block device of the host's disk, `/dev/mem`): skipped and
//!   reported. A sandbox gets its own `/dev` from the OCI runtime, and the template is
//!   mounted `nodev` anyway.
//! - **setuid and setgid files**: the bits are dropped and reported. In a sandbox they do
//!   nothing (`no_new_privs`); on the host they would be a way up for any user who can
//!   reach the file.
//! - **xattrs** (`security.capability` file capabilities, `trusted.overlay.*` that would
//!   steer the overlay): never copied.
//!
//! Numeric owners and file mtimes are kept (owners only when running as root): images
//! rely on their owners (a service user's home), and Python checks its `.pyc` caches
//! against source mtimes. Names and modes of the source are otherwise kept.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use super::TemplateError;

/// What a member is, with what it needs to be written.
pub(crate) enum Node<'r> {
    Dir,
    File(&'r mut dyn Read),
    Symlink(OsString),
    /// A hard link to an earlier member, by its normalised name.
    HardLink(Vec<OsString>),
    Fifo,
    /// A character or block device: never written.
    Device,
}

/// A member's owner, mode and modification time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

/// What an import wrote and left out.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes (and sockets) left out.
    pub skipped: Vec<String>,
    /// Files whose setuid or setgid bit was dropped.
    pub stripped: Vec<String>,
}

/// Writes members under one root directory, never outside it.
pub(crate) struct Writer {
    root: OwnedFd,
    /// The source, for messages.
    origin: String,
    as_root: bool,
    pub stats: Stats,
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> TemplateError {
    move |source| TemplateError::Io { context, source }
}

/// Gives `name` in `dir` the member's owner, without following it if it is a symlink
/// (for members that cannot be opened: symlinks and FIFOs).
fn chown_nofollow(dir: &impl AsFd, name: &OsStr, a: Attrs) -> nix::Result<()> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(a.uid), nix::unistd::Gid::from_raw(a.gid));
    nix::unistd::fchownat(dir, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// A member name (or hard link target) as path components under the root: empty and `.`
/// components and leading slashes dropped; `..` refused.
pub(crate) fn member_path(raw: &[u8]) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component; refusing to write outside the template".into()),
            p if p.contains(&0) => return Err("has a NUL byte".into()),
            p => out.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Ok(out)
}

fn show(parts: &[OsString]) -> String {
    let joined: PathBuf = parts.iter().collect();
    format!("/{}", joined.display())
}

impl Writer {
    /// A writer into `root`, an empty directory. `origin` names the source in messages.
    pub(crate) fn new(root: &Path, origin: &Path) -> Result<Writer, TemplateError> {
        let fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| TemplateError::Io { context: format!("open {}", root.display()), source: e.into() })?;
        Ok(Writer {
            root: fd,
            origin: origin.display().to_string(),
            as_root: nix::unistd::geteuid().is_root(),
            stats: Stats::default(),
        })
    }

    fn unsafe_member(&self, member: &str, reason: impl Into<String>) -> TemplateError {
        TemplateError::Unsafe { origin: self.origin.clone(), member: member.to_string(), reason: reason.into() }
    }

    /// Opens the directory `parents` under the root, one component at a time, following
    /// no symlink; with `create`, missing ones are made (root, 0755) as tar does.
    fn open_parents(&self, member: &str, parents: &[OsString], create: bool) -> Result<OwnedFd, TemplateError> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
        let mut dir = self.root.try_clone().map_err(io_err("dup the template directory".into()))?;
        for (i, c) in parents.iter().enumerate() {
            let next = match nix::fcntl::openat2(&dir, c.as_os_str(), how) {
                Err(Errno::ENOENT) if create => {
                    match nix::sys::stat::mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(io_err(format!(
                                "{}: member {member}: mkdir {}",
                                self.origin,
                                show(&parents[..=i])
                            ))(e.into()));
                        }
                    }
                    nix::fcntl::openat2(&dir, c.as_os_str(), how)
                }
                r => r,
            };
            dir = next.map_err(|e| {
                let at = show(&parents[..=i]);
                match e {
                    Errno::ELOOP => {
                        self.unsafe_member(member, format!("{at} is a symlink; refusing to write through it"))
                    }
                    Errno::ENOTDIR => self.unsafe_member(member, format!("{at} is not a directory")),
                    Errno::ENOENT => self.unsafe_member(member, format!("{at} does not exist")),
                    Errno::EXDEV => self.unsafe_member(member, format!("{at} crosses a mount point")),
                    e => TemplateError::Io {
                        context: format!("{}: member {member}: open {at}", self.origin),
                        source: e.into(),
                    },
                }
            })?;
        }
        Ok(dir)
    }

    /// The mode to give a member: setuid and setgid dropped from non-directories (and
    /// reported), setuid from directories.
    fn mode_for(&mut self, member: &str, mode: u32, dir: bool) -> u32 {
        if dir {
            return mode & 0o3777;
        }
        if mode & 0o6000 != 0 {
            self.stats.stripped.push(member.to_string());
        }
        mode & 0o777
    }

    /// Sets owner, mode and (for non-directories) mtime through an open file.
    fn finish(&mut self, member: &str, f: &File, a: Attrs, dir: bool) -> Result<(), TemplateError> {
        let origin = self.origin.clone();
        let ctx = |what: &str| format!("{origin}: member {member}: {what}");
        if self.as_root {
            std::os::unix::fs::fchown(f, Some(a.uid), Some(a.gid)).map_err(io_err(ctx("chown")))?;
        }
        // After the chown, which would clear setuid bits anyway.
        let mode = self.mode_for(member, a.mode, dir);
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_err(ctx("chmod")))?;
        if !dir {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(a.mtime.max(0) as u64);
            f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t)).map_err(io_err(ctx("set times")))?;
        }
        Ok(())
    }

    /// Writes one member at `path` (normalised; empty for the root itself, which keeps
    /// its owner and mode 0755).
    pub(crate) fn put(
        &mut self,
        member: &str,
        path: &[OsString],
        node: Node<'_>,
        a: Attrs,
    ) -> Result<(), TemplateError> {
        let Some((name, parents)) = path.split_last() else { return Ok(()) };
        if let Node::Device = node {
            self.stats.skipped.push(member.to_string());
            return Ok(());
        }
        let dir = self.open_parents(member, parents, true)?;
        let name = name.as_os_str();
        let origin = self.origin.clone();
        let ctx = |what: &str| format!("{origin}: member {member}: {what}");
        // What holds the name already: an earlier member of the same name, or a directory
        // made for an earlier member's parent. A directory stays (a directory member only
        // updates it); anything else is unlinked, never followed.
        match nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
                if !matches!(node, Node::Dir) {
                    return Err(self.unsafe_member(member, format!("would replace the directory {}", show(path))));
                }
            }
            Ok(_) => nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_err(ctx("unlink the earlier entry"))(e.into()))?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err(ctx("stat"))(e.into())),
        }
        self.stats.entries += 1;
        match node {
            Node::Dir => {
                match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(ctx("mkdir"))(e.into())),
                }
                let how = OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
                let fd = nix::fcntl::openat2(&dir, name, how).map_err(|e| io_err(ctx("open directory"))(e.into()))?;
                self.finish(member, &File::from(fd), a, true)
            }
            Node::File(data) => {
                let fd = nix::fcntl::openat(
                    &dir,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io_err(ctx("create"))(e.into()))?;
                let mut f = File::from(fd);
                self.stats.bytes += std::io::copy(data, &mut f).map_err(io_err(ctx("write")))?;
                self.finish(member, &f, a, false)
            }
            Node::Symlink(target) => {
                nix::unistd::symlinkat(target.as_os_str(), &dir, name).map_err(|e| io_err(ctx("symlink"))(e.into()))?;
                if self.as_root {
                    chown_nofollow(&dir, name, a).map_err(|e| io_err(ctx("chown symlink"))(e.into()))?;
                }
                let t = nix::sys::time::TimeSpec::new(a.mtime, 0);
                nix::sys::stat::utimensat(&dir, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| io_err(ctx("set symlink times"))(e.into()))
            }
            Node::HardLink(target) => {
                let Some((tname, tparents)) = target.split_last() else {
                    return Err(self.unsafe_member(member, "is a hard link to the root directory"));
                };
                let tdir = self.open_parents(member, tparents, false)?;
                nix::unistd::linkat(&tdir, tname.as_os_str(), &dir, name, AtFlags::empty()).map_err(|e| match e {
                    Errno::ENOENT => {
                        self.unsafe_member(member, format!("links to {}, which is not in the template", show(&target)))
                    }
                    Errno::EPERM => self.unsafe_member(member, format!("links to {}, a directory", show(&target))),
                    e => io_err(ctx("link"))(e.into()),
                })
            }
            Node::Fifo => {
                nix::sys::stat::mknodat(&dir, name, SFlag::S_IFIFO, Mode::from_bits_truncate(0o600), 0)
                    .map_err(|e| io_err(ctx("mkfifo"))(e.into()))?;
                // A FIFO cannot be opened without blocking: it is set by name, which this
                // writer has just created (nothing else writes in the template).
                if self.as_root {
                    chown_nofollow(&dir, name, a).map_err(|e| io_err(ctx("chown fifo"))(e.into()))?;
                }
                let mode = self.mode_for(member, a.mode, false);
                nix::sys::stat::fchmodat(
                    &dir,
                    name,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| io_err(ctx("chmod fifo"))(e.into()))
            }
            Node::Device => Ok(()),
        }
    }

    /// Checks that the written tree can be a sandbox's root: `/bin/sh` exists (resolved
    /// as the sandbox will, symlinks staying inside the root), and the paths the runtime
    /// prepares on the host before a sandbox starts (`/tmp`, `/home/user` and its
    /// parents) are directories if present, never symlinks the host would follow.
    pub(crate) fn check_rootfs(&self) -> Result<(), String> {
        let in_root = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
        let sh = nix::fcntl::openat2(&self.root, "bin/sh", in_root)
            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()))
            .ok()
            .filter(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG && st.st_mode & 0o111 != 0
            });
        if sh.is_none() {
            return Err("it has no executable /bin/sh, which runs every command; is it a root filesystem?".into());
        }
        let mut prepared = vec!["tmp".to_string()];
        let mut at = String::new();
        for part in crate::sandbox::WORKDIR.trim_start_matches('/').split('/') {
            at = if at.is_empty() { part.to_string() } else { format!("{at}/{part}") };
            prepared.push(at.clone());
        }
        for p in prepared {
            let parts: Vec<OsString> = p.split('/').map(OsString::from).collect();
            match self.open_parents(&p, &parts, false) {
                Ok(_) => {}
                Err(TemplateError::Unsafe { reason, .. }) if reason.ends_with("does not exist") => {}
                Err(_) => {
                    return Err(format!(
                        "/{p} is not a directory (a symlink or a file); the runtime makes /tmp and {} \
                         itself before a sandbox starts and will not follow links out of the template",
                        crate::sandbox::WORKDIR
                    ));
                }
            }
        }
        Ok(())
    }

    /// Flushes everything written to disk (before the template is published).
    pub(crate) fn sync(&self) -> Result<(), TemplateError> {
        nix::unistd::syncfs(&self.root)
            .map_err(|e| TemplateError::Io { context: "sync the template".into(), source: e.into() })
    }
}

/// Writes the members of the tarball at `path` (plain or gzip, recognised by content).
pub(crate) fn from_tarball(w: &mut Writer, path: &Path) -> Result<(), TemplateError> {
    let format = |detail: String| TemplateError::Format { origin: path.to_path_buf(), detail };
    let mut f = File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(io_err(format!("read {}", path.display())))?;
    f.rewind().map_err(io_err(format!("read {}", path.display())))?;
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 << 10, f))),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            return Err(format("it is xz-compressed; decompress it first (xz -d)".into()));
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            return Err(format("it is zstd-compressed; decompress it first (zstd -d)".into()));
        }
        [b'B', b'Z', b'h', ..] => return Err(format("it is bzip2-compressed; decompress it first (bzip2 -d)".into())),
        _ => Box::new(BufReader::with_capacity(256 << 10, f)),
    };
    let mut archive = tar::Archive::new(reader);
    let not_tar = |e: std::io::Error| format(format!("not a tar archive (plain or gzip), or a damaged one: {e}"));
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let raw = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw).into_owned();
        let rel = member_path(&raw).map_err(|reason| w.unsafe_member(&member, reason))?;
        let h = entry.header();
        let id = |v: std::io::Result<u64>, what: &str| {
            v.ok().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| format(format!("member {member}: bad {what}")))
        };
        let mut a = Attrs {
            mode: h.mode().map_err(not_tar)? & 0o7777,
            uid: id(h.uid(), "uid")?,
            gid: id(h.gid(), "gid")?,
            mtime: h.mtime().map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)),
        };
        let kind = h.entry_type();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        // PAX records override the header's numbers (large ids, precise times).
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let (Ok(k), Ok(v)) = (ext.key(), ext.value()) else { continue };
                match k {
                    "uid" => a.uid = v.parse().map_err(|_| format(format!("member {member}: bad PAX uid {v:?}")))?,
                    "gid" => a.gid = v.parse().map_err(|_| format(format!("member {member}: bad PAX gid {v:?}")))?,
                    "mtime" => a.mtime = v.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(a.mtime),
                    _ => {}
                }
            }
        }
        let link_target = || -> Result<Vec<u8>, TemplateError> {
            link.clone().ok_or_else(|| format(format!("member {member}: a link without a target")))
        };
        use tar::EntryType as T;
        let node = match kind {
            T::Regular | T::Continuous | T::GNUSparse => Node::File(&mut entry),
            T::Directory => Node::Dir,
            T::Symlink => Node::Symlink(OsStr::from_bytes(&link_target()?).to_os_string()),
            T::Link => Node::HardLink(
                member_path(&link_target()?)
                    .map_err(|reason| w.unsafe_member(&member, format!("its link target {reason}")))?,
            ),
            T::Fifo => Node::Fifo,
            T::Char | T::Block => Node::Device,
            // Global PAX headers and volume labels describe no file.
            _ => continue,
        };
        w.put(&member, &rel, node, a)?;
    }
    Ok(())
}

/// Writes a copy of the directory `src`: symlinks as symlinks, hard links as hard links,
/// one file system only (what is mounted below it is copied as an empty directory, as
/// `tar --one-file-system` does). The directory `skip` (the template store, by device and
/// inode) is left out, so importing `/` cannot copy the import into itself.
pub(crate) fn from_dir(w: &mut Writer, src: &Path, skip: Option<(u64, u64)>) -> Result<(), TemplateError> {
    let root_dev = std::fs::metadata(src).map_err(io_err(format!("stat {}", src.display())))?.dev();
    let mut first_link: HashMap<(u64, u64), Vec<OsString>> = HashMap::new();
    let mut stack: Vec<Vec<OsString>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let dir: PathBuf = src.join(rel.iter().collect::<PathBuf>());
        let mut names = std::fs::read_dir(&dir)
            .and_then(|it| it.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<Vec<_>>>())
            .map_err(io_err(format!("read {}", dir.display())))?;
        names.sort();
        for name in names {
            let full = dir.join(&name);
            let mut path = rel.clone();
            path.push(name);
            let member = show(&path);
            let md = std::fs::symlink_metadata(&full).map_err(io_err(format!("stat {}", full.display())))?;
            let a = Attrs { mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime: md.mtime() };
            let ft = md.file_type();
            if ft.is_dir() {
                if skip == Some((md.dev(), md.ino())) {
                    continue;
                }
                w.put(&member, &path, Node::Dir, a)?;
                if md.dev() == root_dev {
                    stack.push(path);
                }
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = first_link.get(&(md.dev(), md.ino())) {
                        w.put(&member, &path, Node::HardLink(first.clone()), a)?;
                        continue;
                    }
                    first_link.insert((md.dev(), md.ino()), path.clone());
                }
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc_o_nofollow())
                    .open(&full)
                    .map_err(io_err(format!("open {}", full.display())))?;
                w.put(&member, &path, Node::File(&mut f), a)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&full).map_err(io_err(format!("readlink {}", full.display())))?;
                w.put(&member, &path, Node::Symlink(target.into_os_string()), a)?;
            } else if ft.is_fifo() {
                w.put(&member, &path, Node::Fifo, a)?;
            } else {
                // Devices and sockets.
                w.put(&member, &path, Node::Device, a)?;
            }
        }
    }
    Ok(())
}

fn libc_o_nofollow() -> i32 {
    OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised_and_dotdot_refused() {
        let p = |s: &str| {
            member_path(s.as_bytes()).map(|v| v.iter().map(|c| c.to_string_lossy().into_owned()).collect::<Vec<_>>())
        };
        assert_eq!(p("./usr/bin/env").expect("ok"), ["usr", "bin", "env"]);
        assert_eq!(p("/etc//passwd").expect("ok"), ["etc", "passwd"], "a leading slash is dropped");
        assert_eq!(p("./").expect("ok"), Vec::<String>::new());
        assert!(p("../escape").is_err());
        assert!(p("a/../../escape").is_err());
        assert!(p("a/..").is_err());
    }
}
