//! The SQLite store's own tests, each against a real file in a temp dir: its files, the
//! WAL, the `progress` table, tokens at rest, databases made by older servers. What
//! every backend must do is in `contract.rs`.

use std::time::{Duration, Instant};

use rusqlite::Connection;
use sandstream_runner_protocol::DEFAULT_DISK_MB;

use super::contract::{chunk, ended, execution, sandbox};
use super::migrate::has_column;
use super::rows::EXEC_COLS;
use super::schema::SCHEMA;
use super::*;
use crate::seal::Sealer;
use crate::state::ExecStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_execution_keeps_its_progress_in_its_row_and_no_progress_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    store.insert_execution(&execution("e1")).expect("insert");
    store.append_chunk("e1", chunk(1, "ccc"), (3, 0)).await.expect("append");
    store.set_offsets("e1", 1, (4, 1)).expect("offsets");
    let progress =
        |db: &Connection| -> i64 { db.query_row("SELECT COUNT(*) FROM progress", [], |r| r.get(0)).expect("count") };
    assert_eq!(progress(&store.db()), 1, "a running execution's progress is not in its own table");
    store.finish_execution("e1", &ended(ExecStatus::Success, 0, None), 9).expect("finish");
    let db = store.db();
    assert_eq!(progress(&db), 0, "a finished execution keeps a progress row");
    let row: (i64, i64, i64) = db
        .query_row("SELECT last_seq, stdout_offset, stderr_offset FROM executions WHERE id = 'e1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("row");
    assert_eq!(row, (1, 4, 1));
}

#[test]
fn a_database_from_before_the_progress_table_and_the_oom_column_reads_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    {
        // The schema as it was: progress lived in `executions`, and no `oom_killed`.
        let old = Connection::open(&path).expect("open");
        old.execute_batch(&SCHEMA.replace("CREATE TABLE IF NOT EXISTS progress", "CREATE TABLE IF NOT EXISTS unused"))
            .expect("old schema");
        assert!(!has_column(&old, "executions", "oom_killed").expect("columns"));
        let cols = EXEC_COLS.replace(", oom_killed", "");
        old.execute(
            &format!(
                "INSERT INTO executions ({cols}) VALUES ('e1', 't', 'sb', 'python', 'running', 'run', \
                 NULL, NULL, '{{}}', 'c1', 7, 3, 12, 'container-sb', 1, 2, NULL)"
            ),
            [],
        )
        .expect("row");
    }
    let store = Store::open(&path).expect("open");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset, ex.oom_killed), (12, 7, 3, false));
    store.finish_execution("e1", &ended(ExecStatus::Cancelled, 130, None), 5).expect("finish");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.status.as_str(), ex.last_seq, ex.stdout_offset, ex.oom_killed), ("cancelled", 12, 7, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_the_wal_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let store = Store::open(&path).expect("open");
    store.insert_execution(&execution("e1")).expect("insert");
    for seq in 1..=200u64 {
        store.append_chunk("e1", chunk(seq, &"y".repeat(4000)), (seq, 0)).await.expect("append");
    }
    // Commits only append to the WAL (the main connection never checkpoints on
    // commit); the database file grows when the checkpointer copies them back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let db_len = std::fs::metadata(&path).expect("db file").len();
        if db_len > 200 * 4000 {
            break;
        }
        assert!(Instant::now() < deadline, "database file still {db_len} bytes: nothing checkpointed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_receiver_is_stored_as_data_and_old_room_names_still_read() {
    for r in [Receiver::Container("sb-1".into()), Receiver::Socket("AbC-12_x".into())] {
        assert_eq!(Receiver::from_stored(r.to_stored()), r);
    }
    assert_eq!(Receiver::Container("sb-1".into()).to_stored(), r#"{"container":"sb-1"}"#);
    assert_eq!(Receiver::from_stored("container-sb-9".into()), Receiver::Container("sb-9".into()));
    assert_eq!(Receiver::from_stored("AbC-12_x".into()), Receiver::Socket("AbC-12_x".into()));
}

#[test]
fn tokens_are_sealed_at_rest_and_plain_ones_from_before_are_sealed_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let stored_token = |id: &str| -> String {
        let db = Connection::open(&path).expect("open");
        db.query_row("SELECT token FROM sandboxes WHERE id = ?1", [id], |r| r.get(0)).expect("row")
    };
    {
        let store = Store::open(&path).expect("open");
        store.insert_sandbox(&sandbox("sb-new", "t", "r", 1)).expect("insert");
        // A row as a server from before sealing wrote it.
        store
            .db()
            .execute(
                "INSERT INTO sandboxes (id, tenant, runner_id, template, cpu_millis, memory_mb, envs, metadata, \
                 state, host, port, token, created_at, expires_at) \
                 VALUES ('sb-old', 't', 'r', 'default', 1000, 256, '{}', '{}', 'running', 'h', 1, 'plain-token', 1, 2)",
                [],
            )
            .expect("row");
    }
    let sealed = stored_token("sb-new");
    assert!(Sealer::is_sealed(&sealed) && !sealed.contains("token-of-sb-new"), "{sealed}");
    assert_eq!(stored_token("sb-old"), "plain-token", "positive control: the old row is plain");
    let store = Store::open(&path).expect("reopen");
    let sealed = stored_token("sb-old");
    assert!(Sealer::is_sealed(&sealed) && !sealed.contains("plain-token"), "{sealed}");
    assert_eq!(store.sandbox("sb-old").expect("read").expect("row").token, "plain-token");
    assert_eq!(store.sandbox("sb-new").expect("read").expect("row").token, "token-of-sb-new");
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
    let mut new = sandbox("sb-new", "t", "r", 1);
    (new.memory_mb, new.disk_mb) = (512, 64);
    store.insert_sandbox(&new).expect("insert");
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
