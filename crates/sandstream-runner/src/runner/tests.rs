//! The runner's logic on a fake runtime (`crate::fake_runtime`): capacity, records,
//! recovery, deadlines, the reaper's passes and the warm pool. No root, no runc.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Waker};

use sandstream_runtime::Limits;

use super::{POOL_DEADLINE, Runner, RunnerError};
use crate::fake_runtime::{
    Call, FakeRuntime, HANG_GUARD, Op, default_request, default_template, record_ids, record_json, test_config,
    test_runner, wait_for,
};
use crate::record::now_ms;

fn ids(runner: &Runner) -> Vec<String> {
    runner.list().into_iter().map(|s| s.id).collect()
}

/// Whether the runner asked its server link for a heartbeat now (and takes the request).
fn heartbeat_due(runner: &Runner) -> bool {
    let notified = std::pin::pin!(runner.heartbeat_now.notified());
    matches!(notified.poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()))
}

#[test]
fn concurrent_creates_never_pass_the_capacity_and_a_failed_create_gives_its_slot_back() {
    const THREADS: usize = 12;
    const CAPACITY: u32 = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), CAPACITY, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    // Creates that reach the runtime wait there, so all of them are under way at once;
    // the second of them then fails.
    fake.hold_creates();
    fake.fail(Op::Create, 2);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (tx, runner) = (tx.clone(), &runner);
            scope.spawn(move || tx.send(runner.create(&default_request(None))).expect("send"));
        }
        let mut refused = Vec::new();
        while refused.len() < THREADS - CAPACITY as usize {
            match rx.recv_timeout(HANG_GUARD) {
                Ok(r) => refused.push(r),
                Err(_) => {
                    let reached = fake.creates();
                    fake.release_creates();
                    panic!("{} creates were refused while {reached} reached the runtime", refused.len());
                }
            }
        }
        for r in &refused {
            assert!(matches!(r, Err(RunnerError::Full(4))), "{r:?}");
        }
        assert_eq!(refused[0].as_ref().map(|_| ()).expect_err("full").to_string(), "runner is full: 4 sandboxes");
        fake.wait_for_held_creates(CAPACITY as usize);
        assert_eq!(fake.creates(), CAPACITY as usize, "only creates holding a slot reach the runtime");
        fake.release_creates();
        let held: Vec<_> = (0..CAPACITY).map(|_| rx.recv_timeout(HANG_GUARD).expect("a held create")).collect();
        let failed: Vec<String> = held
            .iter()
            .filter_map(|r| match r {
                Err(RunnerError::Runtime(m)) => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(failed, ["`fake Create` failed: told to fail"]);
        assert_eq!(held.iter().filter(|r| r.is_ok()).count(), 3);
    });
    assert_eq!(ids(&runner), ["fake-1", "fake-2", "fake-3"]);
    assert_eq!(record_ids(&cfg), ["fake-1", "fake-2", "fake-3"]);
    // The failed create's slot is free again: one more fits, and then none.
    let fourth = runner.create(&default_request(None)).expect("the freed slot");
    assert_eq!(fourth.id, "fake-4");
    assert!(matches!(runner.create(&default_request(None)), Err(RunnerError::Full(4))));
    assert_eq!(fake.creates(), 5);
}

#[test]
fn a_failed_create_leaves_no_record_and_no_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 1, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    let mut req = default_request(Some(60_000));
    req.metadata.insert("owner".into(), "alice".into());

    fake.fail_next(Op::Create);
    let err = runner.create(&req).expect_err("the runtime fails");
    assert!(matches!(&err, RunnerError::Runtime(m) if m == "`fake Create` failed: told to fail"), "{err:?}");
    assert!(runner.list().is_empty());
    assert!(record_ids(&cfg).is_empty());

    // Made, but its deadline cannot be given to it: removed, not handed out.
    fake.fail_next(Op::SetDeadline);
    let err = runner.create(&req).expect_err("the deadline fails");
    assert_eq!(err.to_string(), "record sandbox fake-1: `fake SetDeadline` failed: told to fail");
    assert_eq!(fake.kills(), ["fake-1"]);
    assert!(fake.live().is_empty());
    assert!(runner.list().is_empty());
    assert!(matches!(runner.get("fake-1"), Err(RunnerError::NotFound(_))));
    assert!(record_ids(&cfg).is_empty());

    // Positive control, which the failures left room for (capacity 1).
    let sb = runner.create(&req).expect("create");
    assert_eq!(sb.id, "fake-2");
    assert_eq!((sb.host.as_str(), sb.port, sb.token.as_str()), ("192.0.2.7", 40_002, "token-fake-2"));
    assert_eq!(record_ids(&cfg), ["fake-2"]);
    assert_eq!(record_json(&cfg, "fake-2")["metadata"], serde_json::json!({"owner": "alice"}));
    assert_eq!(record_json(&cfg, "fake-2")["expiresAt"], serde_json::json!(sb.expires_at.expect("a deadline")));
}

