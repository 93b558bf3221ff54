//! The schema as the first release made it, and how each of the store's connections is
//! set up (WAL, `synchronous=NORMAL`, a bounded WAL file). What was added to the schema
//! since is in `migrate.rs`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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
-- A running execution's last chunk and the agent offsets it brings it to, rewritten with
-- every batch of chunks. Kept apart from `executions`, whose rows carry the program (up
-- to a megabyte, rewritten whole by any UPDATE), and folded into it when the execution
-- finishes. A database from before this table keeps these in `executions`.
CREATE TABLE IF NOT EXISTS progress (
    execution_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, stdout_offset INTEGER NOT NULL,
    stderr_offset INTEGER NOT NULL) WITHOUT ROWID;
";

/// The WAL file is truncated back to this size when it starts over.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// A connection to the database at `path`, in WAL mode.
pub(super) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // auto_vacuum first: once in WAL mode a new database has its first page and the
    // setting no longer applies (`migrate.rs` switches older databases).
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; \
         PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A connection's lock, even if a thread panicked holding it (SQLite's own state stays
/// consistent: a transaction that was open is rolled back when its guard drops).
pub(super) fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
