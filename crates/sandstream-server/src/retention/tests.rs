//! Retention against a real SQLite file: ages and sizes past the policy, with the clock
//! given to each pass.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::*;
use crate::state::{ExecStatus, Phase, SandboxState};
use crate::store::{
    Chunk, ExecutionRow, ExecutionStore, KeyStore, Outcome, PruneStore, Receiver, SandboxRow, SandboxStore,
};

const DAY: i64 = 86_400_000;
const MIB: u64 = 1 << 20;

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("sandstream.db")).expect("open")
}

fn execution(id: &str, tenant: &str, created_at: i64) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        tenant: tenant.into(),
        sandbox_id: "sb-1".into(),
        language: "python".into(),
        status: ExecStatus::Running,
        phase: Phase::Run,
        exit_code: None,
        error: None,
        plan: "{}".into(),
        command_id: None,
        stdout_offset: 0,
        stderr_offset: 0,
        last_seq: 0,
        target: Receiver::Container("sb-1".into()),
        created_at,
        deadline: created_at + 1000,
        finished_at: None,
        oom_killed: false,
    }
}

fn ended(status: ExecStatus, exit_code: i32, error: Option<&str>) -> Outcome {
    Outcome { status, exit_code, error: error.map(String::from), oom_killed: false }
}

/// Stores execution `id` with `chunks` chunks of `size` bytes; finished at `finished_at`
/// unless `None` (then it is running).
async fn fill(store: &Store, id: &str, created_at: i64, finished_at: Option<i64>, chunks: u64, size: usize) {
    store.insert_execution(&execution(id, "t", created_at)).expect("insert");
    for seq in 1..=chunks {
        let chunk = Chunk { seq, kind: "stdout".into(), phase: Phase::Run, data: "y".repeat(size) };
        store.append_chunk(id, chunk, (seq * size as u64, 0)).await.expect("append");
    }
    if let Some(at) = finished_at {
        store.finish_execution(id, &ended(ExecStatus::Success, 0, None), at).expect("finish");
    }
}

fn sandbox(id: &str, tenant: &str, state: SandboxState, expires_at: i64) -> SandboxRow {
    SandboxRow {
        id: id.into(),
        tenant: tenant.into(),
        runner_id: "r".into(),
        template: "default".into(),
        cpu_millis: 1000,
        memory_mb: 512,
        envs: "{}".into(),
        metadata: "{}".into(),
        state,
        host: "127.0.0.1".into(),
        port: 1,
        token: "tok".into(),
        created_at: expires_at - 1000,
        expires_at,
        disk_mb: 64,
        ssh_port: 0,
    }
}

