//! Test helpers for app authors (feature `test-helpers`): run a handler or a whole router
//! against sessions kept in an in-process store, with no server and no network, then look at
//! what a user would see (the response, its `Set-Cookie`) and at what the store now holds.
//!
//! - [`TestSessions::create`] stores a session holding the data a test starts from and gives
//!   back its key; [`TestSessions::cookie_header`] turns the key into a `Cookie` header.
//! - [`TestSessions::call`] runs a service (an axum `Router`, any tower service) behind a
//!   [`SessionLayer`] built from these sessions, in-process (`poll_ready` then `call`, as
//!   tower's `oneshot` does), and collects the response.
//! - [`TestResponse`] has the status, the body, the session's `Set-Cookie` and the key it sets;
//!   [`TestResponse::changes`] lists the store writes the request made (sessions created,
//!   updated, extended, deleted), found by comparing the store before and after.
//! - [`TestSessions::stored`] decodes what the store holds under a key.
//!
//! # Examples
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use cloakroom::test::TestSessions;
//! use cloakroom::Session;
//! use http::{Request, StatusCode};
//!
//! async fn visits(session: Session) -> Result<String, cloakroom::Error> {
//!     let n = session.update("visits", |n: &mut u64| *n += 1)?;
//!     Ok(n.to_string())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cloakroom::BoxError> {
//! let sessions = TestSessions::new();
//! let app = Router::new().route("/", get(visits));
//!
//! // A visitor who has been here 41 times.
//! let key = sessions.create([("visits", 41)]).await?;
//! let request = Request::get("/")
//!     .header("cookie", sessions.cookie_header(&key))
//!     .body(Body::empty())?;
//! let response = sessions.call(app.clone(), request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.text(), "42");
//! assert_eq!(response.changes().updated, [key.clone()]);
//! assert_eq!(sessions.stored(&key).await?.unwrap()["visits"], 42);
//!
//! // A first visit: a new session, its key in the Set-Cookie.
//! let response = sessions.call(app, Request::get("/").body(Body::empty())?).await?;
//! let new_key = response.session_key().expect("a session cookie");
//! assert_eq!(response.changes().created, [new_key.to_owned()]);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::Clock;
use crate::engines::memory::MemoryStore;
use crate::store::{Record, Scan};
use crate::{Backend, BoxError, ConfigError, Error, SessionLayer, Sessions, Settings};

/// Sessions kept in an in-process store that a test can look into. Cheap to clone: clones
/// share the store.
#[derive(Clone, Debug)]
pub struct TestSessions {
    sessions: Sessions,
    store: Arc<MemoryStore>,
}

impl Default for TestSessions {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSessions {
    /// Sessions with the default settings (Django's: `sessionid`, two weeks, JSON data).
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::default());
        // The default settings pass validation (pinned by the settings tests): `from_backend`
        // can only refuse settings that cannot work.
        let sessions = Sessions::from_backend(Backend::server(store.clone()), Settings::default())
            .unwrap_or_else(|e| unreachable!("the default settings are valid: {e}"));
        Self { sessions, store }
    }

    /// Sessions with these settings (the engine settings are ignored: the store is always the
    /// in-process one).
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work, as [`Sessions::new`] would refuse them.
    pub fn with_settings(settings: Settings) -> Result<Self, ConfigError> {
        let store = Arc::new(MemoryStore::default());
        let sessions = Sessions::from_backend(Backend::server(store.clone()), settings)?;
        Ok(Self { sessions, store })
    }

    /// Uses another clock, such as a [`ManualClock`](crate::clock::ManualClock) a test moves
    /// forward to see a session expire.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self {
            sessions: self.sessions.with_clock(clock),
            store: self.store,
        }
    }

    /// The sessions, for an app that builds its own [`SessionLayer`] (see
    /// [`call_app`](Self::call_app)) or calls [`Sessions::sessions_of`] and friends.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The in-process store itself.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// A layer over these sessions.
    pub fn layer(&self) -> SessionLayer {
        SessionLayer::new(self.sessions.clone())
    }

    /// Stores a new session holding `data` (pairs of a key and any value serde can write) and
    /// returns its session key: the state a test starts from, as if earlier requests had left
    /// it there.
    ///
    /// # Errors
    /// [`Error::Encode`] when a value cannot be written as JSON, or what a save can fail with.
    pub async fn create<K, V, I>(&self, data: I) -> Result<String, Error>
    where
        K: Into<String>,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let session = self.sessions.start(None).load().await?;
        session.extend(data)?;
        session.save().await
    }

    /// The `Cookie` request header that sends session `key` under the configured cookie name
    /// (`sessionid=KEY` by default).
    pub fn cookie_header(&self, key: &str) -> String {
        format!("{}={key}", self.sessions.settings().session.cookie_name)
    }

    /// The data stored under `key` now, decoded; `None` when no live session has that key.
    ///
    /// # Errors
    /// When the stored data cannot be decoded with the settings' codec.
    pub async fn stored(&self, key: &str) -> Result<Option<Map<String, Value>>, BoxError> {
        let Some(record) = self.snapshot().await?.remove(key) else {
            return Ok(None);
        };
        Ok(Some(self.sessions.settings().codec().decode(&record.data)?))
    }

    /// The keys of every live session in the store, sorted.
    ///
    /// # Errors
    /// Never for the in-process store; the type is the store's.
    pub async fn stored_keys(&self) -> Result<Vec<String>, BoxError> {
        Ok(self.snapshot().await?.into_keys().collect())
    }

    /// Runs one request through `app` behind a [`SessionLayer`] over these sessions, with no
    /// server, and collects the response and the store writes it made. `app` is the router
    /// (or a router with one handler) *without* its own session layer; for an app that adds
    /// one, use [`call_app`](Self::call_app).
    ///
    /// One call at a time per store: the writes are found by comparing the store before and
    /// after, so concurrent calls would see each other's.
    ///
    /// # Errors
    /// The app's error (never, for an axum `Router`), a failure to read the body, or the
    /// store's.
    pub async fn call<S, ReqBody, ResBody>(
        &self,
        app: S,
        request: Request<ReqBody>,
    ) -> Result<TestResponse, BoxError>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ReqBody: Send + 'static,
        ResBody: http_body::Body + From<String> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        self.call_app(self.layer().layer(app), request).await
    }

    /// As [`call`](Self::call), for an app that has its session layer already, built from
    /// [`sessions`](Self::sessions) (an app whose builder takes a [`Sessions`]).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_app<S, ReqBody, ResBody>(
        &self,
        mut app: S,
        request: Request<ReqBody>,
    ) -> Result<TestResponse, BoxError>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        S::Error: Into<BoxError>,
        ResBody: http_body::Body,
        ResBody::Error: Into<BoxError>,
    {
        let before = self.snapshot().await?;
        poll_fn(|cx| app.poll_ready(cx)).await.map_err(Into::into)?;
        let response = app.call(request).await.map_err(Into::into)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(Into::into)?.to_bytes();
        let after = self.snapshot().await?;
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            cookie_name: self.sessions.settings().session.cookie_name.clone(),
            changes: StoreChanges::between(&before, &after),
        })
    }

    /// Every live record, by key.
    async fn snapshot(&self) -> Result<BTreeMap<String, Record>, BoxError> {
        let now = self.sessions.clock().now();
        let mut all = BTreeMap::new();
        let mut cursor = None;
        loop {
            let batch = self.store.scan(cursor.as_deref(), 1000, now).await?;
            all.extend(batch.sessions);
            match batch.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }
}

