//! The schema, with what was added to it since the first release: applied at every open,
//! so that a database made by an older server keeps working. Added so far: each
//! sandbox's disk (`sandboxes.disk_mb`, for the per-key disk quota), the indexes
//! retention reads (`retention.rs`) and its list of executions whose output is still
//! being deleted (`pruning`).
//!
//! Also the one switch that cannot be made here: a database made before retention does
//! not give freed pages back to the file system (`auto_vacuum` is `NONE`) until it is
//! rewritten once by `VACUUM` ([`Store::switch_to_incremental_vacuum`]).

use rusqlite::Connection;
use sandstream_runner_protocol::DEFAULT_DISK_MB;

use super::{SCHEMA, Store, lock};
use crate::error::AppResult;

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
    conn.execute_batch(ADDED)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = st.query_map([table], |r| r.get::<_, String>(0))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// Whether freed pages can be given back to the file system bit by bit
    /// (`PRAGMA incremental_vacuum`): true for every database made since retention.
    pub(crate) fn incremental_vacuum(&self) -> AppResult<bool> {
        Ok(lock(&self.conn).query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))? == 2)
    }

    /// Rewrites the whole database once (`VACUUM`) so that it gives freed pages back from
    /// then on. Holds the store for as long as that takes, and needs free disk of about
    /// twice the database's size (a copy, and the write-ahead log of it); on failure the
    /// database is as it was.
    pub(crate) fn switch_to_incremental_vacuum(&self) -> AppResult<()> {
        lock(&self.conn).execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SandboxState;
    use crate::store::SandboxRow;

    fn sandbox(id: &str, disk_mb: u32) -> SandboxRow {
        SandboxRow {
            id: id.into(),
            tenant: "t".into(),
            runner_id: "r".into(),
            template: "default".into(),
            cpu_millis: 1000,
            memory_mb: 512,
            envs: "{}".into(),
            metadata: "{}".into(),
            state: SandboxState::Running,
            host: "127.0.0.1".into(),
            port: 1,
            token: "tok".into(),
            created_at: 1,
            expires_at: 2,
            disk_mb,
        }
    }

    #[test]
    fn a_database_from_before_retention_and_disk_quotas_keeps_working_and_switches_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db");
        {
            // As an older server made it: no auto_vacuum, no disk column.
            let old = Connection::open(&path).expect("open");
            old.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
            old.execute_batch(SCHEMA).expect("old schema");
            assert!(!has_column(&old, "sandboxes", "disk_mb").expect("columns"));
            old.execute(
                "INSERT INTO sandboxes (id, tenant, runner_id, template, cpu_millis, memory_mb, envs, metadata, \
                 state, host, port, token, created_at, expires_at) \
                 VALUES ('sb-old', 't', 'r', 'default', 1000, 256, '{}', '{}', 'running', 'h', 1, '', 1, 2)",
                [],
            )
            .expect("row");
        }
        let store = Store::open(&path).expect("open");
        // The old row counts as a sandbox of the default disk; new rows as what they got.
        assert_eq!(store.sandbox("sb-old").expect("read").expect("row").disk_mb, DEFAULT_DISK_MB);
        store.insert_sandbox(&sandbox("sb-new", 64)).expect("insert");
        let usage = store.usage_of("t").expect("usage");
        assert_eq!((usage.count, usage.memory_mb, usage.disk_mb), (2, 768, u64::from(DEFAULT_DISK_MB) + 64));
        assert!(!store.incremental_vacuum().expect("mode"), "an old database cannot switch without VACUUM");
        store.switch_to_incremental_vacuum().expect("switch");
        assert!(store.incremental_vacuum().expect("mode"));
        assert_eq!(store.sandbox("sb-old").expect("read").expect("row").disk_mb, DEFAULT_DISK_MB, "kept by VACUUM");
        drop(store);
        // A second open changes nothing.
        let store = Store::open(&path).expect("reopen");
        assert!(store.incremental_vacuum().expect("mode"));
        assert_eq!(store.usage_of("t").expect("usage").count, 2);
    }

    #[test]
    fn a_new_database_gives_freed_pages_back_from_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        assert!(store.incremental_vacuum().expect("mode"));
    }
}
