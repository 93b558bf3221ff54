//! `/api/v1/sandboxes/{id}/files…`: a sandbox's files, through its agent's
//! `FileService` (protocol v1.3) over the sandbox's one agent connection. Every call
//! names the user it acts as (`user`; the sandbox's default user when absent) and the
//! agent does it with that user's credentials, so the kernel checks each path: the
//! server adds the tenant check (another key's sandbox is a 404 on every route, before
//! anything else is looked at) and turns the agent's errors into HTTP answers
//! (`agent_error.rs`). Downloads and uploads stream (`transfer.rs`); a watch is a stream
//! of server-sent events (`watch.rs`).

pub(crate) mod agent_error;
mod entry;
mod range;
pub(crate) mod sse;
pub(crate) mod transfer;
pub(crate) mod watch;

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sandstream_proto::v1::{ListDirRequest, MakeDirRequest, MoveRequest, RemoveRequest, StatRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::sandboxes::{SandboxPath, owned};
use crate::error::{AppError, AppJson, AppResult, ErrorBody};
use crate::exec::FileClient;
use crate::state::SandboxState;
use crate::store::Principal;
use agent_error::{from_status, unavailable};
pub(crate) use entry::Entry;
use entry::entry_json;

/// Deepest `depth` a listing may ask for.
pub(crate) const MAX_DEPTH: u32 = 64;

/// The `FileService` of the caller's running sandbox `id`. Another tenant's sandbox is
/// as unknown as a missing one (404); a sandbox that is not running is a 409.
fn agent(state: &AppState, p: &Principal, id: &str) -> AppResult<FileClient> {
    let sb = owned(state, p, id)?;
    if sb.state != SandboxState::Running {
        return Err(AppError::Conflict(format!("sandbox {id} is {}", sb.state)));
    }
    state.agents.files(&sb).map_err(|e| unavailable(id, e))
}

/// A query string, or a 400 saying what is wrong with it.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> AppResult<T> {
    q.map(|Query(q)| q).map_err(|e| AppError::BadRequest(format!("query: {}", e.body_text())))
}

/// A `path` the request must name.
fn required_path(path: String, name: &str) -> AppResult<String> {
    if path.is_empty() {
        return Err(AppError::BadRequest(format!("{name} must not be empty")));
    }
    Ok(path)
}

/// Permission bits written in octal (`644`, `0644`, `0o644`), at most `7777`.
pub(crate) fn parse_mode(s: &str) -> AppResult<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = (!digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o7777);
    mode.ok_or_else(|| AppError::BadRequest(format!("mode {s:?} is not permission bits in octal, such as 0644")))
}

/// The entry in an agent's answer, which must carry one.
fn required_entry(id: &str, entry: Option<sandstream_proto::v1::EntryInfo>) -> AppResult<Entry> {
    entry.map(entry_json).ok_or_else(|| unavailable(id, "the agent answered without an entry"))
}

/// `?path=…&user=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PathQuery {
    /// The path in the sandbox; a relative one is relative to the user's home.
    path: String,
    /// Who acts: `root`, a name from the sandbox's `/etc/passwd` or a uid (the
    /// sandbox's default user, `user`, when absent).
    user: Option<String>,
}

/// `?path=…&depth=…&user=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The directory.
    path: String,
    /// How many levels down: 1 (the default) is the directory's children only; at most 64.
    /// Symlinks to directories are listed, not followed.
    depth: Option<u32>,
    /// Who acts (see `GET …/files`).
    user: Option<String>,
}

/// `?path=…&recursive=…&user=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RemoveQuery {
    /// The file, symlink (not its target) or directory.
    path: String,
    /// A directory with its contents (`true`); without it only an empty directory goes.
    recursive: Option<bool>,
    /// Who acts (see `GET …/files`).
    user: Option<String>,
}

/// A directory listing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Listing {
    /// Sorted by path.
    entries: Vec<Entry>,
}

/// `POST …/files/mkdir`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MakeDirBody {
    /// The directory; its missing parents are created too.
    path: String,
    /// Who acts (see `GET …/files`).
    user: Option<String>,
    /// Permission bits of created directories in octal, such as `"0700"` (`0755` when absent).
    mode: Option<String>,
}

/// The answer of `POST …/files/mkdir`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MadeDir {
    entry: Entry,
    /// False when the directory was already there (nothing changed).
    created: bool,
}

