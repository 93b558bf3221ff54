//! The store's contract: what every backend of [`StateStore`] must do, as functions over
//! the interface alone. Each takes a store over an empty database and panics where the
//! backend falls short. [`contract_tests!`] turns them into one test each for a backend
//! (a [`Backend`]); at the end of this file they run against the SQLite store, and a
//! second backend runs the same list with one line: `contract_tests!(ItsBackend);`.
//!
//! What is SQLite's own (its files, the WAL, the `progress` table, databases of older
//! servers) is tested in `tests.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Chunk, ExecutionRow, Outcome, Principal, Receiver, RunnerRow, SandboxRow, StateStore};
use crate::state::{ExecStatus, Phase, SandboxState};

/// A backend under test: where its database lives (a temp dir, a scratch schema), made
/// empty for each test and removed when dropped, and how to open a handle on it.
pub(crate) trait Backend {
    type Place;
    fn place() -> Self::Place;
    /// A handle on the database at `place`; a second one (after the first is dropped)
    /// sees what the first stored, as a restarted server does.
    fn open(place: &Self::Place) -> Arc<dyn StateStore>;
}

/// One test per contract function, against backend `$backend` (a [`Backend`]).
macro_rules! contract_tests {
    (@each $backend:ty; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let place = <$backend as $crate::store::contract::Backend>::place();
                $crate::store::contract::$name(<$backend as $crate::store::contract::Backend>::open(&place)).await;
            }
        )+
    };
    ($backend:ty) => {
        $crate::store::contract::contract_tests!(@each $backend;
            keys_and_sessions, runners, sandboxes_read_back_their_tokens_in_the_clear,
            sandbox_states_and_what_they_count, executions_round_trip,
            a_chunk_is_readable_once_append_returns, chunks_page_by_seq,
            output_bytes_counts_utf8_bytes_of_one_execution, concurrent_appends_keep_each_executions_order,
            a_bad_chunk_fails_alone, pruning_deletes_only_what_ended_before);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn progress_survives_a_restart_and_the_first_finish_stays() {
            let place = <$backend as $crate::store::contract::Backend>::place();
            let open = || <$backend as $crate::store::contract::Backend>::open(&place);
            $crate::store::contract::progress_survives_a_restart_and_the_first_finish_stays(&open).await;
        }
    };
}
pub(crate) use contract_tests;

pub(crate) fn execution(id: &str) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        tenant: "t".into(),
        sandbox_id: "sb-1".into(),
        language: "python".into(),
        status: ExecStatus::Running,
        phase: Phase::Prepare,
        exit_code: None,
        error: None,
        // Large like a real program: a backend that rewrites it with every chunk is slow.
        plan: "x".repeat(100_000),
        command_id: None,
        stdout_offset: 0,
        stderr_offset: 0,
        last_seq: 0,
        target: Receiver::Container("sb-1".into()),
        created_at: 1,
        deadline: 2,
        finished_at: None,
        oom_killed: false,
    }
}

/// An end that was not an out-of-memory kill.
pub(crate) fn ended(status: ExecStatus, exit_code: i32, error: Option<&str>) -> Outcome {
    Outcome { status, exit_code, error: error.map(String::from), oom_killed: false }
}

pub(crate) fn chunk(seq: u64, data: &str) -> Chunk {
    Chunk { seq, kind: "stdout".into(), phase: Phase::Run, data: data.into() }
}

pub(crate) fn sandbox(id: &str, tenant: &str, runner_id: &str, created_at: i64) -> SandboxRow {
    SandboxRow {
        id: id.into(),
        tenant: tenant.into(),
        runner_id: runner_id.into(),
        template: "default".into(),
        cpu_millis: 1000,
        memory_mb: 256,
        envs: r#"{"A":"1"}"#.into(),
        metadata: r#"{"owner":"me"}"#.into(),
        state: SandboxState::Running,
        host: "10.0.0.1".into(),
        port: 4000,
        token: format!("token-of-{id}"),
        created_at,
        expires_at: created_at + 1000,
        disk_mb: 64,
        ssh_port: 0,
    }
}

