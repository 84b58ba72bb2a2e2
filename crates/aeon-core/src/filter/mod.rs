//! Path patterns for `--exclude` (backup) and `--include`/`--exclude` (restore).
//!
//! Rules (as restic users expect):
//! - `*` and `?` do not match `/`; `**` matches any number of directories.
//! - A pattern without `/` matches a name at any depth: `*.tmp`, `node_modules`.
//! - A pattern starting with `/` matches from the root: `/home/*/.cache`.
//! - Any other pattern matches at any depth: `build/out` is `**/build/out`.
//! - A pattern that matches a directory matches everything below it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct PathFilter {
    sensitive: GlobSet,
    insensitive: GlobSet,
    empty: bool,
}

impl Default for PathFilter {
    fn default() -> Self {
        PathFilter { sensitive: GlobSet::empty(), insensitive: GlobSet::empty(), empty: true }
    }
}

fn build(patterns: &[String], case_insensitive: bool) -> Result<GlobSet> {
    build_with(patterns, case_insensitive, true)
}

fn build_with(patterns: &[String], case_insensitive: bool, descendants: bool) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_end_matches('/');
        if p.is_empty() {
            continue;
        }
        let full = if p.starts_with('/') { p.to_string() } else { format!("**/{p}") };
        // The pattern itself, and everything below what it matches.
        let globs = if descendants { vec![full.clone(), format!("{full}/**")] } else { vec![full] };
        for g in globs {
            let glob = GlobBuilder::new(&g)
                .literal_separator(true)
                .case_insensitive(case_insensitive)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("invalid pattern {p:?}: {e}")))?;
            b.add(glob);
        }
    }
    b.build().map_err(|e| Error::InvalidInput(format!("invalid patterns: {e}")))
}

impl PathFilter {
    pub fn new(patterns: &[String], case_insensitive_patterns: &[String]) -> Result<PathFilter> {
        Ok(PathFilter {
            sensitive: build(patterns, false)?,
            insensitive: build(case_insensitive_patterns, true)?,
            empty: patterns.is_empty() && case_insensitive_patterns.is_empty(),
        })
    }

    /// Like [`PathFilter::new`], but a directory's match does not extend to what is below it
    /// (for `find`, which lists the matching entries themselves).
    pub fn exact(patterns: &[String], case_insensitive: bool) -> Result<PathFilter> {
        let set = build_with(patterns, case_insensitive, false)?;
        Ok(PathFilter { sensitive: set, insensitive: GlobSet::empty(), empty: patterns.is_empty() })
    }

    /// Reads patterns from a file: one per line; blank lines and `#` comments are skipped.
    pub fn patterns_from_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether the absolute `path` matches any pattern.
    pub fn matches(&self, path: &Path) -> bool {
        if self.empty {
            return false;
        }
        // Non-UTF-8 names still match on their bytes.
        let candidate = globset::Candidate::from_bytes(path.as_os_str().as_bytes());
        self.sensitive.is_match_candidate(&candidate)
            || self.insensitive.is_match_candidate(&candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &[&str]) -> PathFilter {
        PathFilter::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[]).unwrap()
    }

    #[test]
    fn pattern_rules() {
        let x = f(&["*.tmp", "/home/*/.cache", "build/out", "node_modules"]);
        assert!(x.matches(Path::new("/a/b/c.tmp")));
        assert!(!x.matches(Path::new("/a/b/c.tmp.keep")));
        assert!(x.matches(Path::new("/home/ann/.cache")));
        assert!(x.matches(Path::new("/home/ann/.cache/deep/file")));
        assert!(!x.matches(Path::new("/srv/home/ann/.cache")));
        assert!(x.matches(Path::new("/src/build/out/x.o")));
        assert!(!x.matches(Path::new("/src/build/outer")));
        assert!(x.matches(Path::new("/p/node_modules/left-pad/index.js")));
        assert!(!f(&[]).matches(Path::new("/anything")));
    }

    #[test]
    fn case_insensitive_patterns() {
        let x = PathFilter::new(&[], &["*.JPG".to_string()]).unwrap();
        assert!(x.matches(Path::new("/pics/a.jpg")) && x.matches(Path::new("/pics/b.JpG")));
        assert!(PathFilter::new(&["[".to_string()], &[]).is_err());
    }
}
