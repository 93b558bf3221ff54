//! The orchestration of `mod.rs` driven through the recording double (`fake.rs`), no
//! root needed: the order of a create's and a destroy's steps, the cleanup after every
//! failure point of a create, the files a container that will not stop keeps, a destroy
//! made twice, and recovery after a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::fake::{AGENT_LOG, Failure, RUN_FAILED_LOG, Recorder};
use super::*;
use crate::types::{Egress, Limits};

/// A create's steps, in the order of each of its two threads: the first list is the
/// container's way (through the namespace it joins), the second the network's.
const CREATE_CONTAINER: [&str; 8] = [
    "claim_slot",
    "prepare_binds",
    "create_namespace",
    "enter_private_mounts",
    "make_disk",
    "mount_root",
    "run",
    "wait_for_agent",
];
const CREATE_NETWORK: [&str; 3] = ["create_namespace", "connect", "wait_for_agent"];
/// A destroy's steps in order, but for `disconnect`, which runs beside the container's
/// teardown and before the slot is given back.
const DESTROY_CHAIN: [&str; 6] =
    ["kill", "delete", "unmount_host_rootfs", "remove_dir", "release_binds", "release_slot"];

struct Setup {
    rec: Arc<Recorder>,
    state: tempfile::TempDir,
    template: tempfile::TempDir,
    rt: OciRuntime,
}

fn setup(rec: Arc<Recorder>) -> Setup {
    let state = tempfile::tempdir().expect("state dir");
    let template = tempfile::tempdir().expect("template");
    std::fs::set_permissions(template.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rt = runtime(&rec, state.path());
    Setup { rec, state, template, rt }
}

/// A runtime over `state` (a restarted one, when called again) doing its work through `rec`.
fn runtime(rec: &Arc<Recorder>, state: &Path) -> OciRuntime {
    let mut cfg = OciConfig::new(state.to_path_buf(), state.join("agent"));
    cfg.ca_bundle = None;
    cfg.ready_timeout = Duration::from_millis(1500);
    let ids =
        crate::userns::MappedIds { uid_base: nix::unistd::getuid().as_raw(), gid_base: nix::unistd::getgid().as_raw() };
    OciRuntime::with(cfg, rec.clone(), rec.clone(), ids)
}

impl Setup {
    fn spec(&self) -> SandboxSpec {
        SandboxSpec {
            template: self.template.path().to_path_buf(),
            limits: Limits::default(),
            env: vec![("GREETING".into(), "hello".into())],
            egress: Egress::Deny,
        }
    }

    /// The sandbox directories in the state dir.
    fn sandbox_dirs(&self) -> Vec<String> {
        let entries = std::fs::read_dir(self.state.path()).expect("read state dir");
        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("sb-")).collect()
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.state.path().join(id)
    }
}

/// Whether `want` appears in `calls` in this order (other calls between allowed).
fn in_order(calls: &[&str], want: &[&str]) -> bool {
    let mut it = calls.iter();
    want.iter().all(|w| it.any(|c| c == w))
}

fn count(calls: &[&str], call: &str) -> usize {
    calls.iter().filter(|c| **c == call).count()
}

