//! WatchDir: changes under a directory, from inotify.
//!
//! One inotify instance per stream (non-blocking, read through tokio's `AsyncFd`), closed
//! when the stream is dropped, that is when the client goes away. Watches are added on a
//! pool thread as the user (`inotify_add_watch` checks read permission on the directory
//! with the caller's credentials), so nobody watches what they could not list.
//!
//! Events: IN_CREATE and IN_MOVED_TO are CREATE, IN_CLOSE_WRITE is WRITE (one event when
//! a writer closes the file, rather than one per write(2) with IN_MODIFY: a file is
//! reported once complete, and a gigabyte written in small writes is not thousands of
//! events; a file `touch`ed or opened for writing and closed unchanged reports WRITE
//! too), IN_DELETE is REMOVE, IN_MOVED_FROM is RENAME, IN_ATTRIB is CHMOD (any metadata
//! change: mode, owner, timestamps), IN_Q_OVERFLOW is OVERFLOW. With `recursive`, every
//! directory below gets a watch, and so does each directory that appears later; the
//! entries already inside one that appears are reported as CREATE, since they may have
//! been made before its watch was in place (so an entry may be reported twice). The
//! stream ends when the watched directory is removed or moved away.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use sandstream_proto::v1::{FsEventType, WatchDirEvent, WatchEventKind};
use tokio::io::unix::AsyncFd;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::Stream;
use tonic::Status;

use super::creds::Creds;
use super::error::{FsError, FsResult};
use super::pool::Pool;

/// Most directories one stream watches (the kernel's default per-user budget is 8192
/// for all of them); past it a recursive watch fails at the start, and reports OVERFLOW
/// when new directories appear later.
pub(crate) const MAX_WATCHED_DIRS: usize = 8192;
/// Most entries reported as CREATE for a directory that appears; past it, OVERFLOW.
const MAX_SCAN: usize = 10_000;

pub(crate) type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchDirEvent, Status>> + Send>>;

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

type Shared = Arc<AsyncFd<Fd>>;

fn mask(follow: bool) -> AddWatchFlags {
    let m = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::from_bits_retain(nix::libc::IN_EXCL_UNLINK);
    // Only the watched directory itself may be reached through a symlink.
    if follow { m } else { m | AddWatchFlags::IN_DONT_FOLLOW }
}

/// Watches added by [`add_tree`], with what it found.
#[derive(Default)]
struct Added {
    watches: Vec<(WatchDescriptor, PathBuf)>,
    /// Entries inside (relative paths), when asked to scan.
    found: Vec<PathBuf>,
    /// Some directory or entry was left out (a bound was reached).
    truncated: bool,
}

/// Adds watches on `root/rel` and, with `recursive`, every directory below it, at most
/// `budget`; with `scan`, collects the entries inside. Runs on a pool thread as the
/// user. Only a failure on the first directory is an error.
fn add_tree(ino: &Inotify, root: &Path, rel: PathBuf, recursive: bool, budget: usize, scan: bool) -> FsResult<Added> {
    let first = rel.clone();
    let follow = rel.as_os_str().is_empty();
    let mut added = Added::default();
    let mut todo = vec![rel];
    while let Some(rel) = todo.pop() {
        let abs = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(&rel) };
        if added.watches.len() >= budget {
            added.truncated = true;
            break;
        }
        let wd = match ino.add_watch(&abs, mask(follow && rel == first)) {
            Ok(wd) => wd,
            Err(e) if rel == first => return Err(FsError::os(&abs, e)),
            Err(Errno::ENOSPC) => {
                added.truncated = true;
                break;
            }
            Err(_) => continue,
        };
        added.watches.push((wd, rel.clone()));
        if !recursive {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&abs) else { continue };
        for entry in entries {
            let Ok(entry) = entry else { break };
            let child = rel.join(entry.file_name());
            if scan {
                if added.found.len() < MAX_SCAN {
                    added.found.push(child.clone());
                } else {
                    added.truncated = true;
                }
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(child);
            }
        }
    }
    Ok(added)
}

fn event(kind: WatchEventKind) -> WatchDirEvent {
    WatchDirEvent { kind: kind as i32, ..Default::default() }
}

fn fs_event(t: FsEventType, name: &Path) -> WatchDirEvent {
    WatchDirEvent {
        kind: WatchEventKind::Filesystem as i32,
        r#type: t as i32,
        name: name.to_string_lossy().into_owned(),
    }
}

