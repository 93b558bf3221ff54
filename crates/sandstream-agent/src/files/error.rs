//! What a file operation can fail with, and its gRPC status: the code the proto names
//! for each errno, and a message that starts with the path.

use std::path::Path;

use nix::errno::Errno;
use tonic::{Code, Status};

use crate::error::AgentError;

/// A file operation's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// The kernel refused: `path` is the path the request named (resolved).
    #[error("{path}: {}", describe(*errno))]
    Os { path: String, errno: Errno },
    /// Recursive removal left entries it could not remove.
    #[error("{path}: {} ({what}; {more} more entries not removed)", describe(*errno))]
    TreeLeft { path: String, errno: Errno, what: String, more: usize },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}: not a regular file")]
    NotRegular(String),
    #[error("{path}: offset {offset} is past the end of the file ({size} bytes)")]
    OutOfRange { path: String, offset: u64, size: u64 },
    /// A bound of the agent (entries listed, directories watched, streams at once).
    #[error("{0}")]
    Exhausted(String),
    /// The agent cannot act as the user at all.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    User(#[from] AgentError),
    #[error("{0}")]
    Internal(String),
}

/// The file operations' result type.
pub(crate) type FsResult<T> = std::result::Result<T, FsError>;

impl FsError {
    pub(crate) fn os(path: &Path, e: impl Into<Errno>) -> FsError {
        FsError::Os { path: path.display().to_string(), errno: e.into() }
    }

    /// From a std error (one without an errno, which std makes up, is EIO).
    pub(crate) fn io(path: &Path, e: &std::io::Error) -> FsError {
        FsError::os(path, Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))
    }
}

/// How each errno reads to a user: lowercase, as the proto's messages.
pub(crate) fn describe(errno: Errno) -> String {
    match errno {
        Errno::ENOENT => "no such file or directory".into(),
        Errno::EACCES | Errno::EPERM => "permission denied".into(),
        Errno::EEXIST => "already exists".into(),
        Errno::ENOTDIR => "not a directory".into(),
        Errno::EISDIR => "is a directory".into(),
        Errno::ENOTEMPTY => "directory not empty".into(),
        Errno::ENOSPC => "no space left on device".into(),
        Errno::EDQUOT => "disk quota exceeded".into(),
        Errno::EFBIG => "too large".into(),
        Errno::ENAMETOOLONG => "file name too long".into(),
        Errno::ELOOP => "too many levels of symbolic links".into(),
        Errno::EROFS => "read-only file system".into(),
        Errno::EXDEV => "crosses a mount point".into(),
        Errno::EBUSY => "device or resource busy".into(),
        Errno::EAGAIN => "would block".into(),
        Errno::EIO => "input/output error".into(),
        e => {
            let d = e.desc();
            let mut c = d.chars();
            c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
        }
    }
}

/// The gRPC code for an errno, as the proto's `FileService` comment lists them.
fn code(errno: Errno) -> Code {
    match errno {
        Errno::ENOENT => Code::NotFound,
        Errno::EACCES | Errno::EPERM => Code::PermissionDenied,
        Errno::EEXIST => Code::AlreadyExists,
        Errno::ENOTDIR
        | Errno::EISDIR
        | Errno::ENOTEMPTY
        | Errno::ELOOP
        | Errno::EROFS
        | Errno::EXDEV
        | Errno::EBUSY
        | Errno::ETXTBSY => Code::FailedPrecondition,
        Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG | Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM => {
            Code::ResourceExhausted
        }
        Errno::ENAMETOOLONG | Errno::EINVAL => Code::InvalidArgument,
        Errno::EAGAIN | Errno::EINTR => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<FsError> for Status {
    fn from(e: FsError) -> Status {
        // The user lookup's errors keep the codes commands give them.
        let e = match e {
            FsError::User(a) => return Status::from(a),
            e => e,
        };
        let code = match &e {
            FsError::Os { errno, .. } | FsError::TreeLeft { errno, .. } => code(*errno),
            FsError::InvalidArgument(_) => Code::InvalidArgument,
            FsError::NotRegular(_) => Code::FailedPrecondition,
            FsError::OutOfRange { .. } => Code::OutOfRange,
            FsError::Exhausted(_) => Code::ResourceExhausted,
            FsError::Denied(_) => Code::PermissionDenied,
            FsError::User(_) => Code::Internal,
            FsError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_the_protos_codes_with_the_path_first() {
        let s = |e: Errno| Status::from(FsError::os(Path::new("/home/user/f"), e));
        for (errno, code, msg) in [
            (Errno::ENOENT, Code::NotFound, "/home/user/f: no such file or directory"),
            (Errno::EACCES, Code::PermissionDenied, "/home/user/f: permission denied"),
            (Errno::EPERM, Code::PermissionDenied, "/home/user/f: permission denied"),
            (Errno::EEXIST, Code::AlreadyExists, "/home/user/f: already exists"),
            (Errno::ENOTDIR, Code::FailedPrecondition, "/home/user/f: not a directory"),
            (Errno::EISDIR, Code::FailedPrecondition, "/home/user/f: is a directory"),
            (Errno::ENOTEMPTY, Code::FailedPrecondition, "/home/user/f: directory not empty"),
            (Errno::ENOSPC, Code::ResourceExhausted, "/home/user/f: no space left on device"),
            (Errno::EDQUOT, Code::ResourceExhausted, "/home/user/f: disk quota exceeded"),
            (Errno::EFBIG, Code::ResourceExhausted, "/home/user/f: too large"),
            (Errno::EIO, Code::Internal, "/home/user/f: input/output error"),
        ] {
            let st = s(errno);
            assert_eq!((st.code(), st.message()), (code, msg), "{errno}");
        }
        let st = Status::from(FsError::User(AgentError::UnknownUser("bob".into())));
        assert_eq!((st.code(), st.message()), (Code::InvalidArgument, "unknown user bob"));
    }
}
