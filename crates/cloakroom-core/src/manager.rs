//! The entry points of the core: [`Sessions`], built once per app, and [`LazySession`], one
//! per request. A request's life runs through the modules beside this one: the load
//! (`load`), the handle that records changes ([`Session`]), the decision of what the end of
//! the request must do (`plan`) and its execution (`runner`). The tower layer is a thin
//! adapter over these two types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::backing::Backing;
use crate::cleanup::{Cleaner, CleanupHandle, CleanupRun};
use crate::clock::Clock;
use crate::codec::Codec;
use crate::config::{OnStoreError, Settings};
use crate::error::{ConfigError, Error, StoreError};
use crate::exclusive::Exclusive;
use crate::live::{Ended, Event, EventKind, LiveHandle};
use crate::recorded::Context;
use crate::response::ErrorHandler;
use crate::session::Session;
use crate::shared::Shared;
use crate::store::{ClearExpired, SessionStore, UserIndex, UserSession};
use crate::transport::{Presented, Transport};

pub use crate::plan::{CookieAction, Outcome};

/// The session machinery of one app: build it once from a store and settings, then start a
/// [`LazySession`] per request. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
    /// The store's abilities the scheduled cleanup uses (the request path never does).
    upkeep: Upkeep,
}

/// What [`Sessions::start_cleanup`] runs on: the store's clearing and its lock across servers.
#[derive(Clone, Default)]
struct Upkeep {
    clear: Option<Arc<dyn ClearExpired>>,
    exclusive: Option<Arc<dyn Exclusive>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("engine", &self.shared.engine())
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Sessions {
    /// Sessions kept in `store`, with the given settings. The codec follows
    /// [`data_format`](crate::config::SessionSettings::data_format) (see [`Settings::codec`]); [`with_codec`](Self::with_codec)
    /// overrides it.
    ///
    /// Under Django's format, data signed with a `secret_key_fallbacks` key is accepted, and is
    /// written back signed with `secret_key` at the session's next save, as Django does: a
    /// request that changes the session, or any request under `save_every_request`. A request
    /// that only reads leaves the stored text as it is (an idle-timeout refresh moves only the
    /// expiry).
    ///
    /// The store's index of sessions by user ([`UserIndex`], which every engine keeps) lets
    /// the app list and revoke a user's sessions ([`sessions_of`](Self::sessions_of)).
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work (see [`Settings::validate`]).
    pub fn new(
        store: impl SessionStore + UserIndex,
        settings: Settings,
    ) -> Result<Self, ConfigError> {
        let store = Arc::new(store);
        let users: Arc<dyn UserIndex> = store.clone();
        Self::from_backend(Backend::new(store).with_users(Some(users)), settings)
    }

    /// As [`new`](Self::new), for a store that is already shared, and without an index of
    /// sessions by user (a store that keeps one goes in a [`Backend`] with its `users`, for
    /// [`from_backend`](Self::from_backend)).
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work.
    pub fn from_arc(store: Arc<dyn SessionStore>, settings: Settings) -> Result<Self, ConfigError> {
        Self::from_backend(Backend::new(store), settings)
    }

    /// As [`new`](Self::new), for a store with optional abilities beside the store contract:
    /// a live migration's moves are linked in the user index as they happen.
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work.
    pub fn from_backend(backend: Backend, settings: Settings) -> Result<Self, ConfigError> {
        Self::from_backing(backend, settings)
    }

    /// Sessions whose data travels as `backing` says: to a store on the server (a
    /// [`Backend`]), or in the cookie itself (a
    /// [`SignedCookies`](crate::engines::cookie::SignedCookies)). What
    /// `cloakroom::engines::open` returns goes here.
    ///
    /// # Examples
    /// ```
    /// use cloakroom_core::engines::cookie::SignedCookies;
    /// use cloakroom_core::{Secret, Sessions, Settings};
    ///
    /// let cookies = SignedCookies::new(Secret::new("a long random secret"), vec![], 1_209_600, "sessionid")?;
    /// let sessions = Sessions::from_backing(cookies, Settings::default())?;
    /// assert_eq!(sessions.engine(), "signed_cookies");
    /// assert!(sessions.store().is_none(), "nothing is stored on the server");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work, or ask to hash the keys of signed
    /// cookies (`hash_keys`: there is no key).
    pub fn from_backing(
        backing: impl Into<Backing>,
        settings: Settings,
    ) -> Result<Self, ConfigError> {
        let backing = backing.into();
        let upkeep = Upkeep {
            clear: backing.server().and_then(|b| b.clear.clone()),
            exclusive: backing.server().and_then(|b| b.exclusive.clone()),
        };
        Ok(Self {
            shared: Arc::new(Shared::new(backing, settings)?),
            upkeep,
        })
    }

    fn map_shared(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
            upkeep: self.upkeep,
        }
    }

