//! A runner's error: the body it answers with and the one mapping between its codes and
//! HTTP statuses, used by the runner to answer and by the server to read the answer.

use serde::{Deserialize, Serialize};

/// Why a runner refused a call. Closed: a status a runner never sends reads as
/// [`ErrorCode::Internal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is wrong (a limit out of range, an unknown template): the caller's to
    /// fix, and the server passes the message on as a 400.
    BadRequest,
    /// No sandbox with that id on this runner (killed, expired, or never there).
    NotFound,
    /// The runner is at its capacity; another runner may have room.
    NoCapacity,
    /// Missing or wrong runner secret.
    Unauthorized,
    /// The runner or its runtime failed.
    Internal,
}

impl ErrorCode {
    const ALL: [ErrorCode; 5] = [
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::NoCapacity,
        ErrorCode::Unauthorized,
        ErrorCode::Internal,
    ];

    /// The HTTP status a runner answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::NoCapacity => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code a runner's status stands for.
    pub fn from_status(status: u16) -> ErrorCode {
        Self::ALL.into_iter().find(|c| c.status() == status).unwrap_or(ErrorCode::Internal)
    }

    /// The code's name in [`ErrorBody::code`].
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoCapacity => "no_capacity",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A runner's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { code: code.as_str().into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_goes_to_its_status_and_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_status(code.status()), code);
        }
        assert_eq!(ErrorCode::from_status(502), ErrorCode::Internal, "a status no runner sends");
        assert_eq!(ErrorCode::from_status(200), ErrorCode::Internal);
    }

    #[test]
    fn the_body_names_its_code() {
        let body = serde_json::to_value(ErrorBody::new(ErrorCode::NoCapacity, "full")).expect("json");
        assert_eq!(body, serde_json::json!({"code": "no_capacity", "message": "full"}));
    }
}
