//! Write: a file from a client stream, replacing the target atomically.
//!
//! The data goes to a new temporary file in the target's directory, `.NAME.HEX.sandstream-tmp`,
//! created `O_EXCL | O_NOFOLLOW` as the user (so it is the user's, and nothing the
//! sandbox placed there, a symlink say, is ever written through). Each message is
//! written before the next is read, so HTTP/2 flow control holds the client back and the
//! agent keeps about one message per writer. When the stream ends cleanly the file gets
//! its mode and is renamed over the target.
//!
//! No fsync: it cost 0.5–0.9 ms of a 1 KiB Write's ~2 ms on a sandbox's disk (see
//! BENCHMARKS.md, "Files"), and buys nothing a sandbox's file systems lack. A full disk
//! or quota is reported by write(2) itself on them (ext4's delayed allocation and
//! btrfs's qgroups reserve space at write time), so it still fails the Write while the
//! target is intact; and a crash right after the rename leaves the old file or the new
//! one, because ext4 (`auto_da_alloc`) and btrfs flush a file's data before a rename
//! that replaces another file commits. (`docker cp` does not fsync either.) What the
//! Write does not promise is that a new file survives a power loss of the host a moment
//! later, as for any program in the sandbox that writes without fsync.
//!
//! On any error, and when the
//! client cancels (the request stream fails or the handler is dropped), the temporary
//! file is removed and the target is left as it was.

use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::libc;
use sandstream_proto::v1::{EntryInfo, WriteRequest};

use super::creds::Creds;
use super::entries;
use super::error::{FsError, FsResult};
use super::ops::{DEFAULT_DIR_MODE, make_dirs};
use super::pool::Pool;

/// Permission bits of a new file written without a mode.
const DEFAULT_FILE_MODE: u32 = 0o644;
/// Bytes of the target's name kept in the temporary file's (NAME_MAX is 255).
const TEMP_NAME_KEEP: usize = 200;

/// The first message's fields, checked.
pub(crate) fn check_first(req: &WriteRequest) -> FsResult<()> {
    if req.mode & !0o7777 != 0 {
        return Err(FsError::InvalidArgument(format!(
            "mode {:#o} has bits other than permissions, setuid, setgid and sticky (07777)",
            req.mode
        )));
    }
    Ok(())
}

/// A later message's fields: data only.
pub(crate) fn check_later(req: &WriteRequest) -> FsResult<()> {
    if !req.path.is_empty() || !req.user.is_empty() || req.mode != 0 {
        return Err(FsError::InvalidArgument(
            "only the first message of a Write names the file (path, user, mode); later ones carry data only".into(),
        ));
    }
    Ok(())
}

/// The temporary file of a Write in progress; removed (as the user) unless
/// [`Temp::commit`] renamed it over the target.
pub(crate) struct Temp {
    pool: Pool,
    creds: Option<Creds>,
    target: PathBuf,
    path: PathBuf,
    file: Arc<File>,
    armed: bool,
}

impl Temp {
    /// Creates the target's missing parents and the temporary file beside it (on a pool
    /// thread, as `creds`).
    pub(crate) async fn create(pool: &Pool, creds: Option<&Creds>, target: PathBuf) -> FsResult<Temp> {
        let (Some(dir), Some(name)) = (target.parent().map(Path::to_path_buf), target.file_name()) else {
            return Err(FsError::os(&target, nix::errno::Errno::EISDIR));
        };
        let mut temp_name = b".".to_vec();
        temp_name.extend_from_slice(&name.as_bytes()[..name.len().min(TEMP_NAME_KEEP)]);
        temp_name.extend_from_slice(format!(".{:016x}.sandstream-tmp", random()).as_bytes());
        let path = dir.join(std::ffi::OsStr::from_bytes(&temp_name));
        let (t, p) = (target.clone(), path.clone());
        let file = pool
            .run(creds, move || {
                make_dirs(&dir, DEFAULT_DIR_MODE).map_err(|e| FsError::os(&t, e))?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&p)
                    .map_err(|e| FsError::io(&t, &e))
            })
            .await?;
        Ok(Temp { pool: pool.clone(), creds: creds.cloned(), target, path, file: Arc::new(file), armed: true })
    }

    /// Appends `data` (on a pool thread; the file is open, no credentials needed).
    pub(crate) async fn append(&self, data: bytes::Bytes) -> FsResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let (file, target) = (self.file.clone(), self.target.clone());
        self.pool.run(None, move || (&*file).write_all(&data).map_err(|e| FsError::io(&target, &e))).await
    }

    /// Gives the file its mode (`mode`, or 0: the replaced file's, else 0644) and renames
    /// it over the target; returns the target's entry.
    pub(crate) async fn commit(mut self, mode: u32) -> FsResult<EntryInfo> {
        let (file, temp, target) = (self.file.clone(), self.path.clone(), self.target.clone());
        let result = self
            .pool
            .run(self.creds.as_ref(), move || {
                let mode = match mode {
                    0 => match std::fs::symlink_metadata(&target) {
                        Ok(m) if m.is_file() => m.permissions().mode() & 0o7777,
                        _ => DEFAULT_FILE_MODE,
                    },
                    m => m,
                };
                let io = |e: std::io::Error| FsError::io(&target, &e);
                file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
                std::fs::rename(&temp, &target).map_err(io)?;
                entries::stat(&target)
            })
            .await;
        if result.is_ok() {
            self.armed = false;
        } else {
            self.discard().await;
        }
        result
    }

    /// Removes the temporary file now, and waits for it.
    pub(crate) async fn discard(mut self) {
        self.armed = false;
        let path = self.path.clone();
        if let Err(e) = self.pool.run(self.creds.as_ref(), move || unlink(&path)).await {
            tracing::warn!(error = %e, "could not remove a Write's temporary file");
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            // The handler was dropped (the client went away): removed in the background.
            let path = std::mem::take(&mut self.path);
            self.pool.detach(self.creds.as_ref(), move || unlink(&path));
        }
    }
}

fn unlink(path: &Path) -> FsResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::io(path, &e)),
    }
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    // The name only has to be unlikely to exist: O_EXCL refuses one that does.
    let _ = getrandom::fill(&mut b);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    u64::from_ne_bytes(b) ^ NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
