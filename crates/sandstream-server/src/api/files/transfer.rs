//! `GET` and `PUT /api/v1/sandboxes/{id}/files`: a file's bytes, streamed both ways.
//! **Neither direction holds a whole file in the server's memory**: a download is the
//! agent's `Read` stream handed to the HTTP response chunk by chunk (HTTP/2 flow control
//! to the agent and the client's TCP window bound what waits here), and an upload is
//! the request body fed to the agent's `Write` as it arrives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sandstream_proto::v1::{ReadRequest, ReadResponse, StatRequest, WriteRequest};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;

use super::range::{self, Ranged};
use super::{Entry, PathQuery, agent, from_status, parse_mode, query, required_entry, required_path, unavailable};
use crate::api::AppState;
use crate::api::sandboxes::SandboxPath;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::exec::FileClient;
use crate::store::Principal;

/// Largest `data` of one `WriteRequest`: a bigger body frame is cut into pieces.
const UPLOAD_CHUNK: usize = 1 << 20;

/// A file's bytes (the body of the download and of the upload).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct FileBytes(Vec<u8>);

/// `?path=…&user=…&mode=…` of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WriteQuery {
    /// The file; its missing parents are created.
    path: String,
    /// Who acts (see `GET …/files`); the file and created parents are theirs.
    user: Option<String>,
    /// Permission bits in octal, such as `0755` (no umask applies). When absent a new file
    /// gets `0644` and a replaced one keeps its mode.
    mode: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/files", operation_id = "readFile", tag = "files",
    params(SandboxPath, PathQuery,
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n` (others are ignored)")),
    responses(
        (status = 200, description = "The file's bytes (a symlink is followed); `Content-Length` is its size", content_type = "application/octet-stream", body = inline(FileBytes)),
        (status = 206, description = "The bytes of the `Range`, with `Content-Range`", content_type = "application/octet-stream", body = inline(FileBytes)),
        (status = 400, description = "No `path`, a directory, or an unknown user", body = ErrorBody),
        (status = 403, description = "The user may not read it", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such file", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 416, description = "The `Range` lies past the end, with `Content-Range: bytes */SIZE`", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn read(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let path = required_path(q.path, "path")?;
    let user = q.user.unwrap_or_default();
    let spec = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(range::parse);
    let (start, length, partial) = match spec {
        None => (0, 0, false),
        Some(spec) => {
            // The size of what `Read` opens (a symlink followed, unlike `Stat`), from
            // the first message of a one-byte read.
            let (entry, _) = open(&mut client, &id, &path, &user, 0, 1).await?;
            match range::resolve(Some(spec), entry.size) {
                Ranged::Whole => (0, 0, false),
                Ranged::Part { start, length } => (start, length, true),
                Ranged::Unsatisfiable => {
                    return Err(AppError::RangeNotSatisfiable {
                        message: format!("{}: the range is outside the file's {} bytes", entry.path, entry.size),
                        size: Some(entry.size),
                    });
                }
            }
        }
    };
    let (entry, body) = open(&mut client, &id, &path, &user, start, length).await?;
    let size = entry.size;
    if !partial {
        let body = body.limit(size);
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            Body::from_stream(body),
        )
            .into_response());
    }
    // The file may have shrunk since the probe: never promise bytes past its end.
    let length = length.min(size.saturating_sub(start));
    if length == 0 {
        return Err(AppError::RangeNotSatisfiable {
            message: format!("{}: the range is outside the file's {size} bytes", entry.path),
            size: Some(size),
        });
    }
    Ok((
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_RANGE, range::content_range(start, length, size)),
        ],
        Body::from_stream(body.limit(length)),
    )
        .into_response())
}

/// Starts the agent's `Read` of `path` from `offset` (`length` 0: to the end) and takes
/// its first message: the file as opened, and the stream of its bytes.
async fn open(
    client: &mut FileClient,
    id: &str,
    path: &str,
    user: &str,
    offset: u64,
    length: u64,
) -> AppResult<(sandstream_proto::v1::EntryInfo, Download)> {
    let req = ReadRequest { path: path.to_string(), offset, length, user: user.to_string() };
    let mut stream = client.read(req).await.map_err(|s| from_status(id, &s))?.into_inner();
    let first = stream
        .message()
        .await
        .map_err(|s| from_status(id, &s))?
        .ok_or_else(|| unavailable(id, "the agent's Read ended before its first message"))?;
    let Some(entry) = first.entry else {
        return Err(unavailable(id, "the agent's Read began without an entry"));
    };
    let download = Download { inner: stream, first: Some(first.data), left: u64::MAX, path: path.to_string() };
    Ok((entry, download))
}

/// The bytes of an agent's `Read`, cut at `left`; a stream that ends or fails before it
/// got that far fails the response body (the client sees a short, broken transfer,
/// never a clean one with missing bytes).
struct Download {
    inner: tonic::Streaming<ReadResponse>,
    first: Option<Bytes>,
    left: u64,
    path: String,
}

impl Download {
    fn limit(mut self, n: u64) -> Download {
        self.left = n;
        self
    }

    fn cut(&mut self, mut data: Bytes) -> Bytes {
        if data.len() as u64 > self.left {
            data.truncate(self.left as usize);
        }
        self.left -= data.len() as u64;
        data
    }
}

impl Stream for Download {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if let Some(data) = self.first.take() {
                if data.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(self.cut(data))));
            }
            let next = ready!(Pin::new(&mut self.inner).poll_next(cx));
            let why = match next {
                Some(Ok(m)) if m.data.is_empty() => continue,
                Some(Ok(m)) => return Poll::Ready(Some(Ok(self.cut(m.data)))),
                Some(Err(s)) => format!("{}: the agent's read failed: {s:?}", self.path),
                None => format!("{}: the file ended {} bytes early (it shrank while being read)", self.path, self.left),
            };
            tracing::warn!(error = %why, "download cut short");
            self.left = 0;
            return Poll::Ready(Some(Err(std::io::Error::other(why))));
        }
    }
}

#[utoipa::path(put, path = "/api/v1/sandboxes/{id}/files", operation_id = "writeFile", tag = "files",
    params(SandboxPath, WriteQuery),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The file's new bytes"),
    responses(
        (status = 201, description = "Written; there was no file at `path` before", body = Entry),
        (status = 200, description = "Written; it replaced the file at `path`", body = Entry),
        (status = 400, description = "No `path`, a bad `mode`, an unknown user, a directory at `path` or a file on the way", body = ErrorBody),
        (status = 403, description = "The user may not write there", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-file-upload-bytes`; nothing was written", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full; nothing was written", body = ErrorBody),
    ))]
