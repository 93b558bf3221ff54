//! What the store holds, one type per kind of row, and how each is read from a SQLite row
//! (the column lists below and the `*_row` mappers, which must agree on the order). The
//! types are the interface's (`interface.rs`): a second backend reads into the same ones.

use crate::state::{ExecStatus, Phase, SandboxState};

/// Who is calling: a key (its id is the tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub key_id: String,
    pub admin: bool,
}

impl Principal {
    pub(crate) fn tenant(&self) -> &str {
        &self.key_id
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub created_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RunnerRow {
    pub id: String,
    pub name: String,
    pub control_url: String,
    pub advertise_host: String,
    pub capacity: u32,
    pub backend: String,
    pub last_heartbeat: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct SandboxRow {
    pub id: String,
    pub tenant: String,
    pub runner_id: String,
    pub template: String,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    pub envs: String,
    pub metadata: String,
    pub state: SandboxState,
    pub host: String,
    pub port: u16,
    /// In the clear: the store seals it on the way in and opens it on the way out.
    pub token: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// What the key's disk quota counts (MiB): its `diskMb`, or the default it got.
    pub disk_mb: u32,
    /// The host port (at `host`) of its SSH server; 0 when it has none: created with SSH
    /// off, or by a runner older than SSH.
    pub ssh_port: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct ExecutionRow {
    pub id: String,
    pub tenant: String,
    pub sandbox_id: String,
    pub language: String,
    pub status: ExecStatus,
    pub phase: Phase,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub plan: String,
    pub command_id: Option<String>,
    pub stdout_offset: u64,
    pub stderr_offset: u64,
    pub last_seq: u64,
    pub target: Receiver,
    pub created_at: i64,
    pub deadline: i64,
    pub finished_at: Option<i64>,
    /// The kernel's out-of-memory killer ended the program: the sandbox reached its
    /// memory limit (`error` says so in words).
    pub oom_killed: bool,
}

impl ExecutionRow {
    /// How it ended; `None` while it runs.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        (self.status != ExecStatus::Running).then(|| Outcome {
            status: self.status,
            exit_code: self.exit_code.unwrap_or(-1),
            error: self.error.clone(),
            oom_killed: self.oom_killed,
        })
    }
}

/// How an execution ended: what its row keeps and its `execution-complete` event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub status: ExecStatus,
    pub exit_code: i32,
    /// Why, in words, when the status and the exit code do not say it all.
    pub error: Option<String>,
    /// The kernel's out-of-memory killer ended the program.
    pub oom_killed: bool,
}

/// Who receives an execution's live events (besides sockets that resume it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Receiver {
    /// Every socket that joined the sandbox.
    Container(String),
    /// One socket of the caller's (`socketSessionId`).
    Socket(String),
}

impl Receiver {
    /// As stored: `{"container": ID}` or `{"socket": SID}`.
    pub(super) fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored receiver. Databases from before this held a socket.io room name:
    /// `container-ID`, or a socket id.
    pub(super) fn from_stored(text: String) -> Receiver {
        if let Ok(r) = serde_json::from_str(&text) {
            return r;
        }
        match text.strip_prefix("container-") {
            Some(id) => Receiver::Container(id.to_string()),
            None => Receiver::Socket(text),
        }
    }
}

/// One piece of an execution's output, as the logs route and socket.io carry it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Chunk {
    /// From 1, one per chunk of the execution, without gaps.
    pub seq: u64,
    /// `stdout` or `stderr`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(stdout|stderr)$")]
    pub kind: String,
    pub phase: Phase,
    pub data: String,
}

/// What a key's sandboxes take (or a create would add): how many, and their memory and
/// disk in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub count: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
}

impl Usage {
    /// One sandbox of this size.
    pub(crate) fn one(memory_mb: u32, disk_mb: u32) -> Usage {
        Usage { count: 1, memory_mb: u64::from(memory_mb), disk_mb: u64::from(disk_mb) }
    }

