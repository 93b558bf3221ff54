//! Retention: what the server's database keeps. Finished executions (with their output)
//! and ended sandboxes are kept `--retention-days`; the database's pages hold at most
//! `--retention-mb`, and past it the oldest finished executions go first, whatever their
//! age. Running executions and live (or lost) sandboxes are never deleted. Expired
//! browser sessions go too.
//!
//! A pass runs at start, every [`PASS_EVERY`], and whenever the database, measured every
//! [`CHECK_EVERY`] (two pragmas), is over its budget. It deletes in short steps
//! (`store/prune.rs`) with a pause between them, so live output keeps being stored
//! meanwhile: an execution's row first (a GET answers 404 from then on), then its
//! chunks. Freed pages are given back to the file system (incremental vacuum) beyond a
//! slack that a steady stream of output reuses, so the file shrinks after a flood
//! instead of staying at its largest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::{PruneStore, Result, StateStore, Store};
use crate::time::now_ms;

/// `--retention-days` when not given: a week, long enough to come back to a run after a
/// weekend; the size budget bounds the disk whatever the age.
pub const DEFAULT_RETENTION_DAYS: u32 = 7;
/// `--retention-mb` when not given: 1 GiB, at least 64 executions at the default output
/// cap (16 MiB), thousands of ordinary ones.
pub const DEFAULT_RETENTION_MB: u64 = 1024;

/// How often a full pass runs (besides at start and when over budget).
const PASS_EVERY: Duration = Duration::from_secs(600);
/// How often the database's size is compared with its budget.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Between two steps that hold the store: lets the writer thread in.
const PAUSE: Duration = Duration::from_millis(2);
/// Most free space kept for reuse rather than given back: an eighth of the budget, at
/// most this.
const SLACK_MAX: u64 = 64 << 20;
/// A database made before retention is rewritten once at start (`VACUUM`, which holds
/// the store and needs twice its size free) only up to this size once pruned.
const SWITCH_MAX: u64 = 2 << 30;

/// What the database keeps (operator flags of `sandstream server` and `up`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// How long finished executions and ended sandboxes are kept; `None`: no age limit.
    pub max_age: Option<Duration>,
    /// Most bytes the database's pages hold (free pages not counted); `None`: no limit.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// From the flags' units; 0 turns a limit off.
    pub fn from_flags(days: u32, mb: u64) -> Retention {
        Retention {
            max_age: (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400)),
            max_bytes: (mb > 0).then(|| mb.saturating_mul(1 << 20)),
        }
    }

    fn slack_bytes(&self) -> u64 {
        self.max_bytes.map_or(SLACK_MAX, |b| (b / 8).min(SLACK_MAX))
    }
}

