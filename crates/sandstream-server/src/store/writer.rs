//! The two threads behind the main connection: the writer, which stores every output
//! chunk waiting in one transaction (group commit) and only then hands each back to its
//! caller, and the checkpointer, which copies the WAL back into the database file (and
//! does the flushes that takes) in the background, on a connection of its own.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::error::{Result, StoreError};
use super::rows::Chunk;
use super::schema::{connect, lock};

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
/// A batch slower than this is logged (debug).
const SLOW_BATCH: Duration = Duration::from_millis(10);

/// Sets a running execution's progress (its last chunk and the agent offsets it brings
/// it to): `?1` id, `?2` last seq, `?3` stdout offset, `?4` stderr offset.
pub(super) const SET_PROGRESS: &str = "INSERT INTO progress (execution_id, last_seq, stdout_offset, stderr_offset) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT(execution_id) DO UPDATE SET last_seq = excluded.last_seq, \
     stdout_offset = excluded.stdout_offset, stderr_offset = excluded.stderr_offset";

/// A chunk on its way to the writer thread, and where to hand it back once stored.
pub(super) struct Append {
    pub execution_id: String,
    pub chunk: Chunk,
    pub offsets: (u64, u64),
    pub stored: oneshot::Sender<(Chunk, Result<()>)>,
}

/// Tells the writer that the checkpointer found a WAL too long to ever catch up with.
#[derive(Default)]
struct WalState {
    catch_up: AtomicBool,
}

/// Starts the writer on `conn` (the main connection) and the checkpointer on a new
/// connection to `path`; returns the way to the writer. The writer ends when every
/// sender is dropped, the checkpointer when `conn` is.
pub(super) fn start(path: &Path, conn: &Arc<Mutex<Connection>>) -> Result<mpsc::Sender<Append>> {
    let wal = Arc::new(WalState::default());
    let (appends, rx) = mpsc::channel();
    let (c, w) = (conn.clone(), wal.clone());
    std::thread::Builder::new()
        .name("sandstream-store".into())
        .spawn(move || writer(c, rx, w))
        .map_err(|source| StoreError::Thread { name: "writer", source })?;
    let (c, w) = (connect(path)?, wal);
    let alive = Arc::downgrade(conn);
    std::thread::Builder::new()
        .name("sandstream-ckpt".into())
        .spawn(move || checkpointer(c, alive, w))
        .map_err(|source| StoreError::Thread { name: "checkpointer", source })?;
    Ok(appends)
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
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(e) if batch.len() == 1 => vec![Err(StoreError::from(e))],
                Err(_) => batch
                    .iter()
                    .map(|a| store_batch(&mut db, std::slice::from_ref(a)).map_err(StoreError::from))
                    .collect(),
            }
        }))
        .unwrap_or_else(|_| batch.iter().map(|_| Err(StoreError::WriterPanicked)).collect::<Vec<Result<()>>>());
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
