//! The framework-free core of a request's session: lazy load, and the save at the end with
//! Django's rules. The tower layer is a thin adapter over [`Sessions`] and [`LazySession`].

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher as _;
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
use crate::expiry::{Lifetime, DEADLINE_KEY, MOVED_KEY};
use crate::key;
use crate::observe::{Observer, Operation};
use crate::session::{user_of, Inner, Session, State};
use crate::store::{user_index, Created, Record, SessionStore, Updated, UserIndex, UserSession};

/// How many times a save re-applies its changes to a newer record before giving up.
const MAX_MERGES: u32 = 64;
/// How many fresh keys a create draws before giving up (Django's cache backend uses 10,000;
/// with 165 bits per key a second draw is already astronomically unlikely).
const MAX_KEY_DRAWS: u32 = 16;
/// Lock stripes: requests of one visitor in one process wait for each other, so their saves
/// rarely need merging; unrelated visitors share a stripe once in 4096.
const STRIPES: usize = 4096;

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
    stripes: Box<[Arc<tokio::sync::Mutex<()>>]>,
    /// Picks a key's stripe. Seeded per process, so a client cannot aim its keys at one
    /// stripe; foldhash rather than SipHash, whose three hashes of a key per request cost
    /// about 1,700 instructions (callgrind) where foldhash's cost a fraction.
    hasher: foldhash::quality::RandomState,
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

    /// The name the store (and so its user index) knows session `key` by.
    fn stored_id(&self, key: &str) -> String {
        crate::hashed::stored_id(&self.settings, key)
    }

    async fn lock(&self, key: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let stripe = usize::try_from(self.hasher.hash_one(key) % STRIPES as u64).unwrap_or(0);
        let mutex = Arc::clone(&self.stripes[stripe]);
        // Uncontended (nearly always): no timer to arm.
        let mutex = match mutex.try_lock_owned() {
            Ok(guard) => return Some(guard),
            Err(_) => Arc::clone(&self.stripes[stripe]),
        };
        let wait = Duration::from_millis(self.settings.lock_timeout_ms);
        match tokio::time::timeout(wait, mutex.lock_owned()).await {
            Ok(guard) => Some(guard),
            Err(_) => {
                // Go ahead unlocked: the save is a compare-and-swap, so nothing is lost, it
                // may only need a merge.
                tracing::debug!("session lock wait timed out; continuing without it");
                None
            }
        }
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
        let store: Arc<dyn SessionStore> = if settings.hash_keys {
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
            settings.breaker_threshold,
            Duration::from_millis(settings.breaker_cooldown_ms),
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
                stripes: (0..STRIPES)
                    .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                    .collect(),
                hasher: foldhash::quality::RandomState::default(),
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
            stripes: arc.stripes.clone(),
            hasher: arc.hasher.clone(),
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
            .unwrap_or(inner.shared.settings.on_store_error)
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
        let guard = if in_cookie {
            None
        } else {
            shared.lock(candidate).await
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
        st.guard = guard;
        if let Some((key, record, data)) = found {
            st.resend = key != candidate;
            st.linked = user_of(&data).map(|user| (user, key.clone()));
            st.data = data;
            st.key = Some(key);
            st.expires_at = Some(record.expires_at);
            st.loaded = Some(record.data);
        }
        Ok(())
    }

    /// Loads and decodes the live record under `key`, following the pointer that a key
    /// rotation leaves behind while its grace window lasts. Corrupt data is never adopted.
    async fn read_record(
        &self,
        key: &str,
    ) -> Result<Option<(String, Record, crate::codec::Data)>, StoreError> {
        let shared = &self.session.inner.shared;
        let now = shared.clock.now();
        let mut key = key.to_owned();
        // One hop at most: a pointer to a pointer is not followed.
        for _hop in 0..2 {
            let Some((record, moved)) = shared
                .call(Operation::Load, shared.store.load_moved(&key, now))
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
            match moved_to(&data) {
                None => {
                    if moved {
                        self.link_moved(&key, &record, &data, now).await?;
                    }
                    return Ok(Some((key, record, data)));
                }
                Some(next) if shared.settings.rotation_grace > 0 && key::is_well_formed(next) => {
                    key = next.to_owned();
                }
                Some(_) => return Ok(None),
            }
        }
        Ok(None)
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
            if !(settings.save_every_request && had_cookie) {
                return Ok(Outcome {
                    cookie: CookieAction::Keep,
                    vary: false,
                });
            }
            self.load().await?;
        }
        let mut st = std::mem::take(&mut *self.session.state());
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
        let guard = st.guard.take();
        *self.session.state() = st;
        drop(guard);
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
        for doomed in std::mem::take(&mut st.doomed) {
            shared
                .call(Operation::Delete, store.delete(&doomed))
                .await?;
        }
        let now = shared.clock.now();
        // After a flush the key is gone and its records are doomed: on a 5xx the empty branch
        // below deletes nothing more, and data written after the flush is not saved.
        if failed && !st.data.is_empty() {
            return Ok(keep(st.accessed));
        }
        if st.data.is_empty() {
            if st.modified {
                if let Some(key) = st.key.take() {
                    shared.call(Operation::Delete, store.delete(&key)).await?;
                }
                if let Some((old, _)) = st.cycled_from.take() {
                    shared.call(Operation::Delete, store.delete(&old)).await?;
                }
            }
            self.relink(st, None, now).await?;
            return Ok(if had_cookie {
                Outcome {
                    cookie: CookieAction::Delete,
                    vary: true,
                }
            } else {
                keep(st.accessed)
            });
        }
        if !(st.modified || settings.save_every_request) {
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
                settings.absolute_lifetime,
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
        let mut lifetime = Lifetime::of(&st.data, settings, now);
        let mut record = Record {
            data: shared.codec.encode(&st.data),
            expires_at: lifetime.expires_at,
        };
        let key = match (st.key.clone(), st.loaded.take()) {
            (Some(mut key), Some(mut expected)) => {
                let mut merges = 0;
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
                        Updated::Conflict(mut current) => {
                            merges += 1;
                            if merges > MAX_MERGES {
                                return Err(Error::Contended { attempts: merges });
                            }
                            backoff(merges).await;
                            let mut data = self.decode_current(&current)?;
                            if let Some(next) = moved_to(&data) {
                                // Another request rotated the key while this one ran: inside
                                // the grace window the changes go to the new session.
                                let Some((next, next_record, next_data)) =
                                    self.read_record(next).await?
                                else {
                                    return Err(Error::Interrupted);
                                };
                                key = next;
                                current = next_record;
                                data = next_data;
                                st.resend = true;
                            }
                            for op in &st.ops {
                                op.replay(&mut data)?;
                            }
                            lifetime = Lifetime::of(&data, settings, now);
                            record = Record {
                                data: shared.codec.encode(&data),
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
            self.forward(&old, old_data, &key, now).await?;
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
        let lifetime = Lifetime::of(&st.data, &shared.settings, now);
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
        let lifetime = Lifetime::of(&st.data, settings, now);
        let Some(idle) = lifetime.idle else {
            return Ok(None);
        };
        let remaining = (stored_expiry - now).as_seconds_f64();
        #[allow(clippy::cast_precision_loss)]
        let fresh_enough = remaining > idle as f64 * (1.0 - settings.refresh_threshold);
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
        let Some(cap) = shared.settings.max_sessions_per_user else {
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

    /// Leaves a pointer from a rotated key to its successor for the grace window.
    async fn forward(
        &self,
        old: &str,
        mut expected: String,
        new: &str,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        let shared = &self.session.inner.shared;
        let grace = Duration::from_secs(shared.settings.rotation_grace);
        let mut pointer = crate::codec::Data::new();
        pointer.insert(MOVED_KEY.to_owned(), serde_json::Value::from(new));
        let record = Record {
            data: shared.codec.encode(&pointer),
            expires_at: now + grace,
        };
        for _ in 0..MAX_MERGES {
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
        // Could not park the pointer: fall back to no grace rather than leave the old key live.
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

/// The successor key a rotated record points to, if this record is such a pointer.
/// Whether the data's `_session_expiry` is an instant at or before `now`.
fn expiry_passed(data: &crate::codec::Data, now: OffsetDateTime) -> bool {
    crate::codec::lookup(data, crate::expiry::EXPIRY_KEY)
        .and_then(serde_json::Value::as_str)
        .and_then(crate::expiry::parse_iso)
        .is_some_and(|at| at <= now)
}

fn moved_to(data: &crate::codec::Data) -> Option<&str> {
    crate::codec::lookup(data, MOVED_KEY).and_then(serde_json::Value::as_str)
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
