//! socket.io room names, made here only. A room is named by what it gathers, with a
//! prefix per kind, so no id of one kind can name a room of another.

use socketioxide::socket::Sid;

use crate::store::Receiver;

/// Sockets that joined a sandbox (`join-container`): its executions' live output.
pub(crate) fn container(sandbox_id: &str) -> String {
    format!("container-{sandbox_id}")
}

/// Sockets that resumed an execution (`resume-execution`).
pub(crate) fn execution(execution_id: &str) -> String {
    format!("execution-{execution_id}")
}

/// One socket: socket.io clients address a socket by its id.
pub(crate) fn socket(sid: Sid) -> String {
    sid.to_string()
}

/// The room of an execution's receiver.
pub(crate) fn of(receiver: &Receiver) -> String {
    match receiver {
        Receiver::Container(id) => container(id),
        Receiver::Socket(sid) => sid.clone(),
    }
}