pub(crate) async fn write(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<WriteQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<(StatusCode, Json<Entry>)> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let path = required_path(q.path, "path")?;
    let mode = q.mode.as_deref().map(parse_mode).transpose()?.unwrap_or(0);
    let user = q.user.unwrap_or_default();
    let limit = state.cfg.max_file_upload_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(&path, limit));
    }
    // Only to answer 201 or 200; the write itself is atomic whatever this says.
    let existed = client.stat(StatRequest { path: path.clone(), user: user.clone() }).await.is_ok();
    let (abort, mut aborted) = oneshot::channel();
    let first = WriteRequest { path: path.clone(), user, mode, data: Bytes::new() };
    let upload = Upload {
        first: Some(first),
        body: ReceiverStream::new(lingering(body)),
        pending: Bytes::new(),
        sent: 0,
        limit,
        path: path.clone(),
        abort: Some(abort),
    };
    let call = client.write(upload);
    tokio::pin!(call);
    let mut watching = true;
    let written = loop {
        tokio::select! {
            done = &mut call => break done,
            why = &mut aborted, if watching => match why {
                // Returning drops the call: its HTTP/2 stream is reset, and the agent
                // removes its temporary file and leaves the target as it was.
                Ok(e) => return Err(e),
                Err(_) => watching = false, // the body ended cleanly
            },
        }
    };
    let answer = written.map_err(|s| from_status(&id, &s))?.into_inner();
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(required_entry(&id, answer.entry)?)))
}

/// What is read of a request body the upload stopped taking (an answer was sent before
/// its end): at most this much, for at most `LINGER`.
const LINGER_BYTES: u64 = 256 << 20;
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// The request body's chunks, read by a task of their own. When the upload stops taking
/// them (a 413, a 507, a failed agent: the answer goes out before the body's end), the
/// task reads on and drops what the client still sends, up to `LINGER_BYTES` for up to
/// `LINGER`, as a lingering close does: a server that closed at once would leave the
/// client writing into a reset connection (EPIPE) before it read the answer.
fn lingering(body: Body) -> mpsc::Receiver<Result<Bytes, axum::Error>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        while let Some(chunk) = body.next().await {
            if tx.send(chunk).await.is_err() {
                let mut left = LINGER_BYTES;
                let _ = tokio::time::timeout(LINGER, async {
                    while let Some(Ok(chunk)) = body.next().await {
                        left = left.saturating_sub(chunk.len() as u64);
                        if left == 0 {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
        }
    });
    rx
}

fn too_large(path: &str, limit: u64) -> AppError {
    AppError::TooLarge(format!("{path}: the upload is larger than the {limit} bytes a file may have"))
}

/// The messages of an agent's `Write`: the one that names the file, then the request
/// body's bytes. Past the limit, or when the body breaks off, it sends the reason on
/// `abort`, then one message the agent must refuse (a later message naming a path), and
/// never ends: the call is dropped rather than finished, since a clean end is what makes
/// the agent commit the file. The refused message makes the agent discard the file even
/// should the reset of the dropped call reach it as a clean end (it did, at the 1 GiB
/// limit, once in three runs, before this message was sent).
struct Upload {
    first: Option<WriteRequest>,
    body: ReceiverStream<Result<Bytes, axum::Error>>,
    pending: Bytes,
    sent: u64,
    limit: u64,
    path: String,
    abort: Option<oneshot::Sender<AppError>>,
}

impl Upload {
    fn give_up(&mut self, why: AppError) -> Poll<Option<WriteRequest>> {
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(why);
        }
        // Only the first message may name the file: the agent answers INVALID_ARGUMENT
        // and removes its temporary file.
        Poll::Ready(Some(WriteRequest { path: self.path.clone(), ..WriteRequest::default() }))
    }
}

impl Stream for Upload {
    type Item = WriteRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WriteRequest>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        if self.abort.is_none() {
            return Poll::Pending; // given up: wait to be dropped
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(UPLOAD_CHUNK);
                let data = self.pending.split_to(n);
                return Poll::Ready(Some(WriteRequest { data, ..WriteRequest::default() }));
            }
            match ready!(Pin::new(&mut self.body).poll_next(cx)) {
                Some(Ok(data)) => {
                    self.sent += data.len() as u64;
                    if self.sent > self.limit {
                        let why = too_large(&self.path, self.limit);
                        return self.give_up(why);
                    }
                    self.pending = data;
                }
                Some(Err(e)) => {
                    let why = AppError::BadRequest(format!("{}: the upload broke off: {e}", self.path));
                    return self.give_up(why);
                }
                None => {
                    self.abort = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