fn runner(id: &str, capacity: u32) -> RunnerRow {
    RunnerRow {
        id: id.into(),
        name: format!("name-{id}"),
        control_url: format!("http://{id}:7000"),
        advertise_host: "10.0.0.1".into(),
        capacity,
        backend: "oci".into(),
        last_heartbeat: 5,
    }
}

fn ids(rows: &[SandboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

pub(crate) async fn keys_and_sessions(s: Arc<dyn StateStore>) {
    assert!(!s.admin_key_exists().expect("admin"));
    s.insert_key("key_admin", "admin", "h-admin", true, 2).expect("insert");
    s.insert_key("key_t", "tenant", "h-t", false, 3).expect("insert");
    s.insert_key("key_old", "older", "h-old", false, 1).expect("insert");
    assert!(s.insert_key("key_dup", "same hash", "h-t", false, 4).is_err(), "two keys with one hash");
    assert!(s.admin_key_exists().expect("admin"));
    assert_eq!(s.key_by_hash("h-admin").expect("read"), Some(Principal { key_id: "key_admin".into(), admin: true }));
    assert_eq!(s.key_by_hash("h-t").expect("read"), Some(Principal { key_id: "key_t".into(), admin: false }));
    assert_eq!(s.key_by_hash("h-nobody").expect("read"), None);
    let keys = s.list_keys().expect("list");
    assert_eq!(keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["key_old", "key_admin", "key_t"]);
    assert_eq!(
        (keys[2].name.as_str(), keys[2].admin, keys[2].created_at, keys[2].revoked),
        ("tenant", false, 3, false)
    );

    // A session lasts until it expires; it is of one kind.
    s.insert_session("h-session", "key_t", "session", 100).expect("session");
    let t = Some(Principal { key_id: "key_t".into(), admin: false });
    assert_eq!(s.session("h-session", "session", 99).expect("read"), t);
    assert_eq!(s.session("h-session", "session", 99).expect("read"), t, "a session works more than once");
    assert_eq!(s.session("h-session", "login", 99).expect("read"), None, "of another kind");
    assert_eq!(s.session("h-session", "session", 100).expect("read"), None, "expired");
    // A login link works once.
    s.insert_session("h-login", "key_t", "login", 100).expect("login");
    assert_eq!(s.session("h-login", "login", 50).expect("read"), t);
    assert_eq!(s.session("h-login", "login", 50).expect("read"), None, "a login link worked twice");
    // Signing out deletes a session, and only a session.
    s.insert_session("h-gone", "key_t", "session", 100).expect("session");
    s.insert_session("h-link", "key_t", "login", 100).expect("login");
    assert!(!s.delete_session("h-link").expect("delete"), "signing out deleted a login link");
    assert!(s.delete_session("h-gone").expect("delete"));
    assert!(!s.delete_session("h-gone").expect("delete again"), "deleted twice");
    assert_eq!(s.session("h-gone", "session", 50).expect("read"), None, "a signed-out session still works");
    assert_eq!(s.session("h-session", "session", 50).expect("read"), t, "signing out ended another session");
    assert_eq!(s.session("h-link", "login", 50).expect("read"), t);

    // Revoking: once, with the key's sessions.
    assert!(s.revoke_key("key_t").expect("revoke"));
    assert!(!s.revoke_key("key_t").expect("revoke again"), "revoked twice");
    assert!(!s.revoke_key("key_nobody").expect("revoke unknown"));
    assert_eq!(s.key_by_hash("h-t").expect("read"), None, "a revoked key still works");
    assert_eq!(s.session("h-session", "session", 50).expect("read"), None, "a revoked key's session still works");
    let revoked = s.list_keys().expect("list").into_iter().find(|k| k.id == "key_t").expect("still listed");
    assert!(revoked.revoked);
    assert!(s.revoke_key("key_admin").expect("revoke admin"));
    assert!(!s.admin_key_exists().expect("admin"), "a revoked admin key counts");
}

pub(crate) async fn runners(s: Arc<dyn StateStore>) {
    assert!(s.runners().expect("list").is_empty());
    assert!(s.runner("rn-a").expect("read").is_none());
    assert!(!s.touch_runner("rn-a", 9).expect("touch"), "an unknown runner was touched");
    s.upsert_runner(&runner("rn-b", 4)).expect("insert");
    s.upsert_runner(&runner("rn-a", 2)).expect("insert");
    let all = s.runners().expect("list");
    assert_eq!(all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["rn-a", "rn-b"], "by id");
    let a = s.runner("rn-a").expect("read").expect("stored");
    assert_eq!(
        (a.name.as_str(), a.control_url.as_str(), a.advertise_host.as_str(), a.capacity, a.backend.as_str()),
        ("name-rn-a", "http://rn-a:7000", "10.0.0.1", 2, "oci")
    );
    // Registering again replaces what was known.
    let again = RunnerRow {
        control_url: "http://moved:7000".into(),
        capacity: 8,
        backend: "docker".into(),
        ..runner("rn-a", 0)
    };
    s.upsert_runner(&again).expect("upsert");
    assert_eq!(s.runners().expect("list").len(), 2);
    let a = s.runner("rn-a").expect("read").expect("stored");
    assert_eq!((a.control_url.as_str(), a.capacity, a.backend.as_str()), ("http://moved:7000", 8, "docker"));
    assert!(s.touch_runner("rn-a", 99).expect("touch"));
    assert_eq!(s.runner("rn-a").expect("read").expect("stored").last_heartbeat, 99);
    assert_eq!(s.runner("rn-b").expect("read").expect("stored").last_heartbeat, 5, "another runner was touched");
}

pub(crate) async fn sandboxes_read_back_their_tokens_in_the_clear(s: Arc<dyn StateStore>) {
    s.insert_sandbox(&sandbox("sb-2", "t1", "rn-b", 20)).expect("insert");
    s.insert_sandbox(&sandbox("sb-1", "t1", "rn-a", 10)).expect("insert");
    s.insert_sandbox(&sandbox("sb-3", "t2", "rn-a", 30)).expect("insert");
    assert!(s.insert_sandbox(&sandbox("sb-1", "t1", "rn-a", 10)).is_err(), "one id stored twice");
    let sb = s.sandbox("sb-1").expect("read").expect("stored");
    let want = sandbox("sb-1", "t1", "rn-a", 10);
    assert_eq!(
        (sb.tenant, sb.runner_id, sb.template, sb.cpu_millis, sb.memory_mb, sb.envs, sb.metadata),
        (want.tenant, want.runner_id, want.template, 1000, 256, want.envs, want.metadata)
    );
    assert_eq!(
        (sb.state, sb.host.as_str(), sb.port, sb.created_at, sb.expires_at, sb.disk_mb),
        (SandboxState::Running, "10.0.0.1", 4000, 10, 1010, 64)
    );
    assert_eq!(sb.token, "token-of-sb-1");
    assert!(s.sandbox("sb-nobody").expect("read").is_none());
    // Every list reads tokens back in the clear.
    let of = s.sandboxes_of("t1").expect("of");
    assert_eq!(ids(&of), ["sb-1", "sb-2"], "a tenant's, oldest first");
    assert!(of.iter().all(|r| r.token == format!("token-of-{}", r.id)));
    let mut on = s.sandboxes_on("rn-a").expect("on");
    on.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&on), ["sb-1", "sb-3"]);
    assert!(on.iter().all(|r| r.token == format!("token-of-{}", r.id)));
    let mut expired = s.expired_sandboxes(1020).expect("expired");
    expired.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&expired), ["sb-1", "sb-2"], "expired by 1020: at 1010 and at 1020");
    assert!(expired.iter().all(|r| r.token == format!("token-of-{}", r.id)));
    // A new address and token, read back in the clear; the expiry moves.
    s.set_sandbox_conn("sb-1", "10.0.0.9", 4100, "a-new-token").expect("conn");
    let sb = s.sandbox("sb-1").expect("read").expect("stored");
    assert_eq!((sb.host.as_str(), sb.port, sb.token.as_str()), ("10.0.0.9", 4100, "a-new-token"));
    s.set_sandbox_expiry("sb-1", 5000).expect("expiry");
    assert_eq!(s.sandbox("sb-1").expect("read").expect("stored").expires_at, 5000);
    assert_eq!(ids(&s.expired_sandboxes(1020).expect("expired")), ["sb-2"]);
}

