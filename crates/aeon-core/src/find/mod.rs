//! Finding paths across every recovery point.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::filter::PathFilter;
use crate::id::Id;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Timestamp};

/// What to look for. `pattern` follows the rules of [`PathFilter`] (a name at any depth, or a
/// path), matching the entries themselves.
pub struct Query {
    pub pattern: PathFilter,
    pub newer: Option<Timestamp>,
    pub older: Option<Timestamp>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

impl Query {
    fn accepts(&self, path: &std::path::Path, n: &Node) -> bool {
        self.pattern.matches(path)
            && self.newer.is_none_or(|t| n.mtime >= t)
            && self.older.is_none_or(|t| n.mtime <= t)
            && self.min_size.is_none_or(|s| n.kind == NodeKind::File && n.size >= s)
            && self.max_size.is_none_or(|s| n.kind == NodeKind::File && n.size <= s)
    }
}

/// Matches below `tree`, memoised per (tree, path): recovery points share most of their trees.
pub struct Finder<'a> {
    repo: &'a Repository,
    query: Query,
    memo: HashMap<(Id, PathBuf), Vec<(PathBuf, Node)>>,
}

impl<'a> Finder<'a> {
    pub fn new(repo: &'a Repository, query: Query) -> Self {
        Finder { repo, query, memo: HashMap::new() }
    }

    pub fn find(&mut self, tree: &Id, base: PathBuf) -> Result<Vec<(PathBuf, Node)>> {
        if let Some(hit) = self.memo.get(&(*tree, base.clone())) {
            return Ok(hit.clone());
        }
        crate::tree::ensure_depth(base.components().count(), &base.display())?;
        let mut out = Vec::new();
        for node in self.repo.load_tree(tree)?.nodes {
            let p = base.join(node.name.as_os_str());
            if self.query.accepts(&p, &node) {
                out.push((p.clone(), node.clone()));
            }
            if node.kind == NodeKind::Dir
                && let Some(sub) = node.subtree
            {
                out.extend(self.find(&sub, p)?);
            }
        }
        self.memo.insert((*tree, base), out.clone());
        Ok(out)
    }
}
