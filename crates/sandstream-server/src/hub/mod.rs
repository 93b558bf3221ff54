//! socket.io: design note 000's events (`join-container` → `container-joined`,
//! `execution-output`, `execution-complete`) plus `execution-phase` and
//! `resume-execution` for clients that joined late or reconnected. **A socket
//! authenticates on connect and only ever joins rooms of its own tenant.** This module
//! owns every event sent (`events.rs`) and every room name (`rooms.rs`); the exec
//! engine sends through [`send`].

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

mod events;
pub(crate) mod rooms;

pub(crate) use events::{CompleteEvent, Event, OutputEvent, PhaseEvent};
use events::{ContainerJoined, ErrorEvent, emit};

use crate::auth::{Credential, Gate, credential, peer};
use crate::error::AppError;
use crate::store::{Principal, Receiver, StateStore};

/// Chunks replayed per database read (a page is held in memory while it is sent).
const REPLAY_PAGE: usize = 256;
/// How long a replay waits for a socket's send buffer to make room before giving up.
const REPLAY_STALL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct HandshakeAuth {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resume {
    execution_id: String,
    #[serde(default)]
    after_seq: u64,
}

fn refuse(s: &SocketRef, code: &str, message: String) {
    let _ = emit(s, &Event::Error(ErrorEvent { code, message: &message }));
}

/// Registers the namespace handlers: `gate` checks each handshake's key, and the
/// sandboxes and executions a socket asks for are read from `store`. (Neither holds the
/// `SocketIo`, so the handlers it keeps make no reference cycle.)
pub(crate) fn setup(io: &SocketIo, store: Arc<dyn StateStore>, gate: Gate) {
    let authenticate = move |s: SocketRef, TryData(auth): TryData<HandshakeAuth>| {
        let gate = gate.clone();
        async move {
            let cred = match auth.ok().and_then(|a| a.token).filter(|t| !t.is_empty()) {
                Some(t) => Some(Credential::Key(t)),
                None => credential(&s.req_parts().headers),
            };
            let cred = cred.ok_or("missing API key: pass auth {token: KEY} or log in through the web page")?;
            let principal = gate.admit(&cred, peer(s.req_parts())).map_err(|e| e.public_message())?;
            s.extensions.insert(principal);
            Ok::<(), String>(())
        }
    };
    let on_connect = move |s: SocketRef| {
        let store = store.clone();
        async move {
            // socket.io clients address a socket by its id: make it a room.
            s.join(rooms::socket(s.id));
            let st = store.clone();
            s.on("join-container", move |s: SocketRef, Data(v): Data<Value>| {
                let st = st.clone();
                async move { join(st.as_ref(), &s, v) }
            });
            s.on("resume-execution", move |s: SocketRef, Data(v): Data<Value>| {
                let st = store.clone();
                async move { resume(st.as_ref(), &s, v).await }
            });
        }
    };
    io.ns("/", on_connect.with(authenticate));
}

/// Closes every socket.io connection made with the key `key_id` (directly or through a
/// web session of it), telling each why; returns how many. A revoked key stops working
/// at once: its open sockets would otherwise keep receiving its sandboxes' output and
/// could still join their rooms.
pub(crate) fn disconnect_key(io: &SocketIo, key_id: &str) -> usize {
    let mut n = 0;
    for s in io.sockets() {
        if principal(&s).is_some_and(|p| p.key_id == key_id) {
            refuse(&s, "unauthorized", "the API key of this connection was revoked".into());
            let id = s.id;
            if let Err(e) = s.disconnect() {
                tracing::debug!(socket = %id, error = %e, "socket of a revoked key was already closing");
            }
            n += 1;
        }
    }
    n
}

fn principal(s: &SocketRef) -> Option<Principal> {
    s.extensions.get::<Principal>()
}

fn join(store: &dyn StateStore, s: &SocketRef, v: Value) {
    // Note 000 sends the id as a bare string; an object {containerId} is accepted too.
    let id = match &v {
        Value::String(id) => id.clone(),
        v => v.get("containerId").and_then(Value::as_str).unwrap_or_default().to_string(),
    };
    let Some(p) = principal(s) else { return };
    match store.sandbox(&id) {
        Ok(Some(sb)) if sb.tenant == p.tenant() => {
            s.join(rooms::container(&id));
            let _ = emit(s, &Event::ContainerJoined(ContainerJoined { container_id: &id }));
        }
        Ok(_) => refuse(s, "not_found", format!("container {id:?} not found")),
        Err(e) => refuse(s, "internal", AppError::from(e).public_message()),
    }
}

async fn resume(store: &dyn StateStore, s: &SocketRef, v: Value) {
    let Some(p) = principal(s) else { return };
    let req: Resume = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => return refuse(s, "bad_request", format!("resume-execution needs {{executionId, afterSeq}}: {e}")),
    };
    let ex = match store.execution(&req.execution_id) {
        Ok(Some(ex)) if ex.tenant == p.tenant() => ex,
        Ok(_) => return refuse(s, "not_found", format!("execution {:?} not found", req.execution_id)),
        Err(e) => return refuse(s, "internal", AppError::from(e).public_message()),
    };
    // Join first, replay second: a chunk stored meanwhile arrives twice (the client
    // drops it by seq), never zero times.
    s.join(rooms::execution(&ex.id));
    let mut after = req.after_seq;
    loop {
        let chunks = match store.chunks(&ex.id, after, REPLAY_PAGE) {
            Ok(c) => c,
            Err(e) => return refuse(s, "internal", AppError::from(e).public_message()),
        };
        let Some(last) = chunks.last() else { break };
        after = last.seq;
        for c in &chunks {
            let event = Event::Output(OutputEvent::new(&ex.id, &ex.sandbox_id, c));
            if !emit_paced(s, &event, REPLAY_STALL).await {
                return;
            }
        }
        if chunks.len() < REPLAY_PAGE {
            break;
        }
    }
    if let Ok(Some(done)) = store.execution(&ex.id)
        && let Some(outcome) = done.outcome()
    {
        let fin = done.finished_at.unwrap_or(done.created_at);
        let event = CompleteEvent::new(&done, &outcome, fin, done.last_seq);
        emit_paced(s, &Event::Complete(event), REPLAY_STALL).await;
    }
}

/// Emits to one socket, waiting while its send buffer is full; false when the socket
/// closed or stayed full for `patience`.
async fn emit_paced(s: &SocketRef, event: &Event<'_>, patience: std::time::Duration) -> bool {
    use socketioxide::{SendError, SocketError};
    let started = tokio::time::Instant::now();
    loop {
        match emit(s, event) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) if started.elapsed() < patience => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => {
                tracing::debug!(sid = %s.id, error = %e, "replay stopped");
                return false;
            }
        }
    }
}

/// Sends `event` once to every socket of an execution: its receiver's room and the
/// sockets that resumed it. A socket whose send buffer is full gets up to `patience` to
/// make room; past that the event is dropped for it alone (its client sees the seq gap,
/// or a `lastSeq` it lacks on `execution-complete`, and resumes). So a stuck client
/// cannot hold up the others for long, and costs the server at most its bounded buffer.
pub(crate) async fn send(
    io: &SocketIo,
    receiver: &Receiver,
    execution_id: &str,
    event: &Event<'_>,
    patience: std::time::Duration,
) {
    let target = rooms::of(receiver);
    let mut sockets = io.to(target.clone()).sockets();
    sockets.extend(io.to(rooms::execution(execution_id)).except(target).sockets());
    for s in sockets {
        emit_paced(&s, event, patience).await;
    }
}
