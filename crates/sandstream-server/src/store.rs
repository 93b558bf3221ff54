//! State in one SQLite file: keys, sessions, runners, sandboxes, executions and every
//! chunk of every execution's output (SQLite in WAL mode with `synchronous=NORMAL`).
//!
//! Three connections, so that the output path never waits for the disk's flushes nor
//! for a long read:
//! - the main one, behind one lock, for every call but [`Store::chunks`]: short and
//!   synchronous. Output chunks ([`Store::append_chunk`]) reach it only through the
//!   store's writer thread, which commits all the chunks waiting in one transaction
//!   (group commit) and only then hands each back to its caller as stored;
//! - a read connection for [`Store::chunks`] (replays, `GET …/logs`), which may read
//!   megabytes, concurrently with the writer (WAL readers never block the writer);
//! - a checkpointer thread's, which copies the WAL back into the database file (and
//!   does the flushes that takes) in the background; the main connection never
//!   checkpoints on commit, except to bound the WAL under endless load.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult};
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::limits::Usage;
use crate::seal::Sealer;

mod migrate;
mod prune;

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
-- A running execution's last chunk and the agent offsets it brings it to, rewritten with
-- every batch of chunks. Kept apart from `executions`, whose rows carry the program (up
-- to a megabyte, rewritten whole by any UPDATE), and folded into it when the execution
-- finishes. A database from before this table keeps these in `executions`.
CREATE TABLE IF NOT EXISTS progress (
    execution_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, stdout_offset INTEGER NOT NULL,
    stderr_offset INTEGER NOT NULL) WITHOUT ROWID;
";

/// Most chunks committed in one transaction.
const BATCH_MAX_CHUNKS: usize = 1024;
/// Most bytes of chunk data committed in one transaction (more waits for the next). A
/// transaction's pages stay in the writer's memory until it commits, so this bounds it.
const BATCH_MAX_BYTES: usize = 1 << 20;
/// WAL frames (pages) past which the writer checkpoints itself once, so that the WAL
/// starts over even if chunks never stop coming (the background checkpointer alone
/// never catches up with a writer that never pauses, and the WAL would grow forever).
const WAL_CATCH_UP_FRAMES: i64 = 16_384;
/// How often the checkpointer looks for work while there is some, and while there is
/// none. Each checkpoint that copies anything costs two fsyncs, which on ext4 can hold
/// up the writer's WAL appends for a moment: a few per second are plenty.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(200);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// The WAL file is truncated back to this size when it starts over.
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// A batch slower than this is logged (debug).
const SLOW_BATCH: Duration = Duration::from_millis(10);

pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Seals sandbox tokens (`seal.rs`), with the key in `token-key` beside the database.
    sealer: Sealer,
    /// Reads of chunks, concurrent with the writer.
    reader: Mutex<Connection>,
    /// To the writer thread.
    appends: mpsc::Sender<Append>,
}

/// A chunk on its way to the writer thread, and where to hand it back once stored.
struct Append {
    execution_id: String,
    chunk: Chunk,
    offsets: (u64, u64),
    stored: oneshot::Sender<(Chunk, Result<(), String>)>,
}

/// A chunk that could not be stored: why, and the chunk (unless the writer thread is
/// gone with it).
pub(crate) type AppendError = (AppError, Option<Chunk>);