fn sorted(calls: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = calls.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// `calls` is exactly one whole destroy, in its order.
fn assert_one_destroy(calls: &[&str]) {
    let mut want = DESTROY_CHAIN.to_vec();
    want.push("disconnect");
    assert_eq!(sorted(calls), sorted(&want), "one destroy's calls: {calls:?}");
    assert!(in_order(calls, &DESTROY_CHAIN), "destroy order: {calls:?}");
    assert!(in_order(calls, &["disconnect", "release_slot"]), "the slot goes back after its network: {calls:?}");
}

#[test]
fn create_makes_its_steps_in_order_and_the_sandbox_is_reachable_where_it_says() {
    let s = setup(Recorder::new());
    let sb = s.rt.create(&s.spec()).expect("create");
    let calls = s.rec.calls();
    let mut all = CREATE_CONTAINER.to_vec();
    all.push("connect");
    assert_eq!(sorted(&calls), sorted(&all), "each step once: {calls:?}");
    assert!(in_order(&calls, &CREATE_CONTAINER), "container's way: {calls:?}");
    assert!(in_order(&calls, &CREATE_NETWORK), "network's way: {calls:?}");

    // Slot 1: 10.88.0.4/30, the sandbox at .6, published on the port base + 1.
    let suffix = suffix_of(&sb.id).expect("an sb- id").to_string();
    assert_eq!(sb.agent_addr.to_string(), "10.88.0.6:50052");
    assert_eq!(sb.published_port, 40001);
    assert_eq!(sb.token, format!("token-of-{}", sb.id));
    let live = [
        format!("binds {}", sb.id),
        format!("container {}", sb.id),
        format!("netns {suffix}"),
        format!("network {suffix}"),
        "slot 1".to_string(),
    ];
    assert_eq!(s.rec.live(), live);
    let dir = s.dir(&sb.id);
    assert_eq!(std::fs::read_to_string(dir.join("slot")).expect("slot"), "1");
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
    assert!(config.contains(&format!("/var/run/netns/sb-{suffix}")), "the bundle joins the sandbox's namespace");
    assert_eq!(s.rt.list().expect("list"), [sb.id.as_str()]);
    assert!(s.rt.running(&sb.id));
}

/// The destroy order, as the top of `mod.rs` gives it: network teardown beside the
/// container's (kill, delete, the host rootfs, the directory, the bind sources), the
/// slot last.
#[test]
fn kill_undoes_every_step_in_the_destroy_order() {
    let s = setup(Recorder::new());
    let sb = s.rt.create(&s.spec()).expect("create");
    s.rec.clear_calls();
    s.rt.kill(&sb.id).expect("kill");
    assert_one_destroy(&s.rec.calls());
    assert_eq!(s.rec.live(), Vec::<String>::new(), "nothing left");
    assert_eq!(s.sandbox_dirs(), Vec::<String>::new(), "its directory, disk image included, is gone");
    assert!(!s.rt.running(&sb.id));
    assert_eq!(s.rt.kill(&sb.id).expect_err("gone").to_string(), format!("sandbox {} not found", sb.id));
}

#[test]
fn every_failure_point_of_a_create_is_undone_and_leaves_nothing() {
    // What a create has made when `call` fails: the network and the container are made
    // side by side once the namespace is there, so either one's failure lets the other
    // finish its way first.
    let namespace = ["claim_slot", "prepare_binds", "create_namespace"];
    let container = ["enter_private_mounts", "make_disk", "mount_root", "run"];
    let side_by_side = |container_steps: usize| [&namespace[..], &["connect"], &container[..container_steps]].concat();
    let cases: Vec<(&str, Failure, Vec<&str>)> = vec![
        ("prepare_binds", Failure::Error, vec!["claim_slot", "prepare_binds"]),
        ("create_namespace", Failure::Error, namespace.to_vec()),
        ("connect", Failure::Error, side_by_side(4)),
        ("enter_private_mounts", Failure::Error, side_by_side(1)),
        ("make_disk", Failure::Error, side_by_side(2)),
        ("mount_root", Failure::Error, side_by_side(3)),
        ("run", Failure::Error, side_by_side(4)),
        ("wait_for_agent", Failure::Error, [side_by_side(4), vec!["wait_for_agent"]].concat()),
        ("mount_root", Failure::Panic, side_by_side(3)),
        ("connect", Failure::Panic, side_by_side(4)),
    ];
    for (call, how, want) in cases {
        let s = setup(Recorder::failing(call, how));
        let spec = s.spec();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.rt.create(&spec)));
        let case = format!("{call} ({how:?})");
        match (how, r) {
            (Failure::Panic, Err(_)) => {}
            (Failure::Error, Ok(Err(e))) => {
                let shown = e.to_string();
                let want_end = match call {
                    "wait_for_agent" => {
                        format!("agent did not answer on 10.88.0.6:50052 within 1500 ms; its log: {AGENT_LOG}")
                    }
                    "run" => format!("` failed: {RUN_FAILED_LOG}"),
                    _ => format!("`fake {call}` failed: told to fail"),
                };
                assert!(shown.ends_with(&want_end), "{case}: {shown}");
                if call == "run" {
                    assert!(shown.starts_with("`fake run --detach sb-"), "{case}: {shown}");
                }
            }
            (_, r) => panic!("{case}: create did not fail as told: {:?}", r.map(|r| r.map(|sb| sb.id))),
        }
        let calls = s.rec.calls();
        let is_undo = |c: &&str| DESTROY_CHAIN.contains(c) || *c == "disconnect";
        let (undone, made): (Vec<&str>, Vec<&str>) = calls.iter().copied().partition(|c| is_undo(c));
        let last_made = calls.iter().rposition(|c| !is_undo(c));
        let first_undo = calls.iter().position(is_undo);
        assert!(last_made < first_undo, "{case}: the cleanup began before the create ended: {calls:?}");
        assert_eq!(sorted(&made), sorted(&want), "{case}: steps made before the cleanup: {calls:?}");
        assert_one_destroy(&undone);
        assert_eq!(s.rec.live(), Vec::<String>::new(), "{case}: something left");
        assert_eq!(s.sandbox_dirs(), Vec::<String>::new(), "{case}: sandbox directory left");
    }
}

