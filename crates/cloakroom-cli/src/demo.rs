//! The demo app: the lesson's examples (visit counter, flash message, cart, login/logout,
//! per-session expiry) as an HTML page for people and a JSON API for scripts.

use std::future::IntoFuture as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request};
use axum::http::{Extensions, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cloakroom::config::Backend;
use cloakroom::engines::migrating::MigratingStore;
use cloakroom::{
    Backing, Engine, Expiry, Secret, Session, SessionLayer, Sessions, Settings, StoreError,
    TypedKey,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::CliError;

/// The demo's own settings, beside cloakroom's: flags of `cloakroom demo`, or keys of the same
/// `--config` file. The library never reads them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DemoSettings {
    /// The token that opens the admin page (`/admin/sessions`); `None`, the default, turns the
    /// page off (its routes answer 404).
    pub admin_token: Option<Secret>,
}

/// The shortest `admin_token` accepted: a guessable token would open every session.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl DemoSettings {
    /// Checks the demo's settings, naming the one to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`](cloakroom::ConfigError::Invalid) naming `admin_token` when it
    /// is shorter than 16 characters.
    pub fn validate(&self) -> std::result::Result<(), cloakroom::ConfigError> {
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < MIN_ADMIN_TOKEN_LEN)
        {
            return Err(cloakroom::ConfigError::Invalid {
                setting: "admin_token",
                reason: "must be at least 16 characters: it is the only lock on the admin page \
                         (e.g. `openssl rand -hex 24`)"
                    .into(),
            });
        }
        Ok(())
    }
}

pub(crate) const VISITS: TypedKey<u64> = TypedKey::new("visits");
pub(crate) const FLASH: TypedKey<String> = TypedKey::new("flash");
pub(crate) const CART: TypedKey<Vec<String>> = TypedKey::new("cart");
pub(crate) const USERNAME: TypedKey<String> = TypedKey::new("username");
pub(crate) const SLOW: TypedKey<u64> = TypedKey::new("slow_requests");

/// Where the demo keeps the secret key it generates when none is given.
const SECRET_FILE: &str = "cloakroom-secret.key";

pub(crate) type Result<T> = std::result::Result<T, cloakroom::Error>;

/// How the demo is started: the flags of `cloakroom demo` that are not settings.
#[derive(Debug)]
pub struct Wiring {
    /// The address to listen on.
    pub addr: String,
    /// Live migration: sessions are also read from this engine and moved to the configured one
    /// on first use (`MigratingStore`).
    pub migrate_from: Option<Settings>,
    /// Create missing tables before serving.
    pub migrate: bool,
    /// How long, in seconds, the requests in flight at a stop signal may take to finish.
    pub shutdown_timeout: u64,
    /// How often live pages check their session in the store where the store cannot tell
    /// (see [`Sessions::start_live`]).
    pub live_poll: Duration,
}

