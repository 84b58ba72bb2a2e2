//! Work spread over a few threads that take the next item as they free up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// Starts `work` on a thread of `scope` with a stack for the recursive tree walks (see
/// [`crate::tree::DEEP_WALK_STACK`]) or, where the system refuses that reservation (strict
/// overcommit), a stack an eighth of it, then the default one (about a thousand levels).
pub fn spawn_deep<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    work: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<ScopedJoinHandle<'scope, T>> {
    // Taken by whichever attempt starts: a refused one drops only its handle on it.
    let work = Arc::new(Mutex::new(Some(work)));
    let spawn = |stack: Option<usize>| {
        let mut builder = std::thread::Builder::new().name(name.into());
        if let Some(size) = stack {
            builder = builder.stack_size(size);
        }
        let work = Arc::clone(&work);
        builder.spawn_scoped(scope, move || {
            let work = work.lock().unwrap_or_else(|p| p.into_inner()).take();
            work.expect("only the thread that started takes the work")()
        })
    };
    let deep = crate::tree::DEEP_WALK_STACK;
    spawn(Some(deep)).or_else(|_| spawn(Some(deep / 8))).or_else(|_| spawn(None))
}

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
