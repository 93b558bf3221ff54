//! State: keys, sessions, runners, sandboxes, executions and every chunk of every
//! execution's output, behind one interface ([`StateStore`], `interface.rs`) that the
//! rest of the server holds as `Arc<dyn StateStore>`. [`Store`] keeps it in one SQLite
//! file (WAL mode, `synchronous=NORMAL`).
//!
//! Three connections, so that the output path never waits for the disk's flushes nor
//! for a long read:
//! - the main one, behind one lock, for every call but [`ExecutionStore::chunks`]: short
//!   and synchronous. Output chunks ([`ExecutionStore::append_chunk`]) reach it only
//!   through the store's writer thread, which commits all the chunks waiting in one
//!   transaction (group commit) and only then hands each back to its caller as stored;
//! - a read connection for [`ExecutionStore::chunks`] (replays, `GET …/logs`), which may
//!   read megabytes, concurrently with the writer (WAL readers never block the writer);
//! - a checkpointer thread's, which copies the WAL back into the database file (and
//!   does the flushes that takes) in the background; the main connection never
//!   checkpoints on commit, except to bound the WAL under endless load.
//!
//! Files: `schema.rs` (the schema, connection setup), `migrate.rs` (what older
//! databases need), `rows.rs` (the row types and their SQLite mappers), `writer.rs` (the
//! writer and the checkpointer), the queries by domain (`keys.rs`, `runners.rs`,
//! `sandboxes.rs`, `executions.rs`, `prune.rs`), `error.rs` ([`StoreError`]).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use rusqlite::Connection;

use crate::seal::Sealer;

mod error;
mod executions;
mod interface;
mod keys;
mod migrate;
mod prune;
mod rows;
mod runners;
mod sandboxes;
mod schema;
mod writer;

#[cfg(test)]
mod contract;
#[cfg(test)]
mod tests;

pub(crate) use error::{Result, StoreError};
/// For tests outside the store that call the SQLite store's methods directly.
#[cfg(test)]
pub(crate) use interface::{ExecutionStore, KeyStore, SandboxStore};
pub(crate) use interface::{PruneStore, StateStore};
pub(crate) use rows::{Chunk, ExecutionRow, Outcome, Principal, Receiver, RunnerRow, SandboxRow, Usage};

/// The SQLite store.
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Seals sandbox tokens (`seal.rs`), with the key in `token-key` beside the database.
    sealer: Sealer,
    /// Reads of chunks, concurrent with the writer.
    reader: Mutex<Connection>,
    /// To the writer thread.
    appends: mpsc::Sender<writer::Append>,
}

impl Store {
    /// Opens (or creates) the database at `path`, private to this user (0600: SQLite
    /// gives its WAL and shared-memory files the database's mode), with the token key
    /// `token-key` beside it (made when missing). Tokens stored before sealing are
    /// sealed now.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file_error = |p: &Path| {
            let path = p.display().to_string();
            move |source| StoreError::File { path, source }
        };
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(file_error(path))?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_error(Path::new(&p))(e)),
                _ => {}
            }
        }
        let sealer = Sealer::from_key_file(&path.with_file_name("token-key"))?;
        let conn = schema::connect(path)?;
        migrate::schema(&conn)?;
        migrate::seal_plain_tokens(&conn, &sealer)?;
        // Checkpoints (and their fsyncs) belong to the checkpointer thread, not to commits.
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let conn = Arc::new(Mutex::new(conn));
        let reader = Mutex::new(schema::connect(path)?);
        let appends = writer::start(path, &conn)?;
        Ok(Store { conn, sealer, reader, appends })
    }

    /// The main connection.
    fn db(&self) -> MutexGuard<'_, Connection> {
        schema::lock(&self.conn)
    }
}