pub(crate) async fn sandbox_states_and_what_they_count(s: Arc<dyn StateStore>) {
    use SandboxState::{Killed, Lost, Running};
    let by_state = |s: &Arc<dyn StateStore>| -> Vec<(SandboxState, u64)> { s.count_by_state().expect("count") };
    assert_eq!(by_state(&s), [(Running, 0), (Lost, 0), (Killed, 0)], "every state, zero ones too");
    for (id, tenant, runner, created) in
        [("sb-1", "t1", "rn-a", 1), ("sb-2", "t1", "rn-a", 2), ("sb-3", "t1", "rn-b", 3), ("sb-4", "t2", "rn-a", 4)]
    {
        s.insert_sandbox(&sandbox(id, tenant, runner, created)).expect("insert");
    }
    assert_eq!(by_state(&s), [(Running, 4), (Lost, 0), (Killed, 0)]);
    let usage = s.usage_of("t1").expect("usage");
    assert_eq!((usage.count, usage.memory_mb, usage.disk_mb), (3, 768, 192));
    assert_eq!(s.usage_of("t-nobody").expect("usage").count, 0);
    assert_eq!((s.live_count("rn-a").expect("live"), s.live_count("rn-b").expect("live")), (3, 1));
    // A silent runner's running sandboxes are lost, and still count.
    assert_eq!(s.mark_runner_lost("rn-a").expect("lost"), 3);
    assert_eq!(s.mark_runner_lost("rn-a").expect("lost again"), 0, "a lost sandbox was lost again");
    assert_eq!(s.sandbox("sb-1").expect("read").expect("stored").state, SandboxState::Lost);
    assert_eq!(s.sandbox("sb-3").expect("read").expect("stored").state, SandboxState::Running, "another runner's");
    assert_eq!(s.usage_of("t1").expect("usage").count, 3);
    assert_eq!(s.live_count("rn-a").expect("live"), 3);
    // Reachable again: running.
    s.set_sandbox_conn("sb-1", "10.0.0.2", 4001, "t").expect("conn");
    assert_eq!(s.sandbox("sb-1").expect("read").expect("stored").state, SandboxState::Running);
    // Killed: for good, and counted nowhere.
    s.set_sandbox_state("sb-2", SandboxState::Killed).expect("kill");
    s.set_sandbox_conn("sb-2", "10.0.0.2", 4001, "t").expect("conn");
    assert_eq!(
        s.sandbox("sb-2").expect("read").expect("stored").state,
        SandboxState::Killed,
        "a killed sandbox came back"
    );
    assert_eq!(s.mark_runner_lost("rn-a").expect("lost"), 1, "only sb-1 ran on rn-a");
    assert_eq!(s.sandbox("sb-2").expect("read").expect("stored").state, SandboxState::Killed);
    let usage = s.usage_of("t1").expect("usage");
    assert_eq!((usage.count, usage.memory_mb, usage.disk_mb), (2, 512, 128));
    assert_eq!(s.live_count("rn-a").expect("live"), 2);
    assert_eq!(ids(&s.sandboxes_of("t1").expect("of")), ["sb-1", "sb-3"]);
    assert!(!ids(&s.sandboxes_on("rn-a").expect("on")).contains(&"sb-2"));
    assert!(!ids(&s.expired_sandboxes(i64::MAX).expect("expired")).contains(&"sb-2"));
    assert!(s.sandbox("sb-2").expect("read").is_some(), "a killed sandbox is still readable");
    // sb-1 lost (its runner went silent again), sb-2 killed, sb-3 running, sb-4 lost.
    assert_eq!(by_state(&s), [(Running, 1), (Lost, 2), (Killed, 1)]);
}

