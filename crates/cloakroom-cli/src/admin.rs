//! The demo's admin page for operators: `/admin/sessions` lists live sessions (newest first,
//! 20 a page, filtered by user), shows one session's decoded data, and revokes one session or
//! all of a user's. Plain server-rendered HTML forms; no JavaScript.
//!
//! It is off unless the demo's `admin_token` setting is set: then every `/admin` route answers 404.
//!
//! How it is protected:
//! - Logging in takes the token, compared as SHA-256 digests in constant time (`subtle`), so
//!   neither its bytes nor its length leak through timing. A right token sets the admin
//!   cookie `cloakroom_admin` = `<issued>.<nonce>.<mac>`: an HMAC-SHA256 under a key drawn at
//!   start-up, HttpOnly, SameSite=Strict, Path=/admin, good for 8 hours. A restart logs every
//!   admin out (the key is gone); nothing is kept server-side.
//! - Every form that posts carries a CSRF token, a synchronizer token derived from the admin
//!   cookie (the HMAC of its nonce), so it needs no server state and differs per login. The
//!   login form's is tied the same way to a `cloakroom_admin_login` cookie sent with the form.
//!   A POST without a valid one is refused with 403 and changes nothing.
//! - Session keys are secrets (without `hash_keys`, a stored key is a visitor's live cookie):
//!   lists show an 8-character prefix, and a full key travels only in form bodies (view,
//!   revoke), never in a URL, so it stays out of access logs, browser history and `Referer`.
//!   Pages are `no-store` and cannot be framed.
//! - Wrong tokens are rate-limited: after 5 in a minute (from anywhere: one process cannot
//!   tell a botnet's addresses apart) every login attempt, right or wrong, is refused with 429
//!   for the next minute, so guessing is bounded at 5 tries a minute.
//!
//! Sessions are named as the store names them: under `hash_keys`, by the key's hash, which is
//! what the store can load and delete.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cloakroom::store::{Scan, SessionStore, UserIndex};
use cloakroom::{Secret, Sessions, Settings, StoreError};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::demo::{escape, key_prefix as prefix};
use crate::{ops, CliError};

/// The header that reloads a page after some seconds (no script needed).
const REFRESH: HeaderName = HeaderName::from_static("refresh");
/// Sessions on one page of the list.
const PAGE_SIZE: usize = 20;
/// The most sessions one page view walks to sort them. A store's scan comes in key order, so
/// "newest first" needs them all in hand; beyond this the page says it saw only part of the
/// store (filtering by user asks the user index instead, which has no cap).
const SCAN_CAP: usize = 10_000;
/// Wrong admin tokens tolerated per window before logins are refused.
const MAX_WRONG_TOKENS: usize = 5;
/// The window wrong tokens are counted over, and how long logins are then refused.
const WRONG_TOKEN_WINDOW: Duration = Duration::from_secs(60);

/// The recent wrong admin tokens, process-wide (see the module docs).
#[derive(Default)]
struct Throttle {
    wrong: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Throttle {
    /// How long logins stay refused, or `None` when a login may be tried.
    fn refused_for(&mut self, now: Instant) -> Option<Duration> {
        match self.locked_until {
            Some(until) if until > now => Some(until - now),
            _ => {
                self.locked_until = None;
                None
            }
        }
    }

    fn record_wrong(&mut self, now: Instant) {
        while self
            .wrong
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WRONG_TOKEN_WINDOW)
        {
            self.wrong.pop_front();
        }
        self.wrong.push_back(now);
        if self.wrong.len() >= MAX_WRONG_TOKENS {
            self.wrong.clear();
            self.locked_until = Some(now + WRONG_TOKEN_WINDOW);
        }
    }
}

/// Sessions asked of the store per scan batch.
const SCAN_BATCH: usize = 500;
/// The cookie that says "this browser logged in with the admin token".
const ADMIN_COOKIE: &str = "cloakroom_admin";
/// The cookie the login form's CSRF token is tied to.
const LOGIN_COOKIE: &str = "cloakroom_admin_login";
/// How long an admin login lasts, in seconds.
const ADMIN_LIFETIME: i64 = 8 * 3600;
/// How long the login form stays good, in seconds.
const LOGIN_FORM_LIFETIME: i64 = 3600;