#[test]
fn a_killed_sandbox_loses_its_record_and_its_runtime_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 4, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    let a = runner.create(&default_request(Some(60_000))).expect("create a");
    let b = runner.create(&default_request(None)).expect("create b");
    assert_eq!(record_ids(&cfg), [a.id.as_str(), b.id.as_str()]);

    runner.kill(&a.id).expect("kill");
    assert_eq!(fake.kills(), [a.id.as_str()]);
    assert_eq!(fake.live(), [b.id.as_str()]);
    assert_eq!(ids(&runner), [b.id.as_str()]);
    assert_eq!(record_ids(&cfg), [b.id.as_str()]);
    let again = runner.kill(&a.id).expect_err("already gone");
    assert_eq!(again.to_string(), format!("sandbox {} not found", a.id));
    assert!(matches!(runner.kill("never"), Err(RunnerError::NotFound(id)) if id == "never"));

    fake.fail_next(Op::Kill);
    let err = runner.kill(&b.id).expect_err("the runtime fails");
    assert!(matches!(&err, RunnerError::Runtime(m) if m == "`fake Kill` failed: told to fail"), "{err:?}");
}

#[test]
fn a_restarted_runner_finds_its_sandboxes_with_their_records_and_drops_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 4, 0);
    let records = cfg.state_dir.join("records");
    std::fs::create_dir_all(&records).expect("records dir");
    let deadline = now_ms() + 600_000;
    let write = |id: &str, json: String| std::fs::write(records.join(format!("{id}.json")), json).expect("record");
    write("sb-a", format!(r#"{{"expiresAt":{deadline},"metadata":{{"owner":"alice"}}}}"#));
    write("sb-b", r#"{"expiresAt":null}"#.into());
    write("sb-gone", r#"{"expiresAt":null,"metadata":{"owner":"bob"}}"#.into());
    let fake = FakeRuntime::new();
    for (id, port) in [("sb-a", 41_001), ("sb-b", 41_002), ("sb-unrecorded", 41_003)] {
        fake.leave(fake.sandbox(id, port));
    }

    let runner = test_runner(&fake, cfg.clone());
    assert_eq!(fake.calls(), [Call::Recover]);
    let listed = runner.list();
    assert_eq!(ids(&runner), ["sb-a", "sb-b", "sb-unrecorded"]);
    let a = &listed[0];
    assert_eq!((a.host.as_str(), a.port, a.token.as_str()), ("192.0.2.7", 41_001, "token-sb-a"));
    assert_eq!(a.expires_at, Some(deadline));
    assert_eq!(a.metadata, BTreeMap::from([("owner".to_string(), "alice".to_string())]));
    assert_eq!((listed[1].expires_at, listed[1].metadata.len()), (None, 0));
    assert_eq!((listed[2].expires_at, listed[2].metadata.len()), (None, 0));
    // The record of a sandbox that did not survive is dropped; the others stay.
    assert_eq!(record_ids(&cfg), ["sb-a", "sb-b"]);
    // The recovered deadline is kept: the reaper kills the sandbox at it.
    assert_eq!(runner.kill_expired(deadline), ["sb-a"]);
    assert_eq!(fake.kills(), ["sb-a"]);
}

#[test]
fn a_runtime_that_cannot_recover_stops_the_runner_and_a_bad_config_reaches_no_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeRuntime::new();
    fake.fail_next(Op::Recover);
    let cfg = test_config(dir.path(), 1, 0);
    let template = default_template(&cfg);
    let err = Runner::with_runtime(cfg.clone(), fake.clone(), template.clone()).err().expect("no runner");
    assert_eq!(format!("{err:#}"), "find sandboxes left by a previous run: `fake Recover` failed: told to fail");

    let bad = crate::RunnerConfig { default_disk_mb: 2048, ..cfg.clone() };
    let err = Runner::with_runtime(bad, fake.clone(), template.clone()).err().expect("no runner");
    assert_eq!(format!("{err:#}"), "--default-disk-mb and --max-disk-mb: diskMb must be between 16 and 1024, got 2048");
    assert_eq!(fake.calls(), [Call::Recover], "the bad config was refused before recovery");
    // Positive control: the recovery that does not fail.
    assert!(Runner::with_runtime(cfg, fake.clone(), template).is_ok());
}

#[test]
fn set_timeout_moves_the_deadline_and_records_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 2, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    let sb = runner.create(&default_request(Some(60_000))).expect("create");
    assert_eq!(fake.deadline(&sb.id), Some(sb.expires_at));

    let before = now_ms();
    let updated = runner.set_timeout(&sb.id, 900_000).expect("set timeout");
    let after = now_ms();
    let t = updated.expires_at.expect("a deadline");
    assert!((before + 900_000..=after + 900_000).contains(&t), "{t} not 900 s after {before}..{after}");
    assert_eq!(runner.get(&sb.id).expect("listed").expires_at, Some(t));
    assert_eq!(record_json(&cfg, &sb.id)["expiresAt"], serde_json::json!(t));
    assert_eq!(fake.deadline(&sb.id), Some(Some(t)), "the sandbox's own deadline moved");

    // The runtime refuses: nothing changes.
    fake.fail_next(Op::SetDeadline);
    let err = runner.set_timeout(&sb.id, 1_200_000).expect_err("the runtime fails");
    assert_eq!(err.to_string(), "set sandbox fake-1's deadline: `fake SetDeadline` failed: told to fail");
    assert_eq!(runner.get(&sb.id).expect("listed").expires_at, Some(t));
    assert_eq!(record_json(&cfg, &sb.id)["expiresAt"], serde_json::json!(t));

    assert!(matches!(runner.set_timeout("never", 60_000), Err(RunnerError::NotFound(_))));
    let err = runner.set_timeout(&sb.id, 10).expect_err("too short");
    assert_eq!(err.to_string(), "timeoutMs must be between 1000 and 86400000, got 10");
}

#[test]
fn the_reaper_kills_expired_sandboxes_and_removes_dead_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 4, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    let short = runner.create(&default_request(Some(1_000))).expect("create");
    let long = runner.create(&default_request(Some(600_000))).expect("create");
    let forever = runner.create(&default_request(None)).expect("create");
    let at = short.expires_at.expect("a deadline");

    assert!(runner.kill_expired(at - 1).is_empty(), "not yet");
    assert!(fake.kills().is_empty());
    assert_eq!(runner.kill_expired(at), [short.id.as_str()]);
    assert_eq!(fake.kills(), [short.id.as_str()]);
    assert_eq!(ids(&runner), [long.id.as_str(), forever.id.as_str()]);
    assert_eq!(record_ids(&cfg), [long.id.as_str(), forever.id.as_str()]);

    assert!(runner.remove_dead().is_empty(), "every agent runs");
    assert!(!heartbeat_due(&runner));
    fake.stop(&long.id);
    assert_eq!(runner.remove_dead(), [long.id.as_str()]);
    assert!(heartbeat_due(&runner), "a heartbeat without the dead sandbox is asked for at once");
    assert_eq!(fake.kills(), [short.id.as_str(), long.id.as_str()]);
    assert_eq!(ids(&runner), [forever.id.as_str()]);
    assert_eq!(record_ids(&cfg), [forever.id.as_str()]);
    assert_eq!(fake.live(), [forever.id.as_str()]);
}