/// The store writes one request made, by session key (sorted), as seen in the store: what a
/// write changed, not how many calls it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreChanges {
    /// Sessions that were not stored before and are now.
    pub created: Vec<String>,
    /// Sessions whose data changed.
    pub updated: Vec<String>,
    /// Sessions whose data is the same but whose expiry moved (a rolling session's refresh,
    /// a save under `save_every_request`).
    pub extended: Vec<String>,
    /// Sessions that were stored before and are gone (a `flush`, a key rotation, a revoke).
    pub deleted: Vec<String>,
}

impl StoreChanges {
    fn between(before: &BTreeMap<String, Record>, after: &BTreeMap<String, Record>) -> Self {
        let mut changes = Self::default();
        for (key, now) in after {
            match before.get(key) {
                None => changes.created.push(key.clone()),
                Some(then) if then.data != now.data => changes.updated.push(key.clone()),
                Some(then) if then.expires_at != now.expires_at => {
                    changes.extended.push(key.clone());
                }
                Some(_) => {}
            }
        }
        let gone = before.keys().filter(|key| !after.contains_key(*key));
        changes.deleted = gone.cloned().collect();
        changes
    }

    /// Whether the request left the store as it was.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A response collected by [`TestSessions::call`], with the store writes of its request.
#[derive(Debug)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    cookie_name: String,
    changes: StoreChanges,
}

impl TestResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body, whole.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body read as JSON.
    ///
    /// # Errors
    /// When the body is not JSON of that shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The session cookie's `Set-Cookie` header, whole (`sessionid=…; HttpOnly; …`), or `None`
    /// when the response leaves the cookie alone.
    pub fn set_cookie(&self) -> Option<&str> {
        let prefix = format!("{}=", self.cookie_name);
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&prefix))
    }

    /// The session key the response's cookie sets, or `None` when it sets none (no
    /// `Set-Cookie`, or one that removes the cookie).
    pub fn session_key(&self) -> Option<&str> {
        let value = self.set_cookie()?.split(';').next()?;
        let (_, key) = value.split_once('=')?;
        let key = key.trim_matches('"');
        (!key.is_empty()).then_some(key)
    }

    /// Whether the response removes the session cookie (a `Set-Cookie` with an empty value
    /// that expired in 1970, as Django's `delete_cookie` writes it).
    pub fn cookie_removed(&self) -> bool {
        self.set_cookie().is_some() && self.session_key().is_none()
    }

    /// The `Cookie` request header a browser would send next: the cookie this response set,
    /// or `None` when it set none.
    pub fn next_cookie_header(&self) -> Option<String> {
        self.session_key()
            .map(|key| format!("{}={key}", self.cookie_name))
    }

    /// The store writes the request made.
    pub fn changes(&self) -> &StoreChanges {
        &self.changes
    }
}
