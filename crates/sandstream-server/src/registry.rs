//! Runners as the server sees them: the templates each one has, placement, calls to a
//! runner's control API, and the background duties (runners gone silent, sandboxes past
//! their TTL).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandstream_runner_protocol::{
    AddSshAccess, CreateSandbox, DEFAULT_TEMPLATE, ErrorCode, RunnerSandbox, is_valid_template_name,
};

use crate::error::{AppError, AppResult};
use crate::exec::Agents;
use crate::runner_client::{CallError, RunnerClient};
use crate::state::SandboxState;
use crate::store::{RunnerRow, SandboxRow, StateStore};
use crate::time::now_ms;

pub(crate) struct Registry {
    store: Arc<dyn StateStore>,
    /// A killed sandbox's agent connection is dropped.
    agents: Arc<Agents>,
    client: RunnerClient,
    heartbeat_timeout_ms: i64,
    /// Each runner's templates, as its last registration or heartbeat reported them.
    /// Memory only: runners report them every heartbeat, so a restarted server knows
    /// them again within one.
    templates: Mutex<HashMap<String, Vec<String>>>,
    /// Sandboxes placed on each runner whose create has not been stored yet: placement
    /// counts them as live, so concurrent creates cannot all take the same free slot.
    placing: Mutex<HashMap<String, u32>>,
}

/// A slot on a runner held from placement until the sandbox is stored (or its create
/// failed); given back on drop.
pub(crate) struct Placed<'a> {
    pub runner: RunnerRow,
    placing: &'a Mutex<HashMap<String, u32>>,
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        let mut placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = placing.get_mut(&self.runner.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                placing.remove(&self.runner.id);
            }
        }
    }
}

/// Most template names kept per runner.
const MAX_TEMPLATES: usize = 4096;

/// A live runner, as placement weighs it.
pub(crate) struct Candidate {
    pub row: RunnerRow,
    /// Its sandboxes counted against its capacity.
    pub live: u32,
    /// Its templates; `None` when it has not reported since this server started.
    pub templates: Option<Vec<String>>,
}

impl Candidate {
    /// Whether it has `template`; one that has not reported yet is taken to have only
    /// `default`, which every runner builds.
    fn has(&self, template: &str) -> bool {
        match &self.templates {
            Some(t) => t.iter().any(|n| n == template),
            None => template == DEFAULT_TEMPLATE,
        }
    }
}

