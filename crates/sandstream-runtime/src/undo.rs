//! Cleanup that runs on every way out of a scope, a panic included.

/// Runs its closure when dropped, unless [`Undo::keep`] was called first. A create
/// wraps its half-made sandbox in one, so neither an error nor a panic midway (a bug,
/// or a library's) leaves mounts, links or containers behind.
pub(crate) struct Undo<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Undo<F> {
    pub(crate) fn new(undo: F) -> Undo<F> {
        Undo(Some(undo))
    }

    /// The work succeeded: nothing is undone.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for Undo<F> {
    fn drop(&mut self) {
        if let Some(undo) = self.0.take() {
            undo();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn undoes_on_error_and_on_panic_but_not_when_kept() {
        let undone = Cell::new(0);
        {
            let _u = Undo::new(|| undone.set(undone.get() + 1));
        }
        assert_eq!(undone.get(), 1, "dropped without keep: undone");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _u = Undo::new(|| undone.set(undone.get() + 1));
            panic!("midway");
        }));
        assert!(panicked.is_err());
        assert_eq!(undone.get(), 2, "a panic midway: undone");
        Undo::new(|| undone.set(undone.get() + 1)).keep();
        assert_eq!(undone.get(), 2, "kept: not undone");
    }
}
