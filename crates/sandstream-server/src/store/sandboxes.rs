//! Sandboxes in SQLite, their tokens sealed at rest (`seal.rs`), and what they count
//! against their tenant's quotas and their runner's capacity.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::error::Result;
use super::interface::SandboxStore;
use super::rows::{SANDBOX_COLS, SandboxRow, Usage, sandbox_row};
use crate::state::SandboxState;

impl Store {
    /// Sandboxes that `filter` (a `WHERE` clause on `?1`) selects, with their tokens opened.
    fn sandboxes_where(&self, filter: &str, arg: impl rusqlite::ToSql) -> Result<Vec<SandboxRow>> {
        let rows: Vec<SandboxRow> = {
            let db = self.db();
            let mut st = db.prepare(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE {filter}"))?;
            let rows = st.query_map([arg], sandbox_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        rows.into_iter().map(|r| self.unseal(r)).collect()
    }

    /// `row` with its token opened.
    fn unseal(&self, mut row: SandboxRow) -> Result<SandboxRow> {
        row.token = self.sealer.open(&row.id, &row.token)?;
        Ok(row)
    }
}

impl SandboxStore for Store {
    fn insert_sandbox(&self, s: &SandboxRow) -> Result<()> {
        let token = self.sealer.seal(&s.id, &s.token)?;
        self.db().execute(
            &format!("INSERT INTO sandboxes ({SANDBOX_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
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
                s.disk_mb,
                s.ssh_port
            ],
        )?;
        Ok(())
    }

    fn sandbox(&self, id: &str) -> Result<Option<SandboxRow>> {
        let row = self
            .db()
            .query_row(&format!("SELECT {SANDBOX_COLS} FROM sandboxes WHERE id = ?1"), [id], sandbox_row)
            .optional()?;
        row.map(|row| self.unseal(row)).transpose()
    }

    fn sandboxes_of(&self, tenant: &str) -> Result<Vec<SandboxRow>> {
        self.sandboxes_where("tenant = ?1 AND state != 'killed' ORDER BY created_at", tenant)
    }

    fn sandboxes_on(&self, runner_id: &str) -> Result<Vec<SandboxRow>> {
        self.sandboxes_where("runner_id = ?1 AND state != 'killed'", runner_id)
    }

    fn expired_sandboxes(&self, now: i64) -> Result<Vec<SandboxRow>> {
        self.sandboxes_where("state != 'killed' AND expires_at <= ?1", now)
    }

    fn set_sandbox_state(&self, id: &str, state: SandboxState) -> Result<()> {
        self.db().execute("UPDATE sandboxes SET state = ?2 WHERE id = ?1", params![id, state])?;
        Ok(())
    }

    fn set_sandbox_conn(&self, id: &str, host: &str, port: u16, token: &str) -> Result<()> {
        let token = self.sealer.seal(id, token)?;
        self.db().execute(
            "UPDATE sandboxes SET host = ?2, port = ?3, token = ?4, state = 'running' WHERE id = ?1 AND state != 'killed'",
            params![id, host, port, token],
        )?;
        Ok(())
    }

    fn set_sandbox_expiry(&self, id: &str, expires_at: i64) -> Result<()> {
        self.db().execute("UPDATE sandboxes SET expires_at = ?2 WHERE id = ?1", params![id, expires_at])?;
        Ok(())
    }

    fn mark_runner_lost(&self, runner_id: &str) -> Result<usize> {
        Ok(self
            .db()
            .execute("UPDATE sandboxes SET state = 'lost' WHERE runner_id = ?1 AND state = 'running'", [runner_id])?)
    }

    fn usage_of(&self, tenant: &str) -> Result<Usage> {
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

    fn live_count(&self, runner_id: &str) -> Result<u32> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM sandboxes WHERE runner_id = ?1 AND state IN ('running', 'lost')",
            [runner_id],
            |r| r.get(0),
        )?)
    }

    fn count_by_state(&self) -> Result<Vec<(SandboxState, u64)>> {
        let counted: Vec<(SandboxState, i64)> = {
            let db = self.db();
            let mut st = db.prepare("SELECT state, COUNT(*) FROM sandboxes GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        Ok(SandboxState::ALL
            .iter()
            .map(|state| {
                let n = counted.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
                (*state, u64::try_from(n).unwrap_or(0))
            })
            .collect())
    }
}
