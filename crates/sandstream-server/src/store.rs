//! State in one SQLite file: keys, sessions, runners, sandboxes, executions and every
//! chunk of every execution's output. Calls are short and synchronous under one lock
//! (SQLite in WAL mode with `synchronous=NORMAL`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::AppResult;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, admin INTEGER NOT NULL,
    created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, kind TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runners (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, control_url TEXT NOT NULL, advertise_host TEXT NOT NULL,
    capacity INTEGER NOT NULL, backend TEXT NOT NULL, last_heartbeat INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, runner_id TEXT NOT NULL, template TEXT NOT NULL,
    cpu_millis INTEGER NOT NULL, memory_mb INTEGER NOT NULL, envs TEXT NOT NULL, metadata TEXT NOT NULL,
    state TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, token TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sandboxes_tenant ON sandboxes(tenant, state);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, sandbox_id TEXT NOT NULL, language TEXT NOT NULL,
    status TEXT NOT NULL, phase TEXT NOT NULL, exit_code INTEGER, error TEXT,
    plan TEXT NOT NULL, command_id TEXT, stdout_offset INTEGER NOT NULL DEFAULT 0,
    stderr_offset INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL, created_at INTEGER NOT NULL, deadline INTEGER NOT NULL, finished_at INTEGER);
CREATE TABLE IF NOT EXISTS chunks (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, phase TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
";

pub(crate) struct Store {
    conn: Mutex<Connection>,
}

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
    pub state: String,
    pub host: String,
    pub port: u16,
    pub token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ExecutionRow {
    pub id: String,
    pub tenant: String,
    pub sandbox_id: String,
    pub language: String,
    pub status: String,
    pub phase: String,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub plan: String,
    pub command_id: Option<String>,
    pub stdout_offset: u64,
    pub stderr_offset: u64,
    pub last_seq: u64,
    pub target: String,
    pub created_at: i64,
    pub deadline: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Chunk {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub phase: String,
    pub data: String,
}

const SANDBOX_COLS: &str = "id, tenant, runner_id, template, cpu_millis, memory_mb, envs, metadata, state, host, port, token, created_at, expires_at";
const EXEC_COLS: &str = "id, tenant, sandbox_id, language, status, phase, exit_code, error, plan, command_id, \
     stdout_offset, stderr_offset, last_seq, target, created_at, deadline, finished_at";

fn sandbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRow> {
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
    })
}

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
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
        target: r.get(13)?,
        created_at: r.get(14)?,
        deadline: r.get(15)?,
        finished_at: r.get(16)?,
    })
}