/// The admin routes, merged into the demo's router outside its session layer. Without an
/// `admin_token` they are absent, so `/admin/…` answers 404.
///
/// `store` is the store as the engine opened it (not wrapped by `Sessions`), so the names a
/// scan returns are the names it loads and deletes; `None` for signed cookies, which keep
/// nothing on the server (the pages answer 501). `sessions` is the demo's own: a user's
/// sessions are listed and revoked through its user index (`Sessions::sessions_of`,
/// `Sessions::revoke_user`), the same calls an app makes.
///
/// # Errors
/// [`CliError::Io`] when the OS has no randomness for the cookie key.
pub fn router(
    settings: &Settings,
    admin_token: Option<&Secret>,
    store: Option<Arc<dyn SessionStore>>,
    scan: Option<Arc<dyn Scan>>,
    users: Option<Arc<dyn UserIndex>>,
    sessions: Sessions,
    feed: crate::live::Feed,
) -> Result<Router, CliError> {
    let Some(token) = admin_token else {
        return Ok(Router::new());
    };
    let mut key = [0u8; 64];
    getrandom::fill(&mut key)
        .map_err(|e| std::io::Error::other(format!("no randomness for the admin key: {e}")))?;
    let admin = Admin(Arc::new(Inner {
        token_digest: Sha256::digest(token.expose().as_bytes()).into(),
        key,
        secure: settings.session.cookie_secure,
        store,
        scan,
        users,
        sessions,
        feed,
        settings: settings.clone(),
        throttle: Mutex::default(),
    }));
    Ok(Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/sessions") }))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/sessions", get(list))
        .route("/admin/sessions/view", post(view))
        .route("/admin/sessions/revoke", post(revoke))
        .route("/admin/users/revoke", post(revoke_user))
        .route("/admin/events", get(events))
        .layer(axum::middleware::map_response(harden))
        .with_state(admin))
}

#[derive(Clone)]
struct Admin(Arc<Inner>);

struct Inner {
    /// SHA-256 of the admin token: compared in constant time, whatever the guess's length.
    token_digest: [u8; 32],
    /// The HMAC key of admin cookies and CSRF tokens, drawn at start-up.
    key: [u8; 64],
    /// Whether the admin cookies carry `Secure` (as the session cookie does).
    secure: bool,
    /// `None` when sessions live in the cookies (signed cookies).
    store: Option<Arc<dyn SessionStore>>,
    scan: Option<Arc<dyn Scan>>,
    /// The store's own index of sessions by user (its names, as `store`'s).
    users: Option<Arc<dyn UserIndex>>,
    /// The demo's sessions, whose user index answers for one user's sessions.
    sessions: Sessions,
    /// The recent session events, for the live feed.
    feed: crate::live::Feed,
    settings: Settings,
    /// Wrong admin tokens, for the rate limit.
    throttle: Mutex<Throttle>,
}

impl Inner {
    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The throttle is two plain fields: a panic elsewhere leaves them usable.
        self.throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every admin answer is private and stays where it is: not cached, not framed (clickjacking
/// on the revoke buttons), no scripts, forms post only here, no `Referer` sent onwards.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

// ---- Tokens and cookies ----

impl Inner {
    /// Hex HMAC-SHA256 of `purpose` and `parts`, under this process's key.
    fn mac(&self, purpose: &str, parts: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new(&self.key.into());
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(b"|");
            mac.update(part.as_bytes());
        }
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `given` is the MAC of `purpose` and `parts`, compared in constant time.
    fn verify(&self, purpose: &str, parts: &[&str], given: &str) -> bool {
        self.mac(purpose, parts)
            .as_bytes()
            .ct_eq(given.as_bytes())
            .into()
    }

    fn token_matches(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }

    /// The nonce of the request's admin cookie, when we issued it and it is still fresh.
    fn admin_nonce<'h>(&self, headers: &'h HeaderMap, now: OffsetDateTime) -> Option<&'h str> {
        let mut parts = cookie(headers, ADMIN_COOKIE)?.splitn(3, '.');
        let (issued, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let fresh = issued
            .parse::<i64>()
            .is_ok_and(|at| (0..ADMIN_LIFETIME).contains(&(now.unix_timestamp() - at)));
        (self.verify("admin", &[issued, nonce], mac) && fresh).then_some(nonce)
    }

    /// A `Set-Cookie` value for one of the admin cookies (`max_age` 0 deletes it).
    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, read as the session cookie is
/// (`cloakroom::cookies::find`: Django's rules, the last duplicate wins).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    cloakroom::cookies::find(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()), name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 128 random bits as hex.
fn nonce() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        CliError::Io(std::io::Error::other(format!(
            "no randomness for a nonce: {e}"
        )))
    })?;
    Ok(hex(&bytes))
}

