//! Host-wide lock files: a step that is not atomic (check-then-add of firewall rules)
//! taken by one runtime at a time, whichever process it runs in.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Opens `path` (created if missing, never truncated) and waits for an exclusive
/// `flock` on it; the lock is held until the returned value is dropped. A lock is per
/// open file, so two callers in one process exclude each other as two processes do.
pub(crate) fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::io(format!("lock {}", path.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first_and_the_file_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("firewall.lock");
        std::fs::write(&path, "left by an earlier holder").expect("write");
        let second_got_it = AtomicBool::new(false);
        std::thread::scope(|s| {
            let first = lock_exclusive(&path).expect("first lock");
            let waiter = s.spawn(|| {
                let _held = lock_exclusive(&path).expect("second lock");
                second_got_it.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(!second_got_it.load(Ordering::SeqCst), "the second lock did not wait");
            drop(first);
            waiter.join().expect("waiter");
        });
        assert!(second_got_it.load(Ordering::SeqCst));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "left by an earlier holder", "not truncated");

        let missing = dir.path().join("no-such-dir").join("x.lock");
        let err = lock_exclusive(&missing).expect_err("no parent directory");
        assert!(err.to_string().starts_with(&format!("open {}", missing.display())), "{err}");
    }
}