#[test]
fn a_pooled_sandbox_serves_a_create_it_fits_and_a_dead_one_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 4, 0);
    let fake = FakeRuntime::new();
    let runner = test_runner(&fake, cfg.clone());
    let (live, dead, spare) =
        (fake.sandbox("pool-live", 41_001), fake.dead_sandbox("pool-dead"), fake.sandbox("pool-spare", 41_002));
    for sb in [&spare, &live, &dead] {
        fake.adopt(sb.clone());
    }
    // Taken last first: the dead one, then the live one.
    runner.pool.lock().expect("pool").extend([spare, live, dead]);
    assert!(runner.list().is_empty(), "pooled sandboxes are not reported");

    let mut req = default_request(Some(60_000));
    req.metadata.insert("owner".into(), "alice".into());
    let sb = runner.create(&req).expect("create");
    assert_eq!((sb.id.as_str(), sb.port, sb.token.as_str()), ("pool-live", 41_001, "token-pool-live"));
    assert_eq!(fake.kills(), ["pool-dead"], "the dead pooled sandbox is removed, never handed out");
    assert_eq!(fake.creates(), 0);
    assert_eq!(runner.pooled(), 1);
    assert_eq!(record_json(&cfg, "pool-live")["metadata"], serde_json::json!({"owner": "alice"}));
    assert_eq!(fake.deadline("pool-live"), Some(sb.expires_at));

    // Another environment or size is a new sandbox; the pooled one stays.
    let mut with_env = default_request(None);
    with_env.envs.insert("A".into(), "1".into());
    let mut bigger = default_request(None);
    bigger.memory_mb *= 2;
    for req in [with_env, bigger] {
        let sb = runner.create(&req).expect("create");
        assert!(sb.id.starts_with("fake-"), "{}", sb.id);
    }
    assert_eq!(runner.pooled(), 1);
    let made: Vec<Call> = fake.calls().into_iter().filter(|c| matches!(c, Call::Create { .. })).collect();
    let template = default_template(&cfg);
    let limits = Limits::default().with_disk_mb(256);
    let bigger = Limits { memory_bytes: limits.memory_bytes * 2, ..limits };
    let env = vec![("A".to_string(), "1".to_string())];
    assert_eq!(
        made,
        [
            Call::Create { template: template.clone(), limits, env },
            Call::Create { template, limits: bigger, env: Vec::new() },
        ]
    );
}

