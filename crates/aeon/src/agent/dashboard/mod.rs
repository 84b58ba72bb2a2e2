//! The agent's web dashboard, served with `/metrics` on `--listen`: recovery points by host and
//! time, repository health and storage, schedules, audit records and notices, and restores.
//!
//! Who may look: a session opened with the agent's token or with a repository's password (which
//! then shows only the repositories it opens). The session lives in an `HttpOnly`,
//! `SameSite=Strict` cookie; every POST must also carry the session's CSRF token in a header and,
//! if the browser sends one, an `Origin` naming this server. Served on a loopback address, the
//! dashboard answers only requests that name a loopback host, so a web page whose DNS name is
//! rebound to 127.0.0.1 cannot talk to it.

mod api;
mod assets;
mod restore;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cli::GlobalOpts;

/// Notices (the agent's warnings and errors) kept for the dashboard.
const NOTICES_KEPT: usize = 100;
/// A session unused for this long is closed.
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// A failed login waits this long before it answers (one login is tried at a time).
const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);
const COOKIE: &str = "aeon_session";
const CSRF_HEADER: &str = "x-aeon-csrf";

/// What the agent loop tells the dashboard; rewritten as jobs run.
#[derive(Default)]
pub struct Board {
    /// The jobs, as `aeon agent status --json` shows them.
    pub jobs: Vec<serde_json::Value>,
    /// The latest compliance report of each repository.
    pub reports: BTreeMap<String, aeon_core::report::ComplianceReport>,
    /// Recent warnings and errors of the agent, newest last.
    pub notices: VecDeque<serde_json::Value>,
    /// How to open each repository: the options of the first profile that names it.
    pub repositories: BTreeMap<String, GlobalOpts>,
    /// Bumped each time a run on the repository ends: what the dashboard keeps open is stale.
    pub generation: BTreeMap<String, u64>,
    /// The configuration file the agent runs.
    pub config_file: PathBuf,
    pub started: String,
}

impl Board {
    pub fn push_notice(&mut self, line: serde_json::Value) {
        if self.notices.len() == NOTICES_KEPT {
            self.notices.pop_front();
        }
        self.notices.push_back(line);
    }
}

pub type Shared = Arc<Mutex<Board>>;

/// Locks `m`, also after a thread panicked holding it (what it guards stays usable).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the dashboard is served.
pub struct Settings {
    pub address: SocketAddr,
    /// The token that opens a session on every repository.
    pub token: String,
    /// Restores may only write beneath this folder, when given.
    pub restore_under: Option<PathBuf>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    /// The repositories the session may see: `None`, all (logged in with the token).
    repositories: Option<Vec<String>>,
    last_used: Instant,
}

pub(crate) struct Server {
    board: Shared,
    metrics: super::metrics::Shared,
    token_hash: blake3::Hash,
    restore_under: Option<PathBuf>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Logins are tried one at a time: a password guess costs the KDF and a delay.
    login_gate: tokio::sync::Mutex<()>,
    /// Host header values accepted (`None`: any, when served beyond loopback).
    hosts: Option<Vec<String>>,
    restores: restore::Restores,
    opened: api::OpenRepositories,
}

/// The agent's token: read from `path`, or created there (0600, 256 random bits) on first use.
pub fn token(path: &Path) -> Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        anyhow::ensure!(
            token.len() >= 16,
            "the dashboard token in {} is shorter than 16 characters: put a longer one there, or \
             remove the file for a new random one",
            path.display()
        );
        return Ok(token);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let token = random_hex()?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the dashboard token file {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serves `/metrics` and the dashboard on `settings.address`, in a thread of its own.
pub fn serve(settings: Settings, board: Shared, metrics: super::metrics::Shared) -> Result<()> {
    let address = settings.address;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address}"))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let hosts = address.ip().is_loopback().then(|| {
        ["127.0.0.1".to_string(), "localhost".into(), "[::1]".into()]
            .into_iter()
            .flat_map(|h| [format!("{h}:{port}"), h])
            .collect()
    });
    let server = Arc::new(Server {
        board,
        metrics,
        token_hash: blake3::hash(settings.token.as_bytes()),
        restore_under: settings.restore_under,
        sessions: Mutex::default(),
        login_gate: tokio::sync::Mutex::new(()),
        hosts,
        restores: restore::Restores::default(),
        opened: api::OpenRepositories::default(),
    });
    std::thread::Builder::new().name("dashboard".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("aeon agent: no runtime for the web server: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let app = router(server);
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = axum::serve(l, app).await {
                        eprintln!("aeon agent: the web server stopped: {e}");
                    }
                }
                Err(e) => eprintln!("aeon agent: cannot serve: {e}"),
            }
        });
    })?;
    Ok(())
}

fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/favicon.svg", get(assets::icon))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/api/overview", get(api::overview))
        .route("/api/points", get(api::points))
        .route("/api/ls", get(api::ls))
        .route("/api/audit", get(api::audit))
        .route("/api/restores", get(restore::list).post(restore::start))
        .route("/api/restores/{id}", get(restore::show))
        .layer(axum::middleware::from_fn_with_state(server.clone(), guard))
        .with_state(server)
}

async fn metrics(State(s): State<Arc<Server>>) -> Response {
    let text = lock(&s.metrics).clone();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// An error as the API answers it: a status and `{"error": message}`.
pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({"error": message.into()}))).into_response()
}

/// Before every request: the Host check (loopback), the Origin and CSRF checks (POST); after:
/// headers that keep the pages from being framed, sniffed or leaking their address.
async fn guard(State(s): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(hosts) = &s.hosts {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return problem(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this server answers to a loopback address, not to host {host:?}"),
            );
        }
    }
    if request.method() == Method::POST {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if origin.to_str().ok() != Some(&format!("http://{host}")) {
                return problem(StatusCode::FORBIDDEN, "a request from another site is refused");
            }
        }
        // The login has no session yet; its cookie is SameSite=Strict and it grants nothing
        // another site could read.
        if request.uri().path() != "/api/login" {
            match s.session(headers) {
                Some((_, session)) => {
                    let sent = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok());
                    if sent != Some(session.csrf.as_str()) {
                        return problem(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
                    }
                }
                None => return problem(StatusCode::UNAUTHORIZED, "log in first"),
            }
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

impl Server {
    /// The session the request's cookie names, refreshed; `None` when there is none (or it
    /// expired).
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))?;
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        let session = sessions.get_mut(&id)?;
        session.last_used = Instant::now();
        Some((id, session.clone()))
    }

    /// The session, or the answer to a request without one.
    #[allow(clippy::result_large_err)]
    fn require(&self, headers: &HeaderMap) -> Result<Session, Response> {
        self.session(headers)
            .map(|(_, s)| s)
            .ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "log in first"))
    }

    /// The repositories `session` may see, of those the agent knows.
    fn visible(&self, session: &Session) -> Vec<String> {
        let board = lock(&self.board);
        board
            .repositories
            .keys()
            .filter(|r| session.repositories.as_ref().is_none_or(|allowed| allowed.contains(r)))
            .cloned()
            .collect()
    }

    /// `repository`'s options, if `session` may see it.
    #[allow(clippy::result_large_err)]
    fn repository(&self, session: &Session, repository: &str) -> Result<GlobalOpts, Response> {
        if !self.visible(session).iter().any(|r| r == repository) {
            return Err(problem(
                StatusCode::NOT_FOUND,
                format!("no repository {repository:?} is open to this session"),
            ));
        }
        let board = lock(&self.board);
        board
            .repositories
            .get(repository)
            .cloned()
            .ok_or_else(|| problem(StatusCode::NOT_FOUND, "no such repository"))
    }
}

#[derive(serde::Deserialize)]
struct Login {
    /// The agent's token or a repository's password.
    secret: String,
}

async fn login(State(s): State<Arc<Server>>, axum::Json(login): axum::Json<Login>) -> Response {
    let _gate = s.login_gate.lock().await;
    let secret = zeroize::Zeroizing::new(login.secret);
    let repositories = if blake3::hash(secret.as_bytes()) == s.token_hash {
        Some(None)
    } else {
        let candidates: Vec<(String, GlobalOpts)> =
            lock(&s.board).repositories.iter().map(|(r, g)| (r.clone(), g.clone())).collect();
        let secret = secret.clone();
        tokio::task::spawn_blocking(move || {
            let opened: Vec<String> = candidates
                .into_iter()
                .filter(|(_, global)| api::password_opens(global, secret.as_bytes()))
                .map(|(r, _)| r)
                .collect();
            (!opened.is_empty()).then_some(Some(opened))
        })
        .await
        .ok()
        .flatten()
    };
    let Some(repositories) = repositories else {
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return problem(
            StatusCode::UNAUTHORIZED,
            "neither the agent's token nor the password of any of its repositories",
        );
    };
    let (Ok(id), Ok(csrf)) = (random_hex(), random_hex()) else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "no random numbers for a session");
    };
    lock(&s.sessions).insert(
        id.clone(),
        Session { csrf: csrf.clone(), repositories, last_used: Instant::now() },
    );
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], axum::Json(serde_json::json!({"csrf": csrf}))).into_response()
}

async fn logout(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Some((id, _)) = s.session(&headers) {
        lock(&s.sessions).remove(&id);
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], axum::Json(serde_json::json!({}))).into_response()
}

/// The page asks on load whether it is logged in; the answer carries the CSRF token (another
/// site cannot read it: no CORS headers are ever sent).
async fn session_info(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    match s.require(&headers) {
        Ok(session) => axum::Json(serde_json::json!({
            "csrf": session.csrf,
            "repositories": s.visible(&session),
            "all_repositories": session.repositories.is_none(),
        }))
        .into_response(),
        Err(r) => r,
    }
}
