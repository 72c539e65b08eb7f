//! How many migration batches one worker runs at once. A batch spends
//! most of its time waiting (for the stores, then for the index), so one
//! at a time leaves both idle between requests; more than the index can
//! take only makes each batch slower. So, like the batch size, the number
//! grows by one after a round of full-size batches that each finished
//! within the batch time, drops by one when a batch overran it (before the
//! size shrinks: a few large batches cost the index less than many small
//! ones), halves when the index pushes back, and is one whenever edits are
//! near the latency budget.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The number of migration batches in flight on one worker.
#[derive(Debug)]
pub struct Batches {
    max: usize,
    now: AtomicUsize,
    /// Quick full-size batches since the number last changed.
    quick: AtomicUsize,
}

impl Batches {
    /// Starts at one batch; never more than `max`.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            now: AtomicUsize::new(1),
            quick: AtomicUsize::new(0),
        }
    }

    /// Batches that may run at once now.
    pub fn allowed(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// A full-size batch finished within the batch time: after a whole
    /// round of them, one more.
    pub fn quick(&self) {
        let now = self.allowed();
        if self.quick.fetch_add(1, Ordering::Relaxed) + 1 >= now {
            self.set(now + 1);
        }
    }

    /// A batch overran the batch time: one fewer, if more than one runs.
    /// False when only one runs (the batch size must shrink instead).
    pub fn overran(&self) -> bool {
        let now = self.allowed();
        if now > 1 {
            self.set(now - 1);
        }
        now > 1
    }

    /// The index answered 429/5xx: half as many.
    pub fn pressured(&self) {
        self.set(self.allowed() / 2);
    }

    /// Edits are near the budget: one batch at a time.
    pub fn single(&self) {
        self.set(1);
    }

    fn set(&self, n: usize) {
        self.now.store(n.clamp(1, self.max), Ordering::Relaxed);
        self.quick.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_one_per_quick_round_and_backs_off() {
        let b = Batches::new(4);
        b.quick();
        assert_eq!(b.allowed(), 2, "a round of one");
        b.quick();
        assert_eq!(b.allowed(), 2, "half a round of two");
        b.quick();
        assert_eq!(b.allowed(), 3);
        for _ in 0..20 {
            b.quick();
        }
        assert_eq!(b.allowed(), 4, "never over the most");
        assert!(b.overran());
        assert_eq!(b.allowed(), 3);
        b.pressured();
        assert_eq!(b.allowed(), 1);
        assert!(!b.overran(), "one batch: the size must shrink instead");
        b.pressured();
        assert_eq!(b.allowed(), 1, "never under one");
        b.quick();
        b.single();
        assert_eq!(b.allowed(), 1);
    }

    #[test]
    fn a_most_of_one_keeps_one() {
        let b = Batches::new(1);
        b.quick();
        b.quick();
        assert_eq!(b.allowed(), 1);
    }
}