/// A connection of the test's own, to count rows and to copy the log back.
fn side(dir: &Path) -> Connection {
    let c = Connection::open(dir.join("sandstream.db")).expect("side connection");
    c.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    c
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

fn chunks_of(c: &Connection, id: &str) -> i64 {
    count(c, &format!("SELECT COUNT(*) FROM chunks WHERE execution_id = '{id}'"))
}

/// The database file's size once the log is copied back and the file cut.
fn file_size(dir: &Path) -> u64 {
    let busy: i64 = side(dir).query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint could not finish");
    std::fs::metadata(dir.join("sandstream.db")).expect("db file").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_executions_and_ended_sandboxes_go_with_their_output_running_and_recent_ones_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    let now = 100 * DAY;
    fill(&store, "old-done", now - 10 * DAY, Some(now - 10 * DAY + 5000), 20, 100).await;
    fill(&store, "old-running", now - 10 * DAY, None, 20, 100).await;
    fill(&store, "new-done", now - DAY, Some(now - DAY), 20, 100).await;
    store.insert_sandbox(&sandbox("sb-old-killed", "t", SandboxState::Killed, now - 8 * DAY)).expect("sandbox");
    store.insert_sandbox(&sandbox("sb-new-killed", "t", SandboxState::Killed, now - DAY)).expect("sandbox");
    // Lost (its runner went silent), not ended: it still counts against quotas.
    store.insert_sandbox(&sandbox("sb-old-lost", "t", SandboxState::Lost, now - 8 * DAY)).expect("sandbox");
    store.insert_session("expired", "key_1", "session", now - 1).expect("session");
    store.insert_session("live", "key_1", "session", now + DAY).expect("session");
    let policy = Retention::from_flags(7, 0);

    // Positive control: five days earlier nothing is old enough.
    let done = prune(&store, &policy, now - 5 * DAY).expect("prune");
    assert!(!done.deleted_anything(), "{done:?}");
    for id in ["old-done", "old-running", "new-done"] {
        assert!(store.execution(id).expect("read").is_some(), "{id} deleted too early");
    }

    let done = prune(&store, &policy, now).expect("prune");
    assert_eq!((done.executions, done.chunks, done.sandboxes, done.sessions), (1, 20, 1, 1), "{done:?}");
    assert!(store.execution("old-done").expect("read").is_none());
    assert!(store.chunks("old-done", 0, 1000).expect("chunks").is_empty());
    let c = side(dir.path());
    assert_eq!(chunks_of(&c, "old-done"), 0);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM pruning"), 0, "chunks left to delete");
    // A running execution is never deleted, however old; a recent one is kept.
    for id in ["old-running", "new-done"] {
        assert!(store.execution(id).expect("read").is_some(), "{id} deleted");
        assert_eq!(store.chunks(id, 0, 1000).expect("chunks").len(), 20, "{id} lost output");
    }
    assert!(store.sandbox("sb-old-killed").expect("read").is_none());
    assert!(store.sandbox("sb-new-killed").expect("read").is_some());
    assert!(store.sandbox("sb-old-lost").expect("read").is_some(), "a lost sandbox is not ended");
    assert_eq!(count(&c, "SELECT COUNT(*) FROM sessions"), 1);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM sessions WHERE hash = 'live'"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_size_budget_the_oldest_finished_go_first_and_the_file_shrinks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    // Created first and running: never deleted.
    fill(&store, "running", 0, None, 32, 8192).await;
    // 24 executions of 256 KiB: 6 MiB. Created in the reverse of the order they finish
    // in: the budget deletes by the time they finished.
    let ids: Vec<String> = (0..24).map(|i| format!("e{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        fill(&store, id, 1000 - i as i64, Some(2000 + i as i64), 32, 8192).await;
    }
    let used_before = store.used_bytes().expect("used");
    let (pages_before, _, _) = store.pages().expect("pages");
    let size_before = file_size(dir.path());
    assert!(used_before > 6 * MIB, "{used_before}");

    // Positive control: below the budget nothing is deleted (ages are not limited).
    let done = prune(&store, &Retention::from_flags(0, 64), 3000).expect("prune");
    assert!(!done.deleted_anything(), "{done:?}");
    assert_eq!(store.used_bytes().expect("used"), used_before);

    let done = prune(&store, &Retention::from_flags(0, 2), 3000).expect("prune");
    assert!(!done.over_budget, "{done:?}");
    assert!(done.used_bytes <= 2 * MIB, "{done:?}");
    let kept: Vec<bool> = ids.iter().map(|id| store.execution(id).expect("read").is_some()).collect();
    let first_kept = kept.iter().position(|k| *k).expect("the newest are kept");
    assert!(first_kept > 0, "nothing was deleted: {kept:?}");
    assert!(kept[first_kept..].iter().all(|k| *k), "not the oldest first: {kept:?}");
    assert_eq!(done.executions, first_kept as u64);
    assert_eq!(done.chunks, 32 * first_kept as u64);
    let c = side(dir.path());
    for id in &ids[..first_kept] {
        assert_eq!(chunks_of(&c, id), 0, "{id}'s output stayed");
    }
    for id in &ids[first_kept..] {
        assert_eq!(chunks_of(&c, id), 32, "{id} lost output");
    }
    assert_eq!(store.chunks("running", 0, 1000).expect("chunks").len(), 32);
    // The space went back to the file system: fewer pages, a smaller file.
    let (pages_after, free_after, page) = store.pages().expect("pages");
    assert!(pages_after < pages_before, "{pages_after} pages after, {pages_before} before");
    assert!(free_after * page <= 2 * MIB / 8, "{free_after} free pages kept");
    assert!(done.released_bytes > 0);
    let size_after = file_size(dir.path());
    assert!(size_after < size_before / 2, "file {size_after} bytes after, {size_before} before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_keeps_being_stored_while_a_pass_deletes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(open(dir.path()));
    for i in 0..16 {
        fill(&store, &format!("old{i}"), i, Some(10 + i), 64, 4096).await;
    }
    store.insert_execution(&execution("live", "t", 100)).expect("insert");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for seq in 1..=400u64 {
                let chunk = Chunk { seq, kind: "stdout".into(), phase: Phase::Run, data: format!("{seq}\n") };
                store.append_chunk("live", chunk, (seq, 0)).await.expect("an append failed during a prune");
            }
        })
    };
    let s = store.clone();
    let done = tokio::task::spawn_blocking(move || prune(&*s, &Retention::from_flags(1, 0), 2 * DAY))
        .await
        .expect("task")
        .expect("prune");
    writer.await.expect("writer");
    assert_eq!(done.executions, 16, "{done:?}");
    let got = store.chunks("live", 0, 1000).expect("chunks");
    assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=400).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_execution_or_sandbox_answers_404_through_the_api() {
    const KEY: &str = "ss_retention_test_admin_key";
    let dir = tempfile::tempdir().expect("temp dir");
    let app = crate::server::app_for_tests(dir.path(), KEY).expect("app");
    // The same database file, opened a second time, as the test's handle on it.
    let store = open(dir.path());
    let tenant = store.list_keys().expect("keys").into_iter().find(|k| k.admin).expect("admin key").id;
    let now = now_ms();
    store.insert_execution(&execution("old", &tenant, now - 9 * DAY)).expect("insert");
    store
        .append_chunk("old", Chunk { seq: 1, kind: "stdout".into(), phase: Phase::Run, data: "hi\n".into() }, (3, 0))
        .await
        .expect("append");
    store.finish_execution("old", &ended(ExecStatus::Success, 0, None), now - 9 * DAY).expect("finish");
    store.insert_execution(&execution("recent", &tenant, now)).expect("insert");
    store.finish_execution("recent", &ended(ExecStatus::Success, 0, None), now).expect("finish");
    store.insert_sandbox(&sandbox("sb-old", &tenant, SandboxState::Killed, now - 8 * DAY)).expect("sandbox");
    let get = |path: String| {
        let app = app.clone();
        async move { crate::server::call_for_tests(&app, "GET", &path, Some(KEY), None).await }
    };
    // Positive control: before the pass, all of it is there.
    assert_eq!(get("/api/v1/executions/old".into()).await.0, 200);
    let (status, logs) = get("/api/v1/executions/old/logs".into()).await;
    assert_eq!((status, logs["chunks"][0]["data"].as_str()), (200, Some("hi\n")));
    assert_eq!(get("/api/v1/sandboxes/sb-old".into()).await.1["state"], "killed");

    let done = prune(&store, &Retention::default(), now).expect("prune");
    assert_eq!((done.executions, done.sandboxes), (1, 1), "{done:?}");
    for (path, says) in [
        ("/api/v1/executions/old", "execution old not found"),
        ("/api/v1/executions/old/logs", "execution old not found"),
        ("/api/v1/sandboxes/sb-old", "sandbox sb-old not found"),
    ] {
        let (status, body) = get(path.into()).await;
        assert_eq!((status, body["message"].as_str()), (404, Some(says)), "{path}: {body}");
    }
    assert_eq!(get("/api/v1/executions/recent".into()).await.0, 200, "a recent execution was deleted");
}
