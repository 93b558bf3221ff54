//! The store's interface: everything the rest of the server asks of its state, in five
//! parts by domain, named together as [`StateStore`]. The server holds an
//! `Arc<dyn StateStore>`; the SQLite store (`Store`) implements each part in a file of
//! its own (`keys.rs`, `runners.rs`, `sandboxes.rs`, `executions.rs`, `prune.rs`), and a
//! second backend implements the same five. What every backend must do is checked by
//! the contract tests (`contract.rs`), written once against this interface.
//!
//! Calls are short and synchronous (callers on the async runtime make them directly, as
//! they did on the SQLite store), except [`ExecutionStore::append_chunk`], which waits
//! for a commit and so returns a future (boxed: a trait object cannot have `async fn`).
//! Times are ms since the epoch.

use std::future::Future;
use std::pin::Pin;

use super::error::{AppendError, Result};
use super::rows::{Chunk, ExecutionRow, KeyRow, Outcome, Principal, RunnerRow, SandboxRow, Usage};
use crate::state::{Phase, SandboxState};

/// A future that may move between threads, borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything the server asks of its state: the five parts as one, so that the server
/// holds one `Arc<dyn StateStore>`. A backend implements the parts; every type that has
/// them all is a `StateStore`.
pub(crate) trait StateStore:
    KeyStore + RunnerStore + SandboxStore + ExecutionStore + PruneStore + Send + Sync
{
}

impl<T: KeyStore + RunnerStore + SandboxStore + ExecutionStore + PruneStore + Send + Sync> StateStore for T {}

/// API keys (a key is a tenant) and the browser's sessions, which stand for a key.
pub(crate) trait KeyStore {
    /// Stores a new key; only its hash is kept.
    fn insert_key(&self, id: &str, name: &str, hash: &str, admin: bool, now: i64) -> Result<()>;

    /// Whether a live (not revoked) admin key exists.
    fn admin_key_exists(&self) -> Result<bool>;

    /// The live key whose hash is `hash`.
    fn key_by_hash(&self, hash: &str) -> Result<Option<Principal>>;

    /// Every key, revoked ones too, oldest first.
    fn list_keys(&self) -> Result<Vec<KeyRow>>;

    /// Revokes a key and deletes its sessions. True when a live key was revoked.
    fn revoke_key(&self, id: &str) -> Result<bool>;

    /// Stores a session of `kind` (`login`, `session`) for key `key_id`.
    fn insert_session(&self, hash: &str, key_id: &str, kind: &str, expires_at: i64) -> Result<()>;

    /// A live session of `kind` of a live key; a `login` one is deleted as it is read (it
    /// works once).
    fn session(&self, hash: &str, kind: &str, now: i64) -> Result<Option<Principal>>;

    /// Deletes the browser session (kind `session`) whose hash is `hash`: signing out.
    /// True when one was deleted.
    fn delete_session(&self, hash: &str) -> Result<bool>;
}

/// The runners that registered.
pub(crate) trait RunnerStore {
    /// Stores a runner, or replaces what is known of one that registers again.
    fn upsert_runner(&self, r: &RunnerRow) -> Result<()>;

    /// Records a heartbeat; false when the runner is unknown.
    fn touch_runner(&self, id: &str, now: i64) -> Result<bool>;

    fn runner(&self, id: &str) -> Result<Option<RunnerRow>>;

    /// Every runner, by id.
    fn runners(&self) -> Result<Vec<RunnerRow>>;
}

/// Sandboxes, and what they take of their tenant's quotas and their runner's capacity.
/// A sandbox's token is given in the clear and read back in the clear; at rest it is
/// sealed (`seal.rs`).
pub(crate) trait SandboxStore {
    fn insert_sandbox(&self, s: &SandboxRow) -> Result<()>;

    fn sandbox(&self, id: &str) -> Result<Option<SandboxRow>>;

    /// Tenant `tenant`'s sandboxes that are not killed, oldest first.
    fn sandboxes_of(&self, tenant: &str) -> Result<Vec<SandboxRow>>;

    /// Runner `runner_id`'s sandboxes that are not killed.
    fn sandboxes_on(&self, runner_id: &str) -> Result<Vec<SandboxRow>>;

    /// Sandboxes not killed whose time to live ended by `now`.
    fn expired_sandboxes(&self, now: i64) -> Result<Vec<SandboxRow>>;

    fn set_sandbox_state(&self, id: &str, state: SandboxState) -> Result<()>;

    /// Where a sandbox's agent is reached now, and with what token: the sandbox is
    /// running again. A killed sandbox stays killed.
    fn set_sandbox_conn(&self, id: &str, host: &str, port: u16, token: &str) -> Result<()>;