pub(crate) async fn executions_round_trip(s: Arc<dyn StateStore>) {
    let mut e = execution("e1");
    e.target = Receiver::Socket("AbC-12_x".into());
    e.command_id = Some("c0".into());
    s.insert_execution(&e).expect("insert");
    s.insert_execution(&execution("e2")).expect("insert");
    assert!(s.insert_execution(&execution("e2")).is_err(), "one id stored twice");
    let got = s.execution("e1").expect("read").expect("stored");
    assert_eq!((got.tenant.as_str(), got.sandbox_id.as_str(), got.language.as_str()), ("t", "sb-1", "python"));
    assert_eq!(
        (got.status, got.phase, got.exit_code, got.error, got.command_id.as_deref()),
        (ExecStatus::Running, Phase::Prepare, None, None, Some("c0"))
    );
    assert_eq!(
        (got.plan.len(), got.target, got.created_at, got.deadline, got.finished_at),
        (100_000, e.target, 1, 2, None)
    );
    assert!(s.execution("e-nobody").expect("read").is_none());
    let running: BTreeSet<String> = s.running_executions().expect("running").into_iter().map(|e| e.id).collect();
    assert_eq!(running, BTreeSet::from(["e1".to_string(), "e2".to_string()]));
    assert!(!got.oom_killed);
    let oom = Outcome { oom_killed: true, ..ended(ExecStatus::Error, 137, Some("out of memory")) };
    s.finish_execution("e2", &oom, 7).expect("finish");
    let e2 = s.execution("e2").expect("read").expect("stored");
    assert_eq!(
        (e2.status, e2.exit_code, e2.error.as_deref(), e2.finished_at, e2.oom_killed),
        (ExecStatus::Error, Some(137), Some("out of memory"), Some(7), true)
    );
    assert_eq!(e2.outcome(), Some(oom), "the row tells how it ended, as it was stored");
    let running: Vec<String> = s.running_executions().expect("running").into_iter().map(|e| e.id).collect();
    assert_eq!(running, ["e1"]);
}

