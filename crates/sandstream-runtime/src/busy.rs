//! One operation at a time per sandbox id.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Sandbox ids with an operation under way. A second operation on the same id waits
/// for the first to finish, so two destroys of one sandbox (a user's kill racing the
/// time-to-live or dead-sandbox pass) never both give back its address slot.
#[derive(Debug, Default)]
pub(crate) struct Busy {
    ids: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Holds an id in [`Busy`] until dropped (a panic included).
pub(crate) struct Held<'a> {
    busy: &'a Busy,
    id: String,
}

impl Busy {
    fn ids(&self) -> MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no operation holds `id`, then holds it.
    pub(crate) fn hold(&self, id: &str) -> Held<'_> {
        let mut ids = self.ids();
        while ids.contains(id) {
            ids = self.freed.wait(ids).unwrap_or_else(|p| p.into_inner());
        }
        ids.insert(id.to_string());
        Held { busy: self, id: id.to_string() }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.busy.ids().remove(&self.id);
        self.busy.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_second_hold_of_one_id_waits_for_the_first_and_other_ids_do_not() {
        let busy = Busy::default();
        let second_got_it = AtomicBool::new(false);
        std::thread::scope(|s| {
            let first = busy.hold("sb-1");
            let waiter = s.spawn(|| {
                let _held = busy.hold("sb-1");
                second_got_it.store(true, Ordering::SeqCst);
            });
            // Another id is never held up by this one.
            drop(busy.hold("sb-2"));
            std::thread::sleep(Duration::from_millis(100));
            assert!(!second_got_it.load(Ordering::SeqCst), "the second hold did not wait");
            drop(first);
            waiter.join().expect("waiter");
            assert!(second_got_it.load(Ordering::SeqCst));
        });
        // Released after all, also by a holder that panicked.
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = busy.hold("sb-3");
                panic!("a destroy that panics");
            })
            .join()
        });
        assert!(panicked.is_err());
        drop(busy.hold("sb-3"));
    }
}
