//! Deleting what retention (`retention.rs`) decided to delete, in steps. Each step holds
//! the main connection's lock, which the writer thread's group commits of live output
//! also take, for at most [`STEP`] (and one row more), so no output waits long behind a
//! prune; the caller pauses between steps so that the writer gets its turn. Going through
//! the same lock rather than a connection of its own also means SQLite never answers
//! "busy" to either side.
//!
//! Also the one-time switch of a database made before retention to giving freed pages
//! back (`VACUUM`, SQLite's alone: it is not part of the interface), made at start.

use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::error::Result;
use super::interface::PruneStore;
use super::schema::lock;

/// Longest one step holds the store: past it, the step ends after the row at hand.
const STEP: Duration = Duration::from_millis(5);
/// Most rows one step deletes.
const STEP_ROWS: usize = 256;

impl Store {
    /// Whether freed pages can be given back to the file system bit by bit
    /// (`PRAGMA incremental_vacuum`): true for every database made since retention.
    pub(crate) fn incremental_vacuum(&self) -> Result<bool> {
        Ok(lock(&self.conn).query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))? == 2)
    }

    /// Rewrites the whole database once (`VACUUM`) so that it gives freed pages back from
    /// then on. Holds the store for as long as that takes, and needs free disk of about
    /// twice the database's size (a copy, and the write-ahead log of it); on failure the
    /// database is as it was.
    pub(crate) fn switch_to_incremental_vacuum(&self) -> Result<()> {
        lock(&self.conn).execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")?;
        Ok(())
    }
}

impl PruneStore for Store {
    fn pages(&self) -> Result<(u64, u64, u64)> {
        let db = lock(&self.conn);
        let get = |pragma: &str| db.query_row(pragma, [], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as u64);
        Ok((get("PRAGMA page_count")?, get("PRAGMA freelist_count")?, get("PRAGMA page_size")?))
    }

    /// One step: deletes finished executions that finished before `before` (ms since the
    /// epoch), oldest first, at most `max`. A running execution is never touched. From
    /// the commit on, a GET of one answers 404; its chunks are listed in `pruning` for
    /// `drop_pruned_chunks`. Returns how many went.
    fn prune_executions(&self, before: i64, max: usize) -> Result<usize> {
        let mut db = lock(&self.conn);
        let started = Instant::now();
        let tx = db.transaction()?;
        let ids: Vec<String> = {
            // The partial index `executions_finished` (migrate.rs) serves this in order.
            let mut st = tx.prepare_cached(
                "SELECT id FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?1 \
                 AND status != 'running' ORDER BY finished_at LIMIT ?2",
            )?;
            let rows = st.query_map(params![before, max.min(STEP_ROWS) as i64], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut n = 0;
        for id in &ids {
            tx.prepare_cached("INSERT OR IGNORE INTO pruning (execution_id) VALUES (?1)")?.execute([id])?;
            tx.prepare_cached("DELETE FROM progress WHERE execution_id = ?1")?.execute([id])?;
            tx.prepare_cached("DELETE FROM executions WHERE id = ?1")?.execute([id])?;
            n += 1;
            if started.elapsed() >= STEP {
                break;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// One step: deletes chunks of executions listed in `pruning`, oldest seq first, and
    /// an execution's entry once it has none left. Returns how many chunks went and
    /// whether any are left.
    fn drop_pruned_chunks(&self) -> Result<(usize, bool)> {
        let mut db = lock(&self.conn);
        let started = Instant::now();
        let tx = db.transaction()?;
        let mut n = 0;
        let mut left = false;
        while let Some(id) = tx
            .prepare_cached("SELECT execution_id FROM pruning LIMIT 1")?
            .query_row([], |r| r.get::<_, String>(0))
            .optional()?
        {
            let want = STEP_ROWS - n;
            let seqs: Vec<i64> = {
                let mut st =
                    tx.prepare_cached("SELECT seq FROM chunks WHERE execution_id = ?1 ORDER BY seq LIMIT ?2")?;
                let rows = st.query_map(params![id, want as i64], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut deleted = 0;
            for seq in &seqs {
                tx.prepare_cached("DELETE FROM chunks WHERE execution_id = ?1 AND seq = ?2")?
                    .execute(params![id, seq])?;
                deleted += 1;
                if started.elapsed() >= STEP {
                    break;
                }
            }
            n += deleted;
            if deleted == seqs.len() && seqs.len() < want {
                tx.prepare_cached("DELETE FROM pruning WHERE execution_id = ?1")?.execute([&id])?;
            }
            if n >= STEP_ROWS || started.elapsed() >= STEP {
                left = true;
                break;
            }
        }
        tx.commit()?;
        Ok((n, left))
    }

    /// One step: deletes the rows of killed sandboxes that expired before `before` (a kill
    /// ends a sandbox at its expiry or sooner, so each of these ended before then).
    /// Returns how many went.
    fn prune_sandboxes(&self, before: i64) -> Result<usize> {
        // The partial index `sandboxes_ended` (migrate.rs) serves the inner select.
        Ok(lock(&self.conn)
            .prepare_cached(
                "DELETE FROM sandboxes WHERE id IN \
             (SELECT id FROM sandboxes WHERE state = 'killed' AND expires_at < ?1 LIMIT ?2)",
            )?
            .execute(params![before, STEP_ROWS as i64])?)
    }

    /// Deletes sessions that expired by `now`; returns how many.
    fn prune_sessions(&self, now: i64) -> Result<usize> {
        Ok(lock(&self.conn).prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?.execute([now])?)
    }

    /// One step: gives up to `max` free pages (at most [`STEP_ROWS`]) back to the file
    /// system (`PRAGMA incremental_vacuum`: pages at the end of the file move into free
    /// ones; the file is cut when the checkpointer next copies the log back). Returns the
    /// free pages left. Does nothing on a database that is not in incremental mode.
    fn vacuum_step(&self, max: u64) -> Result<u64> {
        let db = lock(&self.conn);
        // `incremental_vacuum(0)` would give back every free page in one go.
        if max > 0 {
            db.execute_batch(&format!("PRAGMA incremental_vacuum({});", max.min(STEP_ROWS as u64)))?;
        }
        Ok(db.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    }
}
