//! Read: a file's bytes as a stream of chunks.
//!
//! The file is opened once, as the user (`pool.rs`); each chunk is then one `pread` on a
//! pool thread, made only when the stream is polled for the next message. The stream is
//! polled only as fast as HTTP/2 flow control lets its messages go, so the agent holds
//! about one chunk per reader whatever the file's size, and no thread waits on a slow
//! client.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use nix::libc;
use sandstream_proto::v1::{EntryInfo, ReadResponse};
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::Stream;
use tonic::Status;

use super::entries;
use super::error::{FsError, FsResult};
use super::pool::Pool;

/// Largest chunk sent: one message per HTTP/2 frame the agent allows (1 MiB).
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// A little less than a frame, so a chunk and its framing fit in one.
const CHUNK_DATA: usize = CHUNK_BYTES - 1024;

pub(crate) type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

/// Opens `path` for reading, as the caller's credentials allow (runs on a pool thread).
/// Non-blocking, so a FIFO or a device cannot hold the thread; only regular files are
/// read (a directory is "is a directory", anything else "not a regular file").
pub(crate) fn open(path: &Path) -> FsResult<(File, EntryInfo)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::io(path, &e))?;
    let meta = file.metadata().map_err(|e| FsError::io(path, &e))?;
    if meta.is_dir() {
        return Err(FsError::os(path, nix::errno::Errno::EISDIR));
    }
    if !meta.is_file() {
        return Err(FsError::NotRegular(path.display().to_string()));
    }
    Ok((file, entries::describe(path, &meta, &crate::user::IdNames::load())))
}

/// The stream of an opened file from `offset`, at most `length` bytes (0: to its end).
/// `permit` (a place among the open files) is held until the stream is dropped.
pub(crate) fn stream(
    pool: Pool,
    path: PathBuf,
    file: File,
    entry: EntryInfo,
    offset: u64,
    length: u64,
    permit: OwnedSemaphorePermit,
) -> FsResult<ReadStream> {
    if offset > entry.size {
        return Err(FsError::OutOfRange { path: path.display().to_string(), offset, size: entry.size });
    }
    let file = Arc::new(file);
    let end = if length == 0 { u64::MAX } else { offset.saturating_add(length) };
    let stream = async_stream::stream! {
        let _permit = permit;
        yield Ok(ReadResponse { entry: Some(entry), data: Default::default(), offset });
        let mut pos = offset;
        // To the end of the file as it is read (it may grow, and /proc files say size 0).
        while pos < end {
            let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(CHUNK_DATA);
            let (file, path) = (file.clone(), path.clone());
            let chunk = pool.run(None, move || read_at(&file, &path, pos, want)).await;
            match chunk {
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    let at = pos;
                    pos += data.len() as u64;
                    yield Ok(ReadResponse { entry: None, data: data.into(), offset: at });
                }
                Err(e) => {
                    yield Err(Status::from(e));
                    break;
                }
            }
        }
    };
    Ok(Box::pin(stream))
}

/// Up to `want` bytes at `pos` (fewer only at the end of the file).
fn read_at(file: &File, path: &Path, pos: u64, want: usize) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError::io(path, &e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}
