//! The threads that make the file system calls.
//!
//! A pool of its own rather than tokio's blocking pool: its threads change their
//! filesystem credentials (`creds.rs`), and no other code of the agent (the standby
//! shell, the deadline reader) should ever run on a thread that might hold a user's;
//! nor should a burst of file requests take the four blocking threads those need. Every
//! job is short (one open, one chunk, one rename): a stream of a gigabyte is many jobs,
//! never one thread held for the whole transfer. Files that could block a read or an
//! open forever (FIFOs, some devices) are opened non-blocking by the callers.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use super::creds::{self, AgentCreds, Creds};
use super::error::{FsError, FsResult};

type Job = Box<dyn FnOnce() + Send>;

/// A retired worker's request for a replacement, with the channel to ask again.
struct Respawn(mpsc::Sender<Respawn>);

/// Threads making file system calls.
const THREADS: usize = 4;
/// Jobs that may wait for a thread; more wait (asynchronously) for room in the queue.
const QUEUED: usize = 256;

/// A handle on the pool; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Job>,
    queue: Arc<Semaphore>,
    agent: Arc<AgentCreds>,
}

impl Pool {
    /// Starts the threads. They end once every handle is gone.
    pub(crate) fn start(agent: AgentCreds) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // Replacements for retired threads are started by this thread, whose
        // credentials are always the agent's (a thread inherits its creator's).
        let (respawn_tx, respawn_rx) = mpsc::channel::<Respawn>();
        for _ in 0..THREADS {
            spawn_worker(rx.clone(), respawn_tx.clone())?;
        }
        std::thread::Builder::new().name("sandstream-files-spawner".into()).spawn(move || {
            while let Ok(Respawn(tx)) = respawn_rx.recv() {
                if let Err(e) = spawn_worker(rx.clone(), tx) {
                    tracing::error!(error = %e, "cannot replace a file thread");
                }
            }
        })?;
        Ok(Pool { inner: Arc::new(Inner { tx, queue: Arc::new(Semaphore::new(QUEUED)), agent: Arc::new(agent) }) })
    }

    pub(crate) fn agent(&self) -> &AgentCreds {
        &self.inner.agent
    }

    /// Runs `f` on a pool thread, as `creds` (`None`: as the agent), and returns its result.
    /// Dropping the future does not stop a job that started; its result is discarded.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        creds: Option<&Creds>,
        f: impl FnOnce() -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        let permit =
            self.inner.queue.clone().acquire_owned().await.map_err(|_| FsError::Internal("file pool closed".into()))?;
        let (tx, rx) = oneshot::channel();
        let creds = creds.cloned();
        let agent = self.inner.agent.clone();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(with_creds(creds.as_ref(), &agent, f));
        });
        self.inner.tx.send(job).map_err(|_| FsError::Internal("file pool closed".into()))?;
        rx.await.map_err(|_| FsError::Internal("a file operation failed unexpectedly".into()))?
    }

    /// Runs `f` on a pool thread as `creds` without waiting for it (cleanups from `Drop`).
    pub(crate) fn detach(&self, creds: Option<&Creds>, f: impl FnOnce() -> FsResult<()> + Send + 'static) {
        let creds = creds.cloned();
        let agent = self.inner.agent.clone();
        let job: Job = Box::new(move || {
            if let Err(e) = with_creds(creds.as_ref(), &agent, f) {
                tracing::warn!(error = %e, "file cleanup failed");
            }
        });
        let _ = self.inner.tx.send(job);
    }
}

fn with_creds<T>(creds: Option<&Creds>, agent: &AgentCreds, f: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
    match creds {
        None => f(),
        Some(c) => match creds::assume(c, agent) {
            Ok(_assumed) => f(),
            Err(e) => Err(FsError::Denied(format!("the agent cannot act as uid {} gid {}: {e}", c.uid, c.gid))),
        },
    }
}

fn spawn_worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>, respawn: mpsc::Sender<Respawn>) -> std::io::Result<()> {
    std::thread::Builder::new().name("sandstream-files".into()).spawn(move || {
        loop {
            let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(job) => job,
                Err(_) => return,
            };
            // A panic unwinds through the credentials guard (which restores them); the
            // job's caller sees its result channel closed.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            if creds::poisoned() {
                // This thread may hold a user's credentials: it ends, and the spawner
                // starts a fresh one in its place.
                let _ = respawn.send(Respawn(respawn.clone()));
                return;
            }
        }
    })?;
    Ok(())
}
