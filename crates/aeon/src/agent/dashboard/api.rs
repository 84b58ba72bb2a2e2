//! What the dashboard's pages read: the agent's overview, a repository's recovery points, the
//! folders inside one, and its audit records. Each answer is built by `aeon-core` calls on a
//! repository opened with the options of the agent's profile that names it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aeon_core::Repository;
use aeon_core::keys::Credential;
use aeon_core::tree::NodeKind;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Server, lock, problem};
use crate::Ctx;
use crate::cli::GlobalOpts;

/// Repositories kept open for reading, each with the board generation it was opened at: a run
/// that ended on the repository since makes it stale (new points, new packs in the index).
pub type OpenRepositories = Mutex<HashMap<String, (u64, Arc<Repository>)>>;

/// Whether `password` opens the repository `global` names.
pub fn password_opens(global: &GlobalOpts, password: &[u8]) -> bool {
    let ctx = Ctx { global: global.clone(), operation: "dashboard" };
    ctx.locate().and_then(|l| Ok(l.open_with(&Credential::password(password))?)).is_ok()
}

/// `repository` opened for reading, without a lock: what the dashboard shows is read-only, and
/// a pack that prune removes meanwhile is an error on the page, never wrong data.
fn reader(s: &Server, repository: &str, global: GlobalOpts) -> anyhow::Result<Arc<Repository>> {
    let generation = lock(&s.board).generation.get(repository).copied().unwrap_or(0);
    if let Some((g, repo)) = lock(&s.opened).get(repository)
        && *g == generation
    {
        return Ok(repo.clone());
    }
    let ctx = Ctx { global, operation: "dashboard" };
    let repo = Arc::new(ctx.open()?.without_lock().load_index()?);
    lock(&s.opened).insert(repository.to_string(), (generation, repo.clone()));
    Ok(repo)
}

/// Runs `read` on `repository` (if the session may see it) off the server's thread.
async fn with_reader(
    s: Arc<Server>,
    headers: &HeaderMap,
    repository: &str,
    read: impl FnOnce(&Server, &Repository) -> anyhow::Result<Value> + Send + 'static,
) -> Response {
    let session = match s.require(headers) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let global = match s.repository(&session, repository) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let repository = repository.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let repo = reader(&s, &repository, global)?;
        read(&s, &repo)
    })
    .await;
    match answer {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, format!("the request failed: {e}")),
    }
}

/// The agent, its jobs, each visible repository's report, and recent notices.
pub async fn overview(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let session = match s.require(&headers) {
        Ok(session) => session,
        Err(r) => return r,
    };
    let visible = s.visible(&session);
    let board = lock(&s.board);
    let seen = |r: &Value| r.as_str().is_some_and(|r| visible.iter().any(|v| v == r));
    let jobs: Vec<&Value> = board.jobs.iter().filter(|j| seen(&j["repository"])).collect();
    // A notice names a job, a profile or a repository; one that names none of the session's
    // is shown to a session that sees everything only.
    let profiles: Vec<&str> = jobs.iter().filter_map(|j| j["profile"].as_str()).collect();
    let notices: Vec<&Value> = board
        .notices
        .iter()
        .rev()
        .filter(|n| {
            session.repositories.is_none()
                || seen(&n["repository"])
                || n["profile"].as_str().is_some_and(|p| profiles.contains(&p))
                || n["job"]
                    .as_str()
                    .and_then(|j| j.split(':').next())
                    .is_some_and(|p| profiles.contains(&p))
        })
        .collect();
    let repositories: Vec<Value> = visible
        .iter()
        .map(|r| {
            let profiles: std::collections::BTreeSet<&str> = jobs
                .iter()
                .filter(|j| j["repository"] == r.as_str())
                .filter_map(|j| j["profile"].as_str())
                .collect();
            json!({"repository": r, "profiles": profiles, "report": board.reports.get(r)})
        })
        .collect();
    axum::Json(json!({
        "host": aeon_core::lock::this_host(),
        "version": env!("CARGO_PKG_VERSION"),
        "started": board.started,
        "config_file": board.config_file,
        "now": chrono::Local::now().to_rfc3339(),
        "jobs": jobs,
        "repositories": repositories,
        "notices": notices,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
pub struct RepositoryQuery {
    repository: String,
}

/// The repository's recovery points, newest first, each with its health; points that cannot
/// be read are listed too.
pub async fn points(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Query(q): Query<RepositoryQuery>,
) -> Response {
    let repository = q.repository.clone();
    with_reader(s, &headers, &q.repository, move |s, repo| {
        let verification = lock(&s.board).reports.get(&repository).map(|r| r.verification.clone());
        let (mut entries, unreadable) = repo.list_snapshots()?;
        entries.sort_by_key(|e| std::cmp::Reverse(e.snapshot.time));
        let points: Vec<Value> = entries
            .iter()
            .map(|e| {
                let p = &e.snapshot;
                let health = verification
                    .as_ref()
                    .map(|v| aeon_core::report::point_health(p, v))
                    .map(|h| json!(h))
                    .unwrap_or(Value::Null);
                json!({
                    "id": e.id.to_hex(),
                    "short_id": e.id.short(),
                    "time": p.time.to_rfc3339(),
                    "host": p.hostname,
                    "username": p.username,
                    "paths": p.paths,
                    "tags": p.tags,
                    "category": p.category,
                    "kind": p.kind,
                    "protected": p.protected,
                    "files": p.summary.total_files,
                    "bytes": p.summary.total_bytes,
                    "added_bytes": p.summary.data_added_stored,
                    "errors": p.summary.errors,
                    "health": health,
                })
            })
            .collect();
        let unreadable: Vec<Value> = unreadable
            .iter()
            .map(|(name, e)| json!({"name": name, "error": e.to_string()}))
            .collect();
        Ok(json!({"points": points, "unreadable": unreadable}))
    })
    .await
}

#[derive(serde::Deserialize)]
pub struct LsQuery {
    repository: String,
    point: String,
    #[serde(default)]
    path: String,
}

/// The entries of one folder of a recovery point (or the one entry a file path names).
pub async fn ls(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Query(q): Query<LsQuery>,
) -> Response {
    let repository = q.repository.clone();
    with_reader(s, &headers, &repository, move |_, repo| {
        let entry = repo.find_snapshot(&q.point)?;
        let node = repo.find_node(&entry.snapshot.tree, &q.path)?;
        let base = format!("/{}", q.path.trim_matches('/'));
        let mut entries = Vec::new();
        if node.kind == NodeKind::Dir {
            if let Some(sub) = node.subtree {
                for n in repo.load_tree(&sub)?.nodes {
                    let path =
                        format!("{}/{}", base.trim_end_matches('/'), n.name.to_string_lossy());
                    entries.push(crate::commands::ls::node_json(&path, &n));
                }
            }
        } else {
            entries.push(crate::commands::ls::node_json(&base, &node));
        }
        Ok(json!({"point": entry.id.to_hex(), "path": base, "entries": entries}))
    })
    .await
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    repository: String,
    limit: Option<usize>,
}

/// The newest audit records (50 unless `limit` says), newest first.
pub async fn audit(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    with_reader(s, &headers, &q.repository, move |_, repo| {
        let entries = aeon_core::audit::entries(repo.storage().as_ref(), repo.cipher())?;
        let newest: Vec<_> = entries.iter().rev().take(limit).collect();
        let report = aeon_core::audit::verify(repo.storage().as_ref(), repo.cipher(), None)?;
        Ok(json!({"records": newest, "total": entries.len(), "intact": report.intact()}))
    })
    .await
}
