//! Restores started from the dashboard: each runs in a thread of the agent with the repository
//! opened (and shared-locked) as its profile says, and reports its progress to the page.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aeon_core::progress::{Notice, Progress};
use aeon_core::restorer::{self, Overwrite, RestoreOptions};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Server, Session, lock, problem};
use crate::Ctx;

/// Restores of this agent, oldest first (kept until it stops: a handful a day).
#[derive(Default)]
pub struct Restores {
    runs: Mutex<Vec<Arc<RestoreRun>>>,
    next_id: AtomicU64,
}

/// One restore and how far it got.
pub struct RestoreRun {
    id: u64,
    repository: String,
    point: String,
    path: String,
    target: PathBuf,
    started: chrono::DateTime<chrono::Local>,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    warnings: Mutex<Vec<String>>,
    /// `None` while it runs; then `finished`, `incomplete` (some items not restored) or
    /// `failed`, with the summary or the error.
    outcome: Mutex<Option<(&'static str, Value)>>,
}

impl Progress for RestoreRun {
    fn set_total(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }
    fn add(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn notice(&self, notice: &Notice) {
        lock(&self.warnings).push(notice.to_string());
    }
}

impl RestoreRun {
    fn to_json(&self) -> Value {
        let outcome = lock(&self.outcome).clone();
        let (state, result) = outcome.unwrap_or(("running", Value::Null));
        json!({
            "id": self.id,
            "repository": self.repository,
            "point": self.point,
            "path": self.path,
            "target": self.target,
            "started": self.started.to_rfc3339(),
            "state": state,
            "files_total": self.files_total.load(Ordering::Relaxed),
            "bytes_total": self.bytes_total.load(Ordering::Relaxed),
            "files_done": self.files_done.load(Ordering::Relaxed),
            "bytes_done": self.bytes_done.load(Ordering::Relaxed),
            "warnings": *lock(&self.warnings),
            "result": result,
        })
    }
}

#[derive(serde::Deserialize)]
pub struct RestoreRequest {
    repository: String,
    /// A recovery point id (or unique prefix, or `latest`).
    point: String,
    /// The path inside the point (empty: all of it).
    #[serde(default)]
    path: String,
    /// An absolute folder on the agent's machine.
    target: String,
    /// `never` (keep files already there; the default), `if-changed` or `always`.
    #[serde(default)]
    overwrite: Option<String>,
}

/// Checks `target` is absolute, has no `..`, and lies beneath `under` (when given) also once
/// symbolic links in the part that exists are followed.
fn check_target(target: &Path, under: Option<&Path>) -> Result<(), String> {
    if !target.is_absolute() {
        return Err(format!("the target {} is not an absolute path", target.display()));
    }
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the target {} contains \"..\"", target.display()));
    }
    let Some(under) = under else { return Ok(()) };
    let root = std::fs::canonicalize(under)
        .map_err(|e| format!("the restore folder {} cannot be read: {e}", under.display()))?;
    // The deepest part of the target that exists, with its links resolved.
    let mut existing = target.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(&existing)
        .map_err(|e| format!("the target {} cannot be checked: {e}", existing.display()))?;
    resolved.extend(rest.iter().rev());
    if !resolved.starts_with(&root) {
        return Err(format!(
            "the target {} is not beneath {}, the folder this agent restores into (--restore-under)",
            target.display(),
            root.display()
        ));
    }
    Ok(())
}

fn visible_to(s: &Server, session: &Session, run: &RestoreRun) -> bool {
    s.visible(session).contains(&run.repository)
}

/// `GET /api/restores`: the session's visible restores, newest first.
pub async fn list(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let session = match s.require(&headers) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let runs = lock(&s.restores.runs).clone();
    let shown: Vec<Value> =
        runs.iter().rev().filter(|r| visible_to(&s, &session, r)).map(|r| r.to_json()).collect();
    axum::Json(json!({"restores": shown})).into_response()
}

