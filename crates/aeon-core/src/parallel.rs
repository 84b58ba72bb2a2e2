//! Work spread over a few threads that take the next item as they free up.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every item (with its position) on `threads` threads, the calling one among
/// them, each with a state of its own (a buffer); returns what it reported, in no set order.
/// A helper thread that cannot be started leaves its share to the others.
pub(crate) fn run_parallel<T: Sync, S: Default, R: Send>(
    threads: usize,
    items: &[T],
    work: impl Fn(&mut S, usize, &T) -> Option<R> + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    let worker = || {
        let mut state = S::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if let Some(r) = work(&mut state, i, item) {
                reports.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads.max(1).min(items.len()) {
            // Joined when the scope ends; a panic in one is raised again there.
            let _ = std::thread::Builder::new().spawn_scoped(s, worker);
        }
        worker();
    });
    reports.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_worked_once_with_its_position() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [0, 1, 3, 2000] {
            let mut got = run_parallel(threads, &items, |seen: &mut u32, i, &x| {
                *seen += 1;
                (x % 3 != 0).then_some((i, x))
            });
            got.sort_unstable();
            let want: Vec<_> =
                items.iter().filter(|x| *x % 3 != 0).map(|&x| (x as usize, x)).collect();
            assert_eq!(got, want, "{threads} threads");
        }
        assert!(run_parallel(4, &[] as &[u32], |_: &mut (), _, _| Some(())).is_empty());
    }
}