impl Default for Retention {
    fn default() -> Retention {
        Retention::from_flags(DEFAULT_RETENTION_DAYS, DEFAULT_RETENTION_MB)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub executions: u64,
    pub chunks: u64,
    pub sandboxes: u64,
    pub sessions: u64,
    /// Bytes given back to the file system.
    pub released_bytes: u64,
    /// The database's pages in use after the pass.
    pub used_bytes: u64,
    /// Still over the size budget with no finished execution left to delete.
    pub over_budget: bool,
}

impl Pruned {
    fn deleted_anything(&self) -> bool {
        self.executions + self.chunks + self.sandboxes + self.sessions > 0
    }
}

/// One pass of `policy` at time `now` (ms since the epoch). Blocking: call it from a
/// blocking thread.
pub(crate) fn prune(store: &dyn StateStore, policy: &Retention, now: i64) -> Result<Pruned> {
    let mut done = Pruned::default();
    // What an interrupted pass left.
    drain(store, &mut done)?;
    if let Some(age) = policy.max_age {
        let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        loop {
            let n = store.prune_executions(before, usize::MAX)?;
            if n == 0 {
                break;
            }
            done.executions += n as u64;
            std::thread::sleep(PAUSE);
            drain(store, &mut done)?;
        }
        loop {
            let n = store.prune_sandboxes(before)?;
            if n == 0 {
                break;
            }
            done.sandboxes += n as u64;
            std::thread::sleep(PAUSE);
        }
    }
    done.sessions += store.prune_sessions(now)? as u64;
    if let Some(max) = policy.max_bytes {
        // One execution at a time, oldest first, until the pages in use fit.
        while store.used_bytes()? > max {
            if store.prune_executions(i64::MAX, 1)? == 0 {
                done.over_budget = true;
                break;
            }
            done.executions += 1;
            std::thread::sleep(PAUSE);
            drain(store, &mut done)?;
        }
    }
    let (_, mut free, page) = store.pages()?;
    let keep = policy.slack_bytes() / page.max(1);
    while free > keep {
        let left = store.vacuum_step(free - keep)?;
        if left >= free {
            // Not in incremental mode (an old database that was not switched).
            break;
        }
        done.released_bytes += (free - left) * page;
        free = left;
        std::thread::sleep(PAUSE);
    }
    done.used_bytes = store.used_bytes()?;
    Ok(done)
}

/// Deletes the chunks of executions already deleted, step by step.
fn drain(store: &dyn StateStore, done: &mut Pruned) -> Result<()> {
    loop {
        let (n, left) = store.drop_pruned_chunks()?;
        done.chunks += n as u64;
        if !left {
            return Ok(());
        }
        std::thread::sleep(PAUSE);
    }
}

/// At start, before serving: a database made before retention is pruned once and then
/// rewritten (`VACUUM`) so that it gives freed pages back from then on, if it is at most
/// [`SWITCH_MAX`] by then. Nothing here is fatal: a database that is not switched still
/// reuses its free pages, it just does not shrink.
pub(crate) fn prepare(store: &Store, policy: &Retention) {
    match store.incremental_vacuum() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => return tracing::warn!(error = %e, "could not read the database's vacuum mode"),
    }
    match prune(store, policy, now_ms()) {
        Ok(done) => log(&done, policy),
        Err(e) => tracing::warn!(error = %e, "pruning the database failed"),
    }
    let used = match store.used_bytes() {
        Ok(used) => used,
        Err(e) => return tracing::warn!(error = %e, "could not measure the database"),
    };
    if used > SWITCH_MAX {
        return tracing::warn!(
            used_mib = used >> 20,
            "this database, made before retention, reuses the space of deleted output but does not shrink; \
             to make it shrink, stop the server and run `sqlite3 sandstream.db 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` \
             (it needs twice the database's size free)"
        );
    }
    tracing::info!(
        used_mib = used >> 20,
        "rewriting the database once (VACUUM) so that deleted output gives its space back"
    );
    let started = Instant::now();
    match store.switch_to_incremental_vacuum() {
        Ok(()) => tracing::info!(ms = started.elapsed().as_millis() as u64, "database rewritten"),
        Err(e) => {
            tracing::warn!(error = %e, "could not rewrite the database; it reuses free space but does not shrink")
        }
    }
}

fn log(done: &Pruned, policy: &Retention) {
    if done.deleted_anything() || done.released_bytes > 0 {
        tracing::info!(
            executions = done.executions,
            chunks = done.chunks,
            sandboxes = done.sandboxes,
            sessions = done.sessions,
            released_mib = done.released_bytes >> 20,
            used_mib = done.used_bytes >> 20,
            "pruned the database"
        );
    }
    if done.over_budget {
        tracing::warn!(
            used_mib = done.used_bytes >> 20,
            budget_mib = policy.max_bytes.unwrap_or(0) >> 20,
            "the database is over --retention-mb with no finished execution left to delete"
        );
    }
}

/// Runs passes of `policy` over `store` for as long as the server serves.
pub(crate) async fn run(store: Arc<dyn StateStore>, policy: Retention) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_pass: Option<Instant> = None;
    // Over budget with nothing to delete at the last pass: the size alone does not start
    // another one before the next scheduled pass.
    let mut stuck = false;
    loop {
        tick.tick().await;
        let due = last_pass.is_none_or(|t| t.elapsed() >= PASS_EVERY);
        let over = !stuck && policy.max_bytes.is_some_and(|max| store.used_bytes().is_ok_and(|used| used > max));
        if !due && !over {
            continue;
        }
        if due {
            last_pass = Some(Instant::now());
        }
        let (s, p) = (store.clone(), policy.clone());
        match tokio::task::spawn_blocking(move || prune(s.as_ref(), &p, now_ms())).await {
            Ok(Ok(done)) => {
                log(&done, &policy);
                stuck = done.over_budget;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning the database failed"),
            Err(e) => tracing::warn!(error = %e, "the pruning task failed"),
        }
    }
}

#[cfg(test)]
mod tests;