    /// Uses another clock (tests use [`ManualClock`](crate::clock::ManualClock)).
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.map_shared(|s| s.clock = Arc::new(clock))
    }

    /// Uses another codec for the stored data.
    #[must_use]
    pub fn with_codec(self, codec: Codec) -> Self {
        self.map_shared(|s| s.codec = codec)
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The store as the layer calls it: the breaker and the store timeout, a span and metrics
    /// around each call, and keys hashed under `hash_keys` (give it the session key, as the
    /// cookie carries it); `None` when the data travels in the cookie (signed cookies) and
    /// nothing is stored.
    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.shared.server().map(|server| &server.as_dyn)
    }

    /// The store's index of sessions by user, with a span and metrics around each call;
    /// `None` when the engine keeps none (signed cookies). Ids are hashed under `hash_keys`,
    /// as [`sessions_of`](Self::sessions_of) lists them.
    pub fn users(&self) -> Option<&dyn UserIndex> {
        self.shared.users().map(|index| index as &dyn UserIndex)
    }

    /// The engine's name for logs and errors (`"sqlite"`, `"signed_cookies"` …).
    pub fn engine(&self) -> &'static str {
        self.shared.engine()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// `user_id`'s live sessions, newest login first: when each was created (the login), last
    /// written, when it expires, and the client [`Session::record_client`] recorded. A session
    /// is listed once a write linked it (its login's save) or a live migration moved it (see
    /// [`MovesOnLoad::load_moved`](crate::MovesOnLoad::load_moved)), and until it expires, is deleted or is revoked.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(sessions: cloakroom_core::Sessions) -> Result<(), cloakroom_core::StoreError> {
    /// for s in sessions.sessions_of("42").await? {
    ///     // The id may be a live session key: show a prefix only.
    ///     let shown = s.id.get(..6).unwrap_or_default();
    ///     println!("{shown}… since {} from {:?}", s.created_at, s.user_agent);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] on the `signed_cookies` engine, or the store's error.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<UserSession>, StoreError> {
        let shared = &self.shared;
        shared
            .user_index()?
            .sessions_of(user_id, shared.clock.now())
            .await
    }

    /// Revokes one of `user_id`'s sessions, `id` as [`sessions_of`](Self::sessions_of) lists
    /// it: the session is deleted, so its next request (on any app server) is anonymous. An
    /// `id` that is not one of this user's live sessions is left alone, so a user can only
    /// ever end their own sessions.
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] on the `signed_cookies` engine, or the store's error.
    pub async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let shared = &self.shared;
        let index = shared.user_index()?;
        // Only a session of this user's is announced as revoked: an id of someone else's is
        // left alone, and so are the connections open under it.
        let listed = index.sessions_of(user_id, shared.clock.now()).await?;
        index.revoke(user_id, id).await?;
        if listed.iter().any(|s| s.id == id) {
            crate::ended::revoked(shared, user_id, id).await;
        }
        Ok(())
    }

    /// "Log out everywhere": revokes every live session of `user_id` (after a password change,
    /// say), returning how many went. The current request's own session goes too: `flush()`
    /// it as well (else its save at the end of the request finds it gone and fails as
    /// [`Error::Interrupted`]), or, to keep it, revoke the others one by one with
    /// [`revoke`](Self::revoke). Connections open under these sessions
    /// ([`Session::ended`]) end, on every app server that started
    /// [`start_live`](Self::start_live).
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] on the `signed_cookies` engine, or the store's error (the
    /// sessions revoked before it stay revoked).
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let shared = &self.shared;
        let index = shared.user_index()?;
        let listed = index.sessions_of(user_id, shared.clock.now()).await?;
        for session in &listed {
            index.revoke(user_id, &session.id).await?;
            crate::ended::revoked(shared, user_id, &session.id).await;
        }
        Ok(listed.len() as u64)
    }

    /// Tells this app's live connections that session `id` (an index id, as
    /// [`sessions_of`](Self::sessions_of) lists it) was revoked by other means than
    /// [`revoke`](Self::revoke) (an operator's tool that deleted it from the store): the
    /// [`Revoked`](crate::EventKind::Revoked) event, and the [`Session::ended`] waits on it end
    /// here and, once [`start_live`](Self::start_live) runs, on the other app servers.
    pub async fn announce_revoked(&self, id: &str, user_id: Option<&str>) {
        let shared = &self.shared;
        let live = &shared.live;
        live.emit(EventKind::Revoked, id, user_id, shared.clock.now());
        live.ended(id, Ended::Revoked, shared.settings.store_timeout())
            .await;
    }

    /// A receiver of this app's session lifecycle events from now on ([`Event`]: created,
    /// rotated, logged in, logged out, revoked, expired, merged), in the order they happened in
    /// this process. Events are built only while somebody subscribes; a subscriber more than
    /// [`EVENT_BUFFER`](crate::live::EVENT_BUFFER) events behind misses the oldest (its `recv`
    /// says how many).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(sessions: cloakroom_core::Sessions) {
    /// let mut events = sessions.events();
    /// tokio::spawn(async move {
    ///     while let Ok(event) = events.recv().await {
    ///         tracing::info!(kind = %event.kind, id = event.short_id(), user = ?event.user_id, "session event");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.shared.live.subscribe()
    }

    /// Starts live revocation across app servers: ends made here are told to the other
    /// servers, and the other servers' ends reach this one's [`Session::ended`] waits. Where
    /// the store has a channel ([`Backend::announce`]: PostgreSQL `LISTEN`/`NOTIFY`, Redis
    /// pub/sub) one background task keeps one listening connection open, reconnecting after
    /// an outage with a pause that doubles up to 5 s, and waits check the store every `poll`
    /// only while it is down; elsewhere (MySQL, files, SQLite) each wait checks its session in
    /// the store every `poll`. Started here, explicitly, never by a constructor; the listener
    /// stops when the handle is stopped or dropped.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(sessions: cloakroom_core::Sessions) -> Result<(), cloakroom_core::ConfigError> {
    /// let live = sessions.start_live(std::time::Duration::from_secs(1))?;
    /// // … serve …
    /// live.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `live_poll_ms` when `poll` is zero, when live
    /// revocation was already started on these sessions, or when no Tokio runtime runs.
    pub fn start_live(&self, poll: Duration) -> Result<LiveHandle, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            setting: "live_poll_ms",
            reason: reason.to_owned(),
        };
        if poll.is_zero() {
            return Err(invalid("the interval must be above 0"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(invalid(
                "start_live runs a Tokio task: call it from async code on a Tokio runtime",
            ));
        }
        let live = &self.shared.live;
        if !live.start(poll) {
            return Err(invalid(
                "live revocation is already started on these sessions: start it once per app",
            ));
        }
        Ok(crate::live::spawn(
            Arc::clone(live),
            poll,
            self.shared.settings.store_timeout(),
        ))
    }

    /// Starts clearing expired sessions every `every` (give or take a tenth, so servers drift
    /// apart), in a background task, until the returned handle is stopped or dropped: the
    /// scheduled form of `cloakroom clearsessions`, opt-in (the `cleanup_interval_secs`
    /// setting is the usual `every`). Started here, explicitly, never by a constructor, so the
    /// app decides when it runs and stops it at shutdown.
    ///
    /// Each run takes the store's cleanup lock first ([`Exclusive`]: an advisory lock on
    /// PostgreSQL, `GET_LOCK` on MySQL, a lock key on Redis, a lock file for files and
    /// SQLite), so one server clears at a time and the others report
    /// [`CleanupRun::Skipped`](crate::cleanup::CleanupRun::Skipped); it deletes in batches
    /// (each under `store_timeout_ms`) until none are left, logs how many went and counts them
    /// in `cloakroom_cleanup_cleared_total` and `cloakroom_cleanup_runs_total{outcome}`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(sessions: cloakroom_core::Sessions) -> Result<(), cloakroom_core::ConfigError> {
    /// let cleanup = sessions.start_cleanup(std::time::Duration::from_secs(3600))?;
    /// // … serve …
    /// cleanup.stop().await; // at shutdown: waits for the current batch
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `cleanup_interval_secs` when `every` is zero, when the
    /// store cannot clear (a bare store given to [`Sessions::new`]: build from
    /// `cloakroom::engines::open`'s [`Backend`] instead), or when no Tokio runtime runs.
    pub fn start_cleanup(&self, every: Duration) -> Result<CleanupHandle, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "cleanup_interval_secs",
            reason,
        };
        if every.is_zero() {
            return Err(invalid("the interval must be above 0".into()));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(invalid(
                "start_cleanup runs a Tokio task: call it from async code on a Tokio runtime"
                    .into(),
            ));
        }
        Ok(self.cleaner()?.start(every))
    }

    /// One cleanup run now, as the scheduled cleanup runs it: under the cleanup lock (or
    /// [`CleanupRun::Skipped`](crate::cleanup::CleanupRun::Skipped) when another server holds
    /// it), in batches until no expired session is left.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the store cannot clear (see
    /// [`start_cleanup`](Self::start_cleanup)); the store's failures come back as
    /// [`CleanupRun::Failed`](crate::cleanup::CleanupRun::Failed).
    pub async fn clear_expired_now(&self) -> Result<CleanupRun, ConfigError> {
        Ok(self.cleaner()?.run(None).await)
    }

    fn cleaner(&self) -> Result<Cleaner, ConfigError> {
        let engine = self.shared.engine();
        let clear = self
            .upkeep
            .clear
            .clone()
            .ok_or_else(|| ConfigError::Invalid {
                setting: "cleanup_interval_secs",
                reason: format!(
                "this `{engine}` store was given without its ability to clear expired sessions: \
                 build Sessions with from_backend (what cloakroom::engines::open returns, or a \
                 Backend with `clear` set)"
            ),
            })?;
        Ok(Cleaner {
            engine,
            clear,
            exclusive: self.upkeep.exclusive.clone(),
            timeout: self.shared.settings.store_timeout(),
            clock: Arc::clone(&self.shared.clock),
            live: Arc::clone(&self.shared.live),
        })
    }

    /// Starts the session of one request from its session cookie value, without touching the
    /// store: the store is read only when the session is first used.
    pub fn start(&self, cookie: Option<&str>) -> LazySession {
        self.start_presented(Presented {
            cookie,
            header: None,
        })
    }

    /// Starts the session of one request from its `Cookie` header values and its key header's
    /// (`header_name`) values, without touching the store: what an adapter calls for each
    /// request (see [`crate::transport`]). Both are read whatever the `transport` setting
    /// says, because a route layer may choose another transport after the session started;
    /// the route's transport picks one key at the first use.
    ///
    /// # Examples
    /// ```
    /// # fn demo(sessions: cloakroom_core::Sessions) {
    /// let cookies: [&[u8]; 1] = [b"theme=dark; sessionid=abcdefgh12345678"];
    /// let tokens: [&[u8]; 0] = [];
    /// let lazy = sessions.start_request(cookies, tokens);
    /// # let _ = lazy; }
    /// ```
    pub fn start_request<'a, C, H>(&self, cookie_headers: C, key_headers: H) -> LazySession
    where
        C: IntoIterator<Item = &'a [u8]>,
        H: IntoIterator<Item = &'a [u8]>,
    {
        let settings = &self.shared.settings.session;
        self.start_presented(Presented {
            cookie: crate::cookies::find(cookie_headers, &settings.cookie_name),
            header: crate::transport::header_key(key_headers),
        })
    }

    /// Starts the session of one request from the keys it presents in its cookie and its key
    /// header, as [`start_request`](Self::start_request) finds them, without touching the
    /// store. The route's transport (the `transport` setting, or
    /// [`LazySession::set_transport`]) picks the key at the first use.
    pub fn start_presented(&self, presented: Presented<'_>) -> LazySession {
        LazySession {
            session: Session {
                inner: Arc::new(Context::new(Arc::clone(&self.shared), presented)),
            },
        }
    }
}