pub(crate) async fn a_chunk_is_readable_once_append_returns(s: Arc<dyn StateStore>) {
    s.insert_execution(&execution("e1")).expect("insert");
    for seq in 1..=50u64 {
        s.append_chunk("e1", chunk(seq, &format!("line {seq}\n")), (seq * 10, 0)).await.expect("append");
        let got = s.chunks("e1", seq - 1, 10).expect("chunks");
        assert_eq!(got.len(), 1, "chunk {seq} not readable after append returned");
        assert_eq!(
            (got[0].seq, got[0].kind.as_str(), got[0].phase, got[0].data.clone()),
            (seq, "stdout", Phase::Run, format!("line {seq}\n"))
        );
        let ex = s.execution("e1").expect("read").expect("exists");
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (seq, seq * 10, 0));
    }
}

pub(crate) async fn chunks_page_by_seq(s: Arc<dyn StateStore>) {
    s.insert_execution(&execution("e1")).expect("insert");
    s.insert_execution(&execution("e2")).expect("insert");
    for seq in 1..=10u64 {
        s.append_chunk("e1", chunk(seq, &seq.to_string()), (seq, 0)).await.expect("append");
    }
    s.append_chunk("e2", chunk(1, "other"), (5, 0)).await.expect("append");
    let seqs = |after, limit| s.chunks("e1", after, limit).expect("chunks").iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(seqs(0, 4), [1, 2, 3, 4]);
    assert_eq!(seqs(4, 4), [5, 6, 7, 8]);
    assert_eq!(seqs(8, 4), [9, 10]);
    assert!(seqs(10, 4).is_empty());
    assert!(s.chunks("e-nobody", 0, 10).expect("chunks").is_empty());
}

