//! The agent's `FileService` errors as HTTP answers. The agent's message starts with the
//! path it concerns and carries no host detail, so the 4xx answers show it as it is;
//! failures to reach the agent are 502s whose details only the log has.

use tonic::{Code, Status};

use crate::error::AppError;

/// The answer for a `FileService` call to sandbox `sandbox_id`'s agent that failed with `s`.
pub(crate) fn from_status(sandbox_id: &str, s: &Status) -> AppError {
    let message = s.message().to_string();
    match s.code() {
        Code::NotFound => AppError::NotFound(message),
        Code::PermissionDenied => AppError::Forbidden(message),
        Code::AlreadyExists => AppError::Conflict(message),
        // "directory not empty" is the state of what is there (409); "not a directory",
        // "is a directory" are a request that names the wrong kind of entry (400).
        Code::FailedPrecondition if message.contains("not empty") => AppError::Conflict(message),
        Code::FailedPrecondition | Code::InvalidArgument => AppError::BadRequest(message),
        // A full disk or quota (ENOSPC, EDQUOT), a file past the file system's largest
        // (EFBIG), a listing past the agent's bound, or the agent's other bounds (files
        // open at once, memory): only the last are worth trying again.
        Code::ResourceExhausted if message.contains("no space") || message.contains("quota") => {
            AppError::NoSpace(message)
        }
        Code::ResourceExhausted if message.contains("too large") => AppError::TooLarge(message),
        // A listing or a watch larger than the agent takes: ask for less, not again.
        Code::ResourceExhausted if message.contains("too many entries") || message.contains("too many directories") => {
            AppError::BadRequest(message)
        }
        Code::ResourceExhausted => AppError::NoCapacity(message),
        Code::OutOfRange => AppError::RangeNotSatisfiable { message, size: None },
        Code::Unimplemented => AppError::AgentUnavailable {
            public: format!("the agent of sandbox {sandbox_id} has no files service (it is older than protocol v1.3)"),
            detail: format!("{s:?}"),
        },
        // The agent failed on its side (EIO, say): its message names the path and the
        // error, nothing of the host.
        Code::Internal | Code::Unknown => AppError::AgentUnavailable {
            public: format!("the agent of sandbox {sandbox_id} failed: {message}"),
            detail: format!("{s:?}"),
        },
        _ => unavailable(sandbox_id, s),
    }
}

/// A 502 for an agent that could not be reached or did not answer the call.
pub(crate) fn unavailable(sandbox_id: &str, detail: impl std::fmt::Debug) -> AppError {
    AppError::AgentUnavailable {
        public: format!("the agent of sandbox {sandbox_id} did not answer; try again"),
        detail: format!("sandbox {sandbox_id}: {detail:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: Code, message: &str) -> (u16, &'static str, String) {
        let e = from_status("sb-0123456789", &Status::new(code, message));
        let (status, code) = e.parts();
        (status.as_u16(), code, e.public_message())
    }

    #[test]
    fn each_file_error_has_its_status_and_keeps_the_agent_message() {
        let cases = [
            (Code::NotFound, "/home/user/x: no such file or directory", 404, "not_found"),
            (Code::PermissionDenied, "/root: permission denied", 403, "forbidden"),
            (Code::AlreadyExists, "/home/user/d: file exists", 409, "conflict"),
            (Code::FailedPrecondition, "/home/user/d: directory not empty", 409, "conflict"),
            (Code::FailedPrecondition, "/home/user/d: is a directory", 400, "bad_request"),
            (Code::FailedPrecondition, "/home/user/f/x: not a directory", 400, "bad_request"),
            (Code::InvalidArgument, "unknown user bob", 400, "bad_request"),
            (Code::ResourceExhausted, "/home/user/f: no space left on device", 507, "no_space"),
            (Code::ResourceExhausted, "/home/user/f: disk quota exceeded", 507, "no_space"),
            (Code::ResourceExhausted, "/home/user/f: too large", 413, "too_large"),
            (
                Code::ResourceExhausted,
                "/home/user: too many directories to watch (more than 8192); watch a subdirectory",
                400,
                "bad_request",
            ),
            (
                Code::ResourceExhausted,
                "/home/user: too many entries (more than 100000); list a smaller depth",
                400,
                "bad_request",
            ),
            (Code::ResourceExhausted, "too many files open at once (the agent serves 64)", 503, "no_capacity"),
            (Code::OutOfRange, "/home/user/f: offset 9 is past the end (5 bytes)", 416, "range_not_satisfiable"),
        ];
        for (code, message, status, name) in cases {
            assert_eq!(answer(code, message), (status, name, message.to_string()), "{code:?}");
        }
    }

    #[test]
    fn an_agent_that_does_not_answer_is_a_502_without_details() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled, Code::Unauthenticated] {
            let (status, name, message) = answer(code, "transport error: connection refused at 10.0.0.1:4000");
            assert_eq!((status, name), (502, "agent_unavailable"), "{code:?}");
            assert_eq!(message, "the agent of sandbox sb-0123456789 did not answer; try again");
        }
        let (status, name, message) = answer(Code::Internal, "/home/user/f: input/output error");
        assert_eq!((status, name), (502, "agent_unavailable"));
        assert_eq!(message, "the agent of sandbox sb-0123456789 failed: /home/user/f: input/output error");
        let (status, _, message) = answer(Code::Unimplemented, "unknown service");
        assert_eq!(status, 502);
        assert!(message.contains("older than protocol v1.3"), "{message}");
    }
}