fn runner_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunnerRow> {
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

impl Store {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Store> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- keys and sessions

    pub(crate) fn insert_key(&self, id: &str, name: &str, hash: &str, admin: bool, now: i64) -> AppResult<()> {
        self.db().execute(
            "INSERT INTO keys (id, name, hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, hash, admin, now],
        )?;
        Ok(())
    }

    pub(crate) fn admin_key_exists(&self) -> AppResult<bool> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM keys WHERE admin = 1 AND revoked = 0", [], |r| r.get::<_, i64>(0))?
            > 0)
    }

    pub(crate) fn key_by_hash(&self, hash: &str) -> AppResult<Option<Principal>> {
        Ok(self
            .db()
            .query_row("SELECT id, admin FROM keys WHERE hash = ?1 AND revoked = 0", [hash], |r| {
                Ok(Principal { key_id: r.get(0)?, admin: r.get(1)? })
            })
            .optional()?)
    }

    pub(crate) fn list_keys(&self) -> AppResult<Vec<KeyRow>> {
        let db = self.db();
        let mut st = db.prepare("SELECT id, name, admin, created_at, revoked FROM keys ORDER BY created_at")?;
        let rows = st.query_map([], |r| {
            Ok(KeyRow { id: r.get(0)?, name: r.get(1)?, admin: r.get(2)?, created_at: r.get(3)?, revoked: r.get(4)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// True when a live key was revoked.
    pub(crate) fn revoke_key(&self, id: &str) -> AppResult<bool> {
        let db = self.db();
        let n = db.execute("UPDATE keys SET revoked = 1 WHERE id = ?1 AND revoked = 0", [id])?;
        db.execute("DELETE FROM sessions WHERE key_id = ?1", [id])?;
        Ok(n > 0)
    }

    pub(crate) fn insert_session(&self, hash: &str, key_id: &str, kind: &str, expires_at: i64) -> AppResult<()> {
        self.db().execute(
            "INSERT INTO sessions (hash, key_id, kind, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, key_id, kind, expires_at],
        )?;
        Ok(())
    }

    /// A live session of `kind`; a `login` one is deleted as it is read (it works once).
    pub(crate) fn session(&self, hash: &str, kind: &str, now: i64) -> AppResult<Option<Principal>> {
        let db = self.db();
        let found = db
            .query_row(
                "SELECT k.id, k.admin FROM sessions s JOIN keys k ON k.id = s.key_id
                 WHERE s.hash = ?1 AND s.kind = ?2 AND s.expires_at > ?3 AND k.revoked = 0",
                params![hash, kind, now],
                |r| Ok(Principal { key_id: r.get(0)?, admin: r.get(1)? }),
            )
            .optional()?;
        if kind == "login" {
            db.execute("DELETE FROM sessions WHERE hash = ?1", [hash])?;
        }
        Ok(found)
    }

    // ---- runners

    pub(crate) fn upsert_runner(&self, r: &RunnerRow) -> AppResult<()> {
        self.db().execute(
            "INSERT INTO runners (id, name, control_url, advertise_host, capacity, backend, last_heartbeat)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET name = ?2, control_url = ?3, advertise_host = ?4, capacity = ?5,
                 backend = ?6, last_heartbeat = ?7",
            params![r.id, r.name, r.control_url, r.advertise_host, r.capacity, r.backend, r.last_heartbeat],
        )?;
        Ok(())
    }

    pub(crate) fn touch_runner(&self, id: &str, now: i64) -> AppResult<bool> {
        Ok(self.db().execute("UPDATE runners SET last_heartbeat = ?2 WHERE id = ?1", params![id, now])? > 0)
    }

    pub(crate) fn runner(&self, id: &str) -> AppResult<Option<RunnerRow>> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, name, control_url, advertise_host, capacity, backend, last_heartbeat FROM runners WHERE id = ?1",
                [id],
                runner_row,
            )
            .optional()?)
    }

    pub(crate) fn runners(&self) -> AppResult<Vec<RunnerRow>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, name, control_url, advertise_host, capacity, backend, last_heartbeat FROM runners ORDER BY id",
        )?;
        let rows = st.query_map([], runner_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sandboxes counted against each runner's capacity.
    pub(crate) fn live_count(&self, runner_id: &str) -> AppResult<u32> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM sandboxes WHERE runner_id = ?1 AND state IN ('running', 'lost')",
            [runner_id],
            |r| r.get(0),
        )?)
    }

    // ---- sandboxes

    pub(crate) fn insert_sandbox(&self, s: &SandboxRow) -> AppResult<()> {
        self.db().execute(
            &format!("INSERT INTO sandboxes ({SANDBOX_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                s.id,
                s.tenant,
                s.runner_id,
                s.template,
                s.cpu_millis,
                s.memory_mb,
                s.envs,
                s.metadata,
                s.state,
                s.host,
                s.port,
                s.token,
                s.created_at,
                s.expires_at
            ],
        )?;
        Ok(())
    }

    pub(crate) fn sandbox(&self, id: &str) -> AppResult<Option<SandboxRow>> {
        Ok(self
            .db()
            .query_row(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE id = ?1"), [id], sandbox_row)
            .optional()?)
    }

    pub(crate) fn sandboxes_of(&self, tenant: &str) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {SANDBOX_COLS} FROM sandboxes WHERE tenant = ?1 AND state != 'killed' ORDER BY created_at"
        ))?;
        let rows = st.query_map([tenant], sandbox_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn sandboxes_on(&self, runner_id: &str) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st =
            db.prepare(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE runner_id = ?1 AND state != 'killed'"))?;
        let rows = st.query_map([runner_id], sandbox_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn expired_sandboxes(&self, now: i64) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st =
            db.prepare(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE state != 'killed' AND expires_at <= ?1"))?;
        let rows = st.query_map([now], sandbox_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn set_sandbox_state(&self, id: &str, state: &str) -> AppResult<()> {
        self.db().execute("UPDATE sandboxes SET state = ?2 WHERE id = ?1", params![id, state])?;
        Ok(())
    }

    pub(crate) fn set_sandbox_conn(&self, id: &str, host: &str, port: u16, token: &str) -> AppResult<()> {
        self.db().execute(
            "UPDATE sandboxes SET host = ?2, port = ?3, token = ?4, state = 'running' WHERE id = ?1 AND state != 'killed'",
            params![id, host, port, token],
        )?;
        Ok(())
    }

    pub(crate) fn set_sandbox_expiry(&self, id: &str, expires_at: i64) -> AppResult<()> {
        self.db().execute("UPDATE sandboxes SET expires_at = ?2 WHERE id = ?1", params![id, expires_at])?;
        Ok(())
    }

    /// Marks every running sandbox of a silent runner as lost.
    pub(crate) fn mark_runner_lost(&self, runner_id: &str) -> AppResult<usize> {
        Ok(self
            .db()
            .execute("UPDATE sandboxes SET state = 'lost' WHERE runner_id = ?1 AND state = 'running'", [runner_id])?)
    }

    // ---- executions

    pub(crate) fn insert_execution(&self, e: &ExecutionRow) -> AppResult<()> {
        self.db().execute(
            &format!(
                "INSERT INTO executions ({EXEC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ),
            params![
                e.id,
                e.tenant,
                e.sandbox_id,
                e.language,
                e.status,
                e.phase,
                e.exit_code,
                e.error,
                e.plan,
                e.command_id,
                e.stdout_offset as i64,
                e.stderr_offset as i64,
                e.last_seq as i64,
                e.target,
                e.created_at,
                e.deadline,
                e.finished_at
            ],
        )?;
        Ok(())
    }

    pub(crate) fn execution(&self, id: &str) -> AppResult<Option<ExecutionRow>> {
        Ok(self
            .db()
            .query_row(&format!("SELECT {EXEC_COLS} FROM executions WHERE id = ?1"), [id], exec_row)
            .optional()?)
    }

    pub(crate) fn running_executions(&self) -> AppResult<Vec<ExecutionRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!("SELECT {EXEC_COLS} FROM executions WHERE status = 'running'"))?;
        let rows = st.query_map([], exec_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A phase's command started: later output resumes from these offsets.
    pub(crate) fn set_command(&self, id: &str, phase: &str, command_id: &str) -> AppResult<()> {
        self.db().execute(
            "UPDATE executions SET phase = ?2, command_id = ?3, stdout_offset = 0, stderr_offset = 0 WHERE id = ?1",
            params![id, phase, command_id],
        )?;
        Ok(())
    }

    /// Stores one chunk and the byte offsets it brings the execution to, atomically.
    pub(crate) fn append_chunk(&self, id: &str, chunk: &Chunk, offsets: (u64, u64)) -> AppResult<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO chunks (execution_id, seq, type, phase, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, chunk.seq as i64, chunk.kind, chunk.phase, chunk.data],
        )?;
        tx.execute(
            "UPDATE executions SET last_seq = ?2, stdout_offset = ?3, stderr_offset = ?4 WHERE id = ?1",
            params![id, chunk.seq as i64, offsets.0 as i64, offsets.1 as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn set_offsets(&self, id: &str, offsets: (u64, u64)) -> AppResult<()> {
        self.db().execute(
            "UPDATE executions SET stdout_offset = ?2, stderr_offset = ?3 WHERE id = ?1",
            params![id, offsets.0 as i64, offsets.1 as i64],
        )?;
        Ok(())
    }

    pub(crate) fn finish_execution(
        &self,
        id: &str,
        status: &str,
        exit_code: i32,
        error: Option<&str>,
        now: i64,
    ) -> AppResult<()> {
        self.db().execute(
            "UPDATE executions SET status = ?2, exit_code = ?3, error = ?4, finished_at = ?5 WHERE id = ?1 AND status = 'running'",
            params![id, status, exit_code, error, now],
        )?;
        Ok(())
    }

    pub(crate) fn chunks(&self, id: &str, after_seq: u64, limit: usize) -> AppResult<Vec<Chunk>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT seq, type, phase, data FROM chunks WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![id, after_seq as i64, limit as i64], |r| {
            Ok(Chunk { seq: r.get::<_, i64>(0)? as u64, kind: r.get(1)?, phase: r.get(2)?, data: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
