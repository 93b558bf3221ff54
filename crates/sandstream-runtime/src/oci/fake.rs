//! The unit tests' double for both seams, `Os` and `OciCli` (after youki's recording
//! `Syscall`): it records every call in order, keeps what each step made (slots,
//! namespaces, links, bind sources, containers) until the step that undoes it, and can
//! be told to fail, or panic in, one chosen call. Files go to the test's own state
//! directory (the pid file, agent.log, the token link as a file, an empty disk image),
//! so the orchestration reads and removes them as it would on a host.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::binds::{Binds, Shared};
use crate::error::{Error, Result};
use crate::net::Published;
use crate::types::{Cidr, Egress, Limits};
use crate::userns::MappedIds;

use super::cli::OciCli;
use super::layout::Layout;
use super::os::Os;
use super::rootfs::Mounted;

/// How a chosen call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It returns an error (a wait times out; an agent does not answer).
    Error,
    /// It panics, as a bug or a library might.
    Panic,
}

/// What the agent "wrote" to agent.log in a container the double runs.
pub(crate) const AGENT_LOG: &str = "agent: listening on 0.0.0.0:50052\n";
/// What the OCI runtime "wrote" to agent.log when told to fail `run`.
pub(crate) const RUN_FAILED_LOG: &str = "fake runtime: cannot start the container\n";

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<&'static str>,
    fail: Option<(&'static str, Failure)>,
    last_slot: u32,
    /// What exists on the pretend host: `slot N`, `binds ID`, `netns SUFFIX`,
    /// `network SUFFIX`, `container ID`.
    live: BTreeSet<String>,
    /// Containers whose init runs.
    running: BTreeSet<String>,
    /// Containers whose init survives SIGKILL and `delete --force`.
    stuck: BTreeSet<String>,
}

impl Recorder {
    pub(crate) fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// A double whose `call` fails `how`, every time it is made.
    pub(crate) fn failing(call: &'static str, how: Failure) -> Arc<Recorder> {
        let r = Recorder::default();
        r.inner().fail = Some((call, how));
        Arc::new(r)
    }

    fn inner(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calls made so far, in order.
    pub(crate) fn calls(&self) -> Vec<&'static str> {
        self.inner().calls.clone()
    }

    /// Forgets the calls made so far.
    pub(crate) fn clear_calls(&self) {
        self.inner().calls.clear();
    }

    /// What exists now that some step made and no step has undone yet.
    pub(crate) fn live(&self) -> Vec<String> {
        self.inner().live.iter().cloned().collect()
    }

    /// Container `id`'s init will not die (an unkillable process, a runtime that hangs).
    pub(crate) fn stick(&self, id: &str) {
        self.inner().stuck.insert(id.to_string());
    }

    pub(crate) fn unstick(&self, id: &str) {
        self.inner().stuck.remove(id);
    }

    /// Container `id`'s init dies by itself (the OCI runtime still knows the container).
    pub(crate) fn init_dies(&self, id: &str) {
        self.inner().running.remove(id);
    }

    /// Records `call`, then fails or panics if told to.
    fn step(&self, call: &'static str) -> Result<()> {
        let mut state = self.inner();
        state.calls.push(call);
        match state.fail {
            Some((c, how)) if c == call => {
                drop(state);
                if how == Failure::Panic {
                    panic!("the double panics in {call}, as told");
                }
                Err(Error::Command { command: format!("fake {call}"), detail: "told to fail".into() })
            }
            _ => Ok(()),
        }
    }

    fn add(&self, what: String) {
        self.inner().live.insert(what);
    }

    fn remove(&self, what: &str) {
        self.inner().live.remove(what);
    }
}

impl Os for Recorder {
    fn claim_slot(&self) -> Result<u32> {
        self.step("claim_slot")?;
        let mut state = self.inner();
        state.last_slot += 1;
        let slot = state.last_slot;
        state.live.insert(format!("slot {slot}"));
        Ok(slot)
    }

    fn release_slot(&self, slot: u32) {
        let _ = self.step("release_slot");
        self.remove(&format!("slot {slot}"));
    }

