//! What the sessions of one app share: where the data travels (a store, or the cookie), the
//! settings, the codec, the clock, the circuit breaker and the per-key locks, and
//! [`Shared::call`], the one way the core calls the store (breaker, timeout, metrics and span
//! around every call).
//!
//! The store's abilities beside the store contract (`MovesOnLoad`, `UserIndex`) are called
//! through here, so that the store trait stays about storing bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::backend::Backend;
use crate::backing::Backing;
use crate::breaker::Breaker;
use crate::clock::{Clock, SystemClock};
use crate::codec::{Codec, Data};
use crate::config::Settings;
use crate::engines::cookie::SignedCookies;
use crate::error::{ConfigError, Error, StoreError};
use crate::locks::KeyLocks;
use crate::observe::{Observer, Operation};
use crate::store::{MovesOnLoad, Record, SessionStore, UserIndex};

/// Everything the sessions of one app share.
#[derive(Clone)]
pub(crate) struct Shared {
    /// Where the data travels, as the core calls it.
    pub travel: Travel,
    observer: Arc<Observer>,
    pub settings: Settings,
    pub codec: Codec,
    pub clock: Arc<dyn Clock>,
    /// Savers of one key that met a conflict queue here before merging (store calls only).
    pub save_locks: KeyLocks,
    /// Exclusive routes of one visitor run one at a time (opt-in, held from load to save).
    pub exclusive_locks: KeyLocks,
    breaker: Arc<Breaker>,
}

/// [`Backing`] as the core uses it: the store wrapped as the settings ask.
#[derive(Clone)]
pub(crate) enum Travel {
    /// The data is kept in a store on the server; the cookie carries its key.
    Server(Server),
    /// The data travels in the cookie, signed; nothing is stored.
    Cookie(SignedCookies),
}

/// A store on the server, as the core calls it.
#[derive(Clone)]
pub(crate) struct Server {
    /// The store the core calls (keys hashed under `hash_keys`), each call observed by
    /// [`Shared::call`].
    pub store: Arc<dyn SessionStore>,
    /// The same store wrapped in [`Instrumented`](crate::observe::Instrumented), for the app's
    /// own calls through [`Sessions::store`](crate::Sessions::store).
    pub observed: Arc<dyn SessionStore>,
    /// The store's live migration, if it is one: loads go through it (see `Shared::load`).
    moves: Option<Arc<dyn MovesOnLoad>>,
    /// The store's index of sessions by user (ids hashed under `hash_keys`), if it keeps one.
    users: Option<Arc<dyn UserIndex>>,
    /// The same index observed, for the app's own calls through
    /// [`Sessions::users`](crate::Sessions::users).
    pub observed_users: Option<Arc<dyn UserIndex>>,
}

impl Server {
    /// `backend` under `settings`: keys hashed when `hash_keys` asks for it.
    fn new(backend: Backend, settings: &Settings) -> Self {
        let Backend {
            store,
            moves,
            users,
            ..
        } = backend;
        let (store, users): (Arc<dyn SessionStore>, _) = if settings.session.hash_keys {
            let hashed = Arc::new(crate::hashed::HashedKeys::new(store).with_users(users.clone()));
            let users = users.map(|_| Arc::clone(&hashed) as Arc<dyn UserIndex>);
            (hashed, users)
        } else {
            (store, users)
        };
        // Every store call gets a span and metrics (see `observe`): the core's own through
        // `Shared::call`, the app's through the instrumented store `Sessions::store` returns.
        let instrumented = Arc::new(
            crate::observe::Instrumented::new(Arc::clone(&store)).with_users(users.clone()),
        );
        let observed_users = users
            .as_ref()
            .map(|_| Arc::clone(&instrumented) as Arc<dyn UserIndex>);
        Self {
            store,
            observed: instrumented,
            moves,
            users,
            observed_users,
        }
    }
}

impl Shared {
    /// The machinery for `backing` under `settings`: keys hashed when `hash_keys` asks for it,
    /// a breaker with the configured threshold, and the system clock.
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work, or ask to hash the keys of sessions that
    /// have none (signed cookies).
    pub fn new(backing: Backing, settings: Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let engine = backing.engine();
        let travel = match backing {
            Backing::Cookie(_) if settings.session.hash_keys => {
                return Err(ConfigError::Invalid {
                    setting: "hash_keys",
                    reason: format!(
                        "the {engine} engine keeps the data in the cookie: there is no key to hash"
                    ),
                })
            }
            Backing::Cookie(cookies) => Travel::Cookie(cookies),
            Backing::Server(backend) => Travel::Server(Server::new(backend, &settings)),
        };
        let breaker = Arc::new(Breaker::new(
            settings.resilience.breaker_threshold,
            Duration::from_millis(settings.resilience.breaker_cooldown_ms),
        ));
        Ok(Self {
            travel,
            observer: Arc::new(Observer::new(engine)),
            codec: settings.codec(),
            settings,
            clock: Arc::new(SystemClock),
            save_locks: KeyLocks::default(),
            exclusive_locks: KeyLocks::default(),
            breaker,
        })
    }

    /// The engine's name for logs and errors.
    pub fn engine(&self) -> &'static str {
        match &self.travel {
            Travel::Server(server) => server.store.engine(),
            Travel::Cookie(cookies) => cookies.engine(),
        }
    }

    /// The store on the server, unless the data travels in the cookie.
    pub fn server(&self) -> Option<&Server> {
        match &self.travel {
            Travel::Server(server) => Some(server),
            Travel::Cookie(_) => None,
        }
    }

    /// Runs one store call under the configured timeout, observed as `op` (span, metrics).
    pub async fn call<T: crate::observe::Outcome>(
        &self,
        op: Operation,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let engine = self.engine();
        if let Err(e) = self.breaker.admit(engine) {
            crate::observe::record_error(engine, &e);
            return Err(e);
        }
        let after = self.settings.store_timeout();
        let bounded = Bounded {
            fut: self.observer.observe(op, fut),
            sleep: None,
            after,
        };
        let result = match bounded.await {
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
    pub fn encode_bounded(&self, data: &Data) -> Result<Bytes, Error> {
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
    pub fn stored_id(&self, key: &str) -> String {
        crate::hashed::stored_id(&self.settings, key)
    }

    /// Loads the live record under `key` from `server`, and whether this very load moved it
    /// in from another store (a live migration's first use).
    pub async fn load(
        &self,
        server: &Server,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError> {
        match &server.moves {
            // The migrating store sits below the key hashing, as the store does.
            Some(moves) => {
                let stored = self.stored_id(key);
                self.call(Operation::Load, moves.load_moved(&stored, now))
                    .await
            }
            None => Ok(self
                .call(Operation::Load, server.store.load(key, now))
                .await?
                .map(|record| (record, false))),
        }
    }

    /// The store's index of sessions by user, if it keeps one.
    pub fn users(&self) -> Option<&dyn UserIndex> {
        self.server().and_then(|server| server.users.as_deref())
    }

    /// The store's index of sessions by user, or [`StoreError::NoUserIndex`] naming the engine.
    pub fn user_index(&self) -> Result<&dyn UserIndex, StoreError> {
        self.users().ok_or(StoreError::NoUserIndex {
            engine: self.engine(),
        })
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