    pub(crate) fn add(&mut self, other: Usage) {
        self.count = self.count.saturating_add(other.count);
        self.memory_mb = self.memory_mb.saturating_add(other.memory_mb);
        self.disk_mb = self.disk_mb.saturating_add(other.disk_mb);
    }

    pub(crate) fn sub(&mut self, other: Usage) {
        self.count = self.count.saturating_sub(other.count);
        self.memory_mb = self.memory_mb.saturating_sub(other.memory_mb);
        self.disk_mb = self.disk_mb.saturating_sub(other.disk_mb);
    }
}

pub(super) const RUNNER_COLS: &str = "id, name, control_url, advertise_host, capacity, backend, last_heartbeat";
pub(super) const SANDBOX_COLS: &str = "id, tenant, runner_id, template, cpu_millis, memory_mb, envs, metadata, state, host, port, token, created_at, expires_at, disk_mb, ssh_port";
pub(super) const EXEC_COLS: &str = "id, tenant, sandbox_id, language, status, phase, exit_code, error, plan, command_id, \
     stdout_offset, stderr_offset, last_seq, target, created_at, deadline, finished_at, oom_killed";
/// `EXEC_COLS` of `executions e`, with a running execution's progress from `progress p`.
pub(super) const EXEC_SELECT: &str = "SELECT e.id, e.tenant, e.sandbox_id, e.language, e.status, e.phase, e.exit_code, \
     e.error, e.plan, e.command_id, COALESCE(p.stdout_offset, e.stdout_offset), \
     COALESCE(p.stderr_offset, e.stderr_offset), COALESCE(p.last_seq, e.last_seq), e.target, e.created_at, \
     e.deadline, e.finished_at, e.oom_killed FROM executions e LEFT JOIN progress p ON p.execution_id = e.id";

/// A row of `SANDBOX_COLS`, its token still sealed.
pub(super) fn sandbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRow> {
    Ok(SandboxRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        runner_id: r.get(2)?,
        template: r.get(3)?,
        cpu_millis: r.get(4)?,
        memory_mb: r.get(5)?,
        envs: r.get(6)?,
        metadata: r.get(7)?,
        state: r.get(8)?,
        host: r.get(9)?,
        port: r.get(10)?,
        token: r.get(11)?,
        created_at: r.get(12)?,
        expires_at: r.get(13)?,
        disk_mb: r.get(14)?,
        ssh_port: r.get(15)?,
    })
}

/// A row of `EXEC_SELECT`.
pub(super) fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        sandbox_id: r.get(2)?,
        language: r.get(3)?,
        status: r.get(4)?,
        phase: r.get(5)?,
        exit_code: r.get(6)?,
        error: r.get(7)?,
        plan: r.get(8)?,
        command_id: r.get(9)?,
        stdout_offset: r.get::<_, i64>(10)? as u64,
        stderr_offset: r.get::<_, i64>(11)? as u64,
        last_seq: r.get::<_, i64>(12)? as u64,
        target: Receiver::from_stored(r.get(13)?),
        created_at: r.get(14)?,
        deadline: r.get(15)?,
        finished_at: r.get(16)?,
        oom_killed: r.get(17)?,
    })
}

/// A row of `RUNNER_COLS`.
pub(super) fn runner_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunnerRow> {
    Ok(RunnerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        control_url: r.get(2)?,
        advertise_host: r.get(3)?,
        capacity: r.get(4)?,
        backend: r.get(5)?,
        last_heartbeat: r.get(6)?,
    })
}

/// A row of `id, name, admin, created_at, revoked` of `keys`.
pub(super) fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow { id: r.get(0)?, name: r.get(1)?, admin: r.get(2)?, created_at: r.get(3)?, revoked: r.get(4)? })
}

/// A row of `seq, type, phase, data` of `chunks`.
pub(super) fn chunk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Chunk> {
    Ok(Chunk { seq: r.get::<_, i64>(0)? as u64, kind: r.get(1)?, phase: r.get(2)?, data: r.get(3)? })
}

/// A row of `id, admin` of `keys`.
pub(super) fn principal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Principal> {
    Ok(Principal { key_id: r.get(0)?, admin: r.get(1)? })
}