#[test]
fn a_create_with_no_free_slot_makes_nothing_and_undoes_nothing() {
    let s = setup(Recorder::failing("claim_slot", Failure::Error));
    let err = s.rt.create(&s.spec()).expect_err("no slot");
    assert_eq!(err.to_string(), "`fake claim_slot` failed: told to fail");
    assert_eq!(s.rec.calls(), ["claim_slot"]);
    assert_eq!(s.sandbox_dirs(), Vec::<String>::new());
}

#[test]
fn a_container_that_will_not_stop_keeps_its_files_until_it_does() {
    let s = setup(Recorder::new());
    let sb = s.rt.create(&s.spec()).expect("create");
    s.rec.stick(&sb.id);
    s.rec.clear_calls();
    s.rt.kill(&sb.id).expect("kill");
    let calls = s.rec.calls();
    assert_eq!(sorted(&calls), sorted(&["kill", "delete", "unmount_host_rootfs", "disconnect", "release_slot"]));
    assert!(in_order(&calls, &["kill", "delete", "unmount_host_rootfs", "release_slot"]), "{calls:?}");
    // Its network and slot are given back; its files and bind sources stay under it.
    assert_eq!(s.rec.live(), [format!("binds {}", sb.id), format!("container {}", sb.id)]);
    assert_eq!(s.sandbox_dirs(), [sb.id.as_str()]);
    assert!(s.dir(&sb.id).join("config.json").exists());
    assert!(!s.dir(&sb.id).join("slot").exists(), "the kept directory no longer names the slot");
    assert!(s.rt.running(&sb.id));

    // Once it stops, a second kill removes the rest, and gives nothing back twice.
    s.rec.unstick(&sb.id);
    s.rec.clear_calls();
    s.rt.kill(&sb.id).expect("kill again");
    let calls = s.rec.calls();
    assert_eq!(calls, ["kill", "delete", "unmount_host_rootfs", "remove_dir", "release_binds"]);
    assert_eq!(s.rec.live(), Vec::<String>::new());
    assert_eq!(s.sandbox_dirs(), Vec::<String>::new());
}

#[test]
fn a_rootfs_still_mounted_on_the_host_keeps_the_files_too() {
    let s = setup(Recorder::failing("unmount_host_rootfs", Failure::Error));
    let sb = s.rt.create(&s.spec()).expect("create");
    s.rt.kill(&sb.id).expect("kill");
    assert_eq!(count(&s.rec.calls(), "remove_dir"), 0, "never removed through a mounted rootfs");
    assert_eq!(s.sandbox_dirs(), [sb.id.as_str()]);
    assert_eq!(s.rec.live(), [format!("binds {}", sb.id)], "the container and the network are gone");
}

#[test]
fn destroys_racing_or_repeated_give_everything_back_once() {
    let s = setup(Recorder::new());
    let sb = s.rt.create(&s.spec()).expect("create");
    s.rec.clear_calls();
    // A user's kill racing the time-to-live pass, then a recovery's.
    std::thread::scope(|t| {
        t.spawn(|| s.rt.destroy(&sb.id));
        t.spawn(|| s.rt.destroy(&sb.id));
    });
    s.rt.destroy(&sb.id);
    let calls = s.rec.calls();
    assert_eq!(count(&calls, "release_slot"), 1, "{calls:?}");
    assert_eq!(count(&calls, "disconnect"), 1, "{calls:?}");
    assert_eq!(count(&calls, "kill"), 3, "each destroy makes sure: {calls:?}");
    assert_eq!(s.rec.live(), Vec::<String>::new());
    assert_eq!(s.sandbox_dirs(), Vec::<String>::new());
}

#[test]
fn recovery_adopts_running_sandboxes_and_removes_the_rest() {
    let s = setup(Recorder::new());
    let alive = s.rt.create(&s.spec()).expect("create");
    let dead = s.rt.create(&s.spec()).expect("create");
    s.rec.init_dies(&dead.id);
    s.rec.clear_calls();

    let restarted = runtime(&s.rec, s.state.path());
    let found = restarted.recover().expect("recover");
    assert_eq!(found.len(), 1, "only the running one is adopted");
    let (a, f) = (&alive, &found[0]);
    assert_eq!((&f.id, &f.token, f.agent_addr, f.published_port), (&a.id, &a.token, a.agent_addr, a.published_port));
    assert_eq!(s.sandbox_dirs(), [alive.id.as_str()]);
    assert!(!s.rec.live().iter().any(|l| l.ends_with(&dead.id) || l.ends_with(suffix_of(&dead.id).unwrap_or("-"))));

    // The adopted one's slot is known again: its kill gives it back.
    restarted.kill(&alive.id).expect("kill");
    assert_eq!(s.rec.live(), Vec::<String>::new());
}