#[test]
fn the_filler_refills_within_the_capacity_and_a_drain_removes_the_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(dir.path(), 2, 1);
    let fake = FakeRuntime::new();
    let runner = Arc::new(test_runner(&fake, cfg.clone()));
    let started = now_ms();
    let filler = {
        let r = runner.clone();
        std::thread::spawn(move || r.fill_pool())
    };
    wait_for("a pooled sandbox", || runner.pooled() == 1);
    assert!(runner.list().is_empty(), "pooled sandboxes are not reported");
    assert_eq!(
        fake.calls()[1],
        Call::Create { template: default_template(&cfg), limits: Limits::default().with_disk_mb(256), env: vec![] }
    );
    let pooled_deadline = fake.deadline("fake-1").flatten().expect("a pooled sandbox's own deadline");
    let ahead = POOL_DEADLINE.as_millis() as i64;
    assert!((started + ahead..=now_ms() + ahead).contains(&pooled_deadline), "{pooled_deadline}");

    assert_eq!(runner.create(&default_request(None)).expect("take").id, "fake-1");
    wait_for("the pool refilled", || runner.pooled() == 1);
    assert_eq!(runner.create(&default_request(None)).expect("take").id, "fake-2");
    assert!(matches!(runner.create(&default_request(None)), Err(RunnerError::Full(2))));
    // A slot frees up: the filler takes it.
    runner.kill("fake-1").expect("kill");
    wait_for("the pool refilled", || runner.pooled() == 1);
    let before = fake.deadline("fake-3").flatten().expect("a pooled sandbox's own deadline");
    runner.refresh_pool_deadlines();
    assert!(fake.deadline("fake-3").flatten().expect("deadline") >= before);

    runner.drain_pool();
    filler.join().expect("the filler returns after a drain");
    assert_eq!(runner.pooled(), 0);
    assert_eq!(fake.kills(), ["fake-1", "fake-3"], "the drain removed the pooled sandbox");
    assert_eq!(fake.creates(), 3, "the filler never went past the capacity");
    assert_eq!(ids(&runner), ["fake-2"]);
    assert_eq!(fake.live(), ["fake-2"]);
}
