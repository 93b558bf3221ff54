//! All commands of this sandbox: running ones, and finished ones kept for replay until
//! evicted (oldest first, past a count or a spool-size budget).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::command::Command;
use crate::config::ExecConfig;
use crate::error::{AgentError, Result};
use crate::spec::CommandSpec;
use crate::standby::StandbyShell;

/// A command started or ended; fed to `OpenSession` streams.
#[derive(Clone, Debug)]
pub(crate) enum Lifecycle {
    Started(Arc<Command>),
    Ended(Arc<Command>),
}

/// Every operation is O(log n) in the number of kept commands: a finishing command
/// must not cost a scan of the up to `max_finished` kept ones.
#[derive(Debug, Default)]
struct Inner {
    /// Each command with its start sequence number.
    by_id: HashMap<String, (u64, Arc<Command>)>,
    /// Start order, for listing: sequence number to id.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    /// Finished commands still kept, oldest first, with the bytes each spooled (fixed
    /// once a command has ended).
    finished: VecDeque<(String, u64)>,
    /// The sum of `finished`'s byte counts.
    finished_bytes: u64,
    shutting_down: bool,
}

/// The agent's table of commands.
#[derive(Debug)]
pub(crate) struct Registry {
    cfg: ExecConfig,
    standby: Arc<StandbyShell>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Lifecycle>,
}

