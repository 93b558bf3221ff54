//! What the terminal routes (`api/terminals.rs`) hold per sandbox so one client cannot
//! exceed their bounds: one open at a time (the count of running terminals and the start
//! are one step, so concurrent opens cannot pass the most a sandbox runs together), and
//! a count of the output streams being followed (each holds an agent stream and a task).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::AppError;

/// Most output streams followed at once per sandbox (all clients of its key together).
pub(crate) const MAX_STREAMS: usize = 32;

#[derive(Default)]
pub(crate) struct Terminals {
    /// The lock each sandbox's opens take, while one is in flight.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Output streams being followed, by sandbox (absent: none).
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held while a terminal of a sandbox is being opened.
pub(crate) struct Opening<'a> {
    terminals: &'a Terminals,
    sandbox_id: String,
    lock: Option<(Arc<tokio::sync::Mutex<()>>, tokio::sync::OwnedMutexGuard<()>)>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut map = self.terminals.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((lock, guard)) = self.lock.take() {
            drop(guard);
            // Only the map and this one hold it: no other open waits, so it goes.
            if Arc::strong_count(&lock) == 2 {
                map.remove(&self.sandbox_id);
            }
        }
    }
}

/// One followed output stream; dropping it counts it out.
pub(crate) struct Stream {
    streams: Arc<Mutex<HashMap<String, usize>>>,
    sandbox_id: String,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.sandbox_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.sandbox_id);
            }
        }
    }
}

impl Terminals {
    /// Waits for the other opens of `sandbox_id` to finish, then holds its turn.
    pub(crate) async fn opening(&self, sandbox_id: &str) -> Opening<'_> {
        let lock = {
            let mut map = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(sandbox_id.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        Opening { terminals: self, sandbox_id: sandbox_id.to_string(), lock: Some((lock, guard)) }
    }

    /// Counts in one more output stream of `sandbox_id`, or a 503 past [`MAX_STREAMS`].
    pub(crate) fn stream(&self, sandbox_id: &str) -> Result<Stream, AppError> {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(sandbox_id.to_string()).or_insert(0);
        if *n >= MAX_STREAMS {
            return Err(AppError::NoCapacity(format!(
                "sandbox {sandbox_id} has {MAX_STREAMS} terminal output streams open, the most it may; close one"
            )));
        }
        *n += 1;
        Ok(Stream { streams: self.streams.clone(), sandbox_id: sandbox_id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_sandbox_and_counted_out_when_dropped() {
        let t = Terminals::default();
        let held: Vec<Stream> = (0..MAX_STREAMS).map(|_| t.stream("sb-1").expect("under the bound")).collect();
        let e = t.stream("sb-1").err().expect("past the bound");
        assert_eq!(e.parts().0, 503);
        assert!(e.to_string().contains("32 terminal output streams"), "{e}");
        assert!(t.stream("sb-2").is_ok(), "another sandbox has its own count");
        drop(held);
        assert!(t.stream("sb-1").is_ok());
        assert!(t.streams.lock().expect("lock").is_empty(), "nothing is kept for sandboxes without streams");
    }

    #[tokio::test]
    async fn opens_of_one_sandbox_take_turns_and_leave_nothing_behind() {
        let t = Terminals::default();
        let first = t.opening("sb-1").await;
        let other = t.opening("sb-2").await; // another sandbox does not wait
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), t.opening("sb-1")).await;
        assert!(waiting.is_err(), "a second open of sb-1 waits for the first");
        drop(first);
        drop(other);
        let again = t.opening("sb-1").await;
        drop(again);
        assert!(t.opening.lock().expect("lock").is_empty());
    }
}