/// A request's session before it is loaded. The layer puts one in the request extensions;
/// [`load`](Self::load) reads the store at most once per request.
#[derive(Clone, Debug)]
pub struct LazySession {
    session: Session,
}

impl LazySession {
    /// Loads the session (one store round trip, the first time only) and returns it.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails and the policy is fail-closed. Under fail-open the
    /// request gets an empty session that is never saved instead.
    pub async fn load(&self) -> Result<Session, Error> {
        let inner = &self.session.inner;
        inner
            .load_done
            .get_or_try_init(|| crate::load::fetch(inner))
            .await?;
        Ok(self.session.clone())
    }

    /// Overrides the store-error policy for this request (the `OnStoreErrorLayer` (in the `cloakroom` crate) does this
    /// per route). Has no effect once set, or once the session is loaded.
    pub fn set_on_store_error(&self, policy: OnStoreError) {
        let _ = self.session.inner.policy.set(policy);
    }

    /// Sets where this request's key travels, overriding the `transport` setting (the
    /// `TransportLayer` (in the `cloakroom` crate) does this per route). Has no effect once
    /// set, or once the session was used.
    pub fn set_transport(&self, transport: Transport) {
        self.session.inner.set_transport(transport);
    }

    /// Makes this request exclusive for its visitor: it waits (at most `wait`, or the
    /// `lock_timeout_ms` setting when `None`) until no other exclusive request of the same
    /// session key runs in this process, and holds that place until its save. Requests that
    /// are not exclusive never wait. Has no effect once the session is loaded. The
    /// `ExclusiveLayer` (in the `cloakroom` crate) calls this per route.
    pub fn set_exclusive(&self, wait: Option<Duration>) {
        let _ = self.session.inner.exclusive.set(wait);
    }