/// `GET /api/restores/ID`: one restore's progress.
pub async fn show(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Response {
    let session = match s.require(&headers) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let runs = lock(&s.restores.runs).clone();
    match runs.iter().find(|r| r.id == id && visible_to(&s, &session, r)) {
        Some(run) => axum::Json(run.to_json()).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no restore {id}")),
    }
}

/// `POST /api/restores`: starts a restore; answers at once with its id.
pub async fn start(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<RestoreRequest>,
) -> Response {
    let session = match s.require(&headers) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let global = match s.repository(&session, &request.repository) {
        Ok(g) => g,
        Err(r) => return r,
    };
    // The token is readable only where the agent runs, with its rights; a repository password
    // may be known to others (every client of the repository), who could store any file in a
    // point and have the agent, often root, write it anywhere. Such a session restores only
    // beneath --restore-under, and without privileges (no set-id bits, devices, capabilities).
    let by_password = session.repositories.is_some();
    if by_password && s.restore_under.is_none() {
        return problem(
            StatusCode::FORBIDDEN,
            "a session opened with a repository password may restore only when the agent runs \
             with --restore-under DIR; log in with the agent's token to restore anywhere",
        );
    }
    let target = PathBuf::from(request.target.trim());
    if let Err(message) = check_target(&target, s.restore_under.as_deref()) {
        return problem(StatusCode::BAD_REQUEST, message);
    }
    let overwrite: Overwrite = match request.overwrite.as_deref().unwrap_or("never").parse() {
        Ok(o) => o,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let point = request.point.trim().to_string();
    if point.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "choose a recovery point");
    }
    let run = Arc::new(RestoreRun {
        id: s.restores.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        repository: request.repository.clone(),
        point,
        path: format!("/{}", request.path.trim().trim_matches('/')),
        target,
        started: chrono::Local::now(),
        files_total: AtomicU64::new(0),
        bytes_total: AtomicU64::new(0),
        files_done: AtomicU64::new(0),
        bytes_done: AtomicU64::new(0),
        warnings: Mutex::default(),
        outcome: Mutex::default(),
    });
    lock(&s.restores.runs).push(run.clone());
    let worker = run.clone();
    let spawned =
        std::thread::Builder::new().name(format!("restore-{}", run.id)).spawn(move || {
            let outcome = match restore(&worker, global, overwrite, !by_password) {
                Ok((state, summary)) => (state, summary),
                Err(e) => ("failed", json!({"error": format!("{e:#}")})),
            };
            *lock(&worker.outcome) = Some(outcome);
        });
    if let Err(e) = spawned {
        *lock(&run.outcome) = Some(("failed", json!({"error": e.to_string()})));
    }
    (StatusCode::ACCEPTED, axum::Json(run.to_json())).into_response()
}

/// Runs the restore `run` describes; its outcome's state and summary.
fn restore(
    run: &RestoreRun,
    global: crate::cli::GlobalOpts,
    overwrite: Overwrite,
    privileged: bool,
) -> anyhow::Result<(&'static str, Value)> {
    let ctx = Ctx { global, operation: "restore" };
    let repo = ctx.open_with_index()?;
    let entry = repo.find_snapshot(&run.point)?;
    let node = repo.find_node(&entry.snapshot.tree, &run.path)?;
    let opts = RestoreOptions {
        threads: ctx.threads(),
        overwrite,
        expected_totals: crate::commands::restore::expected_totals(&entry, &run.path, false),
        privileged,
        ..RestoreOptions::default()
    };
    let started = std::time::Instant::now();
    let summary = restorer::restore(&repo, &node, &run.path, &run.target, &opts, run)?;
    let complete =
        summary.errors.is_empty() && summary.integrity_errors == 0 && summary.no_space.is_none();
    let json = crate::commands::restore::summary_json(
        &entry,
        &run.path,
        &run.target,
        &summary,
        started.elapsed().as_secs_f64(),
    );
    Ok((if complete { "finished" } else { "incomplete" }, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_absolute_without_dot_dot_and_beneath_the_restore_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("restores");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        assert!(check_target(Path::new("relative/dir"), None).is_err());
        assert!(check_target(&root.join("../x"), None).is_err());
        assert!(check_target(&root.join("new/deeper"), Some(&root)).is_ok());
        assert!(check_target(&dir.path().join("elsewhere"), Some(&root)).is_err());
        let err = check_target(&root.join("escape/sub"), Some(&root)).unwrap_err();
        assert!(err.contains("not beneath"), "{err}");
        assert!(check_target(Path::new("/anywhere"), None).is_ok());
    }
}