pub(crate) async fn output_bytes_counts_utf8_bytes_of_one_execution(s: Arc<dyn StateStore>) {
    s.insert_execution(&execution("e1")).expect("insert");
    s.insert_execution(&execution("e2")).expect("insert");
    assert_eq!(s.output_bytes("e1").expect("count"), 0);
    s.append_chunk("e1", chunk(1, "abc"), (3, 0)).await.expect("append");
    // Two characters, five bytes: the limit is in bytes.
    s.append_chunk("e1", chunk(2, "é€"), (8, 0)).await.expect("append");
    s.append_chunk("e2", chunk(1, "other"), (5, 0)).await.expect("append");
    assert_eq!(s.output_bytes("e1").expect("count"), 8);
    assert_eq!(s.output_bytes("e2").expect("count"), 5);
}

pub(crate) async fn concurrent_appends_keep_each_executions_order(s: Arc<dyn StateStore>) {
    let mut tasks = Vec::new();
    for e in 0..40 {
        let id = format!("e{e}");
        s.insert_execution(&execution(&id)).expect("insert");
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=100u64 {
                s.append_chunk(&id, chunk(seq, &format!("{id}:{seq}")), (seq, 2 * seq)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for e in 0..40 {
        let id = format!("e{e}");
        let got = s.chunks(&id, 0, 1000).expect("chunks");
        let want: Vec<String> = (1..=100).map(|s| format!("{id}:{s}")).collect();
        assert_eq!(got.iter().map(|c| c.data.clone()).collect::<Vec<_>>(), want);
        assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
        let ex = s.execution(&id).expect("read").expect("exists");
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (100, 100, 200));
    }
}

pub(crate) async fn a_bad_chunk_fails_alone(s: Arc<dyn StateStore>) {
    s.insert_execution(&execution("bad")).expect("insert");
    s.append_chunk("bad", chunk(1, "first"), (5, 0)).await.expect("append");
    let mut tasks = Vec::new();
    for e in 0..20 {
        let id = format!("ok{e}");
        s.insert_execution(&execution(&id)).expect("insert");
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.append_chunk(&id, chunk(1, "fine"), (4, 0)).await }));
    }
    // seq 1 again: refused, whatever is appended beside it; the chunk comes back.
    let (_, back) = s.append_chunk("bad", chunk(1, "again"), (10, 0)).await.expect_err("a duplicate seq was stored");
    assert_eq!(back.map(|c| c.data).as_deref(), Some("again"));
    for t in tasks {
        t.await.expect("task").expect("a good chunk failed with a bad one");
    }
    assert_eq!(s.chunks("bad", 0, 10).expect("chunks")[0].data, "first");
    assert_eq!(s.execution("bad").expect("read").expect("exists").stdout_offset, 5);
}

/// `open` opens a handle on one database; called again, on the same one.
pub(crate) async fn progress_survives_a_restart_and_the_first_finish_stays(open: &dyn Fn() -> Arc<dyn StateStore>) {
    {
        let s = open();
        s.insert_execution(&execution("e1")).expect("insert");
        s.set_command("e1", Phase::Install, "c1", 0).expect("set command");
        s.append_chunk("e1", chunk(1, "a"), (1, 0)).await.expect("append");
        s.append_chunk("e1", chunk(2, "bb"), (1, 2)).await.expect("append");
        // The next phase's command starts from offsets 0; seq carries on.
        s.set_command("e1", Phase::Run, "c2", 2).expect("set command");
        let ex = s.execution("e1").expect("read").expect("exists");
        assert_eq!((ex.phase, ex.command_id.as_deref()), (Phase::Run, Some("c2")));
        assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (2, 0, 0));
        s.append_chunk("e1", chunk(3, "ccc"), (3, 0)).await.expect("append");
        s.set_offsets("e1", 3, (4, 1)).expect("offsets");
        let running = s.running_executions().expect("running");
        assert_eq!(running.len(), 1);
        assert_eq!((running[0].last_seq, running[0].stdout_offset, running[0].stderr_offset), (3, 4, 1));
    }
    // A restarted server finds the same progress; finishing keeps it; the first end stays.
    let s = open();
    let ex = s.execution("e1").expect("read").expect("exists");
    assert_eq!(
        (ex.phase, ex.command_id.as_deref(), ex.last_seq, ex.stdout_offset, ex.stderr_offset),
        (Phase::Run, Some("c2"), 3, 4, 1)
    );
    assert_eq!(s.chunks("e1", 0, 10).expect("chunks").len(), 3);
    s.finish_execution("e1", &ended(ExecStatus::Success, 0, None), 9).expect("finish");
    s.finish_execution("e1", &ended(ExecStatus::Error, 1, Some("late")), 10).expect("finishing twice changes nothing");
    let ex = s.execution("e1").expect("read").expect("exists");
    assert_eq!((ex.status, ex.exit_code, ex.error, ex.finished_at), (ExecStatus::Success, Some(0), None, Some(9)));
    assert_eq!((ex.last_seq, ex.stdout_offset, ex.stderr_offset), (3, 4, 1));
    assert!(s.running_executions().expect("running").is_empty());
}