/// The runner with the most free capacity among the live `candidates` that have
/// `template`. Errors say why none fits: none connected, all full, not reported yet, or
/// no such template (naming the ones there are).
pub(crate) fn choose(candidates: Vec<Candidate>, template: &str) -> AppResult<RunnerRow> {
    if candidates.is_empty() {
        return Err(AppError::NoCapacity("no runner is connected; start one with `sandstream runner`".into()));
    }
    let unreported = candidates.iter().any(|c| c.templates.is_none());
    let available = available(&candidates);
    let mut best: Option<(i64, RunnerRow)> = None;
    let mut with_template = 0;
    for c in candidates.into_iter().filter(|c| c.has(template)) {
        with_template += 1;
        let free = i64::from(c.row.capacity) - i64::from(c.live);
        if free > 0 && best.as_ref().is_none_or(|(f, _)| free > *f) {
            best = Some((free, c.row));
        }
    }
    match best {
        Some((_, r)) => Ok(r),
        None if with_template > 0 && template == DEFAULT_TEMPLATE => {
            Err(AppError::NoCapacity("every runner is at capacity; try again later".into()))
        }
        None if with_template > 0 => {
            Err(AppError::NoCapacity(format!("every runner with template {template} is at capacity; try again later")))
        }
        None if unreported => Err(AppError::NoCapacity(
            "runners have not reported their templates to this server yet; try again in a few seconds".into(),
        )),
        None => Err(AppError::BadRequest(format!(
            "template {template:?} does not exist on any connected runner; available templates: {}",
            available.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Every template of `candidates`, with the ids of the runners that have it.
pub(crate) fn available(candidates: &[Candidate]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in candidates {
        let names = c.templates.clone().unwrap_or_else(|| vec![DEFAULT_TEMPLATE.to_string()]);
        for n in names {
            out.entry(n).or_default().insert(c.row.id.clone());
        }
    }
    out
}

impl Registry {
    /// `secret` is the runner secret, sent with every call to a runner's control API; a
    /// runner silent for `heartbeat_timeout` is not alive.
    pub(crate) fn new(
        store: Arc<dyn StateStore>,
        agents: Arc<Agents>,
        secret: String,
        heartbeat_timeout: Duration,
    ) -> Registry {
        // Creating a sandbox may wait for a template build on a fresh runner.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap_or_default();
        Registry {
            store,
            agents,
            client: RunnerClient::new(http, secret),
            heartbeat_timeout_ms: heartbeat_timeout.as_millis() as i64,
            templates: Mutex::new(HashMap::new()),
            placing: Mutex::new(HashMap::new()),
        }
    }

    /// Records the templates a runner reported (`None`: a runner older than the field,
    /// which has `default` only). Invalid names are dropped.
    pub(crate) fn set_templates(&self, runner_id: &str, reported: Option<Vec<String>>) {
        let mut names: Vec<String> = match reported {
            Some(list) => list.into_iter().filter(|n| is_valid_template_name(n)).take(MAX_TEMPLATES).collect(),
            None => vec![DEFAULT_TEMPLATE.to_string()],
        };
        names.sort();
        names.dedup();
        self.templates.lock().unwrap_or_else(|p| p.into_inner()).insert(runner_id.to_string(), names);
    }

    /// The templates `runner_id` last reported, if it has since this server started.
    pub(crate) fn templates_of(&self, runner_id: &str) -> Option<Vec<String>> {
        self.templates.lock().unwrap_or_else(|p| p.into_inner()).get(runner_id).cloned()
    }

    pub(crate) fn alive(&self, r: &RunnerRow, now: i64) -> bool {
        now - r.last_heartbeat <= self.heartbeat_timeout_ms
    }

    /// The live runners, with their load and templates.
    pub(crate) fn candidates(&self) -> AppResult<Vec<Candidate>> {
        let now = now_ms();
        let mut out = Vec::new();
        for r in self.store.runners()? {
            if self.alive(&r, now) {
                let live = self.store.live_count(&r.id)?;
                let templates = self.templates_of(&r.id);
                out.push(Candidate { row: r, live, templates });
            }
        }
        Ok(out)
    }

    /// The live runner with `template` and the most free capacity (see [`choose`]),
    /// with a slot on it held until the returned guard drops. Counting and placing
    /// happen under one lock: checking the count and creating after it let 40 parallel
    /// creates make 27 sandboxes on a runner with room for 12.
    pub(crate) fn place(&self, template: &str) -> AppResult<Placed<'_>> {
        let mut placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidates = self.candidates()?;
        for c in &mut candidates {
            c.live += placing.get(&c.row.id).copied().unwrap_or(0);
        }
        let runner = choose(candidates, template)?;
        *placing.entry(runner.id.clone()).or_default() += 1;
        Ok(Placed { runner, placing: &self.placing })
    }

    /// Creates a sandbox on `runner`. Its refusals the caller can act on keep their
    /// meaning: a bad request is a 400, a full runner a 503.
    pub(crate) async fn create(&self, runner: &RunnerRow, req: &CreateSandbox) -> AppResult<RunnerSandbox> {
        self.client.create(&runner.control_url, req).await.map_err(|e| match e {
            CallError::Refused { code: ErrorCode::BadRequest, message } => AppError::BadRequest(message),
            CallError::Refused { code: ErrorCode::NoCapacity, message } => AppError::NoCapacity(message),
            e => AppError::internal(format!("runner {}: create: {e}", runner.id)),
        })
    }

    /// Sets a sandbox's time to live on its runner.
    pub(crate) async fn set_timeout(&self, runner: &RunnerRow, id: &str, timeout_ms: u64) -> AppResult<()> {
        self.client.set_timeout(&runner.control_url, id, timeout_ms).await.map_err(|e| match e {
            CallError::Refused { code: ErrorCode::NotFound, .. } => {
                AppError::Conflict(format!("sandbox {id} no longer runs on its runner"))
            }
            e => AppError::internal(format!("runner {}: set timeout of {id}: {e}", runner.id)),
        })
    }

    /// Adds SSH credentials to a sandbox on its runner (with `replace_passwords`, its
    /// passwords are replaced by those given).
    pub(crate) async fn ssh_access(
        &self,
        runner: &RunnerRow,
        id: &str,
        req: &AddSshAccess,
        replace_passwords: bool,
    ) -> AppResult<()> {
        self.client.ssh_access(&runner.control_url, id, req, replace_passwords).await.map_err(|e| match e {
            CallError::Refused { code: ErrorCode::NotFound, .. } => {
                AppError::Conflict(format!("sandbox {id} no longer runs on its runner"))
            }
            CallError::Refused { code: ErrorCode::BadRequest, message } => AppError::BadRequest(message),
            e => AppError::internal(format!("runner {}: set SSH access of {id}: {e}", runner.id)),
        })
    }

    /// Kills a sandbox on its runner; one the runner no longer has counts as killed.
    pub(crate) async fn kill(&self, runner: &RunnerRow, id: &str) -> AppResult<()> {
        match self.client.kill(&runner.control_url, id).await {
            Ok(()) | Err(CallError::Refused { code: ErrorCode::NotFound, .. }) => Ok(()),
            Err(e) => Err(AppError::internal(format!("runner {}: kill {id}: {e}", runner.id))),
        }
    }

    /// Kills a sandbox everywhere: on its runner (when reachable) and in the state.
    pub(crate) async fn kill_sandbox(&self, sb: &SandboxRow) -> AppResult<()> {
        if let Some(runner) = self.store.runner(&sb.runner_id)?
            && let Err(e) = self.kill(&runner, &sb.id).await
        {
            // The runner's next heartbeat lists it; the server then tells it to go.
            tracing::warn!(sandbox_id = %sb.id, error = %e, "runner did not confirm the kill");
        }
        self.store.set_sandbox_state(&sb.id, SandboxState::Killed)?;
        self.agents.forget(&sb.id);
        Ok(())
    }

    /// Once a second: runners that went silent have their sandboxes marked lost;
    /// sandboxes past their TTL are killed.
    pub(crate) async fn monitor(self: Arc<Registry>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = self.monitor_once().await {
                tracing::warn!(error = %e, "monitor pass failed");
            }
        }
    }

    async fn monitor_once(&self) -> AppResult<()> {
        let now = now_ms();
        for r in self.store.runners()? {
            if !self.alive(&r, now) {
                let n = self.store.mark_runner_lost(&r.id)?;
                if n > 0 {
                    tracing::warn!(runner_id = %r.id, sandboxes = n, "runner stopped sending heartbeats; its sandboxes are lost");
                }
            }
        }
        for sb in self.store.expired_sandboxes(now)? {
            tracing::info!(sandbox_id = %sb.id, "sandbox reached its timeout; killing it");
            self.kill_sandbox(&sb).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(id: &str, capacity: u32, live: u32, templates: Option<&[&str]>) -> Candidate {
        Candidate {
            row: RunnerRow {
                id: id.into(),
                name: id.into(),
                control_url: "http://127.0.0.1:1".into(),
                advertise_host: "127.0.0.1".into(),
                capacity,
                backend: "oci".into(),
                last_heartbeat: 0,
            },
            live,
            templates: templates.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_sandbox_goes_to_the_freest_runner_that_has_its_template() {
        let fleet = || {
            vec![
                runner("rn-a", 10, 0, Some(&["default"])),
                runner("rn-b", 10, 5, Some(&["default", "py"])),
                runner("rn-c", 10, 8, Some(&["default", "py", "node"])),
            ]
        };
        assert_eq!(choose(fleet(), "default").expect("default").id, "rn-a");
        assert_eq!(choose(fleet(), "py").expect("py").id, "rn-b");
        assert_eq!(choose(fleet(), "node").expect("node").id, "rn-c");
        match choose(fleet(), "ruby") {
            Err(AppError::BadRequest(m)) => {
                assert!(m.contains("\"ruby\"") && m.ends_with("available templates: default, node, py"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_unreported_and_absent_runners_are_told_apart() {
        let full = vec![runner("rn-a", 2, 2, Some(&["default", "py"])), runner("rn-b", 9, 0, Some(&["default"]))];
        match choose(full, "py") {
            Err(AppError::NoCapacity(m)) => assert!(m.contains("template py is at capacity"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A runner not heard from since the server started has `default` only, for now.
        let unreported = vec![runner("rn-a", 2, 0, None)];
        assert_eq!(choose(unreported, "default").expect("default").id, "rn-a");
        match choose(vec![runner("rn-a", 2, 0, None)], "py") {
            Err(AppError::NoCapacity(m)) => assert!(m.contains("not reported"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(choose(vec![], "default"), Err(AppError::NoCapacity(m)) if m.contains("no runner")));
    }

    #[test]
    fn reported_names_are_cleaned_and_old_runners_have_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("db")).expect("store");
        let reg = Registry::new(Arc::new(store), Arc::default(), "s".into(), Duration::from_secs(10));
        reg.set_templates("rn-a", Some(vec!["py".into(), "../x".into(), "default".into(), "py".into()]));
        assert_eq!(reg.templates_of("rn-a").expect("reported"), ["default", "py"]);
        reg.set_templates("rn-old", None);
        assert_eq!(reg.templates_of("rn-old").expect("reported"), ["default"]);
        assert_eq!(reg.templates_of("rn-new"), None);
    }
}
