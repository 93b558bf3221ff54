//! Every socket.io event the server sends (API.md, "Live logs"), as one closed enum.
//! Design note 000's `container-joined`, `execution-output`, `execution-complete`, plus
//! `execution-phase` and `error`. Each payload is a typed struct, so an event's name and
//! fields are decided here and nowhere else.

use serde::Serialize;
use socketioxide::extract::SocketRef;

use crate::state::{ExecStatus, Phase};
use crate::store::{Chunk, ExecutionRow, Outcome};
use crate::time::rfc3339;

/// One event and its payload.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Event<'a> {
    /// Answers `join-container`: the socket now receives the sandbox's executions.
    ContainerJoined(ContainerJoined<'a>),
    /// One stored chunk of output, live or replayed.
    Output(OutputEvent<'a>),
    /// An execution moved to another phase (`install`, `run`).
    Phase(PhaseEvent<'a>),
    /// An execution ended; `lastSeq` says how many chunks it has.
    Complete(CompleteEvent<'a>),
    /// A refused request (`join-container`, `resume-execution`) or a revoked key.
    Error(ErrorEvent<'a>),
}

impl Event<'_> {
    /// The event's name on the wire.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::ContainerJoined(_) => "container-joined",
            Event::Output(_) => "execution-output",
            Event::Phase(_) => "execution-phase",
            Event::Complete(_) => "execution-complete",
            Event::Error(_) => "error",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerJoined<'a> {
    pub container_id: &'a str,
}

/// An `execution-output` event, borrowed from the stored chunk: serialized straight
/// into the socket.io packet, with no intermediate JSON value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputEvent<'a> {
    execution_id: &'a str,
    container_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a str,
    seq: u64,
    phase: Phase,
}

impl<'a> OutputEvent<'a> {
    pub(crate) fn new(execution_id: &'a str, container_id: &'a str, c: &'a Chunk) -> OutputEvent<'a> {
        OutputEvent { execution_id, container_id, kind: &c.kind, data: &c.data, seq: c.seq, phase: c.phase }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PhaseEvent<'a> {
    pub execution_id: &'a str,
    pub container_id: &'a str,
    pub phase: Phase,
    pub timestamp: String,
}

/// An `execution-complete` event: how the execution ended (as its row keeps it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompleteEvent<'a> {
    execution_id: &'a str,
    container_id: &'a str,
    exit_code: i32,
    status: ExecStatus,
    timestamp: String,
    duration_ms: i64,
    /// Why, in words (an out-of-memory kill, a failed install, a lost sandbox, …).
    error: Option<&'a str>,
    /// The kernel's out-of-memory killer ended the program: the sandbox reached its memory limit.
    oom_killed: bool,
    last_seq: u64,
}

impl<'a> CompleteEvent<'a> {
    /// The end of `ex`: how it ended, when, and its last chunk's number.
    pub(crate) fn new(ex: &'a ExecutionRow, outcome: &'a Outcome, finished_at: i64, last_seq: u64) -> Self {
        CompleteEvent {
            execution_id: &ex.id,
            container_id: &ex.sandbox_id,
            exit_code: outcome.exit_code,
            status: outcome.status,
            timestamp: rfc3339(finished_at),
            duration_ms: finished_at - ex.created_at,
            error: outcome.error.as_deref(),
            oom_killed: outcome.oom_killed,
            last_seq,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorEvent<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// Sends `event` to one socket (an error when its send buffer is full or it closed).
pub(crate) fn emit(s: &SocketRef, event: &Event<'_>) -> Result<(), socketioxide::SendError> {
    s.emit(event.name(), event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_the_fields_api_md_names() {
        let chunk = Chunk { seq: 3, kind: "stderr".into(), phase: Phase::Run, data: "x".into() };
        let out = serde_json::to_value(Event::Output(OutputEvent::new("exec_1", "sb-1", &chunk))).expect("json");
        assert_eq!(
            out,
            serde_json::json!({"executionId": "exec_1", "containerId": "sb-1", "type": "stderr", "data": "x",
                "seq": 3, "phase": "run"})
        );
        let ex = ExecutionRow {
            id: "exec_1".into(),
            tenant: "t".into(),
            sandbox_id: "sb-1".into(),
            language: "python".into(),
            status: ExecStatus::Running,
            phase: Phase::Run,
            exit_code: None,
            error: None,
            plan: "{}".into(),
            command_id: None,
            stdout_offset: 0,
            stderr_offset: 0,
            last_seq: 0,
            target: crate::store::Receiver::Container("sb-1".into()),
            created_at: 1_000,
            deadline: 9_000,
            finished_at: None,
            oom_killed: false,
        };
        let words = "killed by the out-of-memory killer: the sandbox reached its memory limit of 64 MiB";
        let oom = Outcome { status: ExecStatus::Error, exit_code: 137, error: Some(words.into()), oom_killed: true };
        let complete = Event::Complete(CompleteEvent::new(&ex, &oom, 3_500, 4));
        assert_eq!(complete.name(), "execution-complete");
        assert_eq!(
            serde_json::to_value(complete).expect("json"),
            serde_json::json!({"executionId": "exec_1", "containerId": "sb-1", "exitCode": 137, "status": "error",
                "timestamp": rfc3339(3_500), "durationMs": 2_500, "error": words, "oomKilled": true, "lastSeq": 4})
        );
        let joined = Event::ContainerJoined(ContainerJoined { container_id: "sb-1" });
        assert_eq!(joined.name(), "container-joined");
        assert_eq!(serde_json::to_value(joined).expect("json"), serde_json::json!({"containerId": "sb-1"}));
    }
}