/// Tells the writer that the checkpointer found a WAL too long to ever catch up with.
#[derive(Default)]
struct WalState {
    catch_up: AtomicBool,
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
    pub state: SandboxState,
    pub host: String,
    pub port: u16,
    pub token: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// What the key's disk quota counts (MiB): its `diskMb`, or the default it got.
    pub disk_mb: u32,
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
    fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored receiver. Databases from before this held a socket.io room name:
    /// `container-ID`, or a socket id.
    fn from_stored(text: String) -> Receiver {
        if let Ok(r) = serde_json::from_str(&text) {
            return r;
        }
        match text.strip_prefix("container-") {
            Some(id) => Receiver::Container(id.to_string()),
            None => Receiver::Socket(text),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Chunk {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub phase: Phase,
    pub data: String,
}

const SANDBOX_COLS: &str = "id, tenant, runner_id, template, cpu_millis, memory_mb, envs, metadata, state, host, port, token, created_at, expires_at, disk_mb";
const EXEC_COLS: &str = "id, tenant, sandbox_id, language, status, phase, exit_code, error, plan, command_id, \
     stdout_offset, stderr_offset, last_seq, target, created_at, deadline, finished_at";
/// `EXEC_COLS` of `executions e`, with a running execution's progress from `progress p`.
const EXEC_SELECT: &str = "SELECT e.id, e.tenant, e.sandbox_id, e.language, e.status, e.phase, e.exit_code, \
     e.error, e.plan, e.command_id, COALESCE(p.stdout_offset, e.stdout_offset), \
     COALESCE(p.stderr_offset, e.stderr_offset), COALESCE(p.last_seq, e.last_seq), e.target, e.created_at, \
     e.deadline, e.finished_at FROM executions e LEFT JOIN progress p ON p.execution_id = e.id";

/// Seals the tokens a database from before sealing holds in plain text.
fn seal_plain_tokens(conn: &Connection, sealer: &Sealer) -> anyhow::Result<()> {
    let plain: Vec<(String, String)> = {
        let mut st = conn.prepare("SELECT id, token FROM sandboxes WHERE token != '' AND token NOT LIKE 'seal1:%'")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, token) in plain {
        debug_assert!(!Sealer::is_sealed(&token));
        conn.execute("UPDATE sandboxes SET token = ?2 WHERE id = ?1", params![id, sealer.seal(&id, &token)?])?;
    }
    Ok(())
}

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
        disk_mb: r.get(14)?,
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
        target: Receiver::from_stored(r.get(13)?),
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

fn connect(path: &Path) -> rusqlite::Result<Connection> {
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

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores a batch of chunks, and for each execution the progress its last chunk brings,
/// in one transaction.
fn store_batch(db: &mut Connection, batch: &[Append]) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO chunks (execution_id, seq, type, phase, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for a in batch {
            let c = &a.chunk;
            insert.execute(params![a.execution_id, c.seq as i64, c.kind, c.phase, c.data])?;
        }
        let mut progress = tx.prepare_cached(SET_PROGRESS)?;
        let mut seen = HashSet::new();
        for a in batch.iter().rev() {
            if seen.insert(a.execution_id.as_str()) {
                progress.execute(params![
                    a.execution_id,
                    a.chunk.seq as i64,
                    a.offsets.0 as i64,
                    a.offsets.1 as i64
                ])?;
            }
        }
    }
    tx.commit()
}

const SET_PROGRESS: &str = "INSERT INTO progress (execution_id, last_seq, stdout_offset, stderr_offset) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT(execution_id) DO UPDATE SET last_seq = excluded.last_seq, \
     stdout_offset = excluded.stdout_offset, stderr_offset = excluded.stderr_offset";

/// The writer thread: takes every chunk waiting, commits them together, then answers
/// each. A batch that fails is retried one chunk per transaction, so one bad chunk
/// fails alone.
fn writer(conn: Arc<Mutex<Connection>>, appends: mpsc::Receiver<Append>, wal: Arc<WalState>) {
    while let Ok(first) = appends.recv() {
        let mut bytes = first.chunk.data.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX_CHUNKS && bytes < BATCH_MAX_BYTES {
            match appends.try_recv() {
                Ok(a) => {
                    bytes += a.chunk.data.len();
                    batch.push(a);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        // Every chunk gets an answer, even if SQLite's Rust wrapper were to panic.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut db = lock(&conn);
            if wal.catch_up.swap(false, Ordering::Relaxed) {
                // Copies what the checkpointer has not yet, so the next commit starts the WAL over.
                if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed");
                }
            }
            match store_batch(&mut db, &batch) {
                Ok(()) => vec![Ok(()); batch.len()],
                Err(e) if batch.len() == 1 => vec![Err(format!("database: {e}"))],
                Err(_) => batch
                    .iter()
                    .map(|a| store_batch(&mut db, std::slice::from_ref(a)).map_err(|e| format!("database: {e}")))
                    .collect(),
            }
        }))
        .unwrap_or_else(|_| vec![Err("the store's writer panicked".to_string()); batch.len()]);
        let took = started.elapsed();
        if took > SLOW_BATCH {
            tracing::debug!(chunks = batch.len(), bytes, ms = took.as_millis() as u64, "slow chunk batch");
        }
        for (a, r) in batch.into_iter().zip(results) {
            let _ = a.stored.send((a.chunk, r));
        }
    }
}

/// The checkpointer thread: copies committed pages from the WAL into the database file
/// while the writer carries on, until the store is gone.
fn checkpointer(conn: Connection, alive: Weak<Mutex<Connection>>, wal: Arc<WalState>) {
    let mut pause = CHECKPOINT_IDLE;
    loop {
        std::thread::sleep(pause);
        if alive.upgrade().is_none() {
            return;
        }
        // (busy, frames in the WAL, frames copied); PASSIVE never waits for anyone.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((_, frames, copied)) => {
                if frames >= WAL_CATCH_UP_FRAMES {
                    wal.catch_up.store(true, Ordering::Relaxed);
                }
                pause = if frames > 0 && copied < frames { CHECKPOINT_BUSY } else { CHECKPOINT_IDLE };
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed");
                pause = CHECKPOINT_IDLE;
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, private to this user (0600: SQLite
    /// gives its WAL and shared-memory files the database's mode), with the token key
    /// `token-key` beside it (made when missing). Tokens stored before sealing are
    /// sealed now.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Store> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let sealer = Sealer::from_key_file(&path.with_file_name("token-key"))?;
        let conn = connect(path)?;
        migrate::schema(&conn)?;
        seal_plain_tokens(&conn, &sealer)?;
        // Checkpoints (and their fsyncs) belong to the checkpointer thread, not to commits.
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let conn = Arc::new(Mutex::new(conn));
        let reader = Mutex::new(connect(path)?);
        let wal = Arc::new(WalState::default());
        let (appends, rx) = mpsc::channel();
        let (c, w) = (conn.clone(), wal.clone());
        std::thread::Builder::new().name("sandstream-store".into()).spawn(move || writer(c, rx, w))?;
        let (c, w) = (connect(path)?, wal.clone());
        let alive = Arc::downgrade(&conn);
        std::thread::Builder::new().name("sandstream-ckpt".into()).spawn(move || checkpointer(c, alive, w))?;
        Ok(Store { conn, sealer, reader, appends })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.conn)
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

    /// What tenant `tenant`'s sandboxes (running or lost) take.
    pub(crate) fn usage_of(&self, tenant: &str) -> AppResult<Usage> {
        Ok(self.db().query_row(
            "SELECT COUNT(*), COALESCE(SUM(memory_mb), 0), COALESCE(SUM(disk_mb), 0) FROM sandboxes \
             WHERE tenant = ?1 AND state IN ('running', 'lost')",
            [tenant],
            |r| {
                Ok(Usage {
                    count: r.get(0)?,
                    memory_mb: r.get::<_, i64>(1)? as u64,
                    disk_mb: r.get::<_, i64>(2)? as u64,
                })
            },
        )?)
    }

    /// Sandboxes counted against runner `runner_id`'s capacity.
    pub(crate) fn live_count(&self, runner_id: &str) -> AppResult<u32> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM sandboxes WHERE runner_id = ?1 AND state IN ('running', 'lost')",
            [runner_id],
            |r| r.get(0),
        )?)
    }

