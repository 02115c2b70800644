//! What the sessions of one app share: where the data travels (a store on the server, or the
//! cookie), the settings, the codec, the clock and the per-key locks. A store is the app's
//! store seen through the core's decorators (breaker and timeout, metrics and span, key
//! hashing: see [`CoreStore`]), the one way the core calls it.
//!
//! The store's abilities beside the store contract (`MovesOnLoad`, `UserIndex`) are called
//! through here, so that the store trait stays about storing bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::backend::Backend;
use crate::backing::{Backing, ClientSide};
use crate::breaker::Breaker;
use crate::clock::{Clock, SystemClock};
use crate::codec::{Codec, Data};
use crate::config::Settings;
use crate::decorate::{Decorated, Decorator, Operation};
use crate::error::{ConfigError, Error, StoreError};
use crate::guard::Guard;
use crate::hashed::HashKeys;
use crate::live::Live;
use crate::locks::KeyLocks;
use crate::observe::Observer;
use crate::store::{MovesOnLoad, Record, SessionStore};

/// The store as the core calls it: the breaker and timeout outermost (a call they refuse or
/// abandon is not observed as a store call, but counted in `ERRORS`; one the timeout abandons
/// is observed as `cancelled`), then the span and metrics, then key hashing when `hash_keys`
/// is on. Its user index, when the backend has one, is decorated the same way.
///
/// Breaker, timeout and metrics are decorators like any other rather than code of their own
/// here: the core calls this store's unboxed methods, so they cost what their own work costs
/// and no allocation, and the app's calls through
/// [`Sessions::store`](crate::Sessions::store) go through the very same store (before, they
/// skipped the breaker and the timeout).
pub(crate) type CoreStore = Decorated<(Guard, (Observer, Option<HashKeys>))>;

/// Everything the sessions of one app share.
#[derive(Clone)]
pub(crate) struct Shared {
    /// Where the data travels, as the core calls it.
    pub travel: Travel,
    pub settings: Settings,
    pub codec: Codec,
    pub clock: Arc<dyn Clock>,
    /// Savers of one key that met a conflict queue here before merging (store calls only).
    pub save_locks: KeyLocks,
    /// Exclusive routes of one visitor run one at a time (opt-in, held from load to save).
    pub exclusive_locks: KeyLocks,
    /// Lifecycle events and the sessions handlers wait on ([`crate::live`]).
    pub live: Arc<Live>,
}

/// [`Backing`] as the core uses it: the store decorated as the settings ask.
#[derive(Clone)]
pub(crate) enum Travel {
    /// The data is kept in a store on the server; the cookie carries its key.
    Server(Server),
    /// The data travels in the cookie, signed or encrypted; nothing is stored.
    Cookie(ClientSide),
}

/// A store on the server, as the core calls it.
#[derive(Clone)]
pub(crate) struct Server {
    /// The store the core calls (see [`CoreStore`]).
    pub store: Arc<CoreStore>,
    /// The same store, as [`Sessions::store`](crate::Sessions::store) hands it to the app.
    pub as_dyn: Arc<dyn SessionStore>,
    /// The store's live migration, if it is one: loads go through it (see [`Shared::load`]).
    moves: Option<Arc<dyn MovesOnLoad>>,
    /// Whether the backend keeps an index of sessions by user.
    indexed: bool,
}

impl Server {
    /// `backend` under `settings`, behind the core's decorators.
    fn new(backend: Backend, settings: &Settings) -> Self {
        let Backend {
            store,
            moves,
            users,
            ..
        } = backend;
        let engine = store.engine();
        let breaker = Arc::new(Breaker::new(
            settings.resilience.breaker_threshold,
            Duration::from_millis(settings.resilience.breaker_cooldown_ms),
        ));
        let guard = Guard::new(engine, breaker, settings.store_timeout());
        let hashing = settings.session.hash_keys.then_some(HashKeys);
        let indexed = users.is_some();
        let store = Arc::new(
            Decorated::new((guard, (Observer::new(engine), hashing)), store).with_users(users),
        );
        Self {
            as_dyn: Arc::clone(&store) as Arc<dyn SessionStore>,
            store,
            moves,
            indexed,
        }
    }

