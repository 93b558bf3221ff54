//! A runner's heartbeat, reconciled with the store: sandboxes it reports that are stored
//! as lost or with an old address are reachable again; sandboxes it reports that the
//! server does not know are killed after a grace (their creation may still be on its
//! way back); stored sandboxes it no longer has are killed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sandstream_runner_protocol::{Heartbeat, HeartbeatReply};

use crate::exec::Agents;
use crate::registry::Registry;
use crate::state::SandboxState;
use crate::store::{Result, StateStore};

/// A sandbox a runner reports but the server does not know is removed only after this
/// long: its creation may still be on its way back to the server.
const UNKNOWN_GRACE_MS: i64 = 30_000;

/// Clock difference allowed between a runner and this server when a heartbeat's list is
/// compared with creation times.
const CLOCK_SLACK_MS: i64 = 1_000;

/// Whether a sandbox created (on this server's clock) at `created_at` and missing from a
/// heartbeat is gone. A list read after the sandbox was created would have it, so it is
/// gone at once (a dead agent shows within a heartbeat, not 30 s later). A list read
/// before could simply predate it; a runner that does not say when it read its list
/// gets the old grace.
fn gone(created_at: i64, taken_at: Option<i64>, now: i64) -> bool {
    match taken_at {
        Some(t) => created_at + CLOCK_SLACK_MS < t,
        None => now - created_at > UNKNOWN_GRACE_MS,
    }
}

/// Reconciles heartbeats with the store; remembers, between heartbeats, since when each
/// sandbox the server does not know has been reported.
pub(crate) struct Heartbeats {
    store: Arc<dyn StateStore>,
    /// Each runner's templates are recorded here.
    registry: Arc<Registry>,
    /// The connection to a sandbox that moved or is gone is dropped.
    agents: Arc<Agents>,
    /// Sandboxes runners report that the server does not know, since when (ms).
    unknown_since: Mutex<HashMap<String, i64>>,
}

impl Heartbeats {
    pub(crate) fn new(store: Arc<dyn StateStore>, registry: Arc<Registry>, agents: Arc<Agents>) -> Heartbeats {
        Heartbeats { store, registry, agents, unknown_since: Mutex::new(HashMap::new()) }
    }

    /// Takes runner `runner_id`'s heartbeat at `now`: records it and its templates, and
    /// brings the store in line with the sandboxes it reports. The reply lists the
    /// sandboxes the runner should kill; `None` when the runner is unknown (it must
    /// register again).
    pub(crate) fn reconcile(&self, runner_id: &str, beat: &Heartbeat, now: i64) -> Result<Option<HeartbeatReply>> {
        if !self.store.touch_runner(runner_id, now)? {
            return Ok(None);
        }
        self.registry.set_templates(runner_id, beat.templates.clone());
        let reported: HashSet<&str> = beat.sandboxes.iter().map(|s| s.id.as_str()).collect();
        let mut reply = HeartbeatReply::default();
        let mut unknown = self.unknown_since.lock().unwrap_or_else(|p| p.into_inner());
        for s in &beat.sandboxes {
            match self.store.sandbox(&s.id)? {
                Some(sb) if sb.runner_id == runner_id && sb.state != SandboxState::Killed => {
                    unknown.remove(&s.id);
                    if sb.state != SandboxState::Running
                        || sb.host != s.host
                        || sb.port != s.port
                        || sb.token != s.token
                    {
                        tracing::info!(sandbox_id = %s.id, %runner_id, "sandbox reachable again");
                        self.store.set_sandbox_conn(&s.id, &s.host, s.port, &s.token)?;
                        self.agents.forget(&s.id);
                    }
                }
                _ => {
                    let since = *unknown.entry(s.id.clone()).or_insert(now);
                    if now - since >= UNKNOWN_GRACE_MS {
                        reply.kill.push(s.id.clone());
                        unknown.remove(&s.id);
                    }
                }
            }
        }
        drop(unknown);
        for sb in self.store.sandboxes_on(runner_id)? {
            if !reported.contains(sb.id.as_str()) && gone(sb.created_at, beat.taken_at, now) {
                tracing::warn!(sandbox_id = %sb.id, %runner_id, "runner no longer has this sandbox");
                self.store.set_sandbox_state(&sb.id, SandboxState::Killed)?;
                self.agents.forget(&sb.id);
            }
        }
        Ok(Some(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::gone;

    #[test]
    fn a_sandbox_missing_from_a_list_read_after_its_creation_is_gone_at_once() {
        let created = 1_000_000;
        // Read 5 s after the creation: gone, however young the sandbox.
        assert!(gone(created, Some(created + 5_000), created + 5_010));
        // Read before it (or within the clock slack): the list may predate it.
        assert!(!gone(created, Some(created - 100), created + 50));
        assert!(!gone(created, Some(created + 900), created + 950));
        // A runner that does not say when: the old 30 s grace.
        assert!(!gone(created, None, created + 29_000));
        assert!(gone(created, None, created + 31_000));
    }
}
