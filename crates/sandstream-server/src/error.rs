//! One error type for every route: a JSON body of one shape (`{"status": "error",
//! "code", "message"}`) and the matching status. 5xx bodies never carry internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// The body of every error answer, whatever the route (the OpenAPI document's
/// `ErrorBody`, its `default` response).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub status: ErrorStatus,
    /// What went wrong, for programs: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `too_large`,
    /// `range_not_satisfiable`, `no_capacity`, `rate_limited`, `no_space`,
    /// `agent_unavailable` or `internal`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What went wrong, for people; never internals on a 5xx.
    pub message: String,
}

/// `status` of an [`ErrorBody`]: always `error`.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub(crate) enum ErrorStatus {
    #[serde(rename = "error")]
    Error,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// 416, with `Content-Range: bytes */SIZE` when the size is known.
    #[error("{message}")]
    RangeNotSatisfiable { message: String, size: Option<u64> },
    #[error("{0}")]
    NoCapacity(String),
    /// 507: the sandbox's disk is full.
    #[error("{0}")]
    NoSpace(String),
    /// 502: the sandbox's agent cannot be reached or failed to answer. Logged in full;
    /// the client sees `public`.
    #[error("{public}: {detail}")]
    AgentUnavailable { public: String, detail: String },
    /// 429, with `Retry-After`.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// Logged in full; the client sees a generic message.
    #[error("{0}")]
    Internal(String),
}

pub(crate) type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            AppError::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            AppError::NoCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
            AppError::NoSpace(_) => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
            AppError::AgentUnavailable { .. } => (StatusCode::BAD_GATEWAY, "agent_unavailable"),
            AppError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The message a client may see.
    pub(crate) fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error; the server log has the details".into(),
            AppError::AgentUnavailable { public, .. } => public.clone(),
            e => e.to_string(),
        }
    }
}

/// A store error at the HTTP edge: a 500 whose details are logged, not shown.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        match &self {
            AppError::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            AppError::AgentUnavailable { detail, .. } => tracing::warn!(error = %detail, "agent call failed"),
            _ => {}
        }
        let body = axum::Json(ErrorBody { status: ErrorStatus::Error, code, message: self.public_message() });
        match &self {
            AppError::TooManyRequests { retry_after_secs, .. } => {
                (status, [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())], body).into_response()
            }
            AppError::RangeNotSatisfiable { size: Some(size), .. } => {
                (status, [(axum::http::header::CONTENT_RANGE, format!("bytes */{size}"))], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

/// `axum::Json`, with its rejections turned into [`AppError`]s so malformed JSON gets
/// the same error shape as everything else.
pub(crate) struct AppJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::TooLarge("request body is too large".into()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(AppError::BadRequest("send the body as JSON with Content-Type: application/json".into()))
            }
            Err(e) => Err(AppError::BadRequest(format!("malformed JSON body: {}", e.body_text()))),
        }
    }
}

/// A JSON body that may be left out (empty or only whitespace: `T::default()`), taken as
/// `Result<Bytes, BytesRejection>` so that its rejections (a body past the limit) get
/// the one error shape too, as [`AppJson`]'s do.
pub(crate) fn optional_json<T>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<T>
where
    T: serde::de::DeserializeOwned + Default,
{
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge("request body is too large".into()),
        _ => AppError::BadRequest(format!("request body: {}", e.body_text())),
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("malformed JSON body: {e}")))
}
