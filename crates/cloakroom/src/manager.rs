//! The framework-free core of a request's session: lazy load, and the save at the end with
//! Django's rules. The tower layer is a thin adapter over [`Sessions`] and [`LazySession`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use time::OffsetDateTime;

use crate::breaker::Breaker;
use crate::clock::{Clock, SystemClock};
use crate::codec::Codec;
use crate::config::{OnStoreError, Settings};
use crate::error::{ConfigError, Error, StoreError};
use crate::expiry::Lifetime;
use crate::key;
use crate::keys::{AUTH_KEYS, DEADLINE_KEY, MOVED_KEY, ROTATED_KEY};
use crate::locks::KeyLocks;
use crate::observe::{Observer, Operation};
use crate::session::{user_of, Inner, Session, State};
use crate::store::{user_index, Created, Record, SessionStore, Updated, UserIndex, UserSession};

/// How many times a save re-applies its changes to a newer record before giving up.
const MAX_MERGES: u32 = 64;
/// How many fresh keys a create draws before giving up (Django's cache backend uses 10,000;
/// with 165 bits per key a second draw is already astronomically unlikely).
const MAX_KEY_DRAWS: u32 = 16;
/// Everything the sessions of one app share: the store, the settings, the codec and the clock.
pub(crate) struct Shared {
    /// The store the core calls, each call observed by `observer`.
    pub store: Arc<dyn SessionStore>,
    /// The same store wrapped in [`Instrumented`](crate::observe::Instrumented), for the app's
    /// own calls through [`Sessions::store`].
    observed: Arc<dyn SessionStore>,
    observer: Arc<Observer>,
    pub settings: Settings,
    pub codec: Codec,
    pub clock: Arc<dyn Clock>,
    /// Savers of one key that met a conflict queue here before merging (store calls only).
    save_locks: KeyLocks,
    /// Exclusive routes of one visitor run one at a time (opt-in, held from load to save).
    exclusive_locks: KeyLocks,
    breaker: Arc<Breaker>,
}

impl Shared {
    /// Runs one store call under the configured timeout, observed as `op` (span, metrics).
    async fn call<T: crate::observe::Outcome>(
        &self,
        op: Operation,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let engine = self.store.engine();
        if let Err(e) = self.breaker.admit(engine) {
            crate::observe::record_error(engine, &e);
            return Err(e);
        }
        let after = self.settings.store_timeout();
        let result = match (Bounded {
            fut: self.observer.observe(op, fut),
            sleep: None,
            after,
        })
        .await
        {
            Some(result) => result,
            None => Err(StoreError::Timeout { engine, after }),
        };
        // A session too large for its store is the app's problem, not the store's health.
        let healthy = !matches!(
            result,
            Err(StoreError::Timeout { .. }
                | StoreError::Backend { .. }
                | StoreError::MissingTable { .. })
        );
        self.breaker.record(healthy);
        if let Err(e) = &result {
            crate::observe::record_error(engine, e);
        }
        result
    }

    /// Encodes `data` for the store, refusing it over `max_session_bytes`. Every record the
    /// core creates or updates, and so every cookie it sets (signed or not), is encoded here:
    /// the one place the size bound is enforced, before anything is written.
    fn encode_bounded(&self, data: &crate::codec::Data) -> Result<String, Error> {
        let text = self.codec.encode(data);
        let limit = self.settings.session.max_session_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge {
                size: text.len(),
                limit,
            });
        }
        Ok(text)
    }

    /// The name the store (and so its user index) knows session `key` by.
    fn stored_id(&self, key: &str) -> String {
        crate::hashed::stored_id(&self.settings, key)
    }
}