impl Registry {
    /// Creates the registry and removes stale spools: those of an earlier agent process
    /// belong to commands that died with it. Only files named `<uuid>.log` are touched,
    /// and a directory the agent creates is private (0700); an existing one is left as
    /// it is (spool files themselves are always 0600).
    /// The Node.js stdio module is written here too; when it cannot be, commands run
    /// without it (and the agent says so).
    pub(crate) fn new(mut cfg: ExecConfig) -> Result<Arc<Registry>> {
        if let Some(path) = &cfg.node_preload
            && let Err(e) = crate::node_stdio::install(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the Node.js stdio preload; Node.js programs may lose output at process.exit()");
            cfg.node_preload = None;
        }
        let dir = &cfg.spool_dir;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AgentError::io(format!("create spool dir {}", dir.display()), e))?;
        }
        let entries =
            std::fs::read_dir(dir).map_err(|e| AgentError::io(format!("read spool dir {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let stale =
                name.to_str().and_then(|n| n.strip_suffix(".log")).is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Arc::new(Registry {
            standby: StandbyShell::new(&cfg),
            cfg,
            inner: Mutex::new(Inner::default()),
            events: broadcast::channel(1024).0,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn exec_config(&self) -> &ExecConfig {
        &self.cfg
    }

    /// Starts the first standby shell (in the background), so the first command gets one.
    pub(crate) fn start_standby(&self) {
        self.standby.refill();
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Lifecycle> {
        self.events.subscribe()
    }

    /// Starts a command and begins supervising it.
    pub(crate) fn start(self: &Arc<Self>, spec: CommandSpec) -> Result<Arc<Command>> {
        if self.lock().shutting_down {
            return Err(AgentError::ShuttingDown);
        }
        let id = new_command_id();
        let (command, supervise) = Command::spawn(id.clone(), spec, &self.cfg, &self.standby)?;
        {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.by_id.insert(id.clone(), (seq, command.clone()));
            inner.order.insert(seq, id);
        }
        tracing::info!(command_id = %command.id, pid = command.pid, command = %command.command, "command started");
        let _ = self.events.send(Lifecycle::Started(command.clone()));
        let registry = self.clone();
        let ended = command.clone();
        let span = tracing::info_span!("command", command_id = %command.id, pid = command.pid);
        tokio::spawn(
            async move {
                supervise.await;
                registry.on_finished(ended);
            }
            .instrument(span),
        );
        Ok(command)
    }

    fn on_finished(&self, command: Arc<Command>) {
        let _ = self.events.send(Lifecycle::Ended(command.clone()));
        let spooled = command.log.disk_bytes();
        let mut inner = self.lock();
        inner.finished.push_back((command.id.clone(), spooled));
        inner.finished_bytes += spooled;
        loop {
            let over = inner.finished.len() > self.cfg.max_finished || inner.finished_bytes > self.cfg.spool_budget;
            // The newest finished command is always kept, so its client can still resume.
            if !over || inner.finished.len() <= 1 {
                break;
            }
            if let Some((old, bytes)) = inner.finished.pop_front() {
                inner.finished_bytes -= bytes;
                if let Some((seq, _)) = inner.by_id.remove(&old) {
                    inner.order.remove(&seq);
                }
                tracing::debug!(command_id = %old, "evicted finished command");
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<Command>> {
        self.lock().by_id.get(id).map(|(_, c)| c.clone()).ok_or_else(|| AgentError::CommandNotFound(id.to_string()))
    }

    pub(crate) fn list(&self) -> Vec<Arc<Command>> {
        let inner = self.lock();
        inner.order.values().filter_map(|id| inner.by_id.get(id).map(|(_, c)| c.clone())).collect()
    }

    /// Refuses new commands, kills the standby shell, sends SIGTERM to every running
    /// command, then SIGKILL to those still running after `grace`. Returns when all have
    /// ended (or a last grace expired).
    pub(crate) async fn terminate_all(&self, grace: Duration) {
        let running: Vec<Arc<Command>> = {
            let mut inner = self.lock();
            inner.shutting_down = true;
            inner.by_id.values().map(|(_, c)| c).filter(|c| c.is_running()).cloned().collect()
        };
        self.standby.close().await;
        for c in &running {
            let _ = c.signal(Signal::SIGTERM);
        }
        let all_done = || running.iter().all(|c| !c.is_running());
        let deadline = tokio::time::Instant::now() + grace;
        while !all_done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for c in running.iter().filter(|c| c.is_running()) {
            let _ = c.signal(Signal::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !all_done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A random (v4) UUID. Ids must not repeat across agent restarts, or a client resuming
/// an old id would attach to a stranger's command. If the kernel cannot give random
/// bytes, the time, pid and a counter still make the id unique; it never panics.
fn new_command_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::warn!(error = %e, "no random bytes for a command id; using time, pid and a counter");
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()) as u64;
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..].copy_from_slice(&(COUNTER.fetch_add(1, Ordering::Relaxed) as u32).to_le_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(spool_dir: std::path::PathBuf) -> ExecConfig {
        ExecConfig {
            shell: "/bin/sh".into(),
            default_cwd: "/".into(),
            spool_dir,
            output_cap: 1 << 20,
            spool_budget: 1 << 20,
            max_finished: 10,
            exit_drain_grace: Duration::from_millis(10),
            run_as: None,
            base_env: std::env::vars_os().collect(),
            standby_shell: false,
            node_preload: None,
        }
    }

    #[test]
    fn start_removes_only_stale_spools_and_never_chmods_an_existing_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let stale = shared.join(format!("{}.log", new_command_id()));
        for f in [&stale, &shared.join("app.log"), &shared.join("notes.txt")] {
            std::fs::write(f, b"x").expect("write");
        }
        Registry::new(cfg(shared.clone())).expect("registry");
        assert!(!stale.exists());
        assert!(shared.join("app.log").exists() && shared.join("notes.txt").exists());
        assert_eq!(std::fs::metadata(&shared).expect("meta").permissions().mode() & 0o7777, 0o1777);

        let fresh = dir.path().join("new/spool");
        Registry::new(cfg(fresh.clone())).expect("registry");
        assert_eq!(std::fs::metadata(&fresh).expect("meta").permissions().mode() & 0o777, 0o700);
    }

    /// Runs `script` through the registry and waits until the registry recorded its end.
    async fn run_to_end(registry: &Arc<Registry>, script: &str) -> String {
        let mut events = registry.subscribe();
        let spec = CommandSpec {
            command: script.into(),
            cwd: "/".into(),
            env: vec![],
            timeout: None,
            stdin: vec![],
            keep_stdin_open: false,
            output_limit: None,
            user: None,
            pty: None,
        };
        let id = registry.start(spec).expect("start").id.clone();
        loop {
            match events.recv().await.expect("lifecycle event") {
                Lifecycle::Ended(c) if c.id == id => break,
                _ => {}
            }
        }
        // `Ended` is sent just before the registry's bookkeeping; take the lock after it.
        for _ in 0..100 {
            if registry.lock().finished.iter().any(|(f, _)| f == &id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        id
    }

    fn listed(registry: &Registry) -> Vec<String> {
        registry.list().iter().map(|c| c.id.clone()).collect()
    }

    #[tokio::test]
    async fn finished_commands_are_evicted_oldest_first_past_the_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry =
            Registry::new(ExecConfig { max_finished: 3, ..cfg(dir.path().join("spool")) }).expect("registry");
        let mut ids = vec![];
        for _ in 0..5 {
            ids.push(run_to_end(&registry, "true").await);
        }
        assert_eq!(listed(&registry), ids[2..].to_vec(), "the three newest, in start order");
        for old in &ids[..2] {
            assert!(matches!(registry.get(old), Err(AgentError::CommandNotFound(_))), "{old} still kept");
        }
        assert_eq!(registry.lock().finished_bytes, 0);
    }

    #[tokio::test]
    async fn finished_commands_are_evicted_past_the_spool_budget_but_the_newest_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry =
            Registry::new(ExecConfig { spool_budget: 10_000, ..cfg(dir.path().join("spool")) }).expect("registry");
        let a = run_to_end(&registry, "head -c 4000 /dev/zero").await;
        let b = run_to_end(&registry, "head -c 4000 /dev/zero").await;
        assert_eq!(listed(&registry), vec![a.clone(), b.clone()], "8000 bytes fit the 10000 budget");
        let c = run_to_end(&registry, "head -c 4000 /dev/zero").await;
        assert_eq!(listed(&registry), vec![b.clone(), c.clone()], "the oldest went to stay within budget");
        let big = run_to_end(&registry, "head -c 20000 /dev/zero").await;
        assert_eq!(listed(&registry), vec![big.clone()], "over budget alone, but the newest is kept");
        let inner = registry.lock();
        assert_eq!(inner.finished_bytes, inner.finished.iter().map(|(_, n)| n).sum::<u64>());
        assert!(inner.finished_bytes >= 20_000, "{}", inner.finished_bytes);
    }

    #[test]
    fn command_ids_are_uuids_and_distinct() {
        let a = super::new_command_id();
        let b = super::new_command_id();
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).expect("uuid").get_version_num(), 4);
    }
}
