//! A counting semaphore the backup's stages share: bytes of chunks in flight, large files
//! being read. std has none, and the crates that do (tokio's, async-lock's) are asynchronous;
//! the pipeline's stages are plain threads.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Up to `capacity` units held at once. A request for more than the whole budget takes all of
/// it, so that it waits for everything else to be released and then goes through alone (one
/// chunk of the chunker's largest size, say, with a smaller byte budget). A failing backup
/// closes the budget: every waiter wakes and is refused, so no stage waits for units that the
/// stopped stages will never release.
pub(super) struct Budget {
    capacity: usize,
    state: Mutex<State>,
    released: Condvar,
}

struct State {
    held: usize,
    closed: bool,
    /// Threads blocked in `acquire`: the packer releases once per blob, and waking a condition
    /// variable nobody waits on is a system call per blob.
    waiting: usize,
}

impl Budget {
    pub(super) fn new(capacity: usize) -> Budget {
        Budget {
            capacity: capacity.max(1),
            state: Mutex::new(State { held: 0, closed: false, waiting: 0 }),
            released: Condvar::new(),
        }
    }

    /// The units a request for `n` takes (and must later give back).
    pub(super) fn charge(&self, n: usize) -> usize {
        n.min(self.capacity)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `charge(n)` units if they are free now; false if not or if the budget is closed.
    pub(super) fn try_acquire(&self, n: usize) -> bool {
        let n = self.charge(n);
        let mut state = self.lock();
        if state.closed || state.held + n > self.capacity {
            return false;
        }
        state.held += n;
        true
    }

    /// Waits until `charge(n)` units are free and takes them; false if the budget is closed.
    pub(super) fn acquire(&self, n: usize) -> bool {
        let n = self.charge(n);
        let mut state = self.lock();
        while !state.closed && state.held + n > self.capacity {
            state.waiting += 1;
            state = self.released.wait(state).unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
        }
        if state.closed {
            return false;
        }
        state.held += n;
        true
    }

    /// [`Budget::acquire`], given back when the guard drops; `None` if the budget is closed.
    pub(super) fn hold(&self, n: usize) -> Option<Held<'_>> {
        self.acquire(n).then(|| Held { budget: self, units: self.charge(n) })
    }

    /// Gives back `charge(n)` units taken by an acquire of `n`.
    pub(super) fn release(&self, n: usize) {
        let n = self.charge(n);
        let mut state = self.lock();
        state.held = state.held.saturating_sub(n);
        let anyone_waiting = state.waiting > 0;
        drop(state);
        if anyone_waiting {
            self.released.notify_all();
        }
    }

    /// Refuses every acquire from now on and wakes the waiters.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.released.notify_all();
    }
}

/// Units of a [`Budget`] held until dropped.
pub(super) struct Held<'a> {
    budget: &'a Budget,
    units: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn holds_at_most_its_capacity_and_lets_an_oversized_request_through_alone() {
        let budget = Budget::new(10);
        assert!(budget.try_acquire(6));
        assert!(!budget.try_acquire(5), "6 + 5 exceeds 10");
        assert!(budget.try_acquire(4));
        assert!(!budget.try_acquire(1));
        budget.release(6);
        budget.release(4);
        // Larger than the whole budget: charged as all of it.
        assert!(budget.try_acquire(1_000));
        assert!(!budget.try_acquire(1));
        budget.release(1_000);
        assert!(budget.try_acquire(10));
    }

    #[test]
    fn a_waiter_goes_on_when_units_are_released() {
        let budget = Budget::new(4);
        let went_on = AtomicUsize::new(0);
        assert!(budget.try_acquire(4));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(budget.acquire(3));
                went_on.fetch_add(1, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(went_on.load(Ordering::SeqCst), 0, "no units were free");
            budget.release(4);
        });
        assert_eq!(went_on.load(Ordering::SeqCst), 1);
        assert!(!budget.try_acquire(2), "the waiter holds 3 of 4");
    }

    #[test]
    fn closing_wakes_and_refuses_every_waiter() {
        let budget = Budget::new(1);
        let _held = budget.hold(1).expect("open budget");
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3).map(|_| s.spawn(|| budget.acquire(1))).collect();
            std::thread::sleep(Duration::from_millis(50));
            budget.close();
            for w in waiters {
                assert!(!w.join().expect("waiter"), "a closed budget refuses");
            }
        });
        assert!(budget.hold(1).is_none());
    }

    #[test]
    fn a_held_guard_gives_its_units_back() {
        let budget = Budget::new(2);
        {
            let _a = budget.hold(2).expect("open budget");
            assert!(!budget.try_acquire(1));
        }
        assert!(budget.try_acquire(2));
    }
}