/// `POST …/files/move`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveBody {
    source: String,
    /// The new path; its missing parents are created. An existing file there is replaced.
    destination: String,
    /// Who acts (see `GET …/files`).
    user: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/files/stat", operation_id = "statFile", tag = "files",
    params(SandboxPath, PathQuery),
    responses(
        (status = 200, description = "The entry (a symlink is described, not followed)", body = Entry),
        (status = 400, description = "No `path`, or an unknown user", body = ErrorBody),
        (status = 403, description = "The user may not see it", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such entry", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn stat(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> AppResult<Json<Entry>> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let req = StatRequest { path: required_path(q.path, "path")?, user: q.user.unwrap_or_default() };
    let answer = client.stat(req).await.map_err(|s| from_status(&id, &s))?.into_inner();
    Ok(Json(required_entry(&id, answer.entry)?))
}

#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/files/list", operation_id = "listFiles", tag = "files",
    params(SandboxPath, ListQuery),
    responses(
        (status = 200, description = "The directory's entries to `depth` levels, sorted by path", body = Listing),
        (status = 400, description = "No `path`, a `depth` out of range, not a directory, or an unknown user", body = ErrorBody),
        (status = 403, description = "The user may not read the directory", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such directory", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> AppResult<Json<Listing>> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let depth = q.depth.unwrap_or(1);
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(AppError::BadRequest(format!("depth must be between 1 and {MAX_DEPTH}, got {depth}")));
    }
    let path = required_path(q.path, "path")?;
    let req = ListDirRequest { path: path.clone(), depth, user: q.user.unwrap_or_default() };
    let answer = client.list_dir(req).await.map_err(|s| match s.code() {
        // The agent answers a listing in one message; past what the server decodes
        // (`exec/agents.rs`) tonic says OUT_OF_RANGE.
        tonic::Code::OutOfRange => AppError::BadRequest(format!(
            "{path}: the listing is larger than the server takes in one answer; list a smaller depth or a subdirectory"
        )),
        _ => from_status(&id, &s),
    })?;
    let answer = answer.into_inner();
    Ok(Json(Listing { entries: answer.entries.into_iter().map(entry_json).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}/files", operation_id = "removeFile", tag = "files",
    params(SandboxPath, RemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "No `path`, or an unknown user", body = ErrorBody),
        (status = 403, description = "The user may not remove it", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such entry", body = ErrorBody),
        (status = 409, description = "A directory that is not empty without `recursive=true`, or the sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
    ))]
pub(crate) async fn remove(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> AppResult<StatusCode> {
    let mut client = agent(&state, &p, &id)?;
    let q = query(q)?;
    let req = RemoveRequest {
        path: required_path(q.path, "path")?,
        recursive: q.recursive.unwrap_or(false),
        user: q.user.unwrap_or_default(),
    };
    client.remove(req).await.map_err(|s| from_status(&id, &s))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/files/mkdir", operation_id = "makeDir", tag = "files",
    params(SandboxPath), request_body = MakeDirBody,
    responses(
        (status = 201, description = "Created (with its missing parents)", body = MadeDir),
        (status = 200, description = "It was already a directory; nothing changed", body = MadeDir),
        (status = 400, description = "No `path`, a bad `mode`, an unknown user, or a file on the way", body = ErrorBody),
        (status = 403, description = "The user may not create it", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key", body = ErrorBody),
        (status = 409, description = "Something other than a directory is there, or the sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full", body = ErrorBody),
    ))]
pub(crate) async fn make_dir(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    AppJson(body): AppJson<MakeDirBody>,
) -> AppResult<(StatusCode, Json<MadeDir>)> {
    let mut client = agent(&state, &p, &id)?;
    let mode = body.mode.as_deref().map(parse_mode).transpose()?.unwrap_or(0);
    let req = MakeDirRequest { path: required_path(body.path, "path")?, user: body.user.unwrap_or_default(), mode };
    let answer = client.make_dir(req).await.map_err(|s| from_status(&id, &s))?.into_inner();
    let status = if answer.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(MadeDir { entry: required_entry(&id, answer.entry)?, created: answer.created })))
}

#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/files/move", operation_id = "moveFile", tag = "files",
    params(SandboxPath), request_body = MoveBody,
    responses(
        (status = 200, description = "Moved; the entry at its destination", body = Entry),
        (status = 400, description = "An empty path, an unknown user, or a move the file system refuses (a directory into itself)", body = ErrorBody),
        (status = 403, description = "The user may not move it", body = ErrorBody),
        (status = 404, description = "No such sandbox of this key, or no such source", body = ErrorBody),
        (status = 409, description = "A non-empty directory is at the destination, or the sandbox is not running", body = ErrorBody),
        (status = 502, description = "The sandbox's agent did not answer", body = ErrorBody),
        (status = 507, description = "The sandbox's disk is full", body = ErrorBody),
    ))]
pub(crate) async fn move_entry(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
    AppJson(body): AppJson<MoveBody>,
) -> AppResult<Json<Entry>> {
    let mut client = agent(&state, &p, &id)?;
    let req = MoveRequest {
        source: required_path(body.source, "source")?,
        destination: required_path(body.destination, "destination")?,
        user: body.user.unwrap_or_default(),
    };
    let answer = client.r#move(req).await.map_err(|s| from_status(&id, &s))?.into_inner();
    Ok(Json(required_entry(&id, answer.entry)?))
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn modes_are_octal_permission_bits() {
        for (s, m) in [("644", 0o644), ("0644", 0o644), ("0o755", 0o755), ("4755", 0o4755), ("7777", 0o7777), ("0", 0)]
        {
            assert_eq!(parse_mode(s).expect(s), m, "{s}");
        }
        for s in ["", "0o", "8", "0x1ff", "17777", "rwx", "-644", "0644 ", "000000"] {
            let e = parse_mode(s).expect_err(s);
            assert_eq!(e.parts().0, 400, "{s}");
            assert!(e.to_string().contains("octal"), "{e}");
        }
    }
}
