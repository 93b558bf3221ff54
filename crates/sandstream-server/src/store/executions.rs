//! Executions and their chunks in SQLite. Chunks are written by the writer thread
//! (`writer.rs`) and read on the read connection; a running execution's progress lives
//! in `progress` until it finishes (`schema.rs`).

use rusqlite::{OptionalExtension, params};
use tokio::sync::oneshot;

use super::Store;
use super::error::{AppendError, Result, StoreError};
use super::interface::{BoxFuture, ExecutionStore};
use super::rows::{Chunk, EXEC_COLS, EXEC_SELECT, ExecutionRow, Outcome, chunk_row, exec_row};
use super::schema::lock;
use super::writer::{Append, SET_PROGRESS};
use crate::state::Phase;

impl ExecutionStore for Store {
    fn insert_execution(&self, e: &ExecutionRow) -> Result<()> {
        self.db().execute(
            &format!(
                "INSERT INTO executions ({EXEC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
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
                e.finished_at,
                e.oom_killed
            ],
        )?;
        Ok(())
    }

    fn execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        Ok(self.db().prepare_cached(&format!("{EXEC_SELECT} WHERE e.id = ?1"))?.query_row([id], exec_row).optional()?)
    }

    fn running_executions(&self) -> Result<Vec<ExecutionRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!("{EXEC_SELECT} WHERE e.status = 'running'"))?;
        let rows = st.query_map([], exec_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_command(&self, id: &str, phase: Phase, command_id: &str, last_seq: u64) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.prepare_cached("UPDATE executions SET phase = ?2, command_id = ?3 WHERE id = ?1")?
            .execute(params![id, phase, command_id])?;
        tx.prepare_cached(SET_PROGRESS)?.execute(params![id, last_seq as i64, 0, 0])?;
        tx.commit()?;
        Ok(())
    }

    /// Through the writer thread: chunks of all executions that arrive together share
    /// one transaction (group commit), so the store is never the bottleneck of many
    /// streams.
    fn append_chunk<'a>(
        &'a self,
        id: &'a str,
        chunk: Chunk,
        offsets: (u64, u64),
    ) -> BoxFuture<'a, std::result::Result<Chunk, AppendError>> {
        Box::pin(async move {
            let (stored, done) = oneshot::channel();
            if let Err(std::sync::mpsc::SendError(a)) =
                self.appends.send(Append { execution_id: id.to_string(), chunk, offsets, stored })
            {
                return Err((StoreError::WriterGone, Some(a.chunk)));
            }
            match done.await {
                Ok((chunk, Ok(()))) => Ok(chunk),
                Ok((chunk, Err(e))) => Err((e, Some(chunk))),
                Err(_) => Err((StoreError::WriterGone, None)),
            }
        })
    }

    fn set_offsets(&self, id: &str, last_seq: u64, offsets: (u64, u64)) -> Result<()> {
        self.db().prepare_cached(SET_PROGRESS)?.execute(params![
            id,
            last_seq as i64,
            offsets.0 as i64,
            offsets.1 as i64
        ])?;
        Ok(())
    }

    /// Folds the execution's `progress` row into its row, and deletes it.
    fn finish_execution(&self, id: &str, outcome: &Outcome, now: i64) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx
            .prepare_cached(
                "UPDATE executions SET status = ?2, exit_code = ?3, error = ?4, finished_at = ?5, oom_killed = ?6,
                     last_seq = COALESCE((SELECT last_seq FROM progress WHERE execution_id = ?1), last_seq),
                     stdout_offset = COALESCE((SELECT stdout_offset FROM progress WHERE execution_id = ?1), stdout_offset),
                     stderr_offset = COALESCE((SELECT stderr_offset FROM progress WHERE execution_id = ?1), stderr_offset)
                 WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![id, outcome.status, outcome.exit_code, outcome.error, now, outcome.oom_killed])?;
        if n > 0 {
            tx.prepare_cached("DELETE FROM progress WHERE execution_id = ?1")?.execute([id])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn output_bytes(&self, id: &str) -> Result<u64> {
        let db = lock(&self.reader);
        let n: i64 = db
            .prepare_cached("SELECT COALESCE(SUM(length(CAST(data AS BLOB))), 0) FROM chunks WHERE execution_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// On the read connection: never waits for the writer, nor makes it wait.
    fn chunks(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Chunk>> {
        let db = lock(&self.reader);
        let mut st = db.prepare_cached(
            "SELECT seq, type, phase, data FROM chunks WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = st.query_map(params![id, after_seq as i64, limit as i64], chunk_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