    fn set_sandbox_expiry(&self, id: &str, expires_at: i64) -> Result<()>;

    /// Marks every running sandbox of a silent runner as lost; returns how many.
    fn mark_runner_lost(&self, runner_id: &str) -> Result<usize>;

    /// What tenant `tenant`'s sandboxes (running or lost) take.
    fn usage_of(&self, tenant: &str) -> Result<Usage>;

    /// Sandboxes counted against runner `runner_id`'s capacity (running or lost).
    fn live_count(&self, runner_id: &str) -> Result<u32>;

    /// How many sandboxes the store holds in each state, every state listed (zero ones
    /// too) in `SandboxState::ALL` order: what `/metrics` reports.
    fn count_by_state(&self) -> Result<Vec<(SandboxState, u64)>>;
}

/// Executions and every chunk of their output.
pub(crate) trait ExecutionStore {
    fn insert_execution(&self, e: &ExecutionRow) -> Result<()>;

    /// An execution, with its progress so far when it is running.
    fn execution(&self, id: &str) -> Result<Option<ExecutionRow>>;

    /// Every execution still running (a restarted server resumes them).
    fn running_executions(&self) -> Result<Vec<ExecutionRow>>;

    /// A phase's command started: later output resumes from offsets 0 of this command.
    /// `last_seq`: the execution's last chunk so far.
    fn set_command(&self, id: &str, phase: Phase, command_id: &str, last_seq: u64) -> Result<()>;

    /// Stores one chunk and the byte offsets it brings the execution to, atomically,
    /// and hands the chunk back once it is committed: **what a caller emits after this
    /// returns, a replay ([`ExecutionStore::chunks`]) never misses.** No blocking call
    /// is made on the caller's thread, and a bad chunk (a seq stored already) fails
    /// alone, whatever is appended beside it. An execution's chunks must be appended one
    /// after another (each awaited).
    fn append_chunk<'a>(
        &'a self,
        id: &'a str,
        chunk: Chunk,
        offsets: (u64, u64),
    ) -> BoxFuture<'a, std::result::Result<Chunk, AppendError>>;

    /// The offsets an execution's current command has reached (output held back mid-
    /// character is not counted); `last_seq`: its last chunk.
    fn set_offsets(&self, id: &str, last_seq: u64, offsets: (u64, u64)) -> Result<()>;

    /// Records how an execution ended, unless it already has (the first end stays),
    /// keeping its progress (last seq, offsets) in its row.
    fn finish_execution(&self, id: &str, outcome: &Outcome, now: i64) -> Result<()>;

    /// Bytes of output (UTF-8) an execution has stored so far, over all its chunks: what
    /// a restarted server counts against the output limit.
    fn output_bytes(&self, id: &str) -> Result<u64>;

    /// Chunks with `seq > after_seq`, in order, at most `limit`. Never waits for the
    /// writes of live output, nor makes them wait (replays may read megabytes).
    fn chunks(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Chunk>>;
}

/// Deleting what retention (`retention.rs`) decided to delete, in steps short enough
/// that live output is never held up for long (the caller pauses between them), and
/// giving the space back.
pub(crate) trait PruneStore {
    /// The database's size in pages, its free pages and its page size. A backend that
    /// gives space back by itself reports no free pages.
    fn pages(&self) -> Result<(u64, u64, u64)>;

    /// Bytes in the database's pages that are not free: what `--retention-mb` bounds.
    fn used_bytes(&self) -> Result<u64> {
        let (pages, free, size) = self.pages()?;
        Ok(pages.saturating_sub(free) * size)
    }

    /// One step: deletes finished executions that finished before `before`, oldest
    /// first, at most `max`. A running execution is never touched. From then on a read
    /// of one finds nothing; its chunks go in [`PruneStore::drop_pruned_chunks`].
    /// Returns how many went.
    fn prune_executions(&self, before: i64, max: usize) -> Result<usize>;

    /// One step: deletes chunks of executions deleted already. Returns how many went and
    /// whether any are left.
    fn drop_pruned_chunks(&self) -> Result<(usize, bool)>;

    /// One step: deletes killed sandboxes that expired before `before` (a kill ends a
    /// sandbox at its expiry or sooner, so each of these ended before then). Returns
    /// how many went.
    fn prune_sandboxes(&self, before: i64) -> Result<usize>;

    /// Deletes sessions that expired by `now`; returns how many.
    fn prune_sessions(&self, now: i64) -> Result<usize>;

    /// One step: gives up to `max` free pages back to the file system. Returns the free
    /// pages left (as many as before when it cannot).
    fn vacuum_step(&self, max: u64) -> Result<u64>;
}