    // ---- sandboxes

    pub(crate) fn insert_sandbox(&self, s: &SandboxRow) -> AppResult<()> {
        let token = self.sealer.seal(&s.id, &s.token).map_err(AppError::internal)?;
        self.db().execute(
            &format!("INSERT INTO sandboxes ({SANDBOX_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
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
                token,
                s.created_at,
                s.expires_at,
                s.disk_mb
            ],
        )?;
        Ok(())
    }

    pub(crate) fn sandbox(&self, id: &str) -> AppResult<Option<SandboxRow>> {
        let row = self
            .db()
            .query_row(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE id = ?1"), [id], sandbox_row)
            .optional()?;
        row.map(|row| self.unseal(row)).transpose()
    }

    pub(crate) fn sandboxes_of(&self, tenant: &str) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {SANDBOX_COLS} FROM sandboxes WHERE tenant = ?1 AND state != 'killed' ORDER BY created_at"
        ))?;
        let rows = st.query_map([tenant], sandbox_row)?;
        self.unseal_all(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn sandboxes_on(&self, runner_id: &str) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st =
            db.prepare(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE runner_id = ?1 AND state != 'killed'"))?;
        let rows = st.query_map([runner_id], sandbox_row)?;
        self.unseal_all(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn expired_sandboxes(&self, now: i64) -> AppResult<Vec<SandboxRow>> {
        let db = self.db();
        let mut st =
            db.prepare(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE state != 'killed' AND expires_at <= ?1"))?;
        let rows = st.query_map([now], sandbox_row)?;
        self.unseal_all(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `row` with its token opened.
    fn unseal(&self, mut row: SandboxRow) -> AppResult<SandboxRow> {
        row.token = self.sealer.open(&row.id, &row.token).map_err(AppError::internal)?;
        Ok(row)
    }

    fn unseal_all(&self, rows: Vec<SandboxRow>) -> AppResult<Vec<SandboxRow>> {
        rows.into_iter().map(|r| self.unseal(r)).collect()
    }

    pub(crate) fn set_sandbox_state(&self, id: &str, state: SandboxState) -> AppResult<()> {
        self.db().execute("UPDATE sandboxes SET state = ?2 WHERE id = ?1", params![id, state])?;
        Ok(())
    }

    pub(crate) fn set_sandbox_conn(&self, id: &str, host: &str, port: u16, token: &str) -> AppResult<()> {
        let token = self.sealer.seal(id, token).map_err(AppError::internal)?;
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
                e.target.to_stored(),
                e.created_at,
                e.deadline,
                e.finished_at
            ],
        )?;
        Ok(())
    }

    pub(crate) fn execution(&self, id: &str) -> AppResult<Option<ExecutionRow>> {
        Ok(self.db().prepare_cached(&format!("{EXEC_SELECT} WHERE e.id = ?1"))?.query_row([id], exec_row).optional()?)
    }

    pub(crate) fn running_executions(&self) -> AppResult<Vec<ExecutionRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!("{EXEC_SELECT} WHERE e.status = 'running'"))?;
        let rows = st.query_map([], exec_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A phase's command started: later output resumes from offsets 0 of this command.
    /// `last_seq`: the execution's last chunk so far.
    pub(crate) fn set_command(&self, id: &str, phase: Phase, command_id: &str, last_seq: u64) -> AppResult<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.prepare_cached("UPDATE executions SET phase = ?2, command_id = ?3 WHERE id = ?1")?
            .execute(params![id, phase, command_id])?;
        tx.prepare_cached(SET_PROGRESS)?.execute(params![id, last_seq as i64, 0, 0])?;
        tx.commit()?;
        Ok(())
    }

    /// Stores one chunk and the byte offsets it brings the execution to, atomically,
    /// and hands the chunk back once it is committed. Chunks of all executions that
    /// arrive together share one transaction (the writer thread's group commit), so the
    /// store is never the bottleneck of many streams; no blocking call is made on the
    /// caller's thread. An execution's chunks must be appended one after another (each
    /// awaited).
    pub(crate) async fn append_chunk(&self, id: &str, chunk: Chunk, offsets: (u64, u64)) -> Result<Chunk, AppendError> {
        let gone = || AppError::Internal("the store's writer thread is gone".into());
        let (stored, done) = oneshot::channel();
        if let Err(mpsc::SendError(a)) =
            self.appends.send(Append { execution_id: id.to_string(), chunk, offsets, stored })
        {
            return Err((gone(), Some(a.chunk)));
        }
        match done.await {
            Ok((chunk, Ok(()))) => Ok(chunk),
            Ok((chunk, Err(e))) => Err((AppError::Internal(e), Some(chunk))),
            Err(_) => Err((gone(), None)),
        }
    }

    /// The offsets an execution's current command has reached (output held back mid-
    /// character is not counted); `last_seq`: its last chunk.
    pub(crate) fn set_offsets(&self, id: &str, last_seq: u64, offsets: (u64, u64)) -> AppResult<()> {
        self.db().prepare_cached(SET_PROGRESS)?.execute(params![
            id,
            last_seq as i64,
            offsets.0 as i64,
            offsets.1 as i64
        ])?;
        Ok(())
    }

    /// Records how an execution ended (unless it already has), folding its progress
    /// into its row.
    pub(crate) fn finish_execution(
        &self,
        id: &str,
        status: ExecStatus,
        exit_code: i32,
        error: Option<&str>,
        now: i64,
    ) -> AppResult<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx
            .prepare_cached(
                "UPDATE executions SET status = ?2, exit_code = ?3, error = ?4, finished_at = ?5,
                     last_seq = COALESCE((SELECT last_seq FROM progress WHERE execution_id = ?1), last_seq),
                     stdout_offset = COALESCE((SELECT stdout_offset FROM progress WHERE execution_id = ?1), stdout_offset),
                     stderr_offset = COALESCE((SELECT stderr_offset FROM progress WHERE execution_id = ?1), stderr_offset)
                 WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![id, status, exit_code, error, now])?;
        if n > 0 {
            tx.prepare_cached("DELETE FROM progress WHERE execution_id = ?1")?.execute([id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Bytes of output (UTF-8) an execution has stored so far, over all its chunks: what
    /// a restarted server counts against the output limit.
    pub(crate) fn output_bytes(&self, id: &str) -> AppResult<u64> {
        let db = lock(&self.reader);
        let n: i64 = db
            .prepare_cached("SELECT COALESCE(SUM(length(CAST(data AS BLOB))), 0) FROM chunks WHERE execution_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Chunks with `seq > after_seq`, in order, at most `limit`. Read on the read
    /// connection: never waits for the writer, nor makes it wait.
    pub(crate) fn chunks(&self, id: &str, after_seq: u64, limit: usize) -> AppResult<Vec<Chunk>> {
        let db = lock(&self.reader);
        let mut st = db.prepare_cached(
            "SELECT seq, type, phase, data FROM chunks WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![id, after_seq as i64, limit as i64], |r| {
            Ok(Chunk { seq: r.get::<_, i64>(0)? as u64, kind: r.get(1)?, phase: r.get(2)?, data: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests;