/// Starts watching `root` as `creds`; the stream holds `permit` (a place among the
/// streams at once) until it is dropped.
pub(crate) async fn start(
    pool: Pool,
    creds: Option<Creds>,
    root: PathBuf,
    recursive: bool,
    keepalive: Duration,
    permit: OwnedSemaphorePermit,
) -> FsResult<WatchStream> {
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|e| FsError::os(&root, e))?;
    // SAFETY: `Fd` owns the inotify descriptor and always returns that same one.
    let fd = unsafe { AsyncFd::register_with_interest(Fd(ino), tokio::io::Interest::READABLE) }
        .map_err(|e| FsError::io(&root, &std::io::Error::from(e)))?;
    let fd: Shared = Arc::new(fd);
    let (f, r) = (fd.clone(), root.clone());
    let added = pool
        .run(creds.as_ref(), move || add_tree(&f.get_ref().0, &r, PathBuf::new(), recursive, MAX_WATCHED_DIRS, false))
        .await?;
    if added.truncated {
        return Err(FsError::Exhausted(format!(
            "{}: too many directories to watch (more than {MAX_WATCHED_DIRS}); watch a subdirectory",
            root.display()
        )));
    }
    let mut watch = Watch { pool, creds, root, recursive, fd, by_wd: HashMap::new(), root_wd: None };
    for (i, (wd, rel)) in added.watches.into_iter().enumerate() {
        if i == 0 {
            watch.root_wd = Some(wd);
        }
        watch.by_wd.insert(wd, rel);
    }
    let stream = async_stream::stream! {
        let _permit = permit;
        yield Ok(event(WatchEventKind::Started));
        loop {
            let events = match tokio::time::timeout(keepalive, watch.fd.readable()).await {
                Err(_) => {
                    yield Ok(event(WatchEventKind::Keepalive));
                    continue;
                }
                Ok(Err(e)) => {
                    yield Err(Status::internal(format!("{}: cannot wait for changes: {e}", watch.root.display())));
                    return;
                }
                Ok(Ok(mut ready)) => match ready.try_io(|f| f.get_ref().0.read_events().map_err(std::io::Error::from)) {
                    Err(_would_block) => continue,
                    Ok(Err(e)) => {
                        yield Err(Status::internal(format!("{}: cannot read changes: {e}", watch.root.display())));
                        return;
                    }
                    Ok(Ok(events)) => events,
                },
            };
            for ev in events {
                match watch.translate(ev).await {
                    Step::Send(out) => {
                        for e in out {
                            yield Ok(e);
                        }
                    }
                    Step::End => return,
                }
            }
        }
    };
    Ok(Box::pin(stream))
}

enum Step {
    Send(Vec<WatchDirEvent>),
    /// The watched directory is gone.
    End,
}

struct Watch {
    pool: Pool,
    creds: Option<Creds>,
    root: PathBuf,
    recursive: bool,
    fd: Shared,
    /// Each watch's directory, relative to the root ("" for the root).
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    root_wd: Option<WatchDescriptor>,
}

impl Watch {
    async fn translate(&mut self, ev: InotifyEvent) -> Step {
        use AddWatchFlags as F;
        if ev.mask.contains(F::IN_Q_OVERFLOW) {
            return Step::Send(vec![event(WatchEventKind::Overflow)]);
        }
        let is_root = Some(ev.wd) == self.root_wd;
        if ev.mask.contains(F::IN_IGNORED) {
            self.by_wd.remove(&ev.wd);
            return if is_root { Step::End } else { Step::Send(vec![]) };
        }
        if is_root && ev.mask.intersects(F::IN_DELETE_SELF | F::IN_MOVE_SELF) {
            return Step::End;
        }
        let (Some(dir), Some(name)) = (self.by_wd.get(&ev.wd), ev.name.as_ref()) else { return Step::Send(vec![]) };
        let rel = dir.join(name);
        let is_dir = ev.mask.contains(F::IN_ISDIR);
        let mut out = Vec::new();
        if ev.mask.intersects(F::IN_CREATE | F::IN_MOVED_TO) {
            out.push(fs_event(FsEventType::Create, &rel));
            if is_dir && self.recursive {
                self.add_subtree(rel, &mut out).await;
            }
        } else if ev.mask.contains(F::IN_CLOSE_WRITE) {
            out.push(fs_event(FsEventType::Write, &rel));
        } else if ev.mask.contains(F::IN_DELETE) {
            out.push(fs_event(FsEventType::Remove, &rel));
        } else if ev.mask.contains(F::IN_MOVED_FROM) {
            out.push(fs_event(FsEventType::Rename, &rel));
            if is_dir && self.recursive {
                self.drop_subtree(&rel);
            }
        } else if ev.mask.contains(F::IN_ATTRIB) {
            out.push(fs_event(FsEventType::Chmod, &rel));
        }
        Step::Send(out)
    }

    /// A directory appeared at `rel`: watches for it and what is below, and CREATE for
    /// the entries already in it.
    async fn add_subtree(&mut self, rel: PathBuf, out: &mut Vec<WatchDirEvent>) {
        let budget = MAX_WATCHED_DIRS.saturating_sub(self.by_wd.len());
        let (fd, root) = (self.fd.clone(), self.root.clone());
        let added =
            self.pool.run(self.creds.as_ref(), move || add_tree(&fd.get_ref().0, &root, rel, true, budget, true)).await;
        let Ok(added) = added else { return };
        for (wd, rel) in added.watches {
            self.by_wd.insert(wd, rel);
        }
        out.extend(added.found.iter().map(|p| fs_event(FsEventType::Create, p)));
        if added.truncated {
            out.push(event(WatchEventKind::Overflow));
        }
    }

    /// A directory moved away from `rel`: its watches (and those below) go, since their
    /// paths no longer hold.
    fn drop_subtree(&mut self, rel: &Path) {
        let gone: Vec<WatchDescriptor> =
            self.by_wd.iter().filter(|(_, p)| p.starts_with(rel)).map(|(wd, _)| *wd).collect();
        for wd in gone {
            self.by_wd.remove(&wd);
            let _ = self.fd.get_ref().0.rm_watch(wd);
        }
    }
}