    /// Answers this request's session errors with `handler` (the layer's
    /// `with_error_handler` (the `cloakroom` crate's `SessionLayer`) sets it).
    #[doc(hidden)]
    pub fn set_error_handler(&self, handler: &ErrorHandler) {
        let _ = self.session.inner.on_error.set(Arc::clone(handler));
    }

    /// The response for a session error of this request: the layer's error handler's, or the
    /// default [`error_response`](crate::response::error_response).
    pub fn error_response(&self, error: &Error) -> http::Response<String> {
        match self.session.inner.on_error.get() {
            Some(handler) => handler(error),
            None => crate::response::error_response(error),
        }
    }

    #[doc(hidden)]
    pub fn has_error_handler(&self) -> bool {
        self.session.inner.on_error.get().is_some()
    }

    /// The app's session machinery (for [`finish`](Self::finish), in `finish.rs`).
    pub(crate) fn shared(&self) -> &Shared {
        &self.session.inner.shared
    }

    /// The request's session state (for `finish.rs`, which runs its end).
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.session.inner
    }

    /// The instant the end of this request was planned at, once [`commit`](Self::commit) ran
    /// (for `finish.rs`, which dates the cookie with it).
    pub(crate) fn planned_at(&self) -> Option<time::OffsetDateTime> {
        self.session.state().planned_at
    }

    /// Whether the session was loaded in this request.
    pub fn is_loaded(&self) -> bool {
        self.session.inner.load_done.initialized()
    }

    /// Ends the request's session after the handler ran: deletes, creates or saves the record
    /// with Django's rules, and says what to do with the cookie.
    ///
    /// `status` is the response status: on a 5xx nothing is saved and the cookie is left alone,
    /// except that a [`flush`](Session::flush) still deletes the records it doomed (and the
    /// cookie, when the session is left empty).
    ///
    /// # Errors
    /// [`Error::Interrupted`] when another request deleted the session meanwhile,
    /// [`Error::Store`] when the store fails.
    pub async fn commit(&self, status: u16) -> Result<Outcome, Error> {
        if let Some(outcome) = self.end_if_unused() {
            return Ok(outcome);
        }
        if !self.is_loaded() {
            self.load().await?;
        }
        crate::runner::end(&self.session.inner, status).await
    }

    /// The end of a request that did not load its session and need not (only
    /// `save_every_request` loads one to save a key the request carried): closed, nothing to
    /// send. `None` when the end must load and run the plan.
    pub(crate) fn end_if_unused(&self) -> Option<Outcome> {
        let inner = &self.session.inner;
        let saves_anyway =
            inner.shared.settings.session.save_every_request && inner.key().is_some();
        if self.is_loaded() || saves_anyway {
            return None;
        }
        self.session.state().closed = true;
        Some(Outcome::untouched(inner.transport()))
    }
}