    fn prepare_binds(
        &self,
        state_dir: &Path,
        id: &str,
        dir: &Path,
        _env: &[(String, String)],
        _shared: &Shared<'_>,
        _ids: MappedIds,
        _apt: Option<&Path>,
    ) -> Result<Binds> {
        // What a failure leaves, release removes: recorded as made either way.
        self.add(format!("binds {id}"));
        self.step("prepare_binds")?;
        let token = format!("token-of-{id}");
        std::fs::write(dir.join("token"), &token).map_err(|e| Error::io("write token", e))?;
        let own = state_dir.join(".binds").join(id);
        Ok(Binds {
            token,
            token_file: own.join("token"),
            ctl_dir: own.join("ctl"),
            agent: state_dir.join(".binds/agent"),
            resolv_conf: None,
            ca_bundle: None,
            apt: None,
        })
    }

    fn release_binds(&self, _state_dir: &Path, id: &str) {
        let _ = self.step("release_binds");
        self.remove(&format!("binds {id}"));
    }

    fn create_namespace(&self, suffix: &str) -> Result<()> {
        self.step("create_namespace")?;
        self.add(format!("netns {suffix}"));
        Ok(())
    }

    fn connect(&self, suffix: &str, _: u32, _: &Egress, _: &[Cidr], _: u32, _: &[Published]) -> Result<()> {
        self.step("connect")?;
        self.add(format!("network {suffix}"));
        Ok(())
    }

    fn disconnect(&self, suffix: &str, _slot: u32, _ports: &[Published]) {
        let _ = self.step("disconnect");
        self.remove(&format!("network {suffix}"));
        self.remove(&format!("netns {suffix}"));
    }

    fn enter_private_mounts(&self) -> Result<()> {
        self.step("enter_private_mounts")
    }

    fn make_disk(&self, image: &Path, _limits: &Limits, _blanks: &Path) -> Result<()> {
        self.step("make_disk")?;
        std::fs::write(image, "").map_err(|e| Error::io("make disk", e))
    }

    fn mount_root(&self, _layout: &Layout, _template: &Path, _ids: MappedIds, _netns: &Path) -> Result<Mounted> {
        self.step("mount_root")?;
        Ok(Mounted::default())
    }

    fn unmount_host_rootfs(&self, _rootfs: &Path) -> Result<()> {
        self.step("unmount_host_rootfs")
    }

    fn remove_dir(&self, dir: &Path) -> Result<()> {
        self.step("remove_dir")?;
        crate::remove::remove_tree(dir)
    }

    fn runs(&self, _pid: u32, id: &str) -> bool {
        self.inner().running.contains(id)
    }

    fn wait_for_agent(&self, _addr: SocketAddr, timeout: Duration) -> Result<Duration, Duration> {
        self.step("wait_for_agent").map(|()| Duration::ZERO).map_err(|_| timeout)
    }

    fn agent_answers(&self, _addr: SocketAddr) -> bool {
        self.step("agent_answers").is_ok()
    }
}

impl OciCli for Recorder {
    fn run(&self, id: &str, _bundle: &Path, pid_file: &Path, log: &Path) -> Result<()> {
        let write = |path: &Path, text: &str| std::fs::write(path, text).map_err(|e| Error::io("write", e));
        if let Err(e) = self.step("run") {
            // As the real runtime's error does, it carries what the log holds.
            write(log, RUN_FAILED_LOG)?;
            let Error::Command { command, .. } = e else { return Err(e) };
            return Err(Error::Command { command: format!("{command} --detach {id}"), detail: RUN_FAILED_LOG.into() });
        }
        write(log, AGENT_LOG)?;
        write(pid_file, "4242\n")?;
        let mut state = self.inner();
        state.live.insert(format!("container {id}"));
        state.running.insert(id.to_string());
        Ok(())
    }

    fn state(&self, id: &str) -> Result<String> {
        self.step("state")?;
        let state = self.inner();
        if !state.live.contains(&format!("container {id}")) {
            return Err(Error::Command {
                command: format!("fake state {id}"),
                detail: "container does not exist".into(),
            });
        }
        let status = if state.running.contains(id) { "running" } else { "stopped" };
        Ok(format!(r#"{{"id":"{id}","pid":4242,"status":"{status}"}}"#))
    }

    fn kill(&self, id: &str) {
        let _ = self.step("kill");
        let mut state = self.inner();
        if !state.stuck.contains(id) {
            state.running.remove(id);
        }
    }

    fn delete(&self, id: &str) {
        let _ = self.step("delete");
        let mut state = self.inner();
        if !state.stuck.contains(id) {
            state.running.remove(id);
            state.live.remove(&format!("container {id}"));
        }
    }
}