/// A request from a logged-in admin, with the CSRF token its forms carry.
///
/// Without a valid admin cookie, a page (GET) is redirected to the login form and anything
/// else is refused with 403.
struct Authed {
    csrf: String,
}

impl FromRequestParts<Admin> for Authed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Failure> {
        match admin
            .0
            .admin_nonce(&parts.headers, OffsetDateTime::now_utc())
        {
            Some(nonce) => Ok(Self {
                csrf: admin.0.mac("csrf", &[nonce]),
            }),
            None if parts.method == Method::GET => Err(Failure::new(Redirect::to("/admin/login"))),
            None => Err(refused("Log in with the admin token first.")),
        }
    }
}

impl Authed {
    /// Refuses a form whose CSRF token is missing or not this login's.
    fn check(&self, given: &str) -> Result<(), Failure> {
        if bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes())) {
            Ok(())
        } else {
            Err(refused(
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            ))
        }
    }

    /// The hidden field every posting form carries.
    fn field(&self) -> String {
        format!(r#"<input type="hidden" name="csrf" value="{}">"#, self.csrf)
    }

    /// A one-button form that posts `name=value` (and the CSRF token) to `action`; `button`
    /// is the button's HTML.
    fn post_button(&self, action: &str, name: &str, value: &str, button: &str) -> String {
        format!(
            r#"<form method="post" action="{action}">{csrf}<input type="hidden" name="{name}" value="{value}">{button}</form>"#,
            csrf = self.field(),
            value = escape(value),
        )
    }

    /// The button that revokes every session of `user`, labelled `label` (HTML).
    fn revoke_user_button(&self, user: &str, label: &str) -> String {
        self.post_button(
            "/admin/users/revoke",
            "user",
            user,
            &format!(r#"<button id="revoke-user" class="danger" type="submit">{label}</button>"#),
        )
    }
}

// ---- Errors ----

/// An answer that is not the page asked for: a refusal, a redirect, or a store failure.
/// (Boxed: a whole response would make every handler's `Result` large.)
struct Failure(Box<Response>);

impl Failure {
    fn new(response: impl IntoResponse) -> Self {
        Self(Box::new(response.into_response()))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<CliError> for Failure {
    fn from(error: CliError) -> Self {
        let status = match error {
            CliError::NoScan(_) | CliError::Store(StoreError::NoUserIndex { .. }) => {
                StatusCode::NOT_IMPLEMENTED
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        // Store errors name the engine and the failure, never a session key.
        tracing::warn!(%error, "admin page");
        Self::new((
            status,
            shell(
                "Error",
                None,
                &format!(r#"<p class="error">{}</p>"#, escape(&error.to_string())),
            ),
        ))
    }
}

impl From<cloakroom::StoreError> for Failure {
    fn from(error: cloakroom::StoreError) -> Self {
        CliError::Store(error).into()
    }
}

/// 403 with a page saying why.
fn refused(why: &str) -> Failure {
    Failure::new((
        StatusCode::FORBIDDEN,
        shell(
            "Refused",
            None,
            &format!(
                r#"<p id="error" class="error">{}</p><p><a href="/admin/sessions">Back to the sessions</a></p>"#,
                escape(why)
            ),
        ),
    ))
}

// ---- Reading sessions ----

/// One line of the list.
struct Row {
    /// The store's name for the session (a live key, unless `hash_keys`).
    key: String,
    user: Option<String>,
    expires_at: OffsetDateTime,
}

impl Inner {
    /// Live sessions (of `user`, when given), newest first; `true` when the walk stopped at
    /// `cap` sessions before the end of the store.
    ///
    /// A user's sessions come from the user index, which every engine with a scan keeps (only
    /// `signed_cookies` has neither, and answers 501 either way); all sessions come from a
    /// scan.
    async fn sessions(
        &self,
        user: Option<&str>,
        now: OffsetDateTime,
        cap: usize,
    ) -> Result<(Vec<Row>, bool), CliError> {
        let (mut rows, truncated) = match user {
            Some(user) => {
                let rows = self
                    .sessions
                    .sessions_of(user)
                    .await?
                    .into_iter()
                    .map(|s| Row {
                        key: s.id,
                        user: Some(s.user_id),
                        expires_at: s.expires_at,
                    })
                    .collect();
                (rows, false)
            }
            None => self.scan(now, cap).await?,
        };
        // "Newest first" is by expiry: a session expires `cookie_age` after its last save, so
        // the latest expiry is the most recently saved (or a longer "remember me").
        rows.sort_by(|a, b| {
            b.expires_at
                .cmp(&a.expires_at)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok((rows, truncated))
    }

    /// Every live session, walking the store's scan until `cap`.
    async fn scan(&self, now: OffsetDateTime, cap: usize) -> Result<(Vec<Row>, bool), CliError> {
        let scan = self
            .scan
            .as_ref()
            .ok_or_else(|| CliError::NoScan(self.settings.store.engine.to_string()))?;
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let batch = scan.scan(cursor.as_deref(), SCAN_BATCH, now).await?;
            rows.extend(batch.sessions.into_iter().map(|(key, record)| Row {
                user: self.owner(&record.data),
                key,
                expires_at: record.expires_at,
            }));
            match batch.next {
                Some(_) if rows.len() >= cap => return Ok((rows, true)),
                Some(next) => cursor = Some(next),
                None => return Ok((rows, false)),
            }
        }
    }

    /// The store, or [`CliError::NoScan`] (501) when sessions live in the cookies.
    fn store(&self) -> Result<&dyn SessionStore, CliError> {
        self.store
            .as_deref()
            .ok_or_else(|| CliError::NoScan(self.settings.store.engine.to_string()))
    }

    /// The user a stored session's data names, if it decodes and names one.
    fn owner(&self, data: &[u8]) -> Option<String> {
        ops::decode(&self.settings, data)
            .ok()
            .and_then(|data| cloakroom::keys::user_id(&data))
    }

    /// Revokes the session named `key`: deleted from the store, so its next request is
    /// anonymous, and unlinked from its user's index. `false` when it had already ended.
    ///
    /// Not `Sessions::revoke`: that one ends only a session the index holds for the user (so
    /// a user cannot name someone else's), while an operator revokes any live session, an
    /// anonymous one or one whose login the index never saw (Django's, on a shared store).
    async fn revoke(&self, key: &str, now: OffsetDateTime) -> Result<bool, CliError> {
        let store = self.store()?;
        let Some(record) = store.load(key, now).await? else {
            return Ok(false);
        };
        store.delete(key).await?;
        let owner = self.owner(&record.data);
        if let (Some(user), Some(index)) = (&owner, &self.users) {
            index.unlink(user, key).await?;
        }
        // The visitor's live connections end too, on every app server.
        self.sessions.announce_revoked(key, owner.as_deref()).await;
        Ok(true)
    }
}

// ---- Handlers ----

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<usize>,
    user: Option<String>,
    /// How many sessions the last action revoked, to say so.
    revoked: Option<u64>,
}

async fn login_page(State(admin): State<Admin>) -> Result<Response, Failure> {
    login_form(&admin.0, StatusCode::OK, None)
}

/// The login form, with a fresh nonce cookie its CSRF token is tied to.
fn login_form(admin: &Inner, status: StatusCode, error: Option<&str>) -> Result<Response, Failure> {
    let nonce = nonce()?;
    let csrf = admin.mac("login", &[&nonce]);
    let error = error
        .map(|e| format!(r#"<p id="error" class="error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{error}<form method="post" action="/admin/login" class="login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="csrf" value="{csrf}">
<button id="log-in" type="submit">Log in</button></form>"#
    );
    let cookie = admin.set_cookie(LOGIN_COOKIE, &nonce, LOGIN_FORM_LIFETIME);
    Ok((status, [(SET_COOKIE, cookie)], shell("Log in", None, &body)).into_response())
}

async fn login(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Failure> {
    let admin = &admin.0;
    let form_ok = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|nonce| admin.verify("login", &[nonce], &form.csrf));
    if !form_ok {
        return login_form(
            admin,
            StatusCode::FORBIDDEN,
            Some("The login form's CSRF token is missing or wrong: try again."),
        );
    }
    let refused = admin.throttle().refused_for(Instant::now());
    if let Some(wait) = refused {
        let mut response = login_form(
            admin,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong admin tokens: logins are refused for a minute. Try again later."),
        )?;
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(response);
    }
    if !admin.token_matches(&form.token) {
        admin.throttle().record_wrong(Instant::now());
        return login_form(admin, StatusCode::FORBIDDEN, Some("Wrong admin token."));
    }
    let issued = OffsetDateTime::now_utc().unix_timestamp().to_string();
    let nonce = nonce()?;
    let mac = admin.mac("admin", &[&issued, &nonce]);
    let login = admin.set_cookie(
        ADMIN_COOKIE,
        &format!("{issued}.{nonce}.{mac}"),
        ADMIN_LIFETIME,
    );
    let spent = admin.set_cookie(LOGIN_COOKIE, "", 0);
    Ok((
        // Two cookies: `AppendHeaders`, as an array of headers would keep only the last.
        AppendHeaders([(SET_COOKIE, login), (SET_COOKIE, spent)]),
        Redirect::to("/admin/sessions"),
    )
        .into_response())
}

async fn logout(
    State(admin): State<Admin>,
    authed: Authed,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Failure> {
    authed.check(&form.csrf)?;
    let gone = admin.0.set_cookie(ADMIN_COOKIE, "", 0);
    Ok(([(SET_COOKIE, gone)], Redirect::to("/admin/login")).into_response())
}

async fn list(
    State(admin): State<Admin>,
    authed: Authed,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, Failure> {
    let admin = &admin.0;
    let now = OffsetDateTime::now_utc();
    let user = query
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let (rows, truncated) = admin.sessions(user, now, SCAN_CAP).await?;
    let pages = rows.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let shown = rows.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE);

    let notice = match query.revoked {
        Some(0) => r#"<p id="notice" class="notice">No live session was revoked: it had already ended.</p>"#.to_owned(),
        Some(1) => r#"<p id="notice" class="notice">Revoked 1 session.</p>"#.to_owned(),
        Some(n) => format!(r#"<p id="notice" class="notice">Revoked {n} sessions.</p>"#),
        None => String::new(),
    };
    let filter_value = escape(user.unwrap_or(""));
    let clear = if user.is_some() {
        r#" <a id="clear-filter" href="/admin/sessions">Show everyone</a>"#
    } else {
        ""
    };
    let filter = format!(
        r#"<form method="get" action="/admin/sessions" class="filter">
<label for="user-filter">User</label> <input id="user-filter" name="user" value="{filter_value}" placeholder="user id">
<button id="filter" type="submit">Filter</button>{clear}</form>"#
    );
    let whose = match user {
        Some(u) => format!(" of user <b>{}</b>", escape(u)),
        None => String::new(),
    };
    let plural = if rows.len() == 1 { "" } else { "s" };
    let mut summary = format!(
        r#"<p id="summary">{count} live session{plural}{whose}, newest first (latest expiry). Page <span id="page">{page}</span> of {pages}.</p>"#,
        count = rows.len()
    );
    if truncated {
        summary.push_str(&format!(
            r#"<p class="notice">The store holds more live sessions than one page view walks ({SCAN_CAP}): these are the newest of the first {SCAN_CAP} in the store's order.</p>"#
        ));
    }
    let revoke_all = match user {
        Some(u) if !rows.is_empty() => authed.revoke_user_button(
            u,
            &format!("Revoke all {} session{plural} of {}", rows.len(), escape(u)),
        ),
        _ => String::new(),
    };
    let body_rows: String = shown
        .map(|row| {
            let prefix = escape(prefix(&row.key));
            let user = row
                .user
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| r#"<span class="muted">anonymous</span>"#.to_owned());
            format!(
                r#"<tr class="session" data-prefix="{prefix}"><td><code>{prefix}…</code></td><td class="user">{user}</td><td>{expires}</td>
<td class="actions">{view}{revoke}</td></tr>"#,
                expires = expiry(row.expires_at, now),
                view = authed.post_button(
                    "/admin/sessions/view",
                    "key",
                    &row.key,
                    r#"<button class="view" type="submit">View</button>"#,
                ),
                revoke = authed.post_button(
                    "/admin/sessions/revoke",
                    "key",
                    &row.key,
                    r#"<button class="revoke danger" type="submit">Revoke</button>"#,
                ),
            )
        })
        .collect();
    let table = if body_rows.is_empty() {
        r#"<p id="empty" class="muted">No live sessions.</p>"#.to_owned()
    } else {
        format!(
            r#"<table id="sessions"><thead><tr><th>Session</th><th>User</th><th>Expires</th><th></th></tr></thead><tbody>{body_rows}</tbody></table>"#
        )
    };
    let link = |p: usize| match user {
        Some(u) => format!("/admin/sessions?user={}&amp;page={p}", percent_encode(u)),
        None => format!("/admin/sessions?page={p}"),
    };
    let mut pager = String::new();
    if page > 1 {
        pager.push_str(&format!(
            r#"<a id="newer" href="{}">← Newer</a> "#,
            link(page - 1)
        ));
    }
    if page < pages {
        pager.push_str(&format!(
            r#"<a id="older" href="{}">Older →</a>"#,
            link(page + 1)
        ));
    }
    let body =
        format!(r#"{notice}{filter}{summary}{revoke_all}{table}<nav id="pager">{pager}</nav>"#);
    Ok(shell("Sessions", Some(&authed), &body))
}

async fn view(
    State(admin): State<Admin>,
    authed: Authed,
    Form(form): Form<KeyForm>,
) -> Result<Response, Failure> {
    authed.check(&form.csrf)?;
    let admin = &admin.0;
    let now = OffsetDateTime::now_utc();
    let Some(record) = admin.store()?.load(&form.key, now).await? else {
        let body = r#"<p id="error" class="error">No live session has that key: it has ended or been revoked.</p><p><a href="/admin/sessions">Back to the sessions</a></p>"#;
        return Ok((StatusCode::NOT_FOUND, shell("Session", Some(&authed), body)).into_response());
    };
    let (user, data) = match ops::decode(&admin.settings, &record.data) {
        Ok(data) => (
            cloakroom::keys::user_id(&data),
            serde_json::to_string_pretty(&data).unwrap_or_else(|e| e.to_string()),
        ),
        Err(e) => (None, e.to_string()),
    };
    let revoke_all = user
        .as_deref()
        .map(|u| authed.revoke_user_button(u, &format!("Revoke every session of {}", escape(u))))
        .unwrap_or_default();
    let body = format!(
        r#"<h2>Session <code id="key-prefix">{prefix}…</code></h2>
<dl><dt>User</dt><dd id="user">{user}</dd><dt>Expires</dt><dd id="expires">{expires}</dd></dl>
<h3>Data</h3><pre id="data">{data}</pre>
<div class="actions">{revoke}{revoke_all}</div>
<p><a id="back" href="/admin/sessions">Back to the sessions</a></p>"#,
        prefix = escape(prefix(&form.key)),
        user = user
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "anonymous".to_owned()),
        expires = expiry(record.expires_at, now),
        data = escape(&data),
        revoke = authed.post_button(
            "/admin/sessions/revoke",
            "key",
            &form.key,
            r#"<button id="revoke" class="danger" type="submit">Revoke this session</button>"#,
        ),
    );
    Ok(shell("Session", Some(&authed), &body).into_response())
}

async fn revoke(
    State(admin): State<Admin>,
    authed: Authed,
    Form(form): Form<KeyForm>,
) -> Result<Redirect, Failure> {
    authed.check(&form.csrf)?;
    let revoked = admin.0.revoke(&form.key, OffsetDateTime::now_utc()).await?;
    Ok(Redirect::to(&format!(
        "/admin/sessions?revoked={}",
        u8::from(revoked)
    )))
}

async fn revoke_user(
    State(admin): State<Admin>,
    authed: Authed,
    Form(form): Form<UserForm>,
) -> Result<Redirect, Failure> {
    authed.check(&form.csrf)?;
    let user = form.user.trim();
    if user.is_empty() {
        return Err(refused("Name the user whose sessions to revoke."));
    }
    let revoked = admin.0.sessions.revoke_user(user).await?;
    Ok(Redirect::to(&format!(
        "/admin/sessions?user={}&revoked={revoked}",
        percent_encode(user)
    )))
}

/// `GET /admin/events`: the live feed, the latest session events of this server, newest
/// first. It reloads itself every 2 s (a `Refresh` header: the admin pages run no script).
async fn events(State(admin): State<Admin>, authed: Authed) -> Response {
    let rows: String = admin
        .0
        .feed
        .recent()
        .iter()
        .map(|e| {
            let at = e
                .at
                .replace_nanosecond(e.at.millisecond() as u32 * 1_000_000)
                .unwrap_or(e.at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!(
                r#"<tr class="event" data-kind="{kind}" data-prefix="{prefix}"><td><time>{at}</time></td><td class="kind">{kind}</td><td><code>{prefix}…</code></td><td class="user">{user}</td></tr>"#,
                kind = e.kind,
                prefix = escape(e.short_id()),
                user = e.user_id.as_deref().map(escape).unwrap_or_else(|| "anonymous".to_owned()),
            )
        })
        .collect();
    let body = format!(
        r#"<p class="muted">The latest session events of this app server, newest first; the page reloads every 2 s. <a href="/admin/sessions">Sessions</a></p>
<table id="events"><thead><tr><th>When</th><th>Event</th><th>Session</th><th>User</th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    let page = shell("Live feed", Some(&authed), &body);
    (AppendHeaders([(REFRESH, "2")]), page).into_response()
}

// ---- Rendering ----

/// An expiry as a UTC timestamp and the time left.
fn expiry(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let stamp = at
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string());
    let left = (at - now).whole_seconds().max(0);
    let left = match left {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    format!(r#"<time datetime="{stamp}">{stamp}</time> <span class="muted">(in {left})</span>"#)
}

/// `text` for a URL query value: everything but RFC 3986's unreserved characters escaped.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page around `body`; a logged-in admin gets the log-out button.
fn shell(title: &str, authed: Option<&Authed>, body: &str) -> Html<String> {
    let logout = authed
        .map(|a| {
            format!(
                r#"<form method="post" action="/admin/logout">{}<button id="log-out" type="submit">Log out</button></form>"#,
                a.field()
            )
        })
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · cloakroom admin</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:64rem;margin:1.5rem auto;padding:0 1rem;color:#222}}
header{{display:flex;justify-content:space-between;align-items:center;border-bottom:2px solid #333;margin-bottom:1rem}}
header h1{{font-size:1.4rem}} header a{{color:inherit;text-decoration:none}}
table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:middle}}
th{{background:#f3f3f3}} tr:hover td{{background:#fafafa}}
form{{display:inline-block;margin:0 .25rem .5rem 0}} td form{{margin-bottom:0}} .filter,.login{{display:block;margin:1rem 0}}
input{{padding:.3rem;font:inherit}} button{{padding:.3rem .7rem;font:inherit;cursor:pointer}}
.danger{{color:#fff;background:#b3261e;border:1px solid #8c1d17;border-radius:3px}}
.notice{{background:#e7f6e7;border:1px solid #9c9;padding:.5rem}} .error{{background:#fdecea;border:1px solid #e99;padding:.5rem}}
.muted{{color:#777}} pre{{background:#f6f8fa;border:1px solid #ddd;padding:.75rem;overflow:auto}}
dl{{display:grid;grid-template-columns:max-content auto;gap:.3rem 1rem}} dd{{margin:0}}
</style></head>
<body><header><h1><a href="/admin/sessions">cloakroom admin</a> · {title}</h1><nav><a id="feed" href="/admin/events">Live feed</a> {logout}</nav></header>
{body}
</body></html>"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_filter_survives_the_page_links() {
        assert_eq!(percent_encode("ana@x.org & bob"), "ana%40x.org%20%26%20bob");
        assert_eq!(percent_encode("42"), "42");
    }
}