pin_project_lite::pin_project! {
    /// A store call with a time limit whose timer is armed only if the call does not finish at
    /// once: an in-process store never pays for one, a remote one pays once. `None` when the
    /// limit passed.
    struct Bounded<F> {
        #[pin]
        fut: F,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        after: Duration,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let after = *this.after;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The session machinery of one app: build it once from a store and settings, then start a
/// [`LazySession`] per request. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("engine", &self.shared.store.engine())
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Sessions {
    /// Sessions kept in `store`, with the given settings. The codec follows
    /// [`Settings::data_format`] (see [`Settings::codec`]); [`with_codec`](Self::with_codec)
    /// overrides it.
    ///
    /// Under Django's format, data signed with a `secret_key_fallbacks` key is accepted, and is
    /// written back signed with `secret_key` at the session's next save, as Django does: a
    /// request that changes the session, or any request under `save_every_request`. A request
    /// that only reads leaves the stored text as it is (an idle-timeout refresh moves only the
    /// expiry).
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work (see [`Settings::validate`]).
    pub fn new(store: impl SessionStore, settings: Settings) -> Result<Self, ConfigError> {
        Self::from_arc(Arc::new(store), settings)
    }

    /// As [`new`](Self::new), for a store that is already shared.
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work.
    pub fn from_arc(store: Arc<dyn SessionStore>, settings: Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let store: Arc<dyn SessionStore> = if settings.session.hash_keys {
            if store.keeps_data_in_cookie() {
                return Err(ConfigError::Invalid {
                    setting: "hash_keys",
                    reason: format!(
                        "the {} engine keeps the data in the cookie: there is no key to hash",
                        store.engine()
                    ),
                });
            }
            Arc::new(crate::hashed::HashedKeys::new(store))
        } else {
            store
        };
        let breaker = Arc::new(Breaker::new(
            settings.resilience.breaker_threshold,
            Duration::from_millis(settings.resilience.breaker_cooldown_ms),
        ));
        // Every store call gets a span and metrics (see `observe`): the core's own through
        // `Shared::call`, the app's through the instrumented store `Sessions::store` returns.
        let observer = Arc::new(Observer::new(store.engine()));
        let observed: Arc<dyn SessionStore> =
            Arc::new(crate::observe::Instrumented::new(Arc::clone(&store)));
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                observed,
                observer,
                codec: settings.codec(),
                settings,
                clock: Arc::new(SystemClock),
                save_locks: KeyLocks::default(),
                exclusive_locks: KeyLocks::default(),
                breaker,
            }),
        })
    }

    fn map_shared(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| Shared {
            store: Arc::clone(&arc.store),
            observed: Arc::clone(&arc.observed),
            observer: Arc::clone(&arc.observer),
            settings: arc.settings.clone(),
            codec: arc.codec.clone(),
            clock: Arc::clone(&arc.clock),
            save_locks: arc.save_locks.clone(),
            exclusive_locks: arc.exclusive_locks.clone(),
            breaker: Arc::clone(&arc.breaker),
        });
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
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

    /// The store, with a span and metrics around each call (as the layer's own calls have).
    #[allow(clippy::misnamed_getters)] // the app gets the observed store, on purpose
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.observed
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// `user_id`'s live sessions, newest login first: when each was created (the login), last
    /// written, when it expires, and the client [`Session::record_client`] recorded. A session
    /// is listed once a write linked it (its login's save) or a live migration moved it (see
    /// [`SessionStore::load_moved`]), and until it expires, is deleted or is revoked.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(sessions: cloakroom::Sessions) -> Result<(), cloakroom::StoreError> {
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
        let index = user_index(&*shared.store)?;
        shared
            .call(
                Operation::SessionsOf,
                index.sessions_of(user_id, shared.clock.now()),
            )
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
        let index = user_index(&*shared.store)?;
        shared
            .call(Operation::Revoke, index.revoke(user_id, id))
            .await
    }

    /// "Log out everywhere": revokes every live session of `user_id` (after a password change,
    /// say), returning how many went. The current request's own session goes too: `flush()`
    /// it as well (else its save at the end of the request finds it gone and fails as
    /// [`Error::Interrupted`]), or, to keep it, revoke the others one by one with
    /// [`revoke`](Self::revoke).
    ///
    /// # Errors
    /// [`StoreError::NoUserIndex`] on the `signed_cookies` engine, or the store's error (the
    /// sessions revoked before it stay revoked).
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let shared = &self.shared;
        let index = user_index(&*shared.store)?;
        let listed = shared
            .call(
                Operation::SessionsOf,
                index.sessions_of(user_id, shared.clock.now()),
            )
            .await?;
        for session in &listed {
            shared
                .call(Operation::Revoke, index.revoke(user_id, &session.id))
                .await?;
        }
        Ok(listed.len() as u64)
    }

    /// Starts the session of one request from its session cookie value, without touching the
    /// store: the store is read only when the session is first used.
    pub fn start(&self, cookie: Option<&str>) -> LazySession {
        LazySession {
            session: Session {
                inner: Arc::new(Inner {
                    shared: Arc::clone(&self.shared),
                    cookie: cookie.map(str::to_owned),
                    loaded: tokio::sync::OnceCell::new(),
                    state: Mutex::new(State::default()),
                    policy: std::sync::OnceLock::new(),
                    exclusive: std::sync::OnceLock::new(),
                    on_error: std::sync::OnceLock::new(),
                }),
            },
        }
    }
}

