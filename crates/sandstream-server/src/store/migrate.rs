//! What a database made by an older server needs, applied at every open so that it
//! keeps working: the schema's additions since the first release (each sandbox's disk,
//! `sandboxes.disk_mb`, for the per-key disk quota; each sandbox's SSH port,
//! `sandboxes.ssh_port`; whether an execution was ended by
//! the out-of-memory killer, `executions.oom_killed`; the indexes retention reads,
//! `retention.rs`, and its list of executions whose output is still being deleted,
//! `pruning`), and sealing the sandbox tokens stored before sealing.
//!
//! One switch cannot be made here: a database made before retention does not give freed
//! pages back to the file system (`auto_vacuum` is `NONE`) until it is rewritten once by
//! `VACUUM` (`Store::switch_to_incremental_vacuum`, `prune.rs`).

use rusqlite::{Connection, params};
use sandstream_runner_protocol::DEFAULT_DISK_MB;

use super::error::Result;
use super::schema::SCHEMA;
use crate::seal::Sealer;

const ADDED: &str = "
-- Retention deletes the oldest finished executions first, and ended sandboxes by age.
CREATE INDEX IF NOT EXISTS executions_finished ON executions(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS sandboxes_ended ON sandboxes(expires_at) WHERE state = 'killed';
-- Executions already deleted whose chunks are not all deleted yet: chunks go in small
-- batches, and what an interrupted pass left is finished by the next one.
CREATE TABLE IF NOT EXISTS pruning (execution_id TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// Creates what is missing, on a new database or one made by an older server.
pub(super) fn schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if !has_column(conn, "sandboxes", "disk_mb")? {
        // Sandboxes stored before the column got no `diskMb` from this server: they have
        // their runner's default, counted as the usual one.
        conn.execute_batch(&format!(
            "ALTER TABLE sandboxes ADD COLUMN disk_mb INTEGER NOT NULL DEFAULT {DEFAULT_DISK_MB}"
        ))?;
    }
    if !has_column(conn, "sandboxes", "ssh_port")? {
        // Sandboxes stored before SSH have none.
        conn.execute_batch("ALTER TABLE sandboxes ADD COLUMN ssh_port INTEGER NOT NULL DEFAULT 0")?;
    }
    if !has_column(conn, "executions", "oom_killed")? {
        // Executions stored before the column: an out-of-memory kill was not told apart.
        conn.execute_batch("ALTER TABLE executions ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute_batch(ADDED)
}

pub(super) fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = st.query_map([table], |r| r.get::<_, String>(0))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Seals the tokens a database from before sealing holds in plain text.
pub(super) fn seal_plain_tokens(conn: &Connection, sealer: &Sealer) -> Result<()> {
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