/// Runs the demo until SIGTERM or Ctrl-C, then shuts down gracefully: no new connections, the
/// requests in flight finish and save their sessions (for `shutdown_timeout` seconds at most,
/// after which it fails with [`CliError::ShutdownTimeout`]), and the background tasks (the
/// scheduled cleanup, the metrics upkeep) stop.
pub async fn run(
    mut settings: Settings,
    demo: DemoSettings,
    wiring: Wiring,
) -> std::result::Result<(), CliError> {
    // Caught from the start: a SIGTERM during start-up ends the demo through the same path.
    let stop_signal = StopSignal::install()?;
    if settings.session.secret_key.is_none() {
        settings.session.secret_key = Some(secret_beside_data()?);
    }
    let opened = crate::ops::open(&settings, crate::ops::Open::MayCreate).await?;
    let engine = opened.engine();
    let (backing, store, scan, users) = match opened {
        Backing::Server(server) => {
            let scan = server.scan.clone();
            let backend = serve(server, &settings, wiring.migrate_from, wiring.migrate).await?;
            let store = backend.store.clone();
            let users = backend.users.clone();
            (Backing::Server(backend), Some(store), scan, users)
        }
        cookies => {
            if wiring.migrate_from.is_some() {
                return Err(CliError::NothingStored(engine.to_owned()));
            }
            (cookies, None, None, None)
        }
    };
    // The admin page works on the store's own names (under hash_keys, the hashes), outside the
    // session layer: an admin's visit neither creates nor touches a visitor session.
    let sessions = Sessions::from_backing(backing, settings.clone())?;
    let admin_on = demo.admin_token.is_some();
    let feed = crate::live::Feed::default();
    let admin = crate::admin::router(
        &settings,
        demo.admin_token.as_ref(),
        store,
        scan,
        users,
        sessions.clone(),
        feed.clone(),
    )?;
    let cleanup = match settings.store.cleanup_interval() {
        Some(every) => Some(sessions.start_cleanup(every)?),
        None => None,
    };
    // Live pages end when their session does, whichever app server ended it.
    let live = match sessions.store() {
        Some(_) => Some(sessions.start_live(wiring.live_poll)?),
        None => None,
    };
    let recorder = crate::live::record_events(&sessions, feed);
    let (metrics, upkeep) = install_metrics()?;
    let listener = tokio::net::TcpListener::bind(&wiring.addr)
        .await
        .map_err(|source| CliError::Listen {
            addr: wiring.addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    tracing::info!(engine, "cloakroom demo listening on http://{local}/");
    println!("{}", startup_message(local, engine, admin_on));
    let app = app(sessions, admin_on)
        .merge(admin)
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .layer(axum::middleware::from_fn(same_site_only));
    // The peer address reaches handlers (the login records it for the sessions list).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let notice = Arc::clone(&stopping);
    // On the signal axum stops accepting (the listener closes) and waits for the open
    // connections' requests, each of which saves its session before its response goes out.
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop_signal.received().await;
        notice.notify_one();
    });
    let bound = Duration::from_secs(wiring.shutdown_timeout);
    let served = tokio::select! {
        served = serve.into_future() => served.map_err(CliError::from),
        () = async { stopping.notified().await; tokio::time::sleep(bound).await } => {
            Err(CliError::ShutdownTimeout(wiring.shutdown_timeout))
        }
    };
    upkeep.abort();
    recorder.abort();
    if let Some(live) = live {
        live.stop().await;
    }
    if let Some(cleanup) = cleanup {
        cleanup.stop().await;
    }
    if served.is_ok() {
        println!("cloakroom demo stopped: the requests in flight finished");
    }
    served
}

/// SIGTERM (what a service manager or `kill` sends) or Ctrl-C, whichever comes first.
struct StopSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Starts catching the signals now (before that, SIGTERM would end the process at once).
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Waits for the first stop signal.
    async fn received(mut self) {
        #[cfg(unix)]
        let term = self.term.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = term => tracing::info!("SIGTERM: stopping, letting the requests in flight finish"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping, letting the requests in flight finish"),
        }
    }
}

/// The store the demo serves from: `opened`, its table created when asked (or embedded
/// SQLite), checked for its tables, and in front of `migrate_from`'s store (a live migration)
/// when given.
async fn serve(
    opened: cloakroom::Backend,
    settings: &Settings,
    migrate_from: Option<Settings>,
    migrate: bool,
) -> std::result::Result<cloakroom::Backend, CliError> {
    if migrate || embedded_sqlite(settings) {
        if let Some(migrate) = &opened.migrate {
            migrate.migrate().await?;
        }
    }
    check_tables(&opened).await?;
    let Some(old) = migrate_from else {
        return Ok(opened);
    };
    let old = crate::ops::open(&old, crate::ops::Open::Existing).await?;
    let engine = old.engine();
    let old = old
        .into_server()
        .ok_or_else(|| CliError::NothingStored(engine.to_owned()))?;
    let (clear, exclusive) = (opened.clear.clone(), opened.exclusive.clone());
    let mut migrating = MigratingStore::new(opened.store, old.store);
    if let Some(users) = opened.users {
        migrating = migrating.with_user_index(users);
    }
    let migrating = Arc::new(migrating);
    let users = migrating
        .has_user_index()
        .then(|| Arc::clone(&migrating) as Arc<dyn cloakroom::UserIndex>);
    let mut moving = cloakroom::Backend::moving(migrating).with_users(users);
    // Expired sessions are cleared from the new store, the one every write goes to.
    moving.clear = clear;
    moving.exclusive = exclusive;
    Ok(moving)
}

/// What the demo prints when it is ready: the page's URL and the admin page's, and where the
/// admin token comes from (the demo never prints the token: it is the admin page's only lock).
fn startup_message(local: std::net::SocketAddr, engine: &str, admin_on: bool) -> String {
    let admin = format!("http://{local}/admin/sessions");
    let admin = if admin_on {
        format!(
            "admin page: {admin} (log in with the admin token you gave in \
             CLOAKROOM_ADMIN_TOKEN, --admin-token or admin_token in the --config file)"
        )
    } else {
        format!(
            "admin page: off; to open {admin}, start the demo with a token of 16+ characters \
             in CLOAKROOM_ADMIN_TOKEN (e.g. `openssl rand -hex 24`), --admin-token or \
             admin_token in the --config file"
        )
    };
    format!("cloakroom demo on http://{local}/ (engine {engine}): open it in a browser\n{admin}")
}