pub(crate) async fn pruning_deletes_only_what_ended_before(s: Arc<dyn StateStore>) {
    for (id, finished) in [("old", Some(10)), ("new", Some(30)), ("running", None)] {
        s.insert_execution(&execution(id)).expect("insert");
        for seq in 1..=3 {
            s.append_chunk(id, chunk(seq, "x"), (seq, 0)).await.expect("append");
        }
        if let Some(at) = finished {
            s.finish_execution(id, &ended(ExecStatus::Success, 0, None), at).expect("finish");
        }
    }
    assert_eq!(s.prune_executions(20, usize::MAX).expect("prune"), 1);
    assert!(s.execution("old").expect("read").is_none(), "an old finished execution stayed");
    assert!(s.execution("new").expect("read").is_some() && s.execution("running").expect("read").is_some());
    loop {
        let (_, left) = s.drop_pruned_chunks().expect("drop chunks");
        if !left {
            break;
        }
    }
    assert!(s.chunks("old", 0, 10).expect("chunks").is_empty(), "a pruned execution's output stayed");
    assert_eq!(s.chunks("new", 0, 10).expect("chunks").len(), 3);
    // However old, a running execution stays.
    assert_eq!(s.prune_executions(i64::MAX, usize::MAX).expect("prune"), 1);
    assert!(s.execution("running").expect("read").is_some(), "a running execution was pruned");

    let mut killed = sandbox("sb-killed", "t", "rn-a", 1);
    killed.state = SandboxState::Killed;
    s.insert_sandbox(&killed).expect("insert");
    let mut lost = sandbox("sb-lost", "t", "rn-a", 1);
    lost.state = SandboxState::Lost;
    s.insert_sandbox(&lost).expect("insert");
    assert_eq!(s.prune_sandboxes(1001).expect("prune"), 0, "ended at 1001, not before");
    assert_eq!(s.prune_sandboxes(1002).expect("prune"), 1);
    assert!(s.sandbox("sb-killed").expect("read").is_none());
    assert!(s.sandbox("sb-lost").expect("read").is_some(), "a lost sandbox is not ended");

    s.insert_key("key_t", "t", "h-t", false, 1).expect("key");
    s.insert_session("h-gone", "key_t", "session", 50).expect("session");
    s.insert_session("h-live", "key_t", "session", 500).expect("session");
    assert_eq!(s.prune_sessions(50).expect("prune"), 1);
    assert!(s.session("h-live", "session", 60).expect("read").is_some());
    assert!(s.used_bytes().expect("used") > 0);
}

/// The SQLite store, each test on a database file of its own in a temp dir.
mod sqlite {
    use super::*;
    use crate::store::Store;

    struct Sqlite;

    impl Backend for Sqlite {
        type Place = tempfile::TempDir;

        fn place() -> tempfile::TempDir {
            tempfile::tempdir().expect("temp dir")
        }

        fn open(place: &tempfile::TempDir) -> Arc<dyn StateStore> {
            Arc::new(Store::open(&place.path().join("sandstream.db")).expect("open"))
        }
    }

    contract_tests!(Sqlite);
}