    /// The store's index of sessions by user (its calls decorated as every call is), if the
    /// backend keeps one.
    pub fn users(&self) -> Option<&CoreStore> {
        self.indexed.then_some(&*self.store)
    }
}

impl Shared {
    /// The machinery for `backing` under `settings`: keys hashed when `hash_keys` asks for
    /// it, a breaker with the configured threshold, and the system clock.
    ///
    /// # Errors
    /// [`ConfigError`] when the settings cannot work, or ask to hash the keys of sessions that
    /// have none (signed cookies).
    pub fn new(backing: Backing, settings: Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let engine = backing.engine();
        let announce = backing.server().and_then(|b| b.announce.clone());
        let travel = match backing {
            Backing::Cookie(_) if settings.session.hash_keys => {
                return Err(ConfigError::Invalid {
                    setting: "hash_keys",
                    reason: format!(
                        "the {engine} engine keeps the data in the cookie: there is no key to hash"
                    ),
                })
            }
            Backing::Cookie(_) if settings.session.transport != crate::Transport::Cookie => {
                return Err(ConfigError::Invalid {
                    setting: "transport",
                    reason: format!(
                        "the {engine} engine keeps the data in the cookie itself: its key cannot \
                         travel in a header; use a server-side engine for transport = \"{}\"",
                        settings.session.transport
                    ),
                })
            }
            Backing::Cookie(_) if settings.session.encrypt_data => {
                return Err(ConfigError::Invalid {
                    setting: "encrypt_data",
                    reason: format!(
                        "the {engine} engine stores nothing on the server; encrypt_data is for \
                         server-side engines"
                    ),
                })
            }
            Backing::Cookie(cookies) => Travel::Cookie(cookies),
            Backing::Server(backend) => Travel::Server(Server::new(backend, &settings)),
        };
        Ok(Self {
            travel,
            codec: settings.codec(),
            settings,
            clock: Arc::new(SystemClock),
            save_locks: KeyLocks::default(),
            exclusive_locks: KeyLocks::default(),
            live: Arc::new(Live::new(announce)),
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

    /// Encodes `data` for the store, refusing it over `max_session_bytes`. Every record the
    /// core creates or updates, and so every cookie it sets (signed or not), is encoded here:
    /// the one place the size bound is enforced, before anything is written.
    pub fn encode_bounded(&self, data: &Data) -> Result<Bytes, Error> {
        let text = self.encode(data)?;
        let limit = self.settings.session.max_session_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge {
                size: text.len(),
                limit,
            });
        }
        Ok(text)
    }

    /// Encodes `data` with the codec, a failure (no randomness for `encrypt_data`'s nonce)
    /// being this engine's store failure.
    pub fn encode(&self, data: &Data) -> Result<Bytes, StoreError> {
        self.codec
            .encode(data)
            .map_err(|e| StoreError::backend(self.engine(), e))
    }

    /// The name the store (and so its user index) knows session `key` by: the core's
    /// decorators' mapping, so it cannot differ from what the store is asked.
    pub fn stored_id(&self, key: &str) -> String {
        match &self.travel {
            Travel::Server(server) => server.store.decorator().key(key).into_owned(),
            Travel::Cookie(_) => key.to_owned(),
        }
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
            // The migrating store sits below the core's decorators, as the store does: the
            // same hooks, around an ability's call instead of the store's.
            Some(moves) => {
                let decorators = server.store.decorator();
                let stored = decorators.key(key);
                let call = moves.load_moved(&stored, now);
                decorators.wrap(Operation::Load, call).await
            }
            None => Ok(server
                .store
                .load(key, now)
                .await?
                .map(|record| (record, false))),
        }
    }

    /// The store's index of sessions by user, if the data is on the server and the backend
    /// keeps one.
    pub fn users(&self) -> Option<&CoreStore> {
        self.server().and_then(Server::users)
    }

    /// The store's index of sessions by user, or [`StoreError::NoUserIndex`] naming the engine.
    pub fn user_index(&self) -> Result<&CoreStore, StoreError> {
        self.users().ok_or(StoreError::NoUserIndex {
            engine: self.engine(),
        })
    }
}
