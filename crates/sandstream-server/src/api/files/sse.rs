//! Server-sent events fed by an agent's stream (a file watch, a terminal's output): one
//! task forwards the agent's messages as events and, when the agent's stream ends or
//! breaks first, a last `end` event (`{"reason", "message"}`) says so. The task stops as
//! soon as the client goes away, which drops the agent's stream too.

use std::convert::Infallible;

use axum::response::sse::Event;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::agent_error::from_status;

/// An event named `name` whose data is `data` as JSON.
pub(crate) fn json_event(name: &str, data: &impl Serialize) -> Event {
    // Serializing these plain structs cannot fail; an empty object stands in if it did.
    Event::default().event(name).data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

/// The data of the last event, `end`.
#[derive(Debug, Serialize)]
struct End {
    /// `closed` (the agent ended the stream) or an error code as in error answers
    /// (`agent_unavailable` when the sandbox stopped).
    reason: String,
    message: String,
}

/// What one agent message becomes.
pub(crate) enum Step {
    /// Send this event (if any) and go on.
    Send(Option<Event>),
    /// Send this event and stop: the stream is complete, no `end` follows.
    Last(Event),
}

/// Forwards `stream` (of sandbox `id`) as events through `event`; `closed` is the `end`
/// message when the agent ends the stream itself. `hold` is kept until the task ends
/// (a count of open streams, say).
pub(crate) fn forward<M: Send + 'static>(
    id: String,
    mut stream: tonic::Streaming<M>,
    closed: &'static str,
    mut event: impl FnMut(&M) -> Step + Send + 'static,
    hold: impl Send + 'static,
) -> ReceiverStream<Result<Event, Infallible>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let _hold = hold;
        let end = loop {
            let msg = tokio::select! {
                () = tx.closed() => return,
                msg = stream.message() => msg,
            };
            match msg {
                Ok(Some(m)) => match event(&m) {
                    Step::Send(None) => {}
                    Step::Send(Some(e)) => {
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Step::Last(e) => {
                        let _ = tx.send(Ok(e)).await;
                        return;
                    }
                },
                Ok(None) => break End { reason: "closed".into(), message: closed.into() },
                Err(s) => {
                    let e = from_status(&id, &s);
                    break End { reason: e.parts().1.to_string(), message: e.public_message() };
                }
            }
        };
        let _ = tx.send(Ok(json_event("end", &end))).await;
    });
    ReceiverStream::new(rx)
}
