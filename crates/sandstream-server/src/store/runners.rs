//! Runners in SQLite.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::error::Result;
use super::interface::RunnerStore;
use super::rows::{RUNNER_COLS, RunnerRow, runner_row};

impl RunnerStore for Store {
    fn upsert_runner(&self, r: &RunnerRow) -> Result<()> {
        self.db().execute(
            "INSERT INTO runners (id, name, control_url, advertise_host, capacity, backend, last_heartbeat)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET name = ?2, control_url = ?3, advertise_host = ?4, capacity = ?5,
                 backend = ?6, last_heartbeat = ?7",
            params![r.id, r.name, r.control_url, r.advertise_host, r.capacity, r.backend, r.last_heartbeat],
        )?;
        Ok(())
    }

    fn touch_runner(&self, id: &str, now: i64) -> Result<bool> {
        Ok(self.db().execute("UPDATE runners SET last_heartbeat = ?2 WHERE id = ?1", params![id, now])? > 0)
    }

    fn runner(&self, id: &str) -> Result<Option<RunnerRow>> {
        Ok(self
            .db()
            .query_row(&format!("SELECT {RUNNER_COLS} FROM runners WHERE id = ?1"), [id], runner_row)
            .optional()?)
    }

    fn runners(&self) -> Result<Vec<RunnerRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!("SELECT {RUNNER_COLS} FROM runners ORDER BY id"))?;
        let rows = st.query_map([], runner_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
