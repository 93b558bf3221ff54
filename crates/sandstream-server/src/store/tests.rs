//! The store's tests: each against a real SQLite file in a temp dir.

use super::*;

fn execution(id: &str) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        tenant: "t".into(),
        sandbox_id: "sb-1".into(),
        language: "python".into(),
        status: ExecStatus::Running,
        phase: Phase::Prepare,
        exit_code: None,
        error: None,
        plan: "x".repeat(100_000),
        command_id: None,
        stdout_offset: 0,
        stderr_offset: 0,
        last_seq: 0,
        target: Receiver::Container("sb-1".into()),
        created_at: 1,
        deadline: 2,
        finished_at: None,
    }
}

fn chunk(seq: u64, data: &str) -> Chunk {
    Chunk { seq, kind: "stdout".into(), phase: Phase::Run, data: data.into() }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_is_readable_once_append_returns() {
    let (_dir, store) = open();
    store.insert_execution(&execution("e1")).expect("insert");
    for seq in 1..=50u64 {
        store.append_chunk("e1", chunk(seq, &format!("line {seq}\n")), (seq * 10, 0)).await.expect("append");
        // The read connection is not the writer's: what it sees is committed.
        let got = store.chunks("e1", seq - 1, 10).expect("chunks");
        assert_eq!(got.len(), 1, "chunk {seq} not readable after append returned");
        assert_eq!(got[0].data, format!("line {seq}\n"));
        let ex = store.execution("e1").expect("read").expect("exists");
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (seq, seq * 10, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_bytes_counts_utf8_bytes_of_one_execution() {
    let (_dir, store) = open();
    store.insert_execution(&execution("e1")).expect("insert");
    store.insert_execution(&execution("e2")).expect("insert");
    assert_eq!(store.output_bytes("e1").expect("count"), 0);
    store.append_chunk("e1", chunk(1, "abc"), (3, 0)).await.expect("append");
    // Two characters, five bytes: the limit is in bytes.
    store.append_chunk("e1", chunk(2, "é€"), (8, 0)).await.expect("append");
    store.append_chunk("e2", chunk(1, "other"), (5, 0)).await.expect("append");
    assert_eq!(store.output_bytes("e1").expect("count"), 8);
    assert_eq!(store.output_bytes("e2").expect("count"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executions_share_batches_and_lose_nothing() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for e in 0..40 {
        let id = format!("e{e}");
        store.insert_execution(&execution(&id)).expect("insert");
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=100u64 {
                store.append_chunk(&id, chunk(seq, &format!("{id}:{seq}")), (seq, 2 * seq)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for e in 0..40 {
        let id = format!("e{e}");
        let got = store.chunks(&id, 0, 1000).expect("chunks");
        let want: Vec<String> = (1..=100).map(|s| format!("{id}:{s}")).collect();
        assert_eq!(got.iter().map(|c| c.data.clone()).collect::<Vec<_>>(), want);
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
        let ex = store.execution(&id).expect("read").expect("exists");
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (100, 100, 200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_chunk_fails_alone() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    store.insert_execution(&execution("bad")).expect("insert");
    store.append_chunk("bad", chunk(1, "first"), (5, 0)).await.expect("append");
    let mut tasks = Vec::new();
    for e in 0..20 {
        let id = format!("ok{e}");
        store.insert_execution(&execution(&id)).expect("insert");
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.append_chunk(&id, chunk(1, "fine"), (4, 0)).await }));
    }
    // seq 1 again: the primary key refuses it, whatever batch it lands in.
    let dup = store.append_chunk("bad", chunk(1, "again"), (10, 0)).await;
    assert!(dup.is_err(), "a duplicate seq was stored");
    for t in tasks {
        t.await.expect("task").expect("a good chunk failed with a bad one");
    }
    assert_eq!(store.chunks("bad", 0, 10).expect("chunks")[0].data, "first");
    assert_eq!(store.execution("bad").expect("read").expect("exists").stdout_offset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_survives_commands_finishing_and_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    {
        let store = Store::open(&path).expect("open");
        store.insert_execution(&execution("e1")).expect("insert");
        store.set_command("e1", Phase::Install, "c1", 0).expect("set command");
        store.append_chunk("e1", chunk(1, "a"), (1, 0)).await.expect("append");
        store.append_chunk("e1", chunk(2, "bb"), (1, 2)).await.expect("append");
        // The next phase's command starts from offsets 0; seq carries on.
        store.set_command("e1", Phase::Run, "c2", 2).expect("set command");
        let ex = store.execution("e1").expect("read").expect("exists");
        assert_eq!((ex.phase.as_str(), ex.command_id.as_deref()), ("run", Some("c2")));
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (2, 0, 0));
        store.append_chunk("e1", chunk(3, "ccc"), (3, 0)).await.expect("append");
        store.set_offsets("e1", 3, (4, 1)).expect("offsets");
        let running = store.running_executions().expect("running");
        assert_eq!(running.len(), 1);
        assert_eq!((running[0].last_seq, running[0].stdout_offset, running[0].stderr_offset), (3, 4, 1));
    }
    // A restarted server finds the same progress; finishing folds it into the row.
    let store = Store::open(&path).expect("reopen");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (3, 4, 1));
    store.finish_execution("e1", ExecStatus::Success, 0, None, 9).expect("finish");
    store.finish_execution("e1", ExecStatus::Error, 1, None, 10).expect("finishing twice changes nothing");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.status.as_str(), ex.exit_code, ex.finished_at), ("success", Some(0), Some(9)));
    assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (3, 4, 1));
    let db = store.db();
    let left: i64 = db.query_row("SELECT COUNT(*) FROM progress", [], |r| r.get(0)).expect("count");
    assert_eq!(left, 0, "a finished execution keeps a progress row");
    let row: (i64, i64, i64) = db
        .query_row("SELECT last_seq, stdout_offset, stderr_offset FROM executions WHERE id = 'e1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("row");
    assert_eq!(row, (3, 4, 1));
}

#[test]
fn a_database_from_before_the_progress_table_reads_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    {
        // The schema as it was: progress lived in `executions`.
        let old = Connection::open(&path).expect("open");
        old.execute_batch(&SCHEMA.replace("CREATE TABLE IF NOT EXISTS progress", "CREATE TABLE IF NOT EXISTS unused"))
            .expect("old schema");
        old.execute(
            &format!(
                "INSERT INTO executions ({EXEC_COLS}) VALUES ('e1', 't', 'sb', 'python', 'running', 'run', \
                 NULL, NULL, '{{}}', 'c1', 7, 3, 12, 'container-sb', 1, 2, NULL)"
            ),
            [],
        )
        .expect("row");
    }
    let store = Store::open(&path).expect("open");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (12, 7, 3));
    store.finish_execution("e1", ExecStatus::Cancelled, 130, None, 5).expect("finish");
    let ex = store.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.status.as_str(), ex.last_seq, ex.stdout_offset), ("cancelled", 12, 7));
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
