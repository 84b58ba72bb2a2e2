//! The parent recovery point's trees, read ahead of the walker on a thread of their own.
//!
//! With a parent, a backup of unchanged files is a walk that compares each entry with the
//! parent's; reading, decrypting and decoding a parent tree per directory was a quarter of
//! that walk's time, spent on the one thread that sets the pace while the second core idled. The reader here visits the parent's
//! trees depth first in name order, the order in which the walker asks for them, and keeps a
//! bounded number of their entries ready.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::id::Id;
use crate::repository::Repository;
use crate::tree::{NodeKind, Tree};

/// Entries of trees read but not yet taken, at most (and always at least one tree): a few
/// megabytes, enough for the reader to stay ahead of a walker that also waits on the disk.
const AHEAD_NODES: usize = 16_384;

#[derive(Default)]
pub(super) struct ParentTrees {
    state: Mutex<Ahead>,
    changed: Condvar,
}

#[derive(Default)]
struct Ahead {
    /// Trees read, in the walker's order; `None` for one that could not be read.
    ready: VecDeque<(Id, Option<Tree>)>,
    /// Entries of the trees in `ready`.
    nodes: usize,
    /// The reader has read every tree.
    finished: bool,
    /// The walker asks for no more.
    closed: bool,
}

fn entries(tree: &Option<Tree>) -> usize {
    tree.as_ref().map_or(0, |t| t.nodes.len())
}

impl ParentTrees {
    /// The reader: every tree under `root`, parents before children, siblings in name order.
    /// Returns when it has read them all or the walker has [closed](Self::close).
    pub fn read_ahead(&self, repo: &Repository, root: Id) {
        self.read_with(root, |id| repo.load_tree(id).ok());
    }

    fn read_with(&self, root: Id, mut load: impl FnMut(&Id) -> Option<Tree>) {
        // Finished however it ends, so that no walker waits for a reader that is gone.
        let _finish = FinishOnDrop(self);
        let mut to_read = vec![root];
        while let Some(id) = to_read.pop() {
            let tree = load(&id);
            if let Some(t) = &tree {
                // Reversed onto the stack so that the first subdirectory is read next.
                let subtrees = t.nodes.iter().rev().filter(|n| n.kind == NodeKind::Dir);
                to_read.extend(subtrees.filter_map(|n| n.subtree));
            }
            let size = entries(&tree);
            let mut st = self.lock();
            while !st.closed && st.nodes > 0 && st.nodes + size > AHEAD_NODES {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closed {
                return;
            }
            st.ready.push_back((id, tree));
            st.nodes += size;
            self.changed.notify_all();
        }
    }

    /// The tree `id` if the reader has it (waiting for the reader to get there), or `None`
    /// if it could not read it: the caller reads it itself.
    ///
    /// The walker asks in the reader's order, skipping the directories gone since the parent:
    /// trees read before the one asked for are never asked for and are dropped.
    pub fn take(&self, id: &Id) -> Option<Tree> {
        let mut st = self.lock();
        loop {
            if let Some(at) = st.ready.iter().position(|(ready, _)| ready == id) {
                let skipped: usize = st.ready.drain(..at).map(|(_, t)| entries(&t)).sum();
                let (_, tree) = st.ready.pop_front()?;
                st.nodes -= skipped + entries(&tree);
                self.changed.notify_all();
                return tree;
            }
            if st.finished {
                return None;
            }
            // Everything ready comes before `id`: make room for the reader to get to it.
            if !st.ready.is_empty() {
                st.ready.clear();
                st.nodes = 0;
                self.changed.notify_all();
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops the reader (the walk is over, or failed).
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.finished = true;
        st.ready.clear();
        st.nodes = 0;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ahead> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct FinishOnDrop<'p>(&'p ParentTrees);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().finished = true;
        self.0.changed.notify_all();
    }
}

/// Closes `ParentTrees` when dropped, so that the reader ends even if the walker panics.
pub(super) struct CloseOnDrop<'p>(pub &'p ParentTrees);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Node, RawName};

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    /// A tree of one file and the given subdirectories.
    fn tree(subdirs: &[(&str, u8)]) -> Tree {
        let mut nodes = vec![Node::new(RawName(b"file".to_vec()), NodeKind::File)];
        for (name, sub) in subdirs {
            let mut n = Node::new(RawName(name.as_bytes().to_vec()), NodeKind::Dir);
            n.subtree = Some(id(*sub));
            nodes.push(n);
        }
        let mut t = Tree { nodes };
        t.sort();
        t
    }

    /// root(1) ─ a(2) ─ c(4)
    ///         └ b(3)      (and 5, which cannot be read, under b)
    fn load(n: &Id) -> Option<Tree> {
        match n.0[0] {
            1 => Some(tree(&[("b", 3), ("a", 2)])),
            2 => Some(tree(&[("c", 4)])),
            3 => Some(tree(&[("e", 5)])),
            4 => Some(tree(&[])),
            _ => None,
        }
    }

    fn marker(t: &Option<Tree>) -> usize {
        t.as_ref().map_or(usize::MAX, |t| t.nodes.len())
    }

    #[test]
    fn the_walker_gets_every_tree_in_depth_first_name_order() {
        let ahead = ParentTrees::default();
        std::thread::scope(|s| {
            s.spawn(|| ahead.read_with(id(1), load));
            for n in [1, 2, 4, 3] {
                assert_eq!(marker(&ahead.take(&id(n))), marker(&load(&id(n))), "tree {n}");
            }
            // Unreadable: the walker reads it itself.
            assert!(ahead.take(&id(5)).is_none());
        });
    }

    #[test]
    fn trees_of_directories_gone_are_skipped_and_a_stray_request_does_not_hang() {
        let ahead = ParentTrees::default();
        std::thread::scope(|s| {
            s.spawn(|| ahead.read_with(id(1), load));
            assert!(ahead.take(&id(1)).is_some());
            // Directory a (2, 4) is gone; b is next.
            assert_eq!(marker(&ahead.take(&id(3))), 2);
            // Asked again out of order: no longer ahead, read by the caller.
            assert!(ahead.take(&id(2)).is_none());
        });
    }

    #[test]
    fn a_closed_reader_stops_even_when_its_queue_is_full() {
        let ahead = ParentTrees::default();
        let wide = |_: &Id| {
            let subdirs: Vec<(String, u8)> = (0..200).map(|i| (format!("d{i:03}"), 7)).collect();
            let named: Vec<(&str, u8)> = subdirs.iter().map(|(n, i)| (n.as_str(), *i)).collect();
            let mut t = tree(&named);
            t.nodes.extend(
                (0..AHEAD_NODES)
                    .map(|i| Node::new(RawName(format!("f{i}").into_bytes()), NodeKind::File)),
            );
            t.sort();
            Some(t)
        };
        std::thread::scope(|s| {
            let reader = s.spawn(|| ahead.read_with(id(1), wide));
            while ahead.lock().ready.is_empty() {
                std::thread::yield_now();
            }
            ahead.close();
            reader.join().unwrap();
        });
        assert!(ahead.take(&id(1)).is_none());
    }
}