/// What the response must do with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieAction {
    /// Leave the cookie alone.
    Keep,
    /// Set it.
    Set {
        /// The cookie value (the session key, or the signed data).
        value: String,
        /// `Max-Age` in seconds; `None` for a browser-session cookie.
        max_age: Option<i64>,
    },
    /// Delete it.
    Delete,
}

/// The end of a request's session: what to put in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to do with the cookie.
    pub cookie: CookieAction,
    /// Whether to add `Vary: Cookie` (the session was accessed).
    pub vary: bool,
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
        inner.loaded.get_or_try_init(|| self.fetch()).await?;
        Ok(self.session.clone())
    }

    /// Overrides the store-error policy for this request (the [`OnStoreErrorLayer`] does this
    /// per route). Has no effect once set, or once the session is loaded.
    ///
    /// [`OnStoreErrorLayer`]: crate::layer::OnStoreErrorLayer
    pub fn set_on_store_error(&self, policy: OnStoreError) {
        let _ = self.session.inner.policy.set(policy);
    }

    fn policy(&self) -> OnStoreError {
        let inner = &self.session.inner;
        inner
            .policy
            .get()
            .copied()
            .unwrap_or(inner.shared.settings.resilience.on_store_error)
    }

    /// Makes this request exclusive for its visitor: it waits (at most `wait`, or the
    /// `lock_timeout_ms` setting when `None`) until no other exclusive request of the same
    /// session key runs in this process, and holds that place until its save. Requests that
    /// are not exclusive never wait. Has no effect once the session is loaded. The
    /// [`ExclusiveLayer`](crate::layer::ExclusiveLayer) calls this per route.
    pub fn set_exclusive(&self, wait: Option<Duration>) {
        let _ = self.session.inner.exclusive.set(wait);
    }

    /// Answers this request's session errors with `handler` (the layer's
    /// [`with_error_handler`](crate::SessionLayer::with_error_handler) sets it).
    pub(crate) fn set_error_handler(&self, handler: &crate::layer::ErrorHandler) {
        let _ = self.session.inner.on_error.set(Arc::clone(handler));
    }

    /// The response for a session error of this request: the layer's error handler's, or the
    /// default [`error_response`](crate::layer::error_response).
    pub fn error_response(&self, error: &Error) -> http::Response<String> {
        match self.session.inner.on_error.get() {
            Some(handler) => handler(error),
            None => crate::layer::error_response(error),
        }
    }

    pub(crate) fn has_error_handler(&self) -> bool {
        self.session.inner.on_error.get().is_some()
    }

    /// Whether the session was loaded in this request.
    pub fn is_loaded(&self) -> bool {
        self.session.inner.loaded.initialized()
    }

    async fn fetch(&self) -> Result<(), Error> {
        let inner = &self.session.inner;
        let shared = &inner.shared;
        let Some(candidate) = inner.cookie.as_deref() else {
            return Ok(());
        };
        let in_cookie = shared.store.keeps_data_in_cookie();
        if !in_cookie && !key::is_well_formed(candidate) {
            return Ok(());
        }
        // Only an exclusive route waits, and only for the same visitor's exclusive requests:
        // taken before the load, so that the load sees what the previous one saved.
        let exclusive = match (inner.exclusive.get(), in_cookie) {
            (Some(&wait), false) => {
                let wait = wait.unwrap_or(Duration::from_millis(
                    shared.settings.resilience.lock_timeout_ms,
                ));
                Some(
                    shared
                        .exclusive_locks
                        .lock(candidate, wait)
                        .await
                        .ok_or(Error::ExclusiveTimeout { waited: wait })?,
                )
            }
            _ => None,
        };
        let found = match self.read_record(candidate).await {
            Ok(found) => found,
            Err(e) if self.policy() == OnStoreError::FailOpen => {
                crate::observe::warn_store_failure(
                    shared.store.engine(),
                    &e,
                    "session store failed; continuing with an anonymous session (fail-open)",
                );
                self.session.state().detached = true;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let mut st = self.session.state();
        if let Some((key, record, mut data)) = found {
            // A key the store does not hold keeps no lock.
            st.exclusive = exclusive;
            st.resend = key != candidate;
            st.rotated = data.shift_remove(ROTATED_KEY).is_some();
            st.linked = user_of(&data)
                .filter(|_| !st.rotated)
                .map(|user| (user, key.clone()));
            st.data = data;
            st.key = Some(key);
            st.expires_at = Some(record.expires_at);
            st.loaded = Some(record.data);
        }
        Ok(())
    }

    /// Loads and decodes the live record under `key`. A record that `cycle_key` left behind
    /// under a rotation grace window comes back with its `_cloakroom_rotated` marker (the
    /// caller serves it read-only); one from an older release, which held only the new key, is
    /// treated as gone. Corrupt data is never adopted.
    async fn read_record(
        &self,
        key: &str,
    ) -> Result<Option<(String, Record, crate::codec::Data)>, StoreError> {
        let shared = &self.session.inner.shared;
        let now = shared.clock.now();
        let Some((record, moved)) = shared
            .call(Operation::Load, shared.store.load_moved(key, now))
            .await?
        else {
            return Ok(None);
        };
        let data = match shared.codec.decode(&record.data) {
            Ok(data) => data,
            Err(e) => {
                // Never adopted and never overwritten: the visitor gets a new key.
                tracing::warn!(engine = shared.store.engine(), error = %e,
                    "stored session data is corrupt; starting a fresh session");
                return Ok(None);
            }
        };
        if !shared.store.keeps_data_in_cookie() && expiry_passed(&data, now) {
            // Django's file backend ends a session whose `_session_expiry` instant has
            // passed, whatever the file's mtime says; the other stores already agree (their
            // expiry is that instant). Signed cookies keep Django's rule: the cookie age only.
            return Ok(None);
        }
        if data.contains_key(MOVED_KEY)
            || (data.contains_key(ROTATED_KEY) && shared.settings.session.rotation_grace == 0)
        {
            return Ok(None);
        }
        if moved {
            self.link_moved(key, &record, &data, now).await?;
        }
        Ok(Some((key.to_owned(), record, data)))
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
        let inner = &self.session.inner;
        let shared = &inner.shared;
        let settings = &shared.settings;
        let had_cookie = inner.cookie.is_some();
        if !self.is_loaded() {
            if !(settings.session.save_every_request && had_cookie) {
                self.session.state().closed = true;
                return Ok(Outcome {
                    cookie: CookieAction::Keep,
                    vary: false,
                });
            }
            self.load().await?;
        }
        let mut st = {
            let mut current = self.session.state();
            // A handler that kept a clone (a streaming body) may read while the save runs: it
            // sees the data as saved. Nobody else holds one on the usual path, so no copy.
            let data = if Arc::strong_count(inner) > 1 {
                current.data.clone()
            } else {
                crate::codec::Data::new()
            };
            std::mem::replace(
                &mut *current,
                State {
                    data,
                    closed: true,
                    ..State::default()
                },
            )
        };
        st.closed = true;
        // Put back what a handler that kept a clone may still look at.
        let result = match self.finish(&mut st, status, had_cookie).await {
            Err(Error::Store(e)) if self.policy() == OnStoreError::FailOpen => {
                crate::observe::warn_store_failure(
                    shared.store.engine(),
                    &e,
                    "session store failed; the response goes out unsaved (fail-open)",
                );
                Ok(Outcome {
                    cookie: CookieAction::Keep,
                    vary: st.accessed,
                })
            }
            other => other,
        };
        let exclusive = st.exclusive.take();
        *self.session.state() = st;
        drop(exclusive);
        result
    }

    async fn finish(
        &self,
        st: &mut State,
        status: u16,
        had_cookie: bool,
    ) -> Result<Outcome, Error> {
        let shared = &self.session.inner.shared;
        let settings = &shared.settings;
        let store = &shared.store;
        let keep = |vary| Outcome {
            cookie: CookieAction::Keep,
            vary,
        };
        // Django skips the save on a 5xx, but its `flush()` has already deleted the record: a
        // logout whose page then fails still logs out, so a flush's deletions go through, and
        // an emptied session's cookie is deleted as Django's middleware does whatever the
        // status. Nothing else is written: a login that failed after `cycle_key` must not
        // delete the old record without storing its replacement (the browser keeps the old
        // cookie, and with it the session it had).
        let failed = status >= 500;
        if st.detached || (failed && !st.flushed) {
            return Ok(keep(st.accessed));
        }
        if st.rotated {
            return finish_rotated(st);
        }
        if !failed && !st.doomed.is_empty() && !st.data.is_empty() {
            // A login (`cycle_key`) deletes the old record before it stores the new one: a
            // session too large to store must fail before that, so the visitor keeps the
            // session they had.
            shared.encode_bounded(&st.data)?;
        }
        for doomed in std::mem::take(&mut st.doomed) {
            shared
                .call(Operation::Delete, store.delete(&doomed))
                .await?;
        }
        let now = shared.clock.now();
        // Django's `is_empty()`: no key and no data. A session that has a key stays a session
        // when emptied (by `remove` of its last key or `clear`): `{}` is saved under its key and
        // the cookie kept, as Django does; only `flush` drops the key. After a flush the doomed
        // records are gone: on a 5xx nothing more is written, and data written after the
        // flush is not saved.
        let empty = st.data.is_empty() && st.key.is_none() && !st.must_persist;
        if failed && !empty {
            return Ok(keep(st.accessed));
        }
        if empty {
            self.relink(st, None, now).await?;
            // Django's middleware deletes the cookie of a request that came with one and ends
            // empty: a flush, or a key the store does not know.
            return Ok(if had_cookie {
                Outcome {
                    cookie: CookieAction::Delete,
                    vary: true,
                }
            } else {
                keep(st.accessed)
            });
        }
        if !(st.modified || settings.session.save_every_request) {
            return Ok(match self.roll(st, now).await? {
                Some(outcome) => {
                    if let (Some(key), Some(expires_at)) = (st.key.clone(), st.expires_at) {
                        self.relink(st, Some((&key, expires_at)), now).await?;
                    }
                    outcome
                }
                None if st.resend => self.cookie_for(st, now)?,
                None => keep(st.accessed),
            });
        }
        if st.key.is_none() {
            // A new session (or a cycled key) starts its absolute lifetime now.
            if let (Some(life), false) = (
                settings.session.absolute_lifetime,
                st.data.contains_key(DEADLINE_KEY),
            ) {
                let deadline = now + Duration::from_secs(life);
                st.data.insert(
                    DEADLINE_KEY.to_owned(),
                    serde_json::Value::from(crate::expiry::format_iso(deadline)),
                );
            }
        }

        // Computed once, and again only when a merge changes the data.
        let mut lifetime = Lifetime::of(&st.data, &settings.session, now);
        let mut record = Record {
            data: shared.encode_bounded(&st.data)?,
            expires_at: lifetime.expires_at,
        };
        let key = match (st.key.clone(), st.loaded.take()) {
            (Some(key), Some(mut expected)) => {
                let mut merges = 0;
                // Taken only once a save has met another: the others' saves of this key in
                // this process then go one at a time, so each merges about once.
                let mut queued = None;
                loop {
                    match shared
                        .call(
                            Operation::Update,
                            store.update(&key, &expected, &record, now),
                        )
                        .await?
                    {
                        Updated::Stored => break,
                        Updated::Missing => return Err(Error::Interrupted),
                        Updated::Conflict(current) => {
                            merges += 1;
                            if merges > MAX_MERGES {
                                return Err(Error::Contended { attempts: merges });
                            }
                            if queued.is_none() {
                                // Bounded like a store call; past it the merge goes on unqueued
                                // (the compare-and-swap still loses nothing).
                                queued =
                                    shared.save_locks.lock(&key, settings.store_timeout()).await;
                            } else {
                                backoff(merges).await;
                            }
                            let mut data = self.decode_current(&current)?;
                            if is_rotated(&data) {
                                // A login rotated the key while this request ran: its changes
                                // stay out of the new session (they may be an attacker's who
                                // held the old key), see `finish_rotated`.
                                return Err(Error::Rotated);
                            }
                            for op in &st.ops {
                                op.replay(&mut data)?;
                            }
                            lifetime = Lifetime::of(&data, &settings.session, now);
                            record = Record {
                                data: shared.encode_bounded(&data)?,
                                expires_at: lifetime.expires_at,
                            };
                            st.data = data;
                            expected = current.data;
                        }
                    }
                }
                key
            }
            _ => self.create(&record).await?,
        };
        if let Some((old, old_data)) = st.cycled_from.take() {
            self.forward(&old, old_data, now).await?;
        }
        self.relink(st, Some((&key, record.expires_at)), now)
            .await?;
        let value = store.cookie_value(&key, &record, now)?.into_owned();
        st.expires_at = Some(record.expires_at);
        st.loaded = Some(record.data);
        st.key = Some(key);
        Ok(Outcome {
            cookie: CookieAction::Set {
                value,
                max_age: (!lifetime.browser_close).then_some(lifetime.age),
            },
            vary: true,
        })
    }

    fn decode_current(&self, current: &Record) -> Result<crate::codec::Data, Error> {
        self.session
            .inner
            .shared
            .codec
            .decode(&current.data)
            .map_err(|e| {
                tracing::warn!(error = %e, "a concurrent save left corrupt data");
                Error::Interrupted
            })
    }

    /// The cookie for the session as it stands, without writing to the store.
    fn cookie_for(&self, st: &State, now: OffsetDateTime) -> Result<Outcome, Error> {
        let shared = &self.session.inner.shared;
        let (Some(key), Some(data)) = (&st.key, &st.loaded) else {
            return Ok(Outcome {
                cookie: CookieAction::Keep,
                vary: st.accessed,
            });
        };
        let lifetime = Lifetime::of(&st.data, &shared.settings.session, now);
        let record = Record {
            data: data.clone(),
            expires_at: st.expires_at.unwrap_or(lifetime.expires_at),
        };
        let age = (record.expires_at - now).whole_seconds();
        Ok(Outcome {
            cookie: CookieAction::Set {
                value: shared.store.cookie_value(key, &record, now)?.into_owned(),
                max_age: (!lifetime.browser_close).then_some(age),
            },
            vary: true,
        })
    }

    /// A rolling session on a read-only request: moves the expiry forward with a TTL-only
    /// write, but only once `refresh_threshold` of the idle timeout has passed since the last
    /// write, so 1,000 reads do not make 1,000 writes.
    async fn roll(&self, st: &mut State, now: OffsetDateTime) -> Result<Option<Outcome>, Error> {
        let shared = &self.session.inner.shared;
        let settings = &shared.settings;
        let (Some(key), Some(loaded), Some(stored_expiry)) =
            (st.key.clone(), st.loaded.clone(), st.expires_at)
        else {
            return Ok(None);
        };
        let lifetime = Lifetime::of(&st.data, &settings.session, now);
        let Some(idle) = lifetime.idle else {
            return Ok(None);
        };
        let remaining = (stored_expiry - now).as_seconds_f64();
        #[allow(clippy::cast_precision_loss)]
        let fresh_enough = remaining > idle as f64 * (1.0 - settings.session.refresh_threshold);
        if fresh_enough || lifetime.expires_at <= stored_expiry {
            return Ok(None);
        }
        let record = Record {
            data: loaded,
            expires_at: lifetime.expires_at,
        };
        match shared
            .call(Operation::Touch, shared.store.touch(&key, &record, now))
            .await?
        {
            Updated::Stored => {
                st.expires_at = Some(record.expires_at);
                Ok(Some(Outcome {
                    cookie: CookieAction::Set {
                        value: shared.store.cookie_value(&key, &record, now)?.into_owned(),
                        max_age: (!lifetime.browser_close).then_some(lifetime.age),
                    },
                    vary: true,
                }))
            }
            // Another request saved meanwhile, and so moved the expiry itself; or the session
            // is gone, which the next request will find out.
            Updated::Conflict(_) | Updated::Missing => Ok(None),
        }
    }

    /// Keeps the store's user index in step with what this request wrote: `saved` is the key
    /// and expiry the session was just written under (`None`: deleted). The entry the session
    /// was loaded under goes when the user or the key changed (logout, login as someone else,
    /// `cycle_key`); the current one is linked (or refreshed) when the data holds a user. A
    /// session without a user, before and after, costs no index call.
    async fn relink(
        &self,
        st: &mut State,
        saved: Option<(&str, OffsetDateTime)>,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        let shared = &self.session.inner.shared;
        let next = saved.and_then(|(key, _)| Some((user_of(&st.data)?, key.to_owned())));
        if st.linked.is_none() && next.is_none() {
            return Ok(());
        }
        let Some(index) = shared.store.users() else {
            return Ok(());
        };
        let fresh = st.linked != next;
        if let Some((user, key)) = st.linked.take().filter(|_| fresh) {
            self.under_policy(
                shared
                    .call(Operation::Unlink, index.unlink(&user, &key))
                    .await,
            )?;
        }
        let entry = saved
            .and_then(|(key, expires_at)| UserSession::from_data(key, &st.data, expires_at, now));
        if let Some(entry) = entry {
            self.under_policy(shared.call(Operation::Link, index.link(&entry)).await)?;
            if fresh {
                let (user, key) = (&entry.user_id, &entry.id);
                self.under_policy(self.enforce_cap(index, user, key, now).await)?;
            }
        }
        st.linked = next;
        Ok(())
    }

    /// `max_sessions_per_user`: after a login linked session `key`, revokes the user's oldest
    /// other sessions until the user has at most the cap.
    async fn enforce_cap(
        &self,
        index: &dyn UserIndex,
        user: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let shared = &self.session.inner.shared;
        let Some(cap) = shared.settings.session.max_sessions_per_user else {
            return Ok(());
        };
        let me = shared.stored_id(key);
        let mut others = shared
            .call(Operation::SessionsOf, index.sessions_of(user, now))
            .await?;
        others.retain(|s| s.id != me);
        others.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let keep = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(1);
        for old in others.iter().skip(keep) {
            shared
                .call(Operation::Revoke, index.revoke(user, &old.id))
                .await?;
        }
        Ok(())
    }

    /// Links a session the store just moved in from another (a live migration's first use),
    /// which no write of the core's linked: the read alone makes it listed and revocable.
    async fn link_moved(
        &self,
        key: &str,
        record: &Record,
        data: &crate::codec::Data,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let shared = &self.session.inner.shared;
        let (Some(index), Some(entry)) = (
            shared.store.users(),
            UserSession::from_data(key, data, record.expires_at, now),
        ) else {
            return Ok(());
        };
        self.under_policy(shared.call(Operation::Link, index.link(&entry)).await)
    }

    /// The result of a user index call, under the store-error policy: fail-open logs the
    /// failure and goes on (the session itself was saved; only its entry is missing or stale,
    /// and a listing shows live sessions only), fail-closed reports it.
    fn under_policy(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        let shared = &self.session.inner.shared;
        match result {
            Ok(()) => Ok(()),
            Err(e) if self.policy() == OnStoreError::FailOpen => {
                crate::observe::warn_store_failure(shared.store.engine(), &e,
                    "the user index failed; the session is saved but its entry may be stale (fail-open)");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Leaves, under a rotated key, the session as it was before the rotation, marked
    /// read-only, for the grace window (see [`finish_rotated`]). It holds nothing that leads to
    /// the new key, and no logged-in user.
    async fn forward(
        &self,
        old: &str,
        mut expected: String,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        let shared = &self.session.inner.shared;
        let grace = Duration::from_secs(shared.settings.session.rotation_grace);
        for _ in 0..MAX_MERGES {
            // The snapshot is what the store held under the old key (a concurrent save under
            // it included), never this request's changes.
            let Ok(mut snapshot) = shared.codec.decode(&expected) else {
                break;
            };
            for auth in AUTH_KEYS {
                snapshot.shift_remove(auth);
            }
            snapshot.insert(
                ROTATED_KEY.to_owned(),
                serde_json::Value::from(crate::expiry::format_iso(now)),
            );
            let record = Record {
                data: shared.codec.encode(&snapshot),
                expires_at: now + grace,
            };
            match shared
                .call(
                    Operation::Update,
                    shared.store.update(old, &expected, &record, now),
                )
                .await?
            {
                Updated::Stored | Updated::Missing => return Ok(()),
                Updated::Conflict(current) => expected = current.data,
            }
        }
        // Could not park the snapshot: fall back to no grace rather than leave the old key live.
        shared
            .call(Operation::Delete, shared.store.delete(old))
            .await?;
        Ok(())
    }

    async fn create(&self, record: &Record) -> Result<String, Error> {
        let shared = &self.session.inner.shared;
        for _ in 0..MAX_KEY_DRAWS {
            let key = key::generate()?;
            match shared
                .call(Operation::Create, shared.store.create(&key, record))
                .await?
            {
                Created::Stored => return Ok(key),
                Created::Taken => continue,
            }
        }
        Err(Error::Contended {
            attempts: MAX_KEY_DRAWS,
        })
    }
}

/// [`Session::save`]: the save the end of the request would make, made now and forced (an
/// empty session gets a key, as Django's `create()` gives one). The saved text becomes the
/// compare-and-swap token and the changes so far are in it, so the end of the request writes
/// again only if the session changes after this; it re-sends the cookie, which carries the key.
pub(crate) async fn save_now(session: &Session) -> Result<String, Error> {
    let lazy = LazySession {
        session: session.clone(),
    };
    let had_cookie = session.inner.cookie.is_some();
    let mut st = std::mem::take(&mut *session.state());
    if st.detached || st.closed {
        let error = if st.closed {
            Error::AlreadySaved
        } else {
            Error::Unsaved
        };
        *session.state() = st;
        return Err(error);
    }
    st.accessed = true;
    st.modified = true;
    st.must_persist = true;
    let token = st.loaded.clone();
    let result = lazy.finish(&mut st, 200, had_cookie).await;
    if result.is_ok() {
        st.ops.clear();
        st.modified = false;
        st.must_persist = false;
        st.resend = true;
    } else if st.loaded.is_none() {
        // The save took the token and failed: the end of the request tries again from it,
        // rather than take the session for a new one.
        st.loaded = token;
    }
    let key = st.key.clone();
    *session.state() = st;
    result?;
    key.ok_or(Error::Interrupted)
}

/// Whether the data's `_session_expiry` is an instant at or before `now`.
fn expiry_passed(data: &crate::codec::Data, now: OffsetDateTime) -> bool {
    crate::codec::lookup(data, crate::keys::EXPIRY_KEY)
        .and_then(serde_json::Value::as_str)
        .and_then(crate::expiry::parse_iso)
        .is_some_and(|at| at <= now)
}

/// Whether this record is what `cycle_key` left under a rotated key (or, from an older
/// release, a pointer to the new key).
fn is_rotated(data: &crate::codec::Data) -> bool {
    data.contains_key(ROTATED_KEY) || data.contains_key(MOVED_KEY)
}

/// The end of a request that came with a key `cycle_key` rotated away, inside the grace
/// window. It was served the session as it was before the rotation, and it stays read-only:
/// nothing is written (no save, touch or delete), no cookie is set or deleted (the browser
/// may hold the new key by now), and a change of any kind fails as [`Error::Rotated`] rather
/// than reach the new session. The grace window keeps a login's parallel requests from
/// breaking; it must not hand the new session to whoever else holds the old key.
fn finish_rotated(st: &State) -> Result<Outcome, Error> {
    if st.modified {
        return Err(Error::Rotated);
    }
    Ok(Outcome {
        cookie: CookieAction::Keep,
        vary: st.accessed,
    })
}

/// A short random pause before the next merge attempt, growing with each conflict, so that
/// many requests racing for one record (several app servers, or a lock wait that timed out)
/// spread out instead of colliding again in lockstep.
async fn backoff(attempt: u32) {
    let ceiling_us = 500u64 << attempt.min(6); // 0.5 ms … 32 ms
    let mut bytes = [0u8; 8];
    let jitter = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) % ceiling_us,
        Err(_) => ceiling_us / 2,
    };
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}
