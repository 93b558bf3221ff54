//! `GET /api/v1/sandboxes/{id}/files/watch`: the agent's `WatchDir` as server-sent
//! events, for clients without gRPC (the playground's file tree uses it through
//! `EventSource`, which sends the page's session cookie).
//!
//! The answer waits for the agent's first message: a watch the agent refuses (no such
//! directory, permission denied, too many watches) is an HTTP error like every other
//! files route, and a `200` means the watch is in place. Then each change is an event
//! `change` with `{"type", "name"}` (`name` relative to the watched directory), a lost
//! batch (the kernel's queue overflowed) is `overflow`, and the agent's keepalives are
//! comments. When the agent's stream ends (the directory was removed or moved, the
//! sandbox stopped) a last event `end` says why, and the response ends.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use sandstream_proto::v1::{FsEventType, WatchDirEvent, WatchDirRequest, WatchEventKind};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

use tokio_stream::wrappers::ReceiverStream;

use super::{agent, from_status, query, required_path, unavailable};
use crate::api::AppState;
use crate::api::files::sse::{Step, forward, json_event};
use crate::api::sandboxes::SandboxPath;
use crate::error::{AppResult, ErrorBody};
use crate::store::Principal;

/// `?path=…&recursive=…&user=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WatchQuery {
    /// The directory.
    path: String,
    /// Also every directory below it, and each that appears later (`false` when absent).
    recursive: Option<bool>,
    /// Who acts (see `GET …/files`): the watch sees what this user may list.
    user: Option<String>,
}

/// The data of a `change` event.
#[derive(Debug, Serialize)]
pub(crate) struct Change {
    /// `create` (created or moved in), `write` (a writer closed the file), `remove`,
    /// `rename` (moved away from `name`) or `chmod` (any metadata change).
    #[serde(rename = "type")]
    kind: &'static str,
    /// Relative to the watched directory (`sub/f.txt`).
    name: String,
}

/// What one agent message becomes: an event to send, or nothing.
fn event(msg: &WatchDirEvent) -> Option<Event> {
    match WatchEventKind::try_from(msg.kind) {
        Ok(WatchEventKind::Filesystem) => {
            let kind = match FsEventType::try_from(msg.r#type) {
                Ok(FsEventType::Create) => "create",
                Ok(FsEventType::Write) => "write",
                Ok(FsEventType::Remove) => "remove",
                Ok(FsEventType::Rename) => "rename",
                Ok(FsEventType::Chmod) => "chmod",
                // A type this server does not know (a newer agent): not shown.
                _ => return None,
            };
            Some(json_event("change", &Change { kind, name: msg.name.clone() }))
        }
        Ok(WatchEventKind::Overflow) => Some(Event::default().event("overflow").data("{}")),
        Ok(WatchEventKind::Keepalive) => Some(Event::default().comment("keepalive")),
        _ => None,
    }
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/files/watch", operation_id = "watchDir", tag = "files",
    params(SandboxPath, WatchQuery),
    responses(
        (status = 200, description = "The watch is in place: server-sent events `change` (data: `{\"type\", \"name\"}`), `overflow` (events were lost: list again) and, last, `end` (data: `{\"reason\", \"message\"}`); comments keep the connection alive", content_type = "text/event-stream", body = String),
        (status = 400, description = "No `path`, not a directory, or an unknown user", body = ErrorBody),
        (status = 403, description = "The user may not list the directory", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such directory", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
        (status = 503, description = "The agent watches as many directories as it allows (32 at once)", body = ErrorBody),
    ))]
pub(crate) async fn watch(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<WatchQuery>, QueryRejection>,
) -> AppResult<impl IntoResponse> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let req = WatchDirRequest {
        path: required_path(q.path, "path")?,
        recursive: q.recursive.unwrap_or(false),
        user: q.user.unwrap_or_default(),
    };
    let mut stream = client.watch_dir(req).await.map_err(|s| from_status(&id, &s))?.into_inner();
    match stream.message().await {
        Ok(Some(first)) if first.kind == WatchEventKind::Started as i32 => {}
        Ok(Some(first)) => return Err(unavailable(&id, format!("the watch began with {first:?}, not STARTED"))),
        Ok(None) => return Err(unavailable(&id, "the agent ended the watch before it started")),
        Err(s) => return Err(from_status(&id, &s)),
    }
    Ok(Sse::new(events(id, stream)))
}

/// The agent's messages as events, then the `end` event (`sse.rs`): the agent's stream
/// is dropped (and its watch ends) as soon as the client goes away.
fn events(id: String, stream: tonic::Streaming<WatchDirEvent>) -> ReceiverStream<Result<Event, Infallible>> {
    forward(id, stream, "the agent ended the watch", |m: &WatchDirEvent| Step::Send(event(m)), ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: WatchEventKind, r#type: FsEventType, name: &str) -> WatchDirEvent {
        WatchDirEvent { kind: kind as i32, r#type: r#type as i32, name: name.into() }
    }

    /// The bytes an event is sent as.
    fn wire(e: Option<Event>) -> Option<String> {
        e.map(|e: Event| {
            let body = Sse::new(tokio_stream::once(Ok::<_, Infallible>(e))).into_response().into_body();
            let bytes = block_on(axum::body::to_bytes(body, 1 << 16)).expect("body");
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
    }

    #[test]
    fn each_agent_message_has_its_event() {
        let change = |t, n| wire(event(&msg(WatchEventKind::Filesystem, t, n)));
        assert_eq!(
            change(FsEventType::Create, "a/b.txt").as_deref(),
            Some("event: change\ndata: {\"type\":\"create\",\"name\":\"a/b.txt\"}\n\n")
        );
        assert_eq!(
            change(FsEventType::Write, "f").as_deref(),
            Some("event: change\ndata: {\"type\":\"write\",\"name\":\"f\"}\n\n")
        );
        assert_eq!(
            change(FsEventType::Remove, "f").as_deref(),
            Some("event: change\ndata: {\"type\":\"remove\",\"name\":\"f\"}\n\n")
        );
        assert_eq!(
            change(FsEventType::Rename, "f").as_deref(),
            Some("event: change\ndata: {\"type\":\"rename\",\"name\":\"f\"}\n\n")
        );
        assert_eq!(
            change(FsEventType::Chmod, "f").as_deref(),
            Some("event: change\ndata: {\"type\":\"chmod\",\"name\":\"f\"}\n\n")
        );
        // A name with a newline cannot break out of its data line.
        assert_eq!(
            change(FsEventType::Create, "x\nevent: end").as_deref(),
            Some("event: change\ndata: {\"type\":\"create\",\"name\":\"x\\nevent: end\"}\n\n")
        );
        assert_eq!(change(FsEventType::Unspecified, "f"), None);
        assert_eq!(
            wire(event(&msg(WatchEventKind::Overflow, FsEventType::Unspecified, ""))).as_deref(),
            Some("event: overflow\ndata: {}\n\n")
        );
        assert_eq!(
            wire(event(&msg(WatchEventKind::Keepalive, FsEventType::Unspecified, ""))).as_deref(),
            Some(": keepalive\n\n")
        );
        assert_eq!(wire(event(&msg(WatchEventKind::Started, FsEventType::Unspecified, ""))), None);
    }
}