/// Installs the Prometheus recorder that the core's metrics (`cloakroom::observe`) go to, and
/// the background upkeep its histograms need; the returned handle renders `/metrics`, and the
/// task is the upkeep, to stop at shutdown.
fn install_metrics() -> std::io::Result<(PrometheusHandle, tokio::task::JoinHandle<()>)> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| std::io::Error::other(format!("cannot install the metrics recorder: {e}")))?;
    let upkeep = handle.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok((handle, task))
}

/// Refuses a state-changing request (any method but GET, HEAD, OPTIONS, TRACE) that a browser
/// sent from another site: `Sec-Fetch-Site` cross-site or same-site, or an `Origin` that is not
/// this host (see [`cloakroom::csrf::cross_site`]). Every route goes through it, the admin page
/// too. Browsers send `Origin` on every cross-origin POST, form or `fetch`, so a request with
/// neither header is not a cross-site browser request and passes (scripts and the tests); a
/// real app would also use a token ([`cloakroom::csrf::CsrfLayer`]). Issue 14: a `text/plain`
/// POST from `https://evil.example` logged a user out everywhere.
async fn same_site_only(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe {
        if let Some(why) = cloakroom::csrf::cross_site(request.headers(), &[]) {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": format!("cross-site request refused: {why}") })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The embedded default needs no set-up step: the demo creates its own SQLite table.
/// Refuses to serve on a database that lacks cloakroom's tables: the session table, or the
/// user index beside it (Django's own migrations make `django_session` but not
/// `django_session_user`). Serving anyway would answer every request that needs them with 503;
/// the error names `cloakroom migrate`. A store that cannot be reached is not refused here:
/// the outage policy answers for it once requests come.
async fn check_tables(opened: &cloakroom::Backend) -> std::result::Result<(), CliError> {
    let now = time::OffsetDateTime::now_utc();
    // A well-formed key no session has: only the table's existence is in question.
    let probe = "0".repeat(32);
    if let Err(e @ StoreError::MissingTable { .. }) = opened.store.load(&probe, now).await {
        return Err(e.into());
    }
    if let Some(index) = &opened.users {
        if let Err(e @ StoreError::MissingTable { .. }) = index.sessions_of("", now).await {
            return Err(e.into());
        }
    }
    Ok(())
}

fn embedded_sqlite(settings: &Settings) -> bool {
    matches!(settings.store.engine, Engine::Db | Engine::CachedDb)
        && settings
            .store
            .database_url
            .as_deref()
            .is_none_or(|url| Backend::of_url(url) == Some(Backend::Sqlite))
}

/// Reads the secret key kept beside the data, generating it on first run.
fn secret_beside_data() -> std::io::Result<Secret> {
    let path = Path::new(SECRET_FILE);
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789!@#%^&*(-_=+)";
    let secret: String = bytes
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    options.open(path)?.write_all(secret.as_bytes())?;
    Ok(Secret::new(secret))
}

/// The demo's routes under the session layer: the page (`admin` says whether the admin page
/// is on) and the JSON API. Every route can read the `Sessions` as an extension.
pub fn app(sessions: Sessions, admin: bool) -> Router {
    Router::new()
        .merge(crate::page::routes(admin))
        .route("/api/visits", get(api_visits))
        .route("/api/flash", get(api_flash_get).post(api_flash_post))
        .route("/api/cart", get(api_cart_get).post(api_cart_post))
        .route("/api/checkout", post(api_checkout))
        .route("/api/login", post(api_login))
        .route("/api/whoami", get(api_whoami))
        .route("/api/django-user", get(api_django_user))
        .route("/api/logout", post(api_logout))
        .route("/api/expiry", post(api_expiry))
        .route("/api/remember", post(api_remember))
        .route("/api/slow", get(api_slow))
        .route("/health", get(|| async { "ok" }))
        .merge(crate::user_sessions::routes())
        .merge(crate::live::routes())
        .layer(SessionLayer::new(sessions.clone()))
        .layer(Extension(sessions))
}

#[derive(Serialize)]
struct CartView {
    count: usize,
    items: Vec<String>,
}

impl CartView {
    fn of(items: Vec<String>) -> Json<Self> {
        Json(Self {
            count: items.len(),
            items,
        })
    }
}

async fn api_visits(session: Session) -> Result<Json<serde_json::Value>> {
    let visits = VISITS.update(&session, |n| *n += 1)?;
    Ok(Json(json!({ "visits": visits })))
}

#[derive(Deserialize)]
pub(crate) struct Message {
    pub message: String,
}

async fn api_flash_post(session: Session, Json(m): Json<Message>) -> Result<StatusCode> {
    FLASH.insert(&session, m.message)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn api_flash_get(session: Session) -> Result<Json<serde_json::Value>> {
    let message = FLASH.remove(&session)?;
    Ok(Json(json!({ "message": message })))
}

#[derive(Deserialize)]
pub(crate) struct Item {
    pub item: String,
}

async fn api_cart_post(
    session: Session,
    Json(Item { item }): Json<Item>,
) -> Result<Json<CartView>> {
    let items = CART.update(&session, move |cart| cart.push(item.clone()))?;
    Ok(CartView::of(items))
}

async fn api_cart_get(session: Session) -> Result<Json<CartView>> {
    Ok(CartView::of(CART.get(&session)?.unwrap_or_default()))
}

async fn api_checkout(session: Session) -> Result<Json<CartView>> {
    CART.remove(&session)?;
    Ok(CartView::of(Vec::new()))
}

#[derive(Deserialize)]
pub(crate) struct Login {
    pub username: String,
}

async fn api_login(
    session: Session,
    headers: HeaderMap,
    extensions: Extensions,
    Json(login): Json<Login>,
) -> Result<Json<serde_json::Value>> {
    crate::user_sessions::log_in(&session, &login.username, &headers, &extensions)?;
    USERNAME.insert(&session, login.username.clone())?;
    Ok(Json(json!({ "username": login.username })))
}

async fn api_whoami(session: Session) -> Result<Json<serde_json::Value>> {
    Ok(Json(json!({ "username": USERNAME.get(&session)? })))
}

/// The user a Django app beside this one logged in (`django.contrib.auth`'s session keys).
async fn api_django_user(session: Session) -> Json<serde_json::Value> {
    Json(json!({ "user_id": session.user_id(), "backend": session.auth_user_backend() }))
}

async fn api_logout(session: Session) -> Result<StatusCode> {
    session.flush()?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct Seconds {
    pub seconds: u64,
}

async fn api_expiry(session: Session, Json(s): Json<Seconds>) -> Result<Json<serde_json::Value>> {
    session.set_expiry(Expiry::seconds(s.seconds))?;
    Ok(Json(json!({
        "expiry_age": session.expiry_age(),
        "expire_at_browser_close": session.expire_at_browser_close(),
    })))
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

/// The longest wait `/api/slow` takes.
const MAX_SLOW_MS: u64 = 60_000;

/// A slow request that changes the session: it waits `ms` milliseconds (60 s at most), then
/// counts itself in the session, which is saved as the request ends. What the shutdown tests
/// stop the demo in the middle of.
async fn api_slow(session: Session, Query(slow): Query<Slow>) -> Result<Json<serde_json::Value>> {
    let ms = slow.ms.min(MAX_SLOW_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let done = SLOW.update(&session, |n| *n += 1)?;
    Ok(Json(json!({ "slept_ms": ms, "slow_requests": done })))
}

#[derive(Deserialize)]
struct Remember {
    remember: bool,
}

async fn api_remember(
    session: Session,
    Json(r): Json<Remember>,
) -> Result<Json<serde_json::Value>> {
    session.remember_me(r.remember)?;
    Ok(Json(json!({
        "expiry_age": session.expiry_age(),
        "expire_at_browser_close": session.expire_at_browser_close(),
    })))
}

/// How much of a session key the demo's lists (`/api/sessions`, the admin page) show: enough
/// to tell sessions apart, too little to present as a cookie.
const KEY_PREFIX_LEN: usize = 8;

/// The first characters of a session key (or its hash under `hash_keys`): what lists show.
pub(crate) fn key_prefix(key: &str) -> &str {
    key.get(..KEY_PREFIX_LEN).unwrap_or(key)
}

/// `text` as HTML text or attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_prefix;

    #[test]
    fn lists_show_only_a_prefix_of_a_key() {
        assert_eq!(key_prefix("abcdefghijklmnopqrstuvwxyz012345"), "abcdefgh");
        assert_eq!(key_prefix("abc"), "abc");
        assert_eq!(key_prefix("aéééé"), "aéééé", "never cut inside a character");
    }
}
